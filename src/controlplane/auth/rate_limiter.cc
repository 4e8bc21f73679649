#include "controlplane/auth/rate_limiter.h"

#include <algorithm>

namespace flux::controlplane::auth {
namespace {

// Sweeping is O(buckets); doing it every this many takes keeps it amortised O(1).
constexpr size_t kSweepEvery = 4096;

}  // namespace

RateLimiter::RateLimiter(double rps, double burst, size_t max_buckets)
    : rps_(rps > 0 ? rps : 0),
      burst_(burst > 0 ? std::max(1.0, burst) : std::max(1.0, rps)),
      max_buckets_(std::max<size_t>(1, max_buckets)) {}

RateLimiter::Decision RateLimiter::take(const std::string& key_id, Clock::time_point now) {
  if (rps_ <= 0) return {};
  std::lock_guard lock(mutex_);
  if (++takes_since_sweep_ >= kSweepEvery || (buckets_.size() >= max_buckets_ && !buckets_.contains(key_id))) {
    sweep_locked(now);
  }
  auto [it, inserted] = buckets_.try_emplace(key_id, Bucket{burst_, now});
  Bucket& bucket = it->second;
  if (!inserted && now > bucket.updated) {
    const double elapsed = std::chrono::duration<double>(now - bucket.updated).count();
    bucket.tokens = std::min(burst_, bucket.tokens + elapsed * rps_);
    bucket.updated = now;
  }
  if (bucket.tokens >= 1.0) {
    bucket.tokens -= 1.0;
    return {};
  }
  return {false, (1.0 - bucket.tokens) / rps_};
}

void RateLimiter::sweep_locked(Clock::time_point now) {
  takes_since_sweep_ = 0;
  const auto refill_time = std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(burst_ / rps_));
  std::erase_if(buckets_, [&](const auto& entry) { return now - entry.second.updated >= refill_time; });
  // Still full of active keys: forget the least recently used one. That key
  // gets a fresh burst, a small leniency that only a flood of keys can buy.
  while (buckets_.size() >= max_buckets_) {
    const auto oldest = std::min_element(buckets_.begin(), buckets_.end(), [](const auto& a, const auto& b) {
      return a.second.updated < b.second.updated;
    });
    buckets_.erase(oldest);
  }
}

size_t RateLimiter::bucket_count() const {
  std::lock_guard lock(mutex_);
  return buckets_.size();
}

}  // namespace flux::controlplane::auth
