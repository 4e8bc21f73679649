#pragma once
// Per-key token buckets (SPEC §3.4, RATE_LIMIT_RPS / RATE_LIMIT_BURST).
//
// Each key has a bucket of `burst` tokens refilled at `rps` per second; a
// request takes one token or is refused with the time until one is back.
// Thread-safe. Memory stays bounded: a bucket that has refilled completely is
// indistinguishable from a new one, so idle buckets are dropped in periodic
// sweeps, and the number of buckets is capped.
#include <chrono>
#include <cstddef>
#include <mutex>
#include <string>
#include <unordered_map>

namespace flux::controlplane::auth {

class RateLimiter {
 public:
  using Clock = std::chrono::steady_clock;

  struct Decision {
    bool allowed = true;
    double retry_after_seconds = 0;  // > 0 when refused: when the next token is due
  };

  // rps <= 0 turns the limiter off (every take() is allowed). burst <= 0 means
  // max(1, rps). `max_buckets` bounds the keys tracked at once.
  RateLimiter(double rps, double burst, size_t max_buckets = 100'000);

  bool enabled() const { return rps_ > 0; }

  Decision take(const std::string& key_id, Clock::time_point now = Clock::now());

  // Buckets currently held (for tests).
  size_t bucket_count() const;

 private:
  struct Bucket {
    double tokens = 0;
    Clock::time_point updated;
  };

  void sweep_locked(Clock::time_point now);

  const double rps_;
  const double burst_;
  const size_t max_buckets_;
  mutable std::mutex mutex_;
  std::unordered_map<std::string, Bucket> buckets_;
  size_t takes_since_sweep_ = 0;
};

}  // namespace flux::controlplane::auth
