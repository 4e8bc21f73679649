#include <gtest/gtest.h>

#include <thread>

#include "shared/core/cancel_token.h"
#include "shared/core/error.h"
#include "shared/core/time.h"

namespace flux {
namespace {

TEST(Error, CarriesMachineCodeAndMessage) {
  absl::Status s = invalid_argument("preset_unknown", "unknown preset 'x'");
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(error_code(s), "preset_unknown");
  EXPECT_EQ(s.message(), "unknown preset 'x'");
}

TEST(Error, DerivesCodeFromCategoryWhenNoneAttached) {
  EXPECT_EQ(error_code(absl::DeadlineExceededError("slow")), "deadline_exceeded");
  EXPECT_EQ(error_code(absl::OkStatus()), "");
}

TEST(Error, AnnotateKeepsCodeAndCategory) {
  absl::Status s = annotate(not_found("input_not_found", "HTTP 404"), "downloading input");
  EXPECT_EQ(s.message(), "downloading input: HTTP 404");
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(error_code(s), "input_not_found");
  EXPECT_EQ(error_code(with_code(s, "other")), "other");
}

TEST(Time, FormatsRfc3339UtcMillis) {
  using namespace std::chrono;
  system_clock::time_point t{milliseconds(1796028205123LL)};
  EXPECT_EQ(format_rfc3339(t), "2026-11-30T08:43:25.123Z");
}

TEST(CancelToken, WakesWaiterAndKeepsFirstReason) {
  CancelToken token;
  std::thread t([&] { token.cancel("timeout"); });
  EXPECT_TRUE(token.wait_for(std::chrono::seconds(5)));
  t.join();
  token.cancel("later");
  EXPECT_TRUE(token.cancelled());
  EXPECT_EQ(token.reason(), "timeout");
}

}  // namespace
}  // namespace flux
