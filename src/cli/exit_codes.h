#pragma once
// fluxctl's exit codes, the contract scripts rely on:
//   0  the command succeeded (for --wait / watch: the job completed)
//   1  the job failed or was cancelled (--wait / watch)
//   2  usage error (bad arguments; nothing was sent)
//   3  server or network error (including every non-2xx answer)
//   130 interrupted (Ctrl-C) while waiting; the job keeps running
#include <string_view>

#include "absl/status/status.h"

namespace flux::cli {

enum class ExitCode : int {
  kSuccess = 0,
  kJobUnsuccessful = 1,
  kUsage = 2,
  kServerOrNetwork = 3,
  kInterrupted = 130,
};

inline int to_int(ExitCode code) { return static_cast<int>(code); }

// The exit code of a watched job's final status: 0 for "completed", 1 for
// "failed" and "cancelled", 3 for anything else (a watch that ends on a
// non-terminal or unknown status did not see the job finish).
ExitCode exit_code_for_job_status(std::string_view status);

// The exit code of an error: kUsage for errors with code "usage" (arguments
// refused before anything was sent), kInterrupted for code "interrupted",
// kServerOrNetwork for everything else. kSuccess for OK.
ExitCode exit_code_for_error(const absl::Status& status);

}  // namespace flux::cli
