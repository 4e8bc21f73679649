#include "shared/s3/s3_xml.h"

#include <tinyxml2.h>

#include "shared/core/error.h"
#include "shared/core/xml_text.h"

namespace flux::s3 {
namespace {

// Text of the first direct child named `name`, "" when absent.
std::string child_text(const tinyxml2::XMLElement* parent, const char* name) {
  const tinyxml2::XMLElement* child = parent->FirstChildElement(name);
  if (child == nullptr || child->GetText() == nullptr) return "";
  return child->GetText();
}

bool parse_document(tinyxml2::XMLDocument& doc, std::string_view xml) {
  if (xml.empty()) return false;
  return doc.Parse(xml.data(), xml.size()) == tinyxml2::XML_SUCCESS && doc.RootElement() != nullptr;
}

bool root_is(const tinyxml2::XMLDocument& doc, std::string_view name) {
  const char* root = doc.RootElement()->Name();
  return root != nullptr && name == root;
}

absl::Status error_status(const S3ErrorInfo& error, std::string_view during) {
  std::string message = std::string(during) + ": S3 error " + error.code;
  if (!error.message.empty()) message += ": " + error.message;
  return flux::unavailable("s3_error", message);
}

}  // namespace

std::optional<S3ErrorInfo> parse_s3_error(std::string_view xml) {
  tinyxml2::XMLDocument doc;
  if (!parse_document(doc, xml) || !root_is(doc, "Error")) return std::nullopt;
  const tinyxml2::XMLElement* root = doc.RootElement();
  return S3ErrorInfo{child_text(root, "Code"), child_text(root, "Message"), child_text(root, "RequestId")};
}

absl::StatusOr<std::string> parse_initiate_multipart(std::string_view xml) {
  tinyxml2::XMLDocument doc;
  if (!parse_document(doc, xml)) {
    return flux::unavailable("s3_bad_response", "initiate multipart upload: response is not XML");
  }
  if (root_is(doc, "Error")) return error_status(*parse_s3_error(xml), "initiate multipart upload");
  if (!root_is(doc, "InitiateMultipartUploadResult")) {
    return flux::unavailable("s3_bad_response", "initiate multipart upload: unexpected XML document");
  }
  std::string upload_id = child_text(doc.RootElement(), "UploadId");
  if (upload_id.empty()) return flux::unavailable("s3_bad_response", "initiate multipart upload: no UploadId");
  return upload_id;
}

absl::StatusOr<CompleteMultipartResult> parse_complete_multipart(std::string_view xml) {
  tinyxml2::XMLDocument doc;
  if (!parse_document(doc, xml)) {
    return flux::unavailable("s3_bad_response", "complete multipart upload: response is not XML");
  }
  if (root_is(doc, "Error")) return error_status(*parse_s3_error(xml), "complete multipart upload");
  if (!root_is(doc, "CompleteMultipartUploadResult")) {
    return flux::unavailable("s3_bad_response", "complete multipart upload: unexpected XML document");
  }
  const tinyxml2::XMLElement* root = doc.RootElement();
  CompleteMultipartResult result{child_text(root, "Location"), child_text(root, "Bucket"), child_text(root, "Key"),
                                 child_text(root, "ETag")};
  if (result.etag.empty()) return flux::unavailable("s3_bad_response", "complete multipart upload: no ETag");
  return result;
}

std::string build_complete_multipart(const std::vector<CompletedPart>& parts) {
  std::string out = "<CompleteMultipartUpload xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">";
  for (const auto& part : parts) {
    out += "<Part><PartNumber>" + std::to_string(part.part_number) + "</PartNumber><ETag>";
    // A raw CR would reach the server as LF and the ETag would no longer match the part's.
    append_xml_escaped(out, part.etag);
    out += "</ETag></Part>";
  }
  out += "</CompleteMultipartUpload>";
  return out;
}

}  // namespace flux::s3
