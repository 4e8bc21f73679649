#pragma once
// A job's state as fluxctl shows it, read from an SSE progress event or from
// a job document (GET /api/v1/jobs/{id}); both carry the same field names.
#include <optional>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "absl/status/statusor.h"

namespace flux::cli {

struct JobEvent {
  std::string job_id;
  std::string status;   // queued, processing, uploading, completed, failed, cancelled
  std::string phase;    // queued, downloading, probing, encoding, validating, uploading, done
  double progress = 0;  // 0..100
  std::string message;
  std::string timestamp;
  std::optional<double> fps;          // while encoding
  std::optional<double> speed;        // while encoding (x realtime)
  std::optional<double> eta_seconds;  // while encoding, when known
  std::string output_url;
  std::string error;
  std::string error_code;
  nlohmann::json result;  // null unless completed

  bool terminal() const;
};

bool is_terminal_status(std::string_view status);

// Reads the fields it knows, leniently: a missing or mistyped field keeps its
// default, so a newer server with more fields (or an older one with fewer)
// still reads. Never throws.
JobEvent job_event_from_json(const nlohmann::json& value);

// Parses an event's `data:` JSON. Error code "stream_invalid" when it is not
// a JSON object.
absl::StatusOr<JobEvent> parse_job_event(std::string_view data);

}  // namespace flux::cli
