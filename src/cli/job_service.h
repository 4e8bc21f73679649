#pragma once
// What fluxctl needs from the control plane (SPEC §3), as an interface so the
// commands and the watch loop can be tested against a fake. HttpJobService
// (api_client.h) is the real one.
//
// Errors carry a machine code (flux::error_code): the server's own `code` for
// a non-2xx answer ("job_not_found", "unauthorized", ...) with the server's
// message, "connection_failed" / "timeout" / "network_error" when the server
// could not be reached or the exchange broke, "response_invalid" for an
// answer that is not what the API promises, "interrupted" when the caller's
// interrupt flag was raised. Categories: UNAVAILABLE and DEADLINE_EXCEEDED
// mean "worth trying again", everything else does not.
#include <functional>
#include <string>

#include <nlohmann/json.hpp>

#include "absl/status/statusor.h"
#include "cli/sse_parser.h"

namespace flux::cli {

struct ListQuery {
  std::string status;  // "" = any
  int limit = 0;       // 0 = the server's default
  std::string cursor;  // "" = first page
};

// How a progress stream ended without an error.
enum class StreamEnd {
  kClosed,     // the server closed the stream
  kStopped,    // on_event asked to stop
  kNoContent,  // 204: nothing more to read (the job ended and the client is up to date)
};

class JobService {
 public:
  virtual ~JobService() = default;

  // POST /api/v1/jobs; the 202 answer ({"job_id", "status", ...}).
  virtual absl::StatusOr<nlohmann::json> submit(const nlohmann::json& request, const std::string& idempotency_key) = 0;
  // GET /api/v1/jobs/{id}: the job document.
  virtual absl::StatusOr<nlohmann::json> get_job(const std::string& job_id) = 0;
  // GET /api/v1/jobs: {"jobs": [...], "next_cursor": ...}.
  virtual absl::StatusOr<nlohmann::json> list_jobs(const ListQuery& query) = 0;
  // POST /api/v1/jobs/{id}/cancel: the job document.
  virtual absl::StatusOr<nlohmann::json> cancel_job(const std::string& job_id) = 0;
  // GET /api/v1/workers/status: {"workers": [...]}.
  virtual absl::StatusOr<nlohmann::json> workers() = 0;
  // GET /api/v1/presets: {"presets": [...]}.
  virtual absl::StatusOr<nlohmann::json> presets() = 0;

  // GET /api/v1/jobs/{id}/stream, with Last-Event-ID when last_event_id is
  // not empty. Calls on_event for each event, in order, on the caller's
  // thread; returning false stops reading. Returns when the stream ends.
  virtual absl::StatusOr<StreamEnd> stream_job(const std::string& job_id, const std::string& last_event_id,
                                               const std::function<bool(const SseEvent&)>& on_event) = 0;
};

// True for errors worth trying again (the server was unreachable, the stream
// broke, a timeout, a 503).
bool is_retryable(const absl::Status& status);

}  // namespace flux::cli
