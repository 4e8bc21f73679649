#pragma once
// Internal to flux::s3: one signed HTTP exchange with S3 over libcurl, and the
// mapping of its outcome to a status. Not part of the public API.
#include <atomic>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "shared/core/cancel_token.h"
#include "shared/retry/retry.h"

namespace flux::s3 {

struct Credentials;

namespace internal {

struct Request {
  std::string method;  // GET PUT POST DELETE HEAD
  std::string url;     // fully encoded, query in canonical form
  std::string what;    // for messages: "upload part 3 of s3://bucket/key"
  std::vector<std::pair<std::string, std::string>> headers;
  std::string payload_sha256;  // hex; sent as x-amz-content-sha256

  // Request body: in memory, or `body_length` bytes of `body_file` from `body_offset`.
  std::string_view body;
  std::filesystem::path body_file;
  uint64_t body_offset = 0;
  uint64_t body_length = 0;

  // Response body of a successful exchange: into memory, or (when sink_fd >= 0)
  // written to that file descriptor, which is truncated before every attempt.
  int sink_fd = -1;
  uint64_t max_sink_bytes = 0;  // 0 = no cap
};

struct Response {
  long status = 0;
  std::map<std::string, std::string> headers;  // names lower case
  std::string body;                            // error bodies always land here
};

struct Transport {
  const Credentials* credentials = nullptr;
  std::string region;
  long connect_timeout_s = 10;
  long request_timeout_s = 300;  // 0 = no total cap (streamed GET)
  long stall_timeout_s = 60;
};

// One attempt. Transport failures, cancellation and a too-large body come back
// as a status; any HTTP answer comes back as a Response, whatever its code.
// `abort` (optional) stops the transfer like a cancellation.
absl::StatusOr<Response> perform(const Transport& transport, const Request& request, const flux::CancelToken* cancel,
                                 const std::atomic<bool>* abort);

// OK for 2xx; otherwise the documented S3 error status for `response`.
absl::Status status_for(const Response& response, std::string_view what);

// Whether an error status from perform/status_for is worth another try.
bool is_retryable(const absl::Status& status);
// Marks an error worth another try (5xx, throttling, connection trouble).
absl::Status mark_retryable(absl::Status status);
// Whether an S3 error Code names throttling or a transient server fault.
bool is_transient_s3_code(std::string_view code);

// perform + status_for under the retry policy; `check` (optional) may reject a
// 2xx response (e.g. an <Error> body with HTTP 200), its verdict retried too.
absl::StatusOr<Response> call(const Transport& transport, const retry::RetryPolicy& policy, const Request& request,
                              const flux::CancelToken* cancel, const std::atomic<bool>* abort = nullptr,
                              const std::function<absl::Status(const Response&)>& check = nullptr);

}  // namespace internal
}  // namespace flux::s3
