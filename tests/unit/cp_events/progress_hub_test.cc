#include "controlplane/events/progress_hub.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <thread>

namespace flux::controlplane::events {
namespace {

using ::testing::ElementsAre;
using json = nlohmann::json;

json state(const std::string& status, int progress) {
  return json{{"job_id", "job_a"}, {"status", status}, {"progress", progress}};
}

std::vector<uint64_t> drain_ids(Subscriber& subscriber, bool* ok = nullptr) {
  std::vector<Event> events;
  const bool drained_ok = subscriber.drain(events);
  if (ok != nullptr) *ok = drained_ok;
  std::vector<uint64_t> ids;
  for (const auto& event : events) ids.push_back(event.id);
  return ids;
}

TEST(SseFrameTest, IsIdThenOneLineOfJsonThenABlankLine) {
  const std::string frame = format_sse_frame(7, json{{"message", "two\nlines"}, {"n", 1}});
  EXPECT_EQ(frame, "id: 7\ndata: {\"message\":\"two\\nlines\",\"n\":1}\n\n");
  const Event event{7, std::make_shared<const std::string>(frame), false};
  EXPECT_EQ(event.data(), "{\"message\":\"two\\nlines\",\"n\":1}");
  // Invalid UTF-8 is replaced, not thrown on.
  EXPECT_NO_THROW(format_sse_frame(1, json{{"bad", std::string("\xff\xfe")}}));
}

TEST(SseFrameTest, ParsesLastEventId) {
  EXPECT_EQ(parse_last_event_id("42"), 42u);
  EXPECT_EQ(parse_last_event_id("0"), 0u);
  EXPECT_EQ(parse_last_event_id(""), std::nullopt);
  EXPECT_EQ(parse_last_event_id("-1"), std::nullopt);
  EXPECT_EQ(parse_last_event_id("4x"), std::nullopt);
  EXPECT_EQ(parse_last_event_id(" 4"), std::nullopt);
  EXPECT_EQ(parse_last_event_id("99999999999999999999999"), std::nullopt);
}

TEST(ProgressHubTest, NewWatcherGetsTheCurrentStateThenLiveEvents) {
  ProgressHub hub;
  auto watcher = hub.subscribe("job_a", state("queued", 0), false, std::nullopt);
  std::vector<Event> events;
  ASSERT_TRUE(watcher->drain(events));
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].id, 0u);
  EXPECT_EQ(json::parse(events[0].data())["status"], "queued");

  EXPECT_EQ(hub.publish("job_a", state("processing", 10), false), 1u);
  EXPECT_EQ(hub.publish("job_a", state("processing", 20), false), 2u);
  EXPECT_THAT(drain_ids(*watcher), ElementsAre(1, 2));
  EXPECT_EQ(hub.subscriber_count(), 1u);
  EXPECT_FALSE(watcher->finished());
}

TEST(ProgressHubTest, LateWatcherStartsFromTheLatestEventNotAStaleSnapshot) {
  ProgressHub hub;
  hub.publish("job_a", state("processing", 10), false);
  hub.publish("job_a", state("processing", 50), false);
  // The caller read an older state than what was published since.
  auto watcher = hub.subscribe("job_a", state("queued", 0), false, std::nullopt);
  std::vector<Event> events;
  watcher->drain(events);
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].id, 2u);
  EXPECT_EQ(json::parse(events[0].data())["progress"], 50);
  // The very same frame object is shared, not re-rendered.
  hub.publish("job_a", state("processing", 60), false);
  auto other = hub.subscribe("job_a", state("queued", 0), false, std::nullopt);
  std::vector<Event> mine, theirs;
  watcher->drain(mine);
  other->drain(theirs);
  ASSERT_EQ(mine.size(), 1u);
  ASSERT_EQ(theirs.size(), 1u);
  EXPECT_EQ(mine[0].frame.get(), theirs[0].frame.get());
}

TEST(ProgressHubTest, LastEventIdReplaysWhatWasMissedFromTheRing) {
  ProgressHub hub(/*replay_buffer=*/4);
  for (int i = 1; i <= 6; ++i) hub.publish("job_a", state("processing", i), false);  // ring holds 3..6

  EXPECT_THAT(drain_ids(*hub.subscribe("job_a", {}, false, 3)), ElementsAre(4, 5, 6));
  EXPECT_THAT(drain_ids(*hub.subscribe("job_a", {}, false, 2)), ElementsAre(3, 4, 5, 6));
  EXPECT_THAT(drain_ids(*hub.subscribe("job_a", {}, false, 6)), ElementsAre());  // up to date
  // Too old (events were lost from the ring) or unknown: the current state instead.
  EXPECT_THAT(drain_ids(*hub.subscribe("job_a", {}, false, 1)), ElementsAre(6));
  EXPECT_THAT(drain_ids(*hub.subscribe("job_a", {}, false, 99)), ElementsAre(6));

  ProgressHub fresh;
  fresh.publish("job_b", state("processing", 1), false);
  // A client that saw the pre-publish state (id 0) gets everything since.
  EXPECT_THAT(drain_ids(*fresh.subscribe("job_b", {}, false, 0)), ElementsAre(1));
}

TEST(ProgressHubTest, TerminalEventFinishesAndDetachesEveryWatcher) {
  ProgressHub hub;
  auto first = hub.subscribe("job_a", state("processing", 0), false, std::nullopt);
  auto second = hub.subscribe("job_a", state("processing", 0), false, std::nullopt);
  EXPECT_EQ(hub.subscriber_count(), 2u);
  hub.publish("job_a", state("processing", 50), false);
  const uint64_t last = hub.publish("job_a", state("completed", 100), true);
  EXPECT_EQ(hub.subscriber_count(), 0u);
  for (auto* watcher : {first.get(), second.get()}) {
    EXPECT_TRUE(watcher->finished());
    std::vector<Event> events;
    EXPECT_TRUE(watcher->drain(events));
    ASSERT_EQ(events.size(), 3u);
    EXPECT_TRUE(events.back().terminal);
    EXPECT_EQ(events.back().id, last);
  }

  // After completion: the final state, already finished.
  auto late = hub.subscribe("job_a", state("processing", 0), false, std::nullopt);
  EXPECT_TRUE(late->finished());
  std::vector<Event> events;
  late->drain(events);
  ASSERT_EQ(events.size(), 1u);
  EXPECT_TRUE(events[0].terminal);
  EXPECT_EQ(json::parse(events[0].data())["status"], "completed");
  EXPECT_EQ(hub.subscriber_count(), 0u);

  // A client that already has the terminal event gets nothing and is told apart.
  EXPECT_TRUE(hub.is_up_to_date_after_terminal("job_a", last));
  EXPECT_FALSE(hub.is_up_to_date_after_terminal("job_a", last - 1));
  auto caught_up = hub.subscribe("job_a", {}, false, last);
  EXPECT_TRUE(caught_up->finished());
  EXPECT_THAT(drain_ids(*caught_up), ElementsAre());
}

TEST(ProgressHubTest, FinishedJobUnknownToTheHubGetsItsFinalStateWithoutLeavingAChannel) {
  ProgressHub hub;
  auto watcher = hub.subscribe("job_old", state("failed", 30), true, std::nullopt);
  EXPECT_TRUE(watcher->finished());
  std::vector<Event> events;
  watcher->drain(events);
  ASSERT_EQ(events.size(), 1u);
  EXPECT_TRUE(events[0].terminal);
  EXPECT_EQ(json::parse(events[0].data())["status"], "failed");
  EXPECT_EQ(hub.job_count(), 0u);
  EXPECT_EQ(hub.subscriber_count(), 0u);
}

TEST(ProgressHubTest, WatcherThatFallsBehindIsDroppedWithoutSlowingOthers) {
  ProgressHub hub(/*replay_buffer=*/16, /*subscriber_buffer=*/4);
  std::atomic<int> slow_notifications{0};
  auto slow = hub.subscribe("job_a", state("processing", 0), false, std::nullopt);
  slow->set_notify([&] { ++slow_notifications; });
  auto fast = hub.subscribe("job_a", state("processing", 0), false, std::nullopt);
  std::vector<uint64_t> fast_ids;
  for (int i = 1; i <= 10; ++i) {
    hub.publish("job_a", state("processing", i), false);
    for (auto id : drain_ids(*fast)) fast_ids.push_back(id);
  }
  EXPECT_THAT(fast_ids, ElementsAre(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10));
  EXPECT_TRUE(slow->overflowed());
  EXPECT_TRUE(slow->finished());
  EXPECT_EQ(hub.subscriber_count(), 1u);
  // It was woken when its events arrived and again when it was dropped.
  EXPECT_EQ(slow_notifications.load(), 1);  // set after the first event: woken by the overflow only
  bool ok = true;
  // What it holds is contiguous; after that it is cut off.
  EXPECT_THAT(drain_ids(*slow, &ok), ElementsAre(0, 1, 2, 3));
  EXPECT_FALSE(ok);
  hub.publish("job_a", state("processing", 11), false);
  EXPECT_THAT(drain_ids(*slow, &ok), ElementsAre());
}

TEST(ProgressHubTest, NotifiesOnlyWhenTheBufferStopsBeingEmpty) {
  ProgressHub hub;
  int notifications = 0;
  auto watcher = hub.subscribe("job_a", state("queued", 0), false, std::nullopt);
  watcher->set_notify([&] { ++notifications; });
  drain_ids(*watcher);
  hub.publish("job_a", state("processing", 1), false);
  hub.publish("job_a", state("processing", 2), false);
  hub.publish("job_a", state("processing", 3), false);
  EXPECT_EQ(notifications, 1);
  EXPECT_THAT(drain_ids(*watcher), ElementsAre(1, 2, 3));
  hub.publish("job_a", state("processing", 4), false);
  EXPECT_EQ(notifications, 2);
  watcher->set_notify({});
  drain_ids(*watcher);
  hub.publish("job_a", state("processing", 5), false);
  EXPECT_EQ(notifications, 2);
}

TEST(ProgressHubTest, UnsubscribeAndForget) {
  ProgressHub hub;
  auto a = hub.subscribe("job_a", state("processing", 0), false, std::nullopt);
  auto b = hub.subscribe("job_a", state("processing", 0), false, std::nullopt);
  auto c = hub.subscribe("job_a", state("processing", 0), false, std::nullopt);
  EXPECT_EQ(hub.subscriber_count(), 3u);
  hub.unsubscribe(a);
  hub.unsubscribe(a);
  EXPECT_EQ(hub.subscriber_count(), 2u);
  hub.publish("job_a", state("processing", 1), false);
  EXPECT_THAT(drain_ids(*a), ElementsAre(0));  // nothing after it left
  EXPECT_THAT(drain_ids(*b), ElementsAre(0, 1));
  EXPECT_THAT(drain_ids(*c), ElementsAre(0, 1));

  int notified = 0;
  b->set_notify([&] { ++notified; });
  hub.forget("job_a");
  EXPECT_EQ(hub.job_count(), 0u);
  EXPECT_EQ(hub.subscriber_count(), 0u);
  EXPECT_TRUE(b->finished());
  EXPECT_TRUE(c->finished());
  EXPECT_EQ(notified, 1);
  EXPECT_EQ(hub.last_event_id("job_a"), 0u);
  hub.unsubscribe(c);  // after forget: harmless
}

// 8 publishers and churning watchers on shared and private jobs. Every watcher
// that was not dropped must see contiguous ids ending with the terminal one.
TEST(ProgressHubTest, ConcurrentPublishersAndWatchersKeepEveryStreamInOrder) {
  ProgressHub hub(/*replay_buffer=*/64, /*subscriber_buffer=*/100'000);
  constexpr int kPublishers = 8;
  constexpr int kEvents = 400;
  const std::vector<std::string> jobs = {"job_shared_0", "job_shared_1"};
  std::atomic<bool> start{false};
  std::atomic<int> checked{0}, failures{0};

  const auto watch = [&](const std::string& job_id) {
    auto watcher = hub.subscribe(job_id, state("queued", 0), false, std::nullopt);
    std::optional<uint64_t> previous;
    bool saw_terminal = false;
    std::vector<Event> events;
    while (!saw_terminal) {
      events.clear();
      if (!watcher->drain(events)) break;
      for (const auto& event : events) {
        if (previous && event.id != *previous + 1) ++failures;
        previous = event.id;
        saw_terminal = saw_terminal || event.terminal;
      }
      if (events.empty()) {
        if (watcher->finished() && !saw_terminal) {
          events.clear();
          watcher->drain(events);
          for (const auto& event : events) saw_terminal = saw_terminal || event.terminal;
          if (!saw_terminal) ++failures;
          break;
        }
        std::this_thread::yield();
      }
    }
    if (!saw_terminal) ++failures;
    ++checked;
  };

  std::vector<std::thread> threads;
  for (int p = 0; p < kPublishers; ++p) {
    threads.emplace_back([&, p] {
      while (!start.load()) std::this_thread::yield();
      const std::string own = "job_own_" + std::to_string(p);
      for (int i = 0; i < kEvents; ++i) {
        // Publishers 0-3 share job 0, 4-7 share job 1; each also has its own job.
        hub.publish(jobs[p / 4], state("processing", i), false);
        hub.publish(own, state("processing", i), false);
      }
      hub.publish(own, state("completed", 100), true);
    });
  }
  std::vector<std::thread> watchers;
  for (int w = 0; w < 8; ++w) {
    watchers.emplace_back([&, w] { watch("job_own_" + std::to_string(w)); });
    watchers.emplace_back([&, w] { watch(jobs[w % 2]); });
  }
  // Short-lived watchers churn on the shared jobs meanwhile.
  threads.emplace_back([&] {
    while (!start.load()) std::this_thread::yield();
    for (int i = 0; i < 300; ++i) {
      auto watcher = hub.subscribe(jobs[i % 2], state("queued", 0), false, hub.last_event_id(jobs[i % 2]));
      std::vector<Event> events;
      watcher->drain(events);
      hub.unsubscribe(watcher);
    }
  });
  start = true;
  for (auto& thread : threads) thread.join();
  for (const auto& job_id : jobs) hub.publish(job_id, state("completed", 100), true);
  for (auto& thread : watchers) thread.join();

  EXPECT_EQ(checked.load(), 16);
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(hub.subscriber_count(), 0u);
  EXPECT_EQ(hub.last_event_id(jobs[0]), 4u * kEvents + 1);
}

// Not an assertion: the publisher's cost with many watchers on one job.
TEST(ProgressHubTest, FanOutCostFigure) {
  ProgressHub hub(256, 1024);
  constexpr int kWatchers = 10'000;
  constexpr int kEvents = 20;
  std::vector<std::shared_ptr<Subscriber>> watchers;
  std::atomic<long> notifications{0};
  for (int i = 0; i < kWatchers; ++i) {
    watchers.push_back(hub.subscribe("job_a", state("queued", 0), false, std::nullopt));
    watchers.back()->set_notify([&] { notifications.fetch_add(1, std::memory_order_relaxed); });
  }
  std::vector<Event> sink;
  for (auto& watcher : watchers) watcher->drain(sink);
  const auto started = std::chrono::steady_clock::now();
  for (int i = 0; i < kEvents; ++i) {
    hub.publish("job_a", state("processing", i), false);
    for (auto& watcher : watchers) {
      sink.clear();
      watcher->drain(sink);
    }
  }
  const auto elapsed = std::chrono::steady_clock::now() - started;
  std::printf("[figure] hub: %d watchers x %d events, publish+drain %.2f ms per event\n", kWatchers, kEvents,
              std::chrono::duration<double, std::milli>(elapsed).count() / kEvents);
  EXPECT_EQ(notifications.load(), long{kWatchers} * kEvents);
}

}  // namespace
}  // namespace flux::controlplane::events
