#include "controlplane/store/record_codec.h"

#include <exception>

#include "shared/core/error.h"

namespace flux::controlplane::store {

using nlohmann::json;

JobRow to_row(const model::JobRecord& job) {
  JobRow row;
  row.job_id = job.job_id;
  row.status = std::string(model::to_string(job.status));
  row.priority = job.spec.priority;
  row.created_ms = job.created_ms;
  row.api_key_id = job.api_key_id;
  row.idempotency_key = job.idempotency_key;
  row.sequence = static_cast<int64_t>(job.sequence);
  const json doc = {
      {"input_url", job.spec.input_url},
      {"preset", job.spec.preset},
      {"output",
       {{"storage", job.spec.output.storage},
        {"path", job.spec.output.path},
        {"type", job.spec.output.type},
        {"metadata", job.spec.output.metadata}}},
      {"callback_url", job.spec.callback_url},
      {"phase", job.phase},
      {"progress", job.progress},
      {"message", job.message},
      {"output_url", job.output_url},
      {"error", job.error},
      {"error_code", job.error_code},
      {"worker_id", job.worker_id},
      {"worker_address", job.worker_address},
      {"attempts", job.attempts},
      {"created_at", job.created_at},
      {"started_at", job.started_at},
      {"finished_at", job.finished_at},
      {"result", job.result},
      {"phase_durations", job.phase_durations},
      {"webhook",
       {{"state", job.webhook.state},
        {"attempts", job.webhook.attempts},
        {"last_status", job.webhook.last_status},
        {"last_error", job.webhook.last_error},
        {"delivered_at", job.webhook.delivered_at}}},
  };
  // Invalid UTF-8 from a client must not make the write throw.
  row.doc = doc.dump(-1, ' ', false, json::error_handler_t::replace);
  return row;
}

absl::StatusOr<model::JobRecord> from_row(const JobRow& row) {
  model::JobRecord job;
  job.job_id = row.job_id;
  auto status = model::parse_job_status(row.status);
  if (!status) return internal_error("store_corrupt_record", "job " + row.job_id + " has unknown status " + row.status);
  job.status = *status;
  job.spec.priority = static_cast<int>(row.priority);
  job.created_ms = row.created_ms;
  job.api_key_id = row.api_key_id;
  job.idempotency_key = row.idempotency_key;
  job.sequence = static_cast<uint64_t>(row.sequence);
  try {
    const json doc = json::parse(row.doc);
    if (!doc.is_object()) throw std::runtime_error("document is not an object");
    job.spec.input_url = doc.value("input_url", "");
    job.spec.preset = doc.value("preset", "");
    const json output = doc.value("output", json::object());
    job.spec.output.storage = output.value("storage", "");
    job.spec.output.path = output.value("path", "");
    job.spec.output.type = output.value("type", "");
    job.spec.output.metadata = output.value("metadata", std::map<std::string, std::string>{});
    job.spec.callback_url = doc.value("callback_url", "");
    job.phase = doc.value("phase", job.phase);
    job.progress = doc.value("progress", 0.0);
    job.message = doc.value("message", "");
    job.output_url = doc.value("output_url", "");
    job.error = doc.value("error", "");
    job.error_code = doc.value("error_code", "");
    job.worker_id = doc.value("worker_id", "");
    job.worker_address = doc.value("worker_address", "");
    job.attempts = doc.value("attempts", 0);
    job.created_at = doc.value("created_at", "");
    job.started_at = doc.value("started_at", "");
    job.finished_at = doc.value("finished_at", "");
    job.result = doc.value("result", json::object());
    job.phase_durations = doc.value("phase_durations", json::object());
    const json webhook = doc.value("webhook", json::object());
    job.webhook.state = webhook.value("state", job.webhook.state);
    job.webhook.attempts = webhook.value("attempts", 0);
    job.webhook.last_status = webhook.value("last_status", 0);
    job.webhook.last_error = webhook.value("last_error", "");
    job.webhook.delivered_at = webhook.value("delivered_at", "");
  } catch (const std::exception& e) {
    return internal_error("store_corrupt_record", "job " + row.job_id + " has an unreadable document: " + e.what());
  }
  return job;
}

}  // namespace flux::controlplane::store
