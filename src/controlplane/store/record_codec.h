#pragma once
// How a JobRecord is laid out in a table row: real columns for what is
// queried or indexed, one JSON document for the rest. Shared by every SQL
// store so that their rows mean the same thing.
#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "controlplane/model/job.h"

namespace flux::controlplane::store {

struct JobRow {
  std::string job_id;
  std::string status;  // model::to_string(JobStatus)
  int64_t priority = 0;
  int64_t created_ms = 0;
  std::string api_key_id;
  std::string idempotency_key;
  int64_t sequence = 0;
  std::string doc;  // JSON object: every other field of the record
};

JobRow to_row(const model::JobRecord& job);

// INTERNAL "store_corrupt_record" when the row cannot be read back. Fields
// missing from `doc` keep their defaults, so rows written before a field was
// added still load.
absl::StatusOr<model::JobRecord> from_row(const JobRow& row);

}  // namespace flux::controlplane::store
