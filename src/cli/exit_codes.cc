#include "cli/exit_codes.h"

#include "shared/core/error.h"

namespace flux::cli {

ExitCode exit_code_for_job_status(std::string_view status) {
  if (status == "completed") return ExitCode::kSuccess;
  if (status == "failed" || status == "cancelled") return ExitCode::kJobUnsuccessful;
  return ExitCode::kServerOrNetwork;
}

ExitCode exit_code_for_error(const absl::Status& status) {
  if (status.ok()) return ExitCode::kSuccess;
  const std::string code = error_code(status);
  if (code == "usage") return ExitCode::kUsage;
  if (code == "interrupted") return ExitCode::kInterrupted;
  return ExitCode::kServerOrNetwork;
}

}  // namespace flux::cli
