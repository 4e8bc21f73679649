#pragma once
// Text for XML documents we write (S3 request bodies, test manifests).
#include <string>
#include <string_view>

namespace flux {

// Appends `text` escaped for XML character data or an attribute value: the
// five markup characters as entities and every control character below 0x20
// as a character reference, so a parser reads back the same bytes (a raw CR
// or tab would be normalised by XML end-of-line and attribute handling).
void append_xml_escaped(std::string& out, std::string_view text);

inline std::string xml_escaped(std::string_view text) {
  std::string out;
  append_xml_escaped(out, text);
  return out;
}

}  // namespace flux
