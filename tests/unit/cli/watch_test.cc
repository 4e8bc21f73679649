#include "cli/watch.h"

#include <gtest/gtest.h>

#include <sstream>

#include "fake_job_service.h"

namespace flux::cli {
namespace {

using testing::event_json;
using testing::FakeJobService;

class Recorder : public WatchObserver {
 public:
  std::vector<JobEvent> events;
  std::vector<std::chrono::milliseconds> delays;
  void on_event(const JobEvent& e) override { events.push_back(e); }
  void on_reconnecting(int, int, std::chrono::milliseconds delay, const absl::Status&) override {
    delays.push_back(delay);
  }
};

WatchOptions no_sleep(std::vector<std::chrono::milliseconds>* slept = nullptr) {
  WatchOptions o;
  o.sleep = [slept](std::chrono::milliseconds d) {
    if (slept) slept->push_back(d);
    return true;
  };
  return o;
}

TEST(Watch, EndsOnTheTerminalEvent) {
  FakeJobService service;
  service.connections.push_back(
      {{FakeJobService::event("1", event_json("queued", "queued", 0)),
        FakeJobService::event("2", event_json("processing", "encoding", 50)),
        FakeJobService::event("3", event_json("completed", "done", 100, R"(,"output_url":"file:///o.mp4")")),
        FakeJobService::event("4", event_json("processing", "encoding", 60))}});
  Recorder recorder;
  auto final_state = watch_job(service, "job_1", recorder, no_sleep());
  ASSERT_TRUE(final_state.ok()) << final_state.status();
  EXPECT_EQ(final_state->status, "completed");
  EXPECT_EQ(final_state->output_url, "file:///o.mp4");
  EXPECT_EQ(recorder.events.size(), 3u);  // nothing read after the terminal event
  EXPECT_EQ(service.last_event_ids, std::vector<std::string>{""});
}

TEST(Watch, ReconnectsWithTheLastEventIdAfterADrop) {
  FakeJobService service;
  service.connections.push_back({{FakeJobService::event("1", event_json("processing", "encoding", 10)),
                                  FakeJobService::event("2", event_json("processing", "encoding", 20))},
                                 unavailable("stream_broken", "connection reset")});
  service.connections.push_back({{}, unavailable("connection_failed", "refused")});
  service.connections.push_back({{FakeJobService::event("5", event_json("processing", "encoding", 40))},
                                 StreamEnd::kClosed});  // closed early: reconnect too
  service.connections.push_back(
      {{FakeJobService::event("6", event_json("failed", "encoding", 40, R"(,"error_code":"encode_failed")"))}});
  Recorder recorder;
  std::vector<std::chrono::milliseconds> slept;
  auto final_state = watch_job(service, "job_1", recorder, no_sleep(&slept));
  ASSERT_TRUE(final_state.ok()) << final_state.status();
  EXPECT_EQ(final_state->status, "failed");
  EXPECT_EQ(final_state->error_code, "encode_failed");
  EXPECT_EQ(service.last_event_ids, (std::vector<std::string>{"", "2", "2", "5"}));
  // Backoff grows while nothing arrives and starts over after an event.
  using ms = std::chrono::milliseconds;
  EXPECT_EQ(slept, (std::vector<ms>{ms(250), ms(500), ms(250)}));
  EXPECT_EQ(recorder.delays, slept);
}

TEST(Watch, NoContentMeansTheJobEndedSoItsDocumentIsFetched) {
  FakeJobService service;
  service.connections.push_back(
      {{FakeJobService::event("8", event_json("uploading", "uploading", 99))}, unavailable("stream_broken", "reset")});
  service.connections.push_back({{}, StreamEnd::kNoContent});
  service.documents.push_back(
      nlohmann::json::parse(event_json("completed", "done", 100, R"(,"output_url":"s3://b/k")")));
  Recorder recorder;
  auto final_state = watch_job(service, "job_1", recorder, no_sleep());
  ASSERT_TRUE(final_state.ok()) << final_state.status();
  EXPECT_EQ(final_state->status, "completed");
  EXPECT_EQ(final_state->output_url, "s3://b/k");
  EXPECT_EQ(service.get_calls, 1);
  EXPECT_EQ(service.last_event_ids.back(), "8");
  EXPECT_EQ(recorder.events.back().status, "completed");
}

TEST(Watch, FirstConnectionFailingIsAnAnswer) {
  FakeJobService service;
  service.connections.push_back({{}, unavailable("connection_failed", "refused")});
  Recorder recorder;
  auto result = watch_job(service, "job_1", recorder, no_sleep());
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(error_code(result.status()), "connection_failed");
  EXPECT_EQ(service.last_event_ids.size(), 1u);
}

TEST(Watch, NonRetryableAnswersStopAtOnce) {
  FakeJobService service;
  service.connections.push_back(
      {{FakeJobService::event("1", event_json("processing", "encoding", 10))}, unavailable("stream_broken", "reset")});
  service.connections.push_back({{}, make_error(absl::StatusCode::kUnauthenticated, "unauthorized", "bad key")});
  Recorder recorder;
  auto result = watch_job(service, "job_1", recorder, no_sleep());
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(error_code(result.status()), "unauthorized");
  EXPECT_EQ(service.last_event_ids.size(), 2u);
}

TEST(Watch, GivesUpAfterBoundedReconnects) {
  FakeJobService service;
  service.connections.push_back(
      {{FakeJobService::event("1", event_json("processing", "encoding", 10))}, unavailable("stream_broken", "reset")});
  for (int i = 0; i < 20; ++i) service.connections.push_back({{}, unavailable("connection_failed", "refused")});
  Recorder recorder;
  WatchOptions options = no_sleep();
  options.max_reconnects = 4;
  auto result = watch_job(service, "job_1", recorder, options);
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(error_code(result.status()), "stream_lost");
  EXPECT_EQ(service.last_event_ids.size(), 5u);  // the first connection + 4 reconnects
}

TEST(Watch, InterruptedBackoffStops) {
  FakeJobService service;
  service.connections.push_back(
      {{FakeJobService::event("1", event_json("processing", "encoding", 10))}, unavailable("stream_broken", "reset")});
  Recorder recorder;
  WatchOptions options;
  options.sleep = [](std::chrono::milliseconds) { return false; };
  auto result = watch_job(service, "job_1", recorder, options);
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(error_code(result.status()), "interrupted");
}

TEST(Watch, BackoffIsCapped) {
  WatchOptions o;
  EXPECT_EQ(reconnect_delay(o, 1).count(), 250);
  EXPECT_EQ(reconnect_delay(o, 3).count(), 1000);
  EXPECT_EQ(reconnect_delay(o, 6).count(), 5000);
  EXPECT_EQ(reconnect_delay(o, 60).count(), 5000);
}

TEST(Printers, TerminalRedrawsInPlaceAndEndsTheLine) {
  std::ostringstream out;
  TerminalProgressPrinter printer(out, [] { return 80; });
  printer.on_event(*parse_job_event(event_json("processing", "encoding", 10, R"(,"fps":30,"speed":1.2)")));
  printer.on_event(*parse_job_event(event_json("processing", "encoding", 10, R"(,"fps":30,"speed":1.2)")));
  printer.on_event(*parse_job_event(event_json("processing", "encoding", 55, R"(,"fps":31,"speed":1.3)")));
  printer.on_event(*parse_job_event(event_json("completed", "done", 100)));
  const std::string text = out.str();
  size_t redraws = 0;
  for (size_t at = text.find("\r\x1b[2K"); at != std::string::npos; at = text.find("\r\x1b[2K", at + 1)) ++redraws;
  EXPECT_EQ(redraws, 3u) << text;  // the identical second event is not redrawn
  EXPECT_NE(text.find(" 55% ["), std::string::npos);
  EXPECT_EQ(text.back(), '\n');
  EXPECT_EQ(std::count(text.begin(), text.end(), '\n'), 1);
}

TEST(Printers, PlainPrintsLinesWithoutCarriageReturns) {
  std::ostringstream out, err;
  PlainProgressPrinter printer(out, err);
  for (int p = 0; p <= 100; p += 2) {
    printer.on_event(*parse_job_event(event_json("processing", "encoding", p)));
  }
  printer.on_reconnecting(1, 8, std::chrono::milliseconds(250), unavailable("stream_broken", "reset"));
  const std::string text = out.str();
  EXPECT_EQ(text.find('\r'), std::string::npos);
  EXPECT_EQ(text.find('\x1b'), std::string::npos);
  EXPECT_EQ(std::count(text.begin(), text.end(), '\n'), 11);  // 0%, 10%, ..., 100%
  EXPECT_NE(err.str().find("reconnecting in 0."), std::string::npos) << err.str();
  EXPECT_NE(err.str().find("(1/8)"), std::string::npos) << err.str();
}

}  // namespace
}  // namespace flux::cli
