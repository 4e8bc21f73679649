#include "worker/jobs/job_manager.h"

#include <gtest/gtest.h>

#include <atomic>
#include <thread>

#include "shared/core/error.h"

namespace flux::worker::jobs {
namespace {

using namespace std::chrono_literals;

v1::JobRequest request(const std::string& id) {
  v1::JobRequest r;
  r.set_job_id(id);
  r.set_input_url("https://example.com/in.mp4");
  r.set_preset("720p_h264");
  return r;
}

// A runner that reports progress until released or cancelled.
struct GatedRunner {
  std::atomic<bool> release{false};
  std::atomic<int> started{0};
  JobOutcome operator()(const v1::JobRequest&, JobContext& context) {
    ++started;
    for (int i = 0; !release; ++i) {
      context.report({v1::JOB_STATUS_PROCESSING, v1::JOB_PHASE_ENCODING, static_cast<float>(i % 100), "encoding"});
      if (context.cancel_token().wait_for(5ms)) {
        return {make_error(absl::StatusCode::kCancelled, context.cancel_token().reason(), "stopped")};
      }
    }
    JobOutcome done;
    done.output_url = "file:///out/" + context.job_id();
    return done;
  }
};

v1::JobProgress wait_terminal(Subscription& sub) {
  for (int i = 0; i < 1000; ++i) {
    auto event = sub.next(10s);
    if (!event) break;
    if (event->status() == v1::JOB_STATUS_COMPLETED || event->status() == v1::JOB_STATUS_FAILED ||
        event->status() == v1::JOB_STATUS_CANCELLED) {
      return *event;
    }
  }
  ADD_FAILURE() << "no terminal event";
  return {};
}

class JobManagerTest : public ::testing::Test {
 protected:
  GatedRunner gate;
  std::unique_ptr<JobManager> make(int capacity, std::chrono::milliseconds hold = 60s) {
    JobManagerOptions options;
    options.max_concurrent_jobs = capacity;
    options.result_hold = hold;
    return std::make_unique<JobManager>(options, [this](const v1::JobRequest& r, JobContext& c) { return gate(r, c); });
  }
};

TEST_F(JobManagerTest, FirstEventIsQueuedAndSequenceIncreases) {
  auto manager = make(1);
  auto sub = manager->submit(request("a"));
  ASSERT_TRUE(sub.ok());
  auto first = (*sub)->next(5s);
  ASSERT_TRUE(first);
  EXPECT_EQ(first->status(), v1::JOB_STATUS_QUEUED);
  EXPECT_EQ(first->sequence(), 1u);
  EXPECT_EQ(first->job_id(), "a");
  EXPECT_FALSE(first->timestamp().empty());
  auto second = (*sub)->next(5s);
  ASSERT_TRUE(second);
  EXPECT_GT(second->sequence(), first->sequence());
  gate.release = true;
  auto end = wait_terminal(**sub);
  EXPECT_EQ(end.status(), v1::JOB_STATUS_COMPLETED);
  EXPECT_EQ(end.output_url(), "file:///out/a");
  EXPECT_EQ(end.progress(), 100);
}

TEST_F(JobManagerTest, RefusesBeyondCapacityAndDuplicates) {
  auto manager = make(2);
  ASSERT_TRUE(manager->submit(request("a")).ok());
  auto dup = manager->submit(request("a"));
  EXPECT_EQ(dup.status().code(), absl::StatusCode::kAlreadyExists);
  ASSERT_TRUE(manager->submit(request("b")).ok());
  auto full = manager->submit(request("c"));
  EXPECT_EQ(full.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(manager->status().current_jobs, 2);
  gate.release = true;
}

TEST_F(JobManagerTest, CancelEndsJobAsCancelled) {
  auto manager = make(1);
  auto sub = manager->submit(request("a"));
  ASSERT_TRUE(sub.ok());
  EXPECT_TRUE(manager->cancel("a"));
  auto end = wait_terminal(**sub);
  EXPECT_EQ(end.status(), v1::JOB_STATUS_CANCELLED);
  EXPECT_EQ(end.error_code(), "cancelled");
  EXPECT_FALSE(manager->cancel("a"));
  EXPECT_FALSE(manager->cancel("unknown"));
}

TEST_F(JobManagerTest, TimeoutFailsJobWithTimeoutCode) {
  auto manager = make(1);
  auto r = request("slow");
  r.set_timeout_seconds(1);
  auto sub = manager->submit(r);
  ASSERT_TRUE(sub.ok());
  std::thread ticker([&] {
    for (int i = 0; i < 100 && manager->status().current_jobs > 0; ++i) {
      manager->tick(Clock::now());
      std::this_thread::sleep_for(50ms);
    }
  });
  auto end = wait_terminal(**sub);
  ticker.join();
  EXPECT_EQ(end.status(), v1::JOB_STATUS_FAILED);
  EXPECT_EQ(end.error_code(), "timeout");
}

TEST_F(JobManagerTest, DetachedResultIsHeldForWatchAndBlocksIdle) {
  auto manager = make(1, 60s);
  {
    auto sub = manager->submit(request("a"));
    ASSERT_TRUE(sub.ok());
    manager->unsubscribe(*sub);  // the control plane went away
  }
  gate.release = true;
  for (int i = 0; i < 500 && manager->status().current_jobs > 0; ++i) std::this_thread::sleep_for(10ms);
  EXPECT_EQ(manager->status().held_job_ids, std::vector<std::string>{"a"});
  EXPECT_FALSE(manager->idle_since().has_value()) << "an uncollected result must keep the worker up";
  auto watch = manager->watch("a");
  ASSERT_TRUE(watch.ok());
  auto final_state = (*watch)->next(1s);
  ASSERT_TRUE(final_state);
  EXPECT_EQ(final_state->status(), v1::JOB_STATUS_COMPLETED);
  manager->mark_collected("a");
  EXPECT_TRUE(manager->idle_since().has_value());
  EXPECT_EQ(manager->submit(request("a")).status().code(), absl::StatusCode::kAlreadyExists)
      << "a job whose result is still held must not run twice";
}

TEST_F(JobManagerTest, HeldResultExpiresAfterHold) {
  auto manager = make(1, 0ms);
  auto sub = manager->submit(request("a"));
  ASSERT_TRUE(sub.ok());
  gate.release = true;
  wait_terminal(**sub);
  for (int i = 0; i < 100 && manager->status().current_jobs > 0; ++i) std::this_thread::sleep_for(10ms);
  manager->tick(Clock::now() + 1s);
  EXPECT_EQ(manager->watch("a").status().code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(manager->idle_since().has_value());
}

TEST_F(JobManagerTest, WatchersEachSeeEveryEventAfterAttach) {
  auto manager = make(1);
  auto sub = manager->submit(request("a"));
  ASSERT_TRUE(sub.ok());
  auto w1 = manager->watch("a");
  auto w2 = manager->watch("a");
  ASSERT_TRUE(w1.ok() && w2.ok());
  gate.release = true;
  EXPECT_EQ(wait_terminal(**w1).status(), v1::JOB_STATUS_COMPLETED);
  EXPECT_EQ(wait_terminal(**w2).status(), v1::JOB_STATUS_COMPLETED);
  EXPECT_EQ(wait_terminal(**sub).status(), v1::JOB_STATUS_COMPLETED);
}

TEST_F(JobManagerTest, SlowWatcherKeepsTerminalEventWhenBufferOverflows) {
  auto manager = make(1);
  auto sub = manager->submit(request("a"));
  ASSERT_TRUE(sub.ok());
  std::this_thread::sleep_for(1500ms);  // ~300 progress events, more than the buffer holds
  gate.release = true;
  EXPECT_EQ(wait_terminal(**sub).status(), v1::JOB_STATUS_COMPLETED);
}

TEST_F(JobManagerTest, DrainingRefusesNewJobs) {
  auto manager = make(2);
  manager->start_draining();
  EXPECT_EQ(manager->submit(request("a")).status().code(), absl::StatusCode::kUnavailable);
  EXPECT_TRUE(manager->status().draining);
}

TEST_F(JobManagerTest, DestructorCancelsRunningJobs) {
  auto manager = make(2);
  ASSERT_TRUE(manager->submit(request("a")).ok());
  ASSERT_TRUE(manager->submit(request("b")).ok());
  manager.reset();  // must not hang
  SUCCEED();
}

}  // namespace
}  // namespace flux::worker::jobs

namespace flux::worker::jobs {
namespace {

TEST_F(JobManagerTest, CollectedJobThatEndedWithoutOutputMayRunAgain) {
  auto manager = make(1);
  auto first = manager->submit(request("a"));
  ASSERT_TRUE(first.ok());
  ASSERT_TRUE(manager->cancel("a", "abandoned"));
  auto end = wait_terminal(**first);
  EXPECT_EQ(end.status(), v1::JOB_STATUS_FAILED) << "a control plane's abandon is not a user's cancel";
  EXPECT_EQ(end.error_code(), "abandoned");
  EXPECT_EQ(manager->submit(request("a")).status().code(), absl::StatusCode::kAlreadyExists)
      << "its end was not collected yet";
  manager->mark_collected("a");
  gate.release = true;
  auto again = manager->submit(request("a"));
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(wait_terminal(**again).status(), v1::JOB_STATUS_COMPLETED);
  manager->mark_collected("a");
  EXPECT_EQ(manager->submit(request("a")).status().code(), absl::StatusCode::kAlreadyExists)
      << "a completed job never runs twice";
}

}  // namespace
}  // namespace flux::worker::jobs
