#pragma once
// Brings a job's input into its work directory, so that ffmpeg only ever
// reads a local copy (it is run with -protocol_whitelist file).
//
//   http(s)://  downloaded under the address rules of shared/http (every
//               redirect and every connection re-checked), retried on
//               transient failures (5xx, 408/429, connection errors, timeouts)
//               but not on 4xx, refusals or size;
//   s3://bucket/key  fetched with the worker's S3 credentials (the key is
//               percent-decoded);
//   file://     only under LOCAL_INPUT_DIR, after symlinks are resolved; copied.
//
// Error codes besides those of url_policy.h / http_client.h:
//   "input_empty" (the input has 0 bytes), "input_too_large",
//   "input_not_found" (also for a missing S3 object or local file),
//   "s3_not_configured" (an s3:// input on a worker without S3),
//   "cancelled", and the S3 client's codes ("s3_access_denied", "s3_error").
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string_view>

#include "absl/status/statusor.h"
#include "shared/core/cancel_token.h"
#include "shared/http/url_policy.h"
#include "shared/retry/retry.h"
#include "shared/s3/s3_client.h"

namespace flux::worker::input {

struct FetchOptions {
  http::UrlPolicy policy;
  uint64_t max_bytes = 0;  // MAX_INPUT_BYTES; 0 = no cap
  std::chrono::seconds connect_timeout{10};
  std::chrono::seconds total_timeout{3600};  // one download attempt, redirects included
  retry::RetryPolicy retry;                  // http(s) only; the S3 client retries by itself
};

class InputFetcher {
 public:
  // `s3` may be null: s3:// inputs then fail with "s3_not_configured".
  InputFetcher(FetchOptions options, std::shared_ptr<s3::S3Client> s3);

  // Fetches `url` into `dest_dir` (created if missing) as "input" plus the
  // URL's extension when it is short and alphanumeric ("input.mp4"), and
  // returns that path. On failure nothing is left in `dest_dir`.
  // Thread-safe: concurrent jobs may share one fetcher.
  absl::StatusOr<std::filesystem::path> fetch(std::string_view url, const std::filesystem::path& dest_dir,
                                              const flux::CancelToken& cancel) const;

  const FetchOptions& options() const { return options_; }

 private:
  absl::Status fetch_http(std::string_view url, const std::filesystem::path& dest,
                          const flux::CancelToken& cancel) const;
  absl::Status fetch_s3(const http::ParsedUrl& url, const std::filesystem::path& dest,
                        const flux::CancelToken& cancel) const;
  absl::Status fetch_local(std::string_view url, const std::filesystem::path& dest,
                           const flux::CancelToken& cancel) const;

  FetchOptions options_;
  std::shared_ptr<s3::S3Client> s3_;
};

// "input" + the lower-cased extension of the URL path's last segment when it
// is 1 to 8 letters or digits, else "input".
std::string input_file_name(std::string_view url_path);

}  // namespace flux::worker::input
