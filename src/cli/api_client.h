#pragma once
// JobService over HTTP with libcurl. The caller initialises libcurl once
// (curl_global_init) before creating one.
#include <atomic>
#include <chrono>
#include <string>

#include "cli/job_service.h"

namespace flux::cli {

struct ClientOptions {
  std::string base_url;  // "http://localhost:8080" (a trailing '/' is ignored)
  std::string api_key;   // sent as "Authorization: Bearer <key>" when not empty; never printed
  std::chrono::milliseconds connect_timeout{std::chrono::seconds(10)};
  std::chrono::milliseconds request_timeout{std::chrono::seconds(60)};
  // A progress stream silent for this long is treated as broken (the server
  // sends a keep-alive comment every 15 s by default).
  std::chrono::seconds stream_idle_timeout{60};
  size_t max_response_bytes = 64 << 20;
  std::string user_agent = "fluxctl";
  // When set and raised (Ctrl-C), transfers stop with error code "interrupted".
  const std::atomic<bool>* interrupted = nullptr;
};

class HttpJobService final : public JobService {
 public:
  explicit HttpJobService(ClientOptions options);

  absl::StatusOr<nlohmann::json> submit(const nlohmann::json& request, const std::string& idempotency_key) override;
  absl::StatusOr<nlohmann::json> get_job(const std::string& job_id) override;
  absl::StatusOr<nlohmann::json> list_jobs(const ListQuery& query) override;
  absl::StatusOr<nlohmann::json> cancel_job(const std::string& job_id) override;
  absl::StatusOr<nlohmann::json> workers() override;
  absl::StatusOr<nlohmann::json> presets() override;
  absl::StatusOr<StreamEnd> stream_job(const std::string& job_id, const std::string& last_event_id,
                                       const std::function<bool(const SseEvent&)>& on_event) override;

 private:
  struct Reply {
    long status = 0;
    std::string content_type;
    std::string body;
  };
  absl::StatusOr<Reply> exchange(const std::string& method, const std::string& path, const std::string* json_body,
                                 const std::vector<std::string>& extra_headers);
  absl::StatusOr<nlohmann::json> json_call(const std::string& method, const std::string& path,
                                           const nlohmann::json* body, const std::vector<std::string>& extra_headers,
                                           long expected_status);

  ClientOptions options_;
};

// The error a non-2xx answer stands for: the server's {"error", "code"} when
// the body has them, else "HTTP <status>" with code "http_<status>". The
// category follows the status (401 UNAUTHENTICATED, 404 NOT_FOUND, 409
// FAILED_PRECONDITION, 429 RESOURCE_EXHAUSTED, 503 UNAVAILABLE, other 4xx
// INVALID_ARGUMENT, other 5xx INTERNAL). Exposed for tests.
absl::Status error_from_response(long http_status, const std::string& body);

}  // namespace flux::cli
