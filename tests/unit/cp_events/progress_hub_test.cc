#include "controlplane/events/progress_hub.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
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
  auto slow = hub.subscribe("job_a", state("processing", 0), false, std::nullopt);
  auto fast = hub.subscribe("job_a", state("processing", 0), false, std::nullopt);
  ASSERT_EQ(slow->group(), fast->group());  // the same group: the drop is per watcher
  std::vector<uint64_t> fast_ids;
  for (int i = 1; i <= 4; ++i) {
    hub.publish("job_a", state("processing", i), false);
    for (auto id : drain_ids(*fast)) fast_ids.push_back(id);
  }
  // 4 events behind: still in.
  EXPECT_FALSE(slow->overflowed());
  EXPECT_EQ(hub.subscriber_count(), 2u);
  for (int i = 5; i <= 10; ++i) {
    hub.publish("job_a", state("processing", i), false);
    for (auto id : drain_ids(*fast)) fast_ids.push_back(id);
  }
  EXPECT_THAT(fast_ids, ElementsAre(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10));
  EXPECT_TRUE(slow->overflowed());
  EXPECT_TRUE(slow->finished());
  EXPECT_EQ(hub.subscriber_count(), 1u);
  bool ok = true;
  // What it has is contiguous (its state on subscribing); then it is cut off.
  EXPECT_THAT(drain_ids(*slow, &ok), ElementsAre(0));
  EXPECT_FALSE(ok);
  hub.publish("job_a", state("processing", 11), false);
  EXPECT_THAT(drain_ids(*slow, &ok), ElementsAre());
  EXPECT_THAT(drain_ids(*fast), ElementsAre(11));
}

// A watcher that drains late, but within subscriber_buffer, misses nothing:
// every progress tick and every status change, in order, then the terminal
// event, however the events interleave with the other members' drains.
TEST(ProgressHubTest, LateDrainingWatcherGetsEveryStatusChangeInOrder) {
  ProgressHub hub(/*replay_buffer=*/4, /*subscriber_buffer=*/8);
  auto late = hub.subscribe("job_a", state("queued", 0), false, std::nullopt);
  auto eager = hub.subscribe("job_a", state("queued", 0), false, std::nullopt);
  const std::vector<std::string> statuses = {"processing", "processing", "processing", "uploading",
                                             "uploading",  "uploading",  "completed"};
  std::vector<Event> late_events;
  for (size_t i = 0; i < statuses.size(); ++i) {
    hub.publish("job_a", state(statuses[i], static_cast<int>(i) * 10), i + 1 == statuses.size());
    drain_ids(*eager);
    if (i == 2) ASSERT_TRUE(late->drain(late_events));  // once, midway
  }
  EXPECT_TRUE(late->finished());
  ASSERT_TRUE(late->drain(late_events));
  ASSERT_EQ(late_events.size(), statuses.size() + 1);
  for (size_t i = 0; i < late_events.size(); ++i) EXPECT_EQ(late_events[i].id, i);
  for (size_t i = 0; i < statuses.size(); ++i) {
    EXPECT_EQ(json::parse(late_events[i + 1].data())["status"], statuses[i]);
  }
  EXPECT_TRUE(late_events.back().terminal);
}

// Watchers of one job share groups of group_size; a newcomer to a group whose
// other member lags gets the latest state (or its replay) and the live
// events, never the older events the group still keeps for the laggard.
TEST(ProgressHubTest, WatchersShareGroupsAndJoinAtTheirOwnPosition) {
  ProgressHub hub(/*replay_buffer=*/16, /*subscriber_buffer=*/64, /*group_size=*/3);
  std::vector<std::shared_ptr<Subscriber>> watchers;
  for (int i = 0; i < 6; ++i) watchers.push_back(hub.subscribe("job_a", state("queued", 0), false, std::nullopt));
  EXPECT_EQ(watchers[0]->group(), watchers[2]->group());
  EXPECT_NE(watchers[2]->group(), watchers[3]->group());
  EXPECT_EQ(watchers[3]->group(), watchers[5]->group());
  auto other_job = hub.subscribe("job_b", state("queued", 0), false, std::nullopt);
  EXPECT_NE(other_job->group(), watchers[0]->group());
  EXPECT_NE(other_job->group(), watchers[3]->group());

  // Room again in the first group: the next watcher takes it.
  hub.unsubscribe(watchers[1]);
  hub.publish("job_a", state("processing", 1), false);
  hub.publish("job_a", state("processing", 2), false);  // watchers[0] lags from here
  auto newcomer = hub.subscribe("job_a", state("queued", 0), false, std::nullopt);
  EXPECT_EQ(newcomer->group(), watchers[0]->group());
  auto resumed = hub.subscribe("job_a", state("queued", 0), false, 1);  // Last-Event-ID: 1
  hub.publish("job_a", state("processing", 3), false);
  EXPECT_THAT(drain_ids(*newcomer), ElementsAre(2, 3));
  EXPECT_THAT(drain_ids(*resumed), ElementsAre(2, 3));
  EXPECT_THAT(drain_ids(*watchers[0]), ElementsAre(0, 1, 2, 3));
  EXPECT_THAT(drain_ids(*watchers[1]), ElementsAre(0));  // left before any event
  EXPECT_THAT(drain_ids(*other_job), ElementsAre(0));
  EXPECT_EQ(hub.subscriber_count(), 8u);
}

// Publishing wakes each group once, not each watcher.
TEST(ProgressHubTest, EachGroupIsNotifiedOncePerEvent) {
  std::vector<int> notifications(3, 0);  // outlives the hub, which notifies when destroyed
  ProgressHub hub(/*replay_buffer=*/16, /*subscriber_buffer=*/64, /*group_size=*/128);
  std::vector<std::shared_ptr<Subscriber>> watchers;
  for (int i = 0; i < 300; ++i) watchers.push_back(hub.subscribe("job_a", state("queued", 0), false, std::nullopt));
  std::vector<std::shared_ptr<SubscriberGroup>> groups;
  for (const auto& watcher : watchers) {
    if (std::find(groups.begin(), groups.end(), watcher->group()) == groups.end()) groups.push_back(watcher->group());
  }
  ASSERT_EQ(groups.size(), 3u);
  for (size_t g = 0; g < groups.size(); ++g) groups[g]->set_notify([&notifications, g] { ++notifications[g]; });
  hub.publish("job_a", state("processing", 1), false);
  hub.publish("job_a", state("processing", 2), false);
  EXPECT_THAT(notifications, ElementsAre(2, 2, 2));
  for (const auto& watcher : watchers) EXPECT_THAT(drain_ids(*watcher), ElementsAre(0, 1, 2));
  groups[0]->set_notify({});
  hub.publish("job_a", state("processing", 3), false);
  EXPECT_THAT(notifications, ElementsAre(2, 3, 3));
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
  ASSERT_EQ(b->group(), c->group());
  b->group()->set_notify([&] { ++notified; });
  hub.forget("job_a");
  EXPECT_EQ(hub.job_count(), 0u);
  EXPECT_EQ(hub.subscriber_count(), 0u);
  EXPECT_TRUE(b->finished());
  EXPECT_TRUE(c->finished());
  EXPECT_EQ(notified, 1);
  EXPECT_EQ(hub.last_event_id("job_a"), 0u);
  hub.unsubscribe(c);  // after forget: harmless
}

// The terminal event empties a group whose watcher was dropped without
// unsubscribing: the hub's list then holds the group's last reference, and
// unlisting it must not touch it afterwards (a use-after-free under ASan).
TEST(ProgressHubTest, TerminalEventUnlistsAGroupWhoseWatchersAreGone) {
  ProgressHub hub(/*replay_buffer=*/8, /*subscriber_buffer=*/16, /*group_size=*/2);
  auto kept = hub.subscribe("job_a", state("queued", 0), false, std::nullopt);
  for (int i = 0; i < 5; ++i) {
    // Each fills a group slot and is dropped by its owner at once.
    hub.subscribe("job_a", state("queued", 0), false, std::nullopt).reset();
  }
  hub.publish("job_a", state("processing", 10), false);
  hub.publish("job_a", state("completed", 100), true);
  std::vector<Event> events;
  kept->drain(events);
  ASSERT_FALSE(events.empty());
  EXPECT_TRUE(events.back().terminal);
  EXPECT_TRUE(kept->finished());
  EXPECT_EQ(hub.subscriber_count(), 0u);
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

// Many watchers of one job each get every event, with one wake-up per group
// and event. (The cost of a wide fan-out is bench/sse_fanout.py's figure, not
// this test's.)
TEST(ProgressHubTest, FanOutWakesEachGroupOncePerEvent) {
  std::atomic<long> notifications{0};  // outlives the hub, which notifies when destroyed
  ProgressHub hub(256, 1024);
  constexpr int kWatchers = 2'000;
  constexpr int kEvents = 10;
  std::vector<std::shared_ptr<Subscriber>> watchers;
  for (int i = 0; i < kWatchers; ++i)
    watchers.push_back(hub.subscribe("job_a", state("queued", 0), false, std::nullopt));
  std::vector<SubscriberGroup*> groups;
  for (const auto& watcher : watchers) {
    if (std::find(groups.begin(), groups.end(), watcher->group().get()) != groups.end()) continue;
    groups.push_back(watcher->group().get());
    groups.back()->set_notify([&] { notifications.fetch_add(1, std::memory_order_relaxed); });
  }
  EXPECT_EQ(groups.size(), static_cast<size_t>((kWatchers + 127) / 128));
  std::vector<Event> sink;
  for (auto& watcher : watchers) watcher->drain(sink);
  for (int i = 1; i <= kEvents; ++i) {
    hub.publish("job_a", state("processing", i), false);
    for (auto& watcher : watchers) {
      sink.clear();
      watcher->drain(sink);
      ASSERT_EQ(sink.size(), 1u);
      ASSERT_EQ(sink[0].id, static_cast<uint64_t>(i));
    }
  }
  EXPECT_EQ(notifications.load(), static_cast<long>(groups.size()) * kEvents);
}

}  // namespace
}  // namespace flux::controlplane::events
