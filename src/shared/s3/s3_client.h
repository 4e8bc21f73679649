#pragma once
// A small S3 client on libcurl: object PUT (single or multipart), GET to a
// file, HEAD, DELETE and presigned GET URLs. Requests are signed by libcurl
// (CURLOPT_AWS_SIGV4) with an explicit x-amz-content-sha256; presigned URLs by
// our own code (sigv4.h). Both are checked against botocore (tests/s3_oracle).
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <map>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "shared/core/cancel_token.h"
#include "shared/retry/retry.h"

namespace flux::s3 {

// Never logged or put into an error message. An empty access key id means
// anonymous (unsigned) requests.
struct Credentials {
  std::string access_key_id;
  std::string secret_access_key;
  std::string session_token;
  // AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN.
  static Credentials from_env();
};

struct S3Config {
  std::string region = "us-east-1";
  // "" = AWS. Otherwise "http(s)://host[:port]" of an S3-compatible store
  // (scheme defaults to https).
  std::string endpoint;
  bool force_path_style = false;
  Credentials credentials;
  uint64_t multipart_threshold = 16ull << 20;  // files of this size or more go multipart
  uint64_t part_size = 8ull << 20;             // grown when a file would need more than 10 000 parts
  int parallel_parts = 4;
  retry::RetryPolicy retry;
  std::chrono::seconds connect_timeout{10};
  // Cap on one request; the streamed GET has no total cap but fails when stalled this long.
  std::chrono::seconds request_timeout{300};
};

struct PutOptions {
  std::string content_type;
  std::string cache_control;
  std::map<std::string, std::string> metadata;  // sent as x-amz-meta-<name>
};

struct ObjectInfo {
  uint64_t size = 0;
  std::string etag;  // without quotes
  std::string content_type;
  std::string cache_control;
  std::map<std::string, std::string> metadata;  // x-amz-meta-* with the prefix removed, names lower case
};

// Thread-safe: it holds only its configuration, and each request uses its own
// curl easy handle.
//
// Errors (codes): 404 → kNotFound "s3_not_found"; 403 → kPermissionDenied
// "s3_access_denied"; other failures, after retries on 5xx, 429/throttling and
// connection errors → kUnavailable "s3_error" with the S3 Code and Message;
// cancellation → kCancelled "cancelled"; bad arguments → kInvalidArgument
// "s3_invalid_request".
class S3Client {
 public:
  explicit S3Client(S3Config config);

  // Single PUT below multipart_threshold; above, a multipart upload with
  // part_size parts, parallel_parts in flight. On any failure (cancellation
  // included) the multipart upload is aborted, so no object appears.
  absl::Status put_file(const std::string& bucket, const std::string& key, const std::filesystem::path& file,
                        const PutOptions& options, const flux::CancelToken* cancel = nullptr);

  // Streams the object into `dest` through a temporary file in the same
  // directory, renamed into place only when complete. More than `max_bytes`
  // (0 = no cap) fails with kInvalidArgument "input_too_large".
  absl::Status get_to_file(const std::string& bucket, const std::string& key, const std::filesystem::path& dest,
                           uint64_t max_bytes, const flux::CancelToken* cancel = nullptr);

  absl::StatusOr<ObjectInfo> head(const std::string& bucket, const std::string& key);
  // Deleting a missing object succeeds, as in S3.
  absl::Status delete_object(const std::string& bucket, const std::string& key);

  // The object's URL: https://<bucket>.s3.<region>.amazonaws.com/<key> on AWS,
  // endpoint-based (path style when configured) otherwise.
  std::string object_url(const std::string& bucket, const std::string& key) const;

  // A presigned GET URL valid for `expires` (1 s to 7 days) from `now`.
  std::string presign_get(const std::string& bucket, const std::string& key, std::chrono::seconds expires,
                          std::chrono::system_clock::time_point now) const;

  const S3Config& config() const { return config_; }

 private:
  struct Location {
    std::string scheme;
    std::string host;  // Host header value: default port omitted
    std::string path;  // encoded: "/bucket/key" or "/key"
  };
  Location locate(const std::string& bucket, const std::string& key) const;

  absl::Status put_single(const std::string& bucket, const std::string& key, const std::filesystem::path& file,
                          uint64_t size, const PutOptions& options, const flux::CancelToken* cancel);
  absl::Status put_multipart(const std::string& bucket, const std::string& key, const std::filesystem::path& file,
                             uint64_t size, const PutOptions& options, const flux::CancelToken* cancel);

  S3Config config_;
  std::string endpoint_scheme_;
  std::string endpoint_host_;  // "" = AWS
  std::string endpoint_path_;  // path prefix of the endpoint, usually ""
};

}  // namespace flux::s3
