#include "controlplane/app/status_response.h"

#include <string>

#include "shared/core/error.h"
#include "shared/log/log.h"

namespace flux::controlplane::app {

http::Response with_retry_after(http::Response response, int seconds) {
  response.headers.emplace_back("Retry-After", std::to_string(seconds));
  return response;
}

http::Response status_response(const absl::Status& status) {
  const std::string code = error_code(status);
  const std::string message(status.message());
  if (code == "job_not_found" || status.code() == absl::StatusCode::kNotFound) {
    return http::error_response(404, "job_not_found", message);
  }
  if (code == "job_finished") return http::error_response(409, code, message);
  if (code == "cursor_invalid") return http::error_response(400, code, message, "cursor");
  if (code == "queue_full") return with_retry_after(http::error_response(503, code, message), 5);
  if (code == "no_worker_available") return with_retry_after(http::error_response(503, code, message), 2);
  if (code == "no_worker_configured") return with_retry_after(http::error_response(503, code, message), 30);
  // Shutting down (SIGTERM) or still loading the queue at start: another
  // replica, or this one restarted, takes the request in a few seconds.
  if (code == "dispatcher_stopped" || code == "dispatcher_not_started" || code == "store_closed") {
    return with_retry_after(http::error_response(503, code, message), 5);
  }
  log::error("request failed", {{"error_code", code}, {"error", message}});
  return http::error_response(500, "internal", "internal error");
}

}  // namespace flux::controlplane::app
