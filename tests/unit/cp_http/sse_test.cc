#include <poll.h>
#include <sys/epoll.h>
#include <sys/resource.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <thread>

#include "controlplane/events/progress_hub.h"
#include "controlplane/http/server.h"
#include "raw_client.h"

namespace flux::controlplane::http {
namespace {

using namespace std::chrono_literals;
using json = nlohmann::json;
using testing::get_request;
using testing::RawClient;

constexpr std::string_view kExpectedHead =
    "HTTP/1.1 200 OK\r\n"
    "Content-Type: text/event-stream\r\n"
    "Cache-Control: no-cache\r\n"
    "X-Accel-Buffering: no\r\n"
    "Connection: close\r\n"
    "\r\n";

json state(const std::string& job_id, const std::string& status, int progress) {
  return json{{"job_id", job_id}, {"status", status}, {"progress", progress}};
}

// What the API layer does, reduced: subscribe with Last-Event-ID, unsubscribe on close.
struct SseFixture {
  explicit SseFixture(size_t subscriber_buffer = 1024, ServerOptions options = {}) : hub(256, subscriber_buffer) {
    Router router;
    router.add_sse("GET", "/jobs/{id}/stream", [this](const Request& request) -> std::variant<Response, SseStream> {
      const std::string& job_id = request.params.at("id");
      if (job_id == "missing") return error_response(404, "not_found", "no such job");
      std::optional<uint64_t> last;
      if (const std::string* header = request.header("last-event-id")) last = events::parse_last_event_id(*header);
      auto subscriber = hub.subscribe(job_id, state(job_id, "queued", 0), false, last);
      return SseStream{subscriber, [this, subscriber] {
                         hub.unsubscribe(subscriber);
                         ++closed;
                       }};
    });
    options.bind = "127.0.0.1";
    options.port = 0;
    auto started = HttpServer::start(options, std::move(router));
    EXPECT_TRUE(started.ok()) << started.status();
    server = std::move(*started);
  }

  bool wait_for_subscribers(size_t count, std::chrono::milliseconds timeout = 5000ms) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (hub.subscriber_count() != count) {
      if (std::chrono::steady_clock::now() > deadline) return false;
      std::this_thread::sleep_for(1ms);
    }
    return true;
  }

  events::ProgressHub hub;  // outlives the server
  std::atomic<int> closed{0};
  std::unique_ptr<HttpServer> server;
};

// The events of an SSE body (after the head), as (id, data) pairs.
std::vector<std::pair<uint64_t, json>> parse_events(std::string_view body) {
  std::vector<std::pair<uint64_t, json>> result;
  size_t position = 0;
  while (true) {
    const size_t end = body.find("\n\n", position);
    if (end == std::string_view::npos) break;
    const std::string_view frame = body.substr(position, end - position);
    position = end + 2;
    if (frame.rfind("id: ", 0) != 0) continue;  // a comment
    const size_t newline = frame.find('\n');
    const uint64_t id = std::stoull(std::string(frame.substr(4, newline - 4)));
    const std::string_view data_line = frame.substr(newline + 1);
    EXPECT_EQ(data_line.rfind("data: ", 0), 0u) << frame;
    result.emplace_back(id, json::parse(data_line.substr(6)));
  }
  return result;
}

std::string body_after_head(const std::string& text) {
  const size_t end = text.find("\r\n\r\n");
  return end == std::string::npos ? "" : text.substr(end + 4);
}

std::vector<uint64_t> event_ids(const RawClient& client) {
  std::vector<uint64_t> ids;
  for (const auto& [id, data] : parse_events(body_after_head(client.buffered()))) ids.push_back(id);
  return ids;
}

// Enough descriptors for `clients` connections (both ends live in this process).
bool reserve_descriptors(size_t clients) {
  rlimit limit{};
  getrlimit(RLIMIT_NOFILE, &limit);
  const rlim_t want = 2 * clients + 100;
  if (limit.rlim_cur < want) {
    limit.rlim_cur = std::min<rlim_t>(limit.rlim_max, want);
    setrlimit(RLIMIT_NOFILE, &limit);
  }
  return limit.rlim_cur >= want;
}

// Reads every client (into its buffered()) until each one is closed by the
// server or `timeout` passes; true when all were closed.
bool read_until_all_closed(const std::vector<RawClient*>& clients, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    std::vector<pollfd> open;
    std::vector<RawClient*> owners;
    for (RawClient* client : clients) {
      if (client->eof()) continue;
      open.push_back(pollfd{client->fd(), POLLIN, 0});
      owners.push_back(client);
    }
    if (open.empty()) return true;
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left <= 0ms) return false;
    if (::poll(open.data(), open.size(), static_cast<int>(std::min(left, 100ms).count())) < 0) return false;
    for (size_t i = 0; i < open.size(); ++i) {
      if (open[i].revents != 0) owners[i]->read_once(0ms);
    }
  }
}

std::vector<std::unique_ptr<RawClient>> connect_watchers(const SseFixture& fixture, size_t count,
                                                         const std::string& target,
                                                         std::string_view extra_headers = "") {
  std::vector<std::unique_ptr<RawClient>> clients;
  for (size_t i = 0; i < count; ++i) {
    clients.push_back(std::make_unique<RawClient>(fixture.server->port()));
    EXPECT_TRUE(clients.back()->connected());
    clients.back()->send(get_request(target, extra_headers));
  }
  return clients;
}

std::vector<RawClient*> pointers(const std::vector<std::unique_ptr<RawClient>>& clients) {
  std::vector<RawClient*> result;
  for (const auto& client : clients) result.push_back(client.get());
  return result;
}

TEST(SseTest, StreamsExactFramesAndClosesAfterTheTerminalEvent) {
  SseFixture fixture;
  RawClient client(fixture.server->port());
  client.send(get_request("/jobs/job_a/stream"));
  ASSERT_TRUE(client.read_until("data: ", 5000ms));
  ASSERT_TRUE(fixture.wait_for_subscribers(1));
  EXPECT_EQ(fixture.server->open_streams(), 1u);

  fixture.hub.publish("job_a", state("job_a", "processing", 40), false);
  fixture.hub.publish("job_a", json{{"job_id", "job_a"}, {"message", "multi\nline"}}, false);
  fixture.hub.publish("job_a", state("job_a", "completed", 100), true);
  ASSERT_TRUE(client.wait_closed(5000ms));

  const std::string expected = std::string(kExpectedHead) +
                               "id: 0\ndata: {\"job_id\":\"job_a\",\"progress\":0,\"status\":\"queued\"}\n\n"
                               "id: 1\ndata: {\"job_id\":\"job_a\",\"progress\":40,\"status\":\"processing\"}\n\n"
                               "id: 2\ndata: {\"job_id\":\"job_a\",\"message\":\"multi\\nline\"}\n\n"
                               "id: 3\ndata: {\"job_id\":\"job_a\",\"progress\":100,\"status\":\"completed\"}\n\n";
  EXPECT_EQ(client.buffered(), expected);
  for (int i = 0; i < 100 && fixture.server->open_streams() != 0; ++i) std::this_thread::sleep_for(5ms);
  EXPECT_EQ(fixture.server->open_streams(), 0u);
  EXPECT_EQ(fixture.closed.load(), 1);
}

TEST(SseTest, FinishedJobSendsItsFinalStateAndCloses) {
  SseFixture fixture;
  fixture.hub.publish("job_done", state("job_done", "processing", 50), false);
  fixture.hub.publish("job_done", state("job_done", "failed", 50), true);
  RawClient client(fixture.server->port());
  client.send(get_request("/jobs/job_done/stream"));
  ASSERT_TRUE(client.wait_closed(5000ms));
  const auto events = parse_events(body_after_head(client.buffered()));
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].first, 2u);
  EXPECT_EQ(events[0].second["status"], "failed");
}

TEST(SseTest, HandlerMayAnswerWithAPlainResponse) {
  SseFixture fixture;
  RawClient client(fixture.server->port());
  client.send(get_request("/jobs/missing/stream"));
  const auto response = client.read_response();
  ASSERT_TRUE(response.has_value());
  EXPECT_EQ(response->status, 404);
  EXPECT_EQ(json::parse(response->body)["code"], "not_found");
}

TEST(SseTest, KeepAliveCommentWhenSilent) {
  ServerOptions options;
  options.sse_keepalive = 100ms;
  SseFixture fixture(1024, options);
  RawClient client(fixture.server->port());
  client.send(get_request("/jobs/job_a/stream"));
  ASSERT_TRUE(client.read_until(": keep-alive\n\n", 3000ms));
  // Comments come between frames, never inside one.
  const std::string body = body_after_head(client.buffered());
  EXPECT_EQ(body.rfind("id: 0\ndata: ", 0), 0u);
  EXPECT_NE(body.find("\n\n: keep-alive\n\n"), std::string::npos);
  fixture.hub.publish("job_a", state("job_a", "processing", 1), false);
  ASSERT_TRUE(client.read_until("id: 1\n", 3000ms));
}

TEST(SseTest, LastEventIdReplaysMissedEvents) {
  SseFixture fixture;
  for (int i = 1; i <= 5; ++i) fixture.hub.publish("job_a", state("job_a", "processing", i * 10), false);
  RawClient client(fixture.server->port());
  client.send(get_request("/jobs/job_a/stream", "Last-Event-ID: 3\r\n"));
  ASSERT_TRUE(client.read_until("id: 5\n", 5000ms));
  ASSERT_TRUE(fixture.wait_for_subscribers(1));
  fixture.hub.publish("job_a", state("job_a", "completed", 100), true);
  ASSERT_TRUE(client.wait_closed(5000ms));
  const auto events = parse_events(body_after_head(client.buffered()));
  std::vector<uint64_t> ids;
  for (const auto& [id, data] : events) ids.push_back(id);
  EXPECT_THAT(ids, ::testing::ElementsAre(4, 5, 6));
}

TEST(SseTest, TwoWatchersBothGetEveryEvent) {
  SseFixture fixture;
  RawClient first(fixture.server->port());
  RawClient second(fixture.server->port());
  first.send(get_request("/jobs/job_a/stream"));
  second.send(get_request("/jobs/job_a/stream"));
  ASSERT_TRUE(fixture.wait_for_subscribers(2));
  for (int i = 1; i <= 20; ++i) fixture.hub.publish("job_a", state("job_a", "processing", i), false);
  fixture.hub.publish("job_a", state("job_a", "completed", 100), true);
  for (RawClient* client : {&first, &second}) {
    ASSERT_TRUE(client->wait_closed(5000ms));
    const auto events = parse_events(body_after_head(client->buffered()));
    ASSERT_EQ(events.size(), 22u);
    for (size_t i = 0; i < events.size(); ++i) EXPECT_EQ(events[i].first, i);
    EXPECT_EQ(events.back().second["status"], "completed");
  }
}

// More watchers than one delivery group holds (streams are served in groups
// of a job's watchers): every one gets every event, ids contiguous and in
// order, each status change, the terminal event, then the close.
TEST(SseTest, ManyWatchersOfOneJobEachGetEveryEventInOrder) {
  constexpr size_t kWatchers = 300;
  if (!reserve_descriptors(kWatchers)) GTEST_SKIP() << "not enough file descriptors";
  SseFixture fixture;
  auto clients = connect_watchers(fixture, kWatchers, "/jobs/job_many/stream");
  ASSERT_TRUE(fixture.wait_for_subscribers(kWatchers, 30s));

  std::vector<std::string> statuses;
  for (int i = 1; i <= 30; ++i) {
    const std::string status = i < 10 ? "processing" : i < 30 ? "uploading" : "completed";
    statuses.push_back(status);
    fixture.hub.publish("job_many", state("job_many", status, i * 100 / 30), i == 30);
    if (i % 10 == 0) std::this_thread::sleep_for(2ms);  // some bursts, some gaps
  }
  ASSERT_TRUE(read_until_all_closed(pointers(clients), 30s));

  std::vector<uint64_t> expected(31);
  for (uint64_t id = 0; id <= 30; ++id) expected[id] = id;
  for (const auto& client : clients) {
    const auto events = parse_events(body_after_head(client->buffered()));
    std::vector<uint64_t> ids;
    for (const auto& [id, data] : events) ids.push_back(id);
    ASSERT_EQ(ids, expected);
    for (size_t i = 1; i < events.size(); ++i) EXPECT_EQ(events[i].second["status"], statuses[i - 1]);
  }
  for (int i = 0; i < 400 && fixture.server->open_streams() != 0; ++i) std::this_thread::sleep_for(5ms);
  EXPECT_EQ(fixture.server->open_streams(), 0u);
  EXPECT_EQ(fixture.closed.load(), static_cast<int>(kWatchers));
  EXPECT_EQ(fixture.hub.subscriber_count(), 0u);
}

// Watchers of different jobs are grouped apart: each sees its own job only.
TEST(SseTest, WatchersOfDifferentJobsSeeOnlyTheirJob) {
  SseFixture fixture;
  auto first = connect_watchers(fixture, 3, "/jobs/job_x/stream");
  auto second = connect_watchers(fixture, 3, "/jobs/job_y/stream");
  ASSERT_TRUE(fixture.wait_for_subscribers(6));
  for (int i = 1; i <= 5; ++i) fixture.hub.publish("job_x", state("job_x", "processing", i), false);
  fixture.hub.publish("job_y", state("job_y", "processing", 50), false);
  fixture.hub.publish("job_x", state("job_x", "completed", 100), true);
  fixture.hub.publish("job_y", state("job_y", "failed", 50), true);
  std::vector<RawClient*> all = pointers(first);
  for (auto* client : pointers(second)) all.push_back(client);
  ASSERT_TRUE(read_until_all_closed(all, 10s));
  for (const auto& client : first) {
    const auto events = parse_events(body_after_head(client->buffered()));
    ASSERT_EQ(events.size(), 7u);
    for (const auto& [id, data] : events) EXPECT_EQ(data["job_id"], "job_x");
    EXPECT_EQ(events.back().second["status"], "completed");
  }
  for (const auto& client : second) {
    EXPECT_THAT(event_ids(*client), ::testing::ElementsAre(0, 1, 2));
    const auto events = parse_events(body_after_head(client->buffered()));
    for (const auto& [id, data] : events) EXPECT_EQ(data["job_id"], "job_y");
  }
}

// Watchers come and go while a job runs (groups are left and joined again):
// the ones still there, old and new, get every event from their start on,
// and a reconnecting one replays what it missed.
TEST(SseTest, WatchersJoiningAndLeavingMidJobKeepTheirStreamsWhole) {
  constexpr size_t kFirst = 200;
  if (!reserve_descriptors(kFirst + 150)) GTEST_SKIP() << "not enough file descriptors";
  SseFixture fixture;
  auto early = connect_watchers(fixture, kFirst, "/jobs/job_churn/stream");
  ASSERT_TRUE(fixture.wait_for_subscribers(kFirst, 30s));
  for (int i = 1; i <= 5; ++i) fixture.hub.publish("job_churn", state("job_churn", "processing", i), false);

  // Every other early watcher leaves.
  std::vector<RawClient*> staying;
  for (size_t i = 0; i < early.size(); ++i) {
    if (i % 2 == 0) {
      early[i]->close();
    } else {
      staying.push_back(early[i].get());
    }
  }
  ASSERT_TRUE(fixture.wait_for_subscribers(kFirst / 2, 10s));
  auto late = connect_watchers(fixture, 140, "/jobs/job_churn/stream");
  auto resumed = connect_watchers(fixture, 10, "/jobs/job_churn/stream", "Last-Event-ID: 2\r\n");
  ASSERT_TRUE(fixture.wait_for_subscribers(kFirst / 2 + 150, 30s));
  for (int i = 6; i <= 10; ++i) fixture.hub.publish("job_churn", state("job_churn", "processing", i), i == 10);

  std::vector<RawClient*> all = staying;
  for (auto* client : pointers(late)) all.push_back(client);
  for (auto* client : pointers(resumed)) all.push_back(client);
  ASSERT_TRUE(read_until_all_closed(all, 30s));
  for (RawClient* client : staying) {
    EXPECT_THAT(event_ids(*client), ::testing::ElementsAre(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10));
  }
  for (const auto& client : late) {
    // The latest event at connect time, then the live ones.
    EXPECT_THAT(event_ids(*client), ::testing::ElementsAre(5, 6, 7, 8, 9, 10));
  }
  for (const auto& client : resumed) {
    EXPECT_THAT(event_ids(*client), ::testing::ElementsAre(3, 4, 5, 6, 7, 8, 9, 10));
  }
  for (int i = 0; i < 400 && fixture.server->open_streams() != 0; ++i) std::this_thread::sleep_for(5ms);
  EXPECT_EQ(fixture.server->open_streams(), 0u);
  EXPECT_EQ(fixture.closed.load(), static_cast<int>(kFirst + 150));
}

TEST(SseTest, ClientThatLeavesIsNoticedAtOnce) {
  ServerOptions options;
  options.sse_keepalive = 60s;  // not thanks to a keep-alive write
  SseFixture fixture(1024, options);
  {
    RawClient client(fixture.server->port());
    client.send(get_request("/jobs/job_a/stream"));
    ASSERT_TRUE(client.read_until("id: 0\n"));
    ASSERT_TRUE(fixture.wait_for_subscribers(1));
  }
  EXPECT_TRUE(fixture.wait_for_subscribers(0, 2000ms));
  for (int i = 0; i < 200 && fixture.closed.load() != 1; ++i) std::this_thread::sleep_for(5ms);
  EXPECT_EQ(fixture.closed.load(), 1);
  EXPECT_EQ(fixture.server->open_streams(), 0u);
}

TEST(SseTest, StopClosesOpenStreams) {
  SseFixture fixture;
  RawClient client(fixture.server->port());
  client.send(get_request("/jobs/job_a/stream"));
  ASSERT_TRUE(client.read_until("id: 0\n"));
  auto others = connect_watchers(fixture, 150, "/jobs/job_b/stream");  // more than one group
  ASSERT_TRUE(fixture.wait_for_subscribers(151, 30s));
  const auto started = std::chrono::steady_clock::now();
  fixture.server->stop();
  EXPECT_LT(std::chrono::steady_clock::now() - started, 2000ms);
  EXPECT_TRUE(client.wait_closed(1000ms));
  EXPECT_TRUE(read_until_all_closed(pointers(others), 1000ms));
  EXPECT_EQ(fixture.hub.subscriber_count(), 0u);
  EXPECT_EQ(fixture.closed.load(), 151);
  EXPECT_EQ(fixture.server->open_streams(), 0u);
}

// A watcher with a tiny window that never reads is dropped; a fast watcher
// on the same job gets everything; the publisher is never held up.
TEST(SseTest, StalledWatcherIsDroppedWithoutSlowingThePublisherOrOthers) {
  ServerOptions options;
  options.sse_send_buffer_bytes = 4096;
  SseFixture fixture(/*subscriber_buffer=*/128, options);
  RawClient stalled(fixture.server->port(), /*receive_buffer=*/2048);
  stalled.send(get_request("/jobs/job_a/stream"));
  RawClient fast(fixture.server->port());
  fast.send(get_request("/jobs/job_a/stream"));
  ASSERT_TRUE(fixture.wait_for_subscribers(2));

  std::atomic<bool> publishing{true};
  std::thread reader([&] {
    while (publishing.load() || !fast.eof()) {
      if (!fast.read_once(50ms)) break;
    }
  });
  const std::string padding(2000, 'p');
  constexpr int kEvents = 600;
  auto slowest_publish = std::chrono::steady_clock::duration::zero();
  for (int i = 1; i <= kEvents; ++i) {
    json event = state("job_a", i == kEvents ? "completed" : "processing", i * 100 / kEvents);
    event["padding"] = padding;
    const auto before = std::chrono::steady_clock::now();
    fixture.hub.publish("job_a", event, i == kEvents);
    slowest_publish = std::max(slowest_publish, std::chrono::steady_clock::now() - before);
    std::this_thread::sleep_for(300us);  // a brisk job, not a tight loop
  }
  publishing = false;
  reader.join();

  // The fast watcher has everything, in order, and its stream closed.
  EXPECT_TRUE(fast.eof());
  const auto events = parse_events(body_after_head(fast.buffered()));
  ASSERT_EQ(events.size(), static_cast<size_t>(kEvents + 1));
  for (size_t i = 0; i < events.size(); ++i) EXPECT_EQ(events[i].first, i);
  // The stalled one was cut by the server long before the end.
  EXPECT_TRUE(stalled.wait_closed(3000ms));
  const auto partial = parse_events(body_after_head(stalled.buffered()));
  EXPECT_LT(partial.size(), static_cast<size_t>(kEvents / 2));
  EXPECT_EQ(fixture.hub.subscriber_count(), 0u);
  std::printf("[figure] slowest publish with a stalled watcher: %.3f ms\n",
              std::chrono::duration<double, std::milli>(slowest_publish).count());
  EXPECT_LT(slowest_publish, 100ms);
}

// Many SSE clients of one job over real sockets each get every event. The
// delivery-latency figure is bench/sse_fanout.py's (10,000 clients on a
// release build), not this test's.
TEST(SseTest, FanOutDeliversEveryEventToEveryClient) {
  rlimit limit{};
  getrlimit(RLIMIT_NOFILE, &limit);
  constexpr size_t kClients = 500;
  if (limit.rlim_cur < 2 * kClients + 100) {
    limit.rlim_cur = std::min<rlim_t>(limit.rlim_max, 2 * kClients + 100);
    setrlimit(RLIMIT_NOFILE, &limit);
  }
  if (limit.rlim_cur < 2 * kClients + 100) GTEST_SKIP() << "not enough file descriptors";

  SseFixture fixture;
  std::vector<std::unique_ptr<RawClient>> clients;
  for (size_t i = 0; i < kClients; ++i) {
    clients.push_back(std::make_unique<RawClient>(fixture.server->port()));
    ASSERT_TRUE(clients.back()->connected());
    clients.back()->send(get_request("/jobs/job_fan/stream"));
  }
  ASSERT_TRUE(fixture.wait_for_subscribers(kClients, 30s));

  constexpr int kEvents = 20;
  std::vector<int> receipts(kEvents + 1, 0);

  std::thread reader([&] {
    const int epoll = epoll_create1(0);
    for (size_t i = 0; i < kClients; ++i) {
      epoll_event event{};
      event.events = EPOLLIN;
      event.data.u64 = i;
      epoll_ctl(epoll, EPOLL_CTL_ADD, clients[i]->fd(), &event);
    }
    std::vector<std::string> pending(kClients);
    size_t closed = 0;
    std::vector<epoll_event> ready(256);
    char chunk[16384];
    while (closed < kClients) {
      const int n = epoll_wait(epoll, ready.data(), static_cast<int>(ready.size()), 10000);
      if (n <= 0) break;
      for (int k = 0; k < n; ++k) {
        const size_t index = ready[k].data.u64;
        const ssize_t got = ::recv(clients[index]->fd(), chunk, sizeof chunk, MSG_DONTWAIT);
        if (got <= 0) {
          epoll_ctl(epoll, EPOLL_CTL_DEL, clients[index]->fd(), nullptr);
          ++closed;
          continue;
        }
        std::string& text = pending[index];
        text.append(chunk, static_cast<size_t>(got));
        size_t position;
        while ((position = text.find("\n\n")) != std::string::npos) {
          const size_t id_at = text.find("id: ");
          if (id_at != std::string::npos && id_at < position) {
            const uint64_t id = std::stoull(text.substr(id_at + 4, text.find('\n', id_at) - id_at - 4));
            if (id >= 1 && id <= kEvents) ++receipts[id];
          }
          text.erase(0, position + 2);
        }
      }
    }
    ::close(epoll);
  });

  for (int i = 1; i <= kEvents; ++i) {
    fixture.hub.publish("job_fan", state("job_fan", i == kEvents ? "completed" : "processing", i * 2), i == kEvents);
    std::this_thread::sleep_for(20ms);
  }
  reader.join();

  for (int i = 1; i <= kEvents; ++i) EXPECT_EQ(receipts[i], static_cast<int>(kClients)) << "event " << i;
}

}  // namespace
}  // namespace flux::controlplane::http
