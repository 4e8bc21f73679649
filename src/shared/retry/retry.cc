#include "shared/retry/retry.h"

#include <algorithm>
#include <string>
#include <thread>

#include "shared/core/error.h"

namespace flux::retry {
namespace {

absl::Status cancelled_error(const absl::Status& last) {
  std::string message = "cancelled while retrying";
  if (!last.ok()) message += "; last error: " + std::string(last.message());
  return flux::make_error(absl::StatusCode::kCancelled, "cancelled", message);
}

}  // namespace

std::chrono::milliseconds backoff_delay(const RetryPolicy& policy, int attempt, std::mt19937_64& rng) {
  const int64_t base = std::max<int64_t>(0, policy.base_delay.count());
  const int64_t cap = std::max<int64_t>(0, policy.max_delay.count());
  // Doubling stops once the cap is reached, so a large attempt cannot overflow.
  int64_t ceiling = base;
  for (int i = 0; i < attempt && ceiling < cap; ++i) ceiling *= 2;
  ceiling = std::min(ceiling, cap);
  if (ceiling <= 0) return std::chrono::milliseconds(0);
  std::uniform_int_distribution<int64_t> uniform(0, ceiling);
  return std::chrono::milliseconds(uniform(rng));
}

absl::Status retry_call(const RetryPolicy& policy, const std::function<absl::Status()>& fn,
                        const std::function<bool(const absl::Status&)>& is_retryable, const flux::CancelToken* cancel) {
  // Seeded per call: callers on many threads share no generator and no lock.
  std::mt19937_64 rng(std::random_device{}());
  const int attempts = std::max(1, policy.max_attempts);
  absl::Status last;
  for (int attempt = 0; attempt < attempts; ++attempt) {
    if (cancel != nullptr && cancel->cancelled()) return cancelled_error(last);
    last = fn();
    if (last.ok() || !is_retryable(last) || attempt + 1 == attempts) return last;
    const auto delay = backoff_delay(policy, attempt, rng);
    if (cancel != nullptr) {
      if (cancel->wait_for(delay)) return cancelled_error(last);
    } else {
      std::this_thread::sleep_for(delay);
    }
  }
  return last;
}

}  // namespace flux::retry
