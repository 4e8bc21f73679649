#include "shared/retry/retry.h"

#include <gtest/gtest.h>

#include <thread>

#include "shared/core/error.h"

namespace flux::retry {
namespace {

using std::chrono::milliseconds;

bool always_retry(const absl::Status&) { return true; }

TEST(BackoffDelay, StaysWithinTheExponentialCeilingAndTheCap) {
  RetryPolicy policy{.max_attempts = 10, .base_delay = milliseconds(100), .max_delay = milliseconds(1000)};
  std::mt19937_64 rng(42);
  for (int attempt = 0; attempt < 12; ++attempt) {
    const int64_t ceiling = std::min<int64_t>(1000, 100LL << attempt);
    for (int i = 0; i < 200; ++i) {
      const auto d = backoff_delay(policy, attempt, rng);
      EXPECT_GE(d.count(), 0);
      EXPECT_LE(d.count(), ceiling) << "attempt " << attempt;
    }
  }
}

TEST(BackoffDelay, GrowsWithTheAttemptNumber) {
  RetryPolicy policy{.max_attempts = 10, .base_delay = milliseconds(100), .max_delay = milliseconds(100000)};
  std::mt19937_64 rng(7);
  auto mean = [&](int attempt) {
    int64_t sum = 0;
    for (int i = 0; i < 2000; ++i) sum += backoff_delay(policy, attempt, rng).count();
    return sum / 2000.0;
  };
  const double m0 = mean(0), m2 = mean(2), m4 = mean(4);
  // Full jitter: mean is half the ceiling (50, 200, 800 ms).
  EXPECT_NEAR(m0, 50, 10);
  EXPECT_NEAR(m2, 200, 30);
  EXPECT_NEAR(m4, 800, 100);
}

TEST(BackoffDelay, HugeAttemptDoesNotOverflow) {
  RetryPolicy policy{.max_attempts = 5, .base_delay = milliseconds(200), .max_delay = milliseconds(5000)};
  std::mt19937_64 rng(1);
  for (int i = 0; i < 100; ++i) EXPECT_LE(backoff_delay(policy, 1000, rng).count(), 5000);
}

TEST(RetryCall, RetriesUntilSuccess) {
  RetryPolicy policy{.max_attempts = 5, .base_delay = milliseconds(1), .max_delay = milliseconds(2)};
  int calls = 0;
  auto status = retry_call(
      policy, [&] { return ++calls < 3 ? flux::unavailable("flaky", "try again") : absl::OkStatus(); }, always_retry);
  EXPECT_TRUE(status.ok()) << status;
  EXPECT_EQ(calls, 3);
}

TEST(RetryCall, GivesUpAfterMaxAttemptsWithTheLastError) {
  RetryPolicy policy{.max_attempts = 4, .base_delay = milliseconds(1), .max_delay = milliseconds(2)};
  int calls = 0;
  auto status = retry_call(
      policy,
      [&] {
        ++calls;
        return flux::unavailable("s3_error", "attempt " + std::to_string(calls));
      },
      always_retry);
  EXPECT_EQ(calls, 4);
  EXPECT_EQ(flux::error_code(status), "s3_error");
  EXPECT_EQ(status.message(), "attempt 4");
}

TEST(RetryCall, StopsAtOnceOnANonRetryableError) {
  RetryPolicy policy{.max_attempts = 5, .base_delay = milliseconds(1), .max_delay = milliseconds(2)};
  int calls = 0;
  auto status = retry_call(
      policy,
      [&] {
        ++calls;
        return flux::not_found("s3_not_found", "no such key");
      },
      [](const absl::Status& s) { return s.code() == absl::StatusCode::kUnavailable; });
  EXPECT_EQ(calls, 1);
  EXPECT_EQ(flux::error_code(status), "s3_not_found");
}

TEST(RetryCall, CancellationDuringBackoffReturnsEarly) {
  // Long delays: without cancellation this would take many seconds.
  RetryPolicy policy{.max_attempts = 10, .base_delay = milliseconds(10000), .max_delay = milliseconds(10000)};
  flux::CancelToken cancel;
  int calls = 0;
  std::thread canceller([&] {
    std::this_thread::sleep_for(milliseconds(50));
    cancel.cancel("job cancelled");
  });
  const auto start = std::chrono::steady_clock::now();
  auto status = retry_call(
      policy,
      [&] {
        ++calls;
        return flux::unavailable("s3_error", "slow down");
      },
      always_retry, &cancel);
  const auto elapsed = std::chrono::steady_clock::now() - start;
  canceller.join();
  EXPECT_EQ(status.code(), absl::StatusCode::kCancelled);
  EXPECT_EQ(flux::error_code(status), "cancelled");
  EXPECT_NE(std::string(status.message()).find("slow down"), std::string::npos) << status;
  EXPECT_LT(elapsed, std::chrono::seconds(2));
  EXPECT_LT(calls, 10);
}

TEST(RetryCall, AlreadyCancelledMakesNoCall) {
  RetryPolicy policy;
  flux::CancelToken cancel;
  cancel.cancel();
  int calls = 0;
  auto status = retry_call(
      policy,
      [&] {
        ++calls;
        return absl::OkStatus();
      },
      always_retry, &cancel);
  EXPECT_EQ(calls, 0);
  EXPECT_EQ(flux::error_code(status), "cancelled");
}

}  // namespace
}  // namespace flux::retry
