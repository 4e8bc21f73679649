#pragma once
// How an error of the store or the dispatcher answers a REST request: the
// status code, the SPEC §3 error body and, for "try again later" answers,
// Retry-After.
#include "absl/status/status.h"
#include "controlplane/http/types.h"

namespace flux::controlplane::app {

// 404 job_not_found, 409 job_finished, 400 cursor_invalid; 503 + Retry-After
// for queue_full, no_worker_available, no_worker_configured and for a control
// plane that is shutting down or not started yet (dispatcher_stopped,
// dispatcher_not_started, store_closed): a client retries those elsewhere or
// later. Anything else is logged and answers 500 "internal" without details.
http::Response status_response(const absl::Status& status);

// The same Response with "Retry-After: <seconds>".
http::Response with_retry_after(http::Response response, int seconds);

}  // namespace flux::controlplane::app
