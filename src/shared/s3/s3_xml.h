#pragma once
// Pure parsers and builders for the few S3 XML documents the client handles.
// They take untrusted bytes from the network and never throw.
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace flux::s3 {

struct S3ErrorInfo {
  std::string code;     // "NoSuchKey", "SlowDown", ...
  std::string message;  // human text from S3
  std::string request_id;
};

// The <Error> document S3 returns with failures (and, for
// CompleteMultipartUpload, sometimes with HTTP 200). nullopt when `xml` is not
// a well-formed document whose root element is <Error>.
std::optional<S3ErrorInfo> parse_s3_error(std::string_view xml);

// The UploadId from an <InitiateMultipartUploadResult>. Error code
// "s3_bad_response" when the document is malformed or has no UploadId, or the
// S3 error ("s3_error") when it is an <Error> document.
absl::StatusOr<std::string> parse_initiate_multipart(std::string_view xml);

struct CompleteMultipartResult {
  std::string location;
  std::string bucket;
  std::string key;
  std::string etag;
};

// A <CompleteMultipartUploadResult>. An <Error> document (which S3 may send
// with HTTP 200 after the upload started) becomes code "s3_error" carrying the
// S3 code and message; anything else unparseable is "s3_bad_response".
absl::StatusOr<CompleteMultipartResult> parse_complete_multipart(std::string_view xml);

struct CompletedPart {
  int part_number = 0;
  std::string etag;  // as returned by UploadPart, quotes included
};

// The <CompleteMultipartUpload> request body, parts in the order given.
std::string build_complete_multipart(const std::vector<CompletedPart>& parts);

}  // namespace flux::s3
