#include "shared/s3/s3_xml.h"

#include <gtest/gtest.h>
#include <tinyxml2.h>

#include "shared/core/error.h"

namespace flux::s3 {
namespace {

TEST(ParseS3Error, ReadsCodeMessageAndRequestId) {
  const auto error = parse_s3_error(
      "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>NoSuchKey</Code><Message>The specified key does not "
      "exist.</Message><Key>a/b</Key><RequestId>4442587FB7D0A2F9</RequestId></Error>");
  ASSERT_TRUE(error.has_value());
  EXPECT_EQ(error->code, "NoSuchKey");
  EXPECT_EQ(error->message, "The specified key does not exist.");
  EXPECT_EQ(error->request_id, "4442587FB7D0A2F9");
}

TEST(ParseS3Error, RejectsWhatIsNotAnErrorDocument) {
  EXPECT_FALSE(parse_s3_error("").has_value());
  EXPECT_FALSE(parse_s3_error("<html>502 Bad Gateway</html>").has_value());
  EXPECT_FALSE(parse_s3_error("<Error><Code>Trunc").has_value());
  EXPECT_FALSE(parse_s3_error("not xml at all").has_value());
  EXPECT_FALSE(parse_s3_error("<CompleteMultipartUploadResult/>").has_value());
}

TEST(ParseS3Error, ToleratesMissingFieldsAndLeadingWhitespace) {
  // S3 pads long-running Complete responses with whitespace before the document.
  const auto error = parse_s3_error("   \n  <Error><Code>SlowDown</Code></Error>");
  ASSERT_TRUE(error.has_value());
  EXPECT_EQ(error->code, "SlowDown");
  EXPECT_EQ(error->message, "");
}

TEST(ParseInitiateMultipart, ReturnsTheUploadId) {
  const auto id = parse_initiate_multipart(
      "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<InitiateMultipartUploadResult "
      "xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Bucket>b</Bucket><Key>k</Key><UploadId>VXBsb2FkIElE.x-y_"
      "z</UploadId></InitiateMultipartUploadResult>");
  ASSERT_TRUE(id.ok()) << id.status();
  EXPECT_EQ(*id, "VXBsb2FkIElE.x-y_z");
}

TEST(ParseInitiateMultipart, RefusesMalformedOrEmptyAnswers) {
  EXPECT_EQ(flux::error_code(parse_initiate_multipart("").status()), "s3_bad_response");
  EXPECT_EQ(flux::error_code(parse_initiate_multipart("<InitiateMultipartUploadResult><UploadId></UploadId>"
                                                      "</InitiateMultipartUploadResult>")
                                 .status()),
            "s3_bad_response");
  EXPECT_EQ(flux::error_code(parse_initiate_multipart("<Other><UploadId>x</UploadId></Other>").status()),
            "s3_bad_response");
  const auto error = parse_initiate_multipart("<Error><Code>AccessDenied</Code><Message>no</Message></Error>");
  EXPECT_EQ(flux::error_code(error.status()), "s3_error");
  EXPECT_NE(std::string(error.status().message()).find("AccessDenied"), std::string::npos);
}

TEST(ParseCompleteMultipart, ReadsTheResult) {
  const auto result = parse_complete_multipart(
      "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<CompleteMultipartUploadResult><Location>https://b.s3.amazonaws.com/"
      "k</Location><Bucket>b</Bucket><Key>k</Key><ETag>\"3858f62230ac3c915f300c664312c11f-9\"</ETag>"
      "</CompleteMultipartUploadResult>");
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->bucket, "b");
  EXPECT_EQ(result->key, "k");
  EXPECT_EQ(result->etag, "\"3858f62230ac3c915f300c664312c11f-9\"");
}

TEST(ParseCompleteMultipart, AnErrorBodyIsAFailureEvenWithHttp200) {
  const auto result = parse_complete_multipart(
      "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\n<Error><Code>InternalError</Code><Message>We encountered an "
      "internal error. Please try again.</Message></Error>");
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(flux::error_code(result.status()), "s3_error");
  EXPECT_EQ(result.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_NE(std::string(result.status().message()).find("InternalError"), std::string::npos);
  EXPECT_NE(std::string(result.status().message()).find("Please try again"), std::string::npos);
}

TEST(ParseCompleteMultipart, RefusesTruncatedOrForeignDocuments) {
  EXPECT_EQ(flux::error_code(parse_complete_multipart("<CompleteMultipartUploadResult><ETag>x").status()),
            "s3_bad_response");
  EXPECT_EQ(flux::error_code(parse_complete_multipart("<CompleteMultipartUploadResult/>").status()), "s3_bad_response");
  EXPECT_EQ(flux::error_code(parse_complete_multipart("{\"json\": true}").status()), "s3_bad_response");
}

TEST(BuildCompleteMultipart, ListsPartsInOrderAndEscapesEtags) {
  const std::string body = build_complete_multipart({{1, "\"aa\""}, {2, "\"b<b\""}});
  EXPECT_EQ(body,
            "<CompleteMultipartUpload xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">"
            "<Part><PartNumber>1</PartNumber><ETag>&quot;aa&quot;</ETag></Part>"
            "<Part><PartNumber>2</PartNumber><ETag>&quot;b&lt;b&quot;</ETag></Part>"
            "</CompleteMultipartUpload>");
}

// Found by fuzz/s3_xml_fuzzer (corpus: fuzz/corpus/s3_xml/etag_carriage_return.xml):
// an XML reader turns a raw CR into LF, so the ETag must carry it as &#13;.
TEST(BuildCompleteMultipart, EtagsReadBackByteForByte) {
  const std::string etag = "\"a&>\r\n\r\rb\\ c&\"";
  const std::string body = build_complete_multipart({{1, etag}});
  EXPECT_EQ(body.find('\r'), std::string::npos);
  tinyxml2::XMLDocument doc;
  ASSERT_EQ(doc.Parse(body.data(), body.size()), tinyxml2::XML_SUCCESS);
  const tinyxml2::XMLElement* tag = doc.RootElement()->FirstChildElement("Part")->FirstChildElement("ETag");
  ASSERT_NE(tag, nullptr);
  EXPECT_EQ(std::string(tag->GetText()), etag);
}

}  // namespace
}  // namespace flux::s3
