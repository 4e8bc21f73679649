#include "cli/job_service.h"

namespace flux::cli {

bool is_retryable(const absl::Status& status) {
  return status.code() == absl::StatusCode::kUnavailable || status.code() == absl::StatusCode::kDeadlineExceeded;
}

}  // namespace flux::cli
