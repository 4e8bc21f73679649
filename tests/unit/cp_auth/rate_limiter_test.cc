#include "controlplane/auth/rate_limiter.h"

#include <gtest/gtest.h>

#include <atomic>
#include <thread>
#include <vector>

namespace flux::controlplane::auth {
namespace {

using namespace std::chrono_literals;
using Clock = RateLimiter::Clock;

TEST(RateLimiterTest, AllowsABurstThenRefusesWithTheTimeUntilTheNextToken) {
  RateLimiter limiter(/*rps=*/2, /*burst=*/3);
  const auto t0 = Clock::now();
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(limiter.take("a", t0).allowed) << i;
  const auto refused = limiter.take("a", t0);
  EXPECT_FALSE(refused.allowed);
  EXPECT_NEAR(refused.retry_after_seconds, 0.5, 1e-6);

  // Half a second later exactly one token is back.
  EXPECT_TRUE(limiter.take("a", t0 + 500ms).allowed);
  EXPECT_FALSE(limiter.take("a", t0 + 500ms).allowed);
  // Refill never exceeds the burst.
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(limiter.take("a", t0 + 1h).allowed);
  EXPECT_FALSE(limiter.take("a", t0 + 1h).allowed);
}

TEST(RateLimiterTest, KeysHaveSeparateBuckets) {
  RateLimiter limiter(1, 1);
  const auto t0 = Clock::now();
  EXPECT_TRUE(limiter.take("a", t0).allowed);
  EXPECT_FALSE(limiter.take("a", t0).allowed);
  EXPECT_TRUE(limiter.take("b", t0).allowed);
}

TEST(RateLimiterTest, ZeroRateIsOff) {
  RateLimiter limiter(0, 0);
  EXPECT_FALSE(limiter.enabled());
  const auto t0 = Clock::now();
  for (int i = 0; i < 1000; ++i) ASSERT_TRUE(limiter.take("a", t0).allowed);
  EXPECT_EQ(limiter.bucket_count(), 0u);
}

TEST(RateLimiterTest, BurstDefaultsToTheRate) {
  RateLimiter limiter(5, 0);
  const auto t0 = Clock::now();
  for (int i = 0; i < 5; ++i) EXPECT_TRUE(limiter.take("a", t0).allowed);
  EXPECT_FALSE(limiter.take("a", t0).allowed);
}

TEST(RateLimiterTest, MemoryIsBoundedByEvictingIdleBuckets) {
  RateLimiter limiter(10, 10, /*max_buckets=*/100);
  const auto t0 = Clock::now();
  for (int i = 0; i < 10'000; ++i) limiter.take("key" + std::to_string(i), t0 + std::chrono::milliseconds(i));
  EXPECT_LE(limiter.bucket_count(), 100u);

  // A key that is actively limited keeps its (empty) bucket across a sweep of idle ones.
  RateLimiter active(1, 1, 100);
  EXPECT_TRUE(active.take("busy", t0).allowed);
  for (int i = 0; i < 5000; ++i) active.take("idle" + std::to_string(i % 50), t0 - 1h);
  EXPECT_FALSE(active.take("busy", t0).allowed);
}

TEST(RateLimiterTest, ConcurrentTakesNeverExceedTheBudget) {
  RateLimiter limiter(1, 100);
  const auto t0 = Clock::now();
  std::atomic<int> allowed{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 100; ++i) allowed += limiter.take("shared", t0).allowed ? 1 : 0;
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(allowed.load(), 100);
}

}  // namespace
}  // namespace flux::controlplane::auth
