// XML documents from S3-compatible servers as the S3 client reads them
// (shared/s3/s3_xml.h): <Error>, <InitiateMultipartUploadResult>,
// <CompleteMultipartUploadResult>; plus the CompleteMultipartUpload body the
// client builds from ETags the server returned.
//
// Invariants beyond "no crash, no sanitizer report":
//  - the three parsers agree on what an <Error> document is: when
//    parse_s3_error reads one, the others fail with "s3_error" carrying its
//    code; otherwise they never answer "s3_error";
//  - failures carry only the documented codes; an accepted UploadId and ETag
//    are non-empty;
//  - the body built from any ETag (here: text the server sent) is well-formed
//    XML that gives back that ETag.
#include <tinyxml2.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "fuzz_check.h"
#include "shared/core/error.h"
#include "shared/s3/s3_xml.h"

namespace {

void check_code(const absl::Status& status, bool is_error_document, const std::string& s3_code) {
  const std::string code = flux::error_code(status);
  if (is_error_document) {
    FUZZ_CHECK(code == "s3_error", "an <Error> document answered " + code);
    FUZZ_CHECK(std::string(status.message()).find("S3 error " + s3_code) != std::string::npos,
               std::string(status.message()));
  } else {
    FUZZ_CHECK(code == "s3_bad_response", "a non-<Error> document answered " + code);
  }
}

// The body the client would send for parts whose ETags are `etag` must read
// back as exactly those ETags.
void check_complete_body(const std::string& etag) {
  if (etag.find('\0') != std::string::npos) return;  // cannot come from tinyxml2 text
  const std::vector<flux::s3::CompletedPart> parts = {{1, etag}, {2, "\"abc\""}};
  const std::string body = flux::s3::build_complete_multipart(parts);
  tinyxml2::XMLDocument doc(/*processEntities=*/true, tinyxml2::PRESERVE_WHITESPACE);
  FUZZ_CHECK(doc.Parse(body.data(), body.size()) == tinyxml2::XML_SUCCESS, "built body is not XML: " + body);
  const tinyxml2::XMLElement* part = doc.RootElement()->FirstChildElement("Part");
  FUZZ_CHECK(part != nullptr, body);
  const tinyxml2::XMLElement* tag = part->FirstChildElement("ETag");
  FUZZ_CHECK(tag != nullptr, body);
  const char* text = tag->GetText();
  FUZZ_CHECK(std::string(text ? text : "") == etag, "ETag '" + flux::fuzz::printable(etag) + "' reads back as '" +
                                                        flux::fuzz::printable(text ? text : "") + "' from " +
                                                        flux::fuzz::printable(body));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view xml(reinterpret_cast<const char*>(data), size);
  const auto error = flux::s3::parse_s3_error(xml);
  const std::string s3_code = error ? error->code : "";

  auto upload_id = flux::s3::parse_initiate_multipart(xml);
  if (upload_id.ok()) {
    FUZZ_CHECK(!error, "an <Error> document gave an UploadId");
    FUZZ_CHECK(!upload_id->empty(), "empty UploadId");
  } else {
    check_code(upload_id.status(), error.has_value(), s3_code);
  }

  auto completed = flux::s3::parse_complete_multipart(xml);
  if (completed.ok()) {
    FUZZ_CHECK(!error, "an <Error> document completed an upload");
    FUZZ_CHECK(!completed->etag.empty(), "empty ETag");
    check_complete_body(completed->etag);
  } else {
    check_code(completed.status(), error.has_value(), s3_code);
  }
  if (error) check_complete_body(error->message);
  return 0;
}
