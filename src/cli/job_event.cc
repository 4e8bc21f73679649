#include "cli/job_event.h"

#include "shared/core/error.h"

namespace flux::cli {
namespace {

std::string string_field(const nlohmann::json& value, const char* name) {
  auto it = value.find(name);
  return it != value.end() && it->is_string() ? it->get<std::string>() : std::string();
}

std::optional<double> number_field(const nlohmann::json& value, const char* name) {
  auto it = value.find(name);
  if (it == value.end() || !it->is_number()) return std::nullopt;
  return it->get<double>();
}

}  // namespace

bool is_terminal_status(std::string_view status) {
  return status == "completed" || status == "failed" || status == "cancelled";
}

bool JobEvent::terminal() const { return is_terminal_status(status); }

JobEvent job_event_from_json(const nlohmann::json& value) {
  JobEvent e;
  if (!value.is_object()) return e;
  e.job_id = string_field(value, "job_id");
  e.status = string_field(value, "status");
  e.phase = string_field(value, "phase");
  e.progress = number_field(value, "progress").value_or(0);
  e.message = string_field(value, "message");
  e.timestamp = string_field(value, "timestamp");
  e.fps = number_field(value, "fps");
  e.speed = number_field(value, "speed");
  e.eta_seconds = number_field(value, "eta_seconds");
  e.output_url = string_field(value, "output_url");
  e.error = string_field(value, "error");
  e.error_code = string_field(value, "error_code");
  if (auto it = value.find("result"); it != value.end() && it->is_object()) e.result = *it;
  return e;
}

absl::StatusOr<JobEvent> parse_job_event(std::string_view data) {
  nlohmann::json value = nlohmann::json::parse(data, nullptr, /*allow_exceptions=*/false);
  if (!value.is_object()) {
    return make_error(absl::StatusCode::kDataLoss, "stream_invalid", "a progress event is not a JSON object");
  }
  return job_event_from_json(value);
}

}  // namespace flux::cli
