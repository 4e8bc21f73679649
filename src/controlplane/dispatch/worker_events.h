#pragma once
// How the worker's progress messages map onto the control plane's job record.
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "controlplane/model/job.h"
#include "worker/v1/worker.pb.h"

namespace flux::controlplane::dispatch {

namespace v1 = ::worker::v1;

// nullopt for JOB_STATUS_UNSPECIFIED (or a value this build does not know).
std::optional<model::JobStatus> to_job_status(v1::JobStatus status);
bool is_terminal(v1::JobStatus status);

// "downloading", "encoding", ... ; "" for JOB_PHASE_UNSPECIFIED.
std::string phase_name(v1::JobPhase phase);

// The `result` block of the job document.
nlohmann::json result_to_json(const v1::JobResult& result);
// {"download": s, "probe": s, "encode": s, "validate": s, "upload": s}.
nlohmann::json phase_durations(const v1::JobResult& result);

// Whether a worker-reported failure says something about the worker or its
// surroundings rather than about the job, so that another attempt (on another
// worker) may succeed:
//   worker_shutdown (drained or stopped mid-job), worker_draining, worker_full,
//   internal, io_error, spawn_failed, work_dir_unusable, file_write_failed,
//   input_write_failed (local disk), upload_failed (storage unreachable after
//   the worker's own retries), and a missing code (an original worker).
// Everything else is deterministic and final: input_* and url_* (bad input),
// preset_*, validation_failed, encode_failed, probe_failed, output_*,
// storage_unsupported, timeout, cancelled, invalid requests.
bool is_retryable(const std::string& error_code);

// Whether a retryable failure is about what the job needs around it (the
// object store, the disk, a helper program) rather than about the worker's
// availability: another attempt at once, on any worker, would likely meet
// the same trouble, so it waits first. False for worker_shutdown,
// worker_draining and worker_full (another worker takes the job at once) and
// for every failure that is not retryable.
bool is_retried_after_backoff(const std::string& error_code);

}  // namespace flux::controlplane::dispatch
