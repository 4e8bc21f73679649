#include "shared/core/xml_text.h"

#include <gtest/gtest.h>
#include <tinyxml2.h>

namespace flux {
namespace {

TEST(XmlText, EscapesMarkupAndControlCharacters) {
  EXPECT_EQ(xml_escaped(R"(a&b<c>d"e'f)"), "a&amp;b&lt;c&gt;d&quot;e&apos;f");
  EXPECT_EQ(xml_escaped("x\r\ny\tz"), "x&#13;&#10;y&#9;z");
  EXPECT_EQ(xml_escaped("\"etag-\xc3\xa9\""), "&quot;etag-\xc3\xa9&quot;");  // UTF-8 passes as is
  std::string out = "<E>";
  append_xml_escaped(out, "1&2");
  EXPECT_EQ(out, "<E>1&amp;2");
}

// What the escaping is for: a real XML parser gives back the same bytes, in
// an attribute and in character data.
TEST(XmlText, ReadsBackByteForByteThroughAParser) {
  const std::string text = "\"q\" <&> 'a'\r\n\tend\x01";
  const std::string xml = "<r a=\"" + xml_escaped(text) + "\">" + xml_escaped(text) + "</r>";
  tinyxml2::XMLDocument doc;
  ASSERT_EQ(doc.Parse(xml.c_str(), xml.size()), tinyxml2::XML_SUCCESS) << xml;
  const tinyxml2::XMLElement* root = doc.RootElement();
  ASSERT_NE(root, nullptr);
  EXPECT_EQ(std::string(root->Attribute("a")), text);
  EXPECT_EQ(std::string(root->GetText()), text);
}

}  // namespace
}  // namespace flux
