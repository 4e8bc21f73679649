#pragma once
// HTTP over libcurl with the address rules of url_policy.h enforced where it
// matters: on every address curl actually opens a socket to (so a DNS answer
// that changes between the check and the connection, or a redirect, cannot
// reach loopback, private or metadata addresses), and on every redirect hop,
// which is followed by this code rather than by curl. Proxies from the
// environment are ignored, since they would hide the real destination.
//
// Error codes of download_to_file():
//   "input_not_found"       404 or 410                          (NOT_FOUND)
//   "input_download_failed" 408, 429, 5xx, connection errors    (UNAVAILABLE: worth retrying)
//                           timeouts                            (DEADLINE_EXCEEDED: worth retrying)
//                           other statuses, TLS verification,
//                           too many redirects                  (FAILED_PRECONDITION: not worth retrying)
//   "input_too_large"       larger than max_bytes               (INVALID_ARGUMENT)
//   "url_invalid", "url_scheme_forbidden", "url_address_forbidden"  (INVALID_ARGUMENT)
//   "cancelled"             the CancelToken fired               (CANCELLED)
//   "input_write_failed"    the destination could not be written (INTERNAL)
// request() uses "http_request_failed" and "http_response_too_large" in place
// of the input_* codes, with the same categories; a non-2xx answer is a
// response, not an error.
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "shared/core/cancel_token.h"
#include "shared/http/url_policy.h"

namespace flux::http {

struct DownloadOptions {
  UrlPolicy policy;
  uint64_t max_bytes = 0;  // 0: no cap
  std::chrono::milliseconds connect_timeout{std::chrono::seconds(10)};
  std::chrono::milliseconds total_timeout{std::chrono::seconds(3600)};  // all redirect hops together
  // A transfer moving fewer than low_speed_bytes per second for
  // low_speed_time fails as a timeout (a server that stalls mid-body).
  std::chrono::seconds low_speed_time{60};
  long low_speed_bytes = 1;
  int max_redirects = 5;
  // Test only: CURLOPT_RESOLVE entries ("host:port:address"), so that a test
  // can make a public-looking name resolve to a forbidden address and prove
  // the connect-time check. Never filled from configuration.
  std::vector<std::string> test_only_resolve;
};

// Downloads `url` (http or https) to `dest`: the body goes to a temporary file
// next to `dest`, renamed over it only when complete; on any error no file is
// left. `cancel` may be null.
absl::Status download_to_file(std::string_view url, const std::filesystem::path& dest, const DownloadOptions& options,
                              const flux::CancelToken* cancel);

using HttpHeaders = std::vector<std::pair<std::string, std::string>>;

struct HttpRequest {
  std::string method = "GET";
  std::string url;
  HttpHeaders headers;
  std::string body;
};

struct HttpResponse {
  long status = 0;
  HttpHeaders headers;  // of the final response, names as sent
  std::string body;
};

struct RequestOptions {
  UrlPolicy policy = [] {
    UrlPolicy web;
    web.allowed_schemes = {"https", "http"};
    return web;
  }();
  std::chrono::milliseconds connect_timeout{std::chrono::seconds(10)};
  std::chrono::milliseconds total_timeout{std::chrono::seconds(30)};
  size_t max_response_bytes = 1 << 20;
  // 0: a 3xx is returned as the response. Otherwise each hop is re-checked; a
  // 303 (or a 301/302 after POST) becomes a GET without body, and credentials
  // (Authorization, Cookie) are dropped when the host changes.
  int max_redirects = 0;
  std::vector<std::string> test_only_resolve;  // as in DownloadOptions
};

// One HTTP exchange (webhooks and the like) under the same address rules.
absl::StatusOr<HttpResponse> request(const HttpRequest& req, const RequestOptions& options,
                                     const flux::CancelToken* cancel);

// The value of a header (case-insensitive name), or "" when absent.
std::string header_value(const HttpHeaders& headers, std::string_view name);

}  // namespace flux::http
