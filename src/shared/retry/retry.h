#pragma once
// Retrying a fallible call with full-jitter exponential backoff, so that many
// workers retrying against the same overloaded service spread out instead of
// hammering it in lockstep.
#include <chrono>
#include <functional>
#include <random>

#include "absl/status/status.h"
#include "shared/core/cancel_token.h"

namespace flux::retry {

struct RetryPolicy {
  int max_attempts = 5;  // total calls, the first one included
  std::chrono::milliseconds base_delay{200};
  std::chrono::milliseconds max_delay{5000};
};

// Full-jitter exponential backoff: uniform in [0, min(max_delay, base_delay * 2^attempt)],
// where `attempt` counts from 0 for the wait after the first failure.
std::chrono::milliseconds backoff_delay(const RetryPolicy& policy, int attempt, std::mt19937_64& rng);

// Calls `fn` until it returns OK, returns a status for which `is_retryable` is
// false, or `policy.max_attempts` calls have been made; returns the last status.
// Between calls it sleeps backoff_delay(). If `cancel` is cancelled (before a
// call or while sleeping) it returns at once with code "cancelled"
// (absl::StatusCode::kCancelled), the message naming the last error.
absl::Status retry_call(const RetryPolicy& policy, const std::function<absl::Status()>& fn,
                        const std::function<bool(const absl::Status&)>& is_retryable,
                        const flux::CancelToken* cancel = nullptr);

}  // namespace flux::retry
