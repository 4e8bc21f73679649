#include "shared/log/log.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <mutex>
#include <regex>
#include <thread>
#include <vector>

namespace flux::log {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using Json = nlohmann::json;

// Captures every line written while it is alive, and restores defaults after.
class CapturedLog {
 public:
  CapturedLog() {
    set_sink_for_testing([this](const std::string& line) {
      std::lock_guard lock(mu_);
      lines_.push_back(line);
    });
  }
  ~CapturedLog() {
    set_sink_for_testing(nullptr);
    init("flux", Level::kInfo, Format::kJson);
  }
  std::vector<std::string> lines() const {
    std::lock_guard lock(mu_);
    return lines_;
  }
  Json only_json() const {
    auto all = lines();
    EXPECT_EQ(all.size(), 1u);
    return all.empty() ? Json() : Json::parse(all.back());
  }

 private:
  mutable std::mutex mu_;
  std::vector<std::string> lines_;
};

TEST(Log, UsableBeforeInitWithDefaults) {
  CapturedLog log;
  info("starting", {{"port", 50051}});
  const Json entry = log.only_json();
  EXPECT_EQ(entry["component"], "flux");
  EXPECT_EQ(entry["level"], "info");
  EXPECT_EQ(entry["msg"], "starting");
  EXPECT_EQ(entry["port"], 50051);
  debug("hidden by default");
  EXPECT_EQ(log.lines().size(), 1u);
}

TEST(Log, JsonLineHasMetadataThenFields) {
  CapturedLog log;
  init("worker", Level::kDebug, Format::kJson);
  warn("job failed", {{"job_id", "j-1"}, {"attempt", 2}, {"nested", {{"a", true}}}});
  const auto lines = log.lines();
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_EQ(lines[0].find("{\"ts\":\""), 0u) << lines[0];
  EXPECT_EQ(lines[0].find('\n'), std::string::npos);
  const Json entry = Json::parse(lines[0]);
  EXPECT_TRUE(std::regex_match(entry["ts"].get<std::string>(), std::regex(R"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z)")))
      << entry["ts"];
  EXPECT_EQ(entry["level"], "warn");
  EXPECT_EQ(entry["msg"], "job failed");
  EXPECT_EQ(entry["component"], "worker");
  EXPECT_EQ(entry["job_id"], "j-1");
  EXPECT_EQ(entry["attempt"], 2);
  EXPECT_EQ(entry["nested"]["a"], true);
}

TEST(Log, LevelFiltering) {
  CapturedLog log;
  init("worker", Level::kWarn, Format::kJson);
  EXPECT_FALSE(enabled(Level::kInfo));
  EXPECT_TRUE(enabled(Level::kError));
  debug("d");
  info("i");
  warn("w");
  error("e");
  const auto lines = log.lines();
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_EQ(Json::parse(lines[0])["level"], "warn");
  EXPECT_EQ(Json::parse(lines[1])["level"], "error");
}

TEST(Log, ParseLevel) {
  EXPECT_EQ(*parse_level("debug"), Level::kDebug);
  EXPECT_EQ(*parse_level("INFO"), Level::kInfo);
  EXPECT_EQ(*parse_level("warn"), Level::kWarn);
  EXPECT_EQ(*parse_level("error"), Level::kError);
  EXPECT_FALSE(parse_level("verbose").ok());
  EXPECT_FALSE(parse_level("").ok());
}

TEST(Log, SecretsAreRedactedAtAnyDepth) {
  CapturedLog log;
  info("configured", {{"api_key", "k-123"},
                      {"WEBHOOK_SECRET", "s-456"},
                      {"session_token", "t-789"},
                      {"Password", "p-000"},
                      {"headers", {{"Authorization", "Bearer b-111"}, {"accept", "*/*"}}},
                      {"list", Json::array({{{"aws_secret_access_key", "a-222"}}})},
                      {"bucket", "media"}});
  const std::string line = log.lines().at(0);
  for (const char* secret : {"k-123", "s-456", "t-789", "p-000", "b-111", "a-222"}) {
    EXPECT_THAT(line, Not(HasSubstr(secret)));
  }
  const Json entry = Json::parse(line);
  EXPECT_EQ(entry["api_key"], "<redacted>");
  EXPECT_EQ(entry["headers"]["Authorization"], "<redacted>");
  EXPECT_EQ(entry["headers"]["accept"], "*/*");
  EXPECT_EQ(entry["list"][0]["aws_secret_access_key"], "<redacted>");
  EXPECT_EQ(entry["bucket"], "media");
}

TEST(Log, SecretsAreRedactedInTextFormatToo) {
  CapturedLog log;
  init("worker", Level::kInfo, Format::kText);
  info("configured", {{"api_key", "k-123"}});
  EXPECT_THAT(log.lines().at(0), Not(HasSubstr("k-123")));
  EXPECT_THAT(log.lines().at(0), HasSubstr("api_key=<redacted>"));
}

TEST(Log, FieldsCannotForgeMetadata) {
  CapturedLog log;
  init("worker", Level::kInfo, Format::kJson);
  info("real", {{"level", "error"}, {"msg", "fake"}, {"component", "x"}});
  const Json entry = log.only_json();
  EXPECT_EQ(entry["level"], "info");
  EXPECT_EQ(entry["msg"], "real");
  EXPECT_EQ(entry["component"], "worker");
  EXPECT_EQ(entry["field_msg"], "fake");
}

TEST(Log, MessagesWithControlCharactersStayOneLine) {
  CapturedLog log;
  error("line one\nline two \xff", {{"path", "a\nb"}});
  const Json entry = log.only_json();
  EXPECT_EQ(entry["path"], "a\nb");
  EXPECT_THAT(entry["msg"].get<std::string>(), HasSubstr("line one\nline two"));

  init("worker", Level::kInfo, Format::kText);
  error("line one\nline two", {{"path", "a\nb"}});
  const std::string text = log.lines().at(1);
  EXPECT_EQ(text.find('\n'), std::string::npos) << text;
}

TEST(Log, TextFormat) {
  CapturedLog log;
  init("worker", Level::kDebug, Format::kText);
  info("job started", {{"job_id", "j-1"}, {"percent", 12.5}, {"note", "two words"}, {"ok", true}});
  debug("tick");
  const auto lines = log.lines();
  ASSERT_EQ(lines.size(), 2u);
  const std::regex expected(
      R"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z INFO  \[worker\] job started job_id=j-1 note="two words" ok=true percent=12.5)");
  EXPECT_TRUE(std::regex_match(lines[0], expected)) << lines[0];
  EXPECT_THAT(lines[1], HasSubstr(" DEBUG [worker] tick"));
}

TEST(Log, WritesToStdoutWithoutATestSink) {
  init("worker", Level::kInfo, Format::kJson);
  ::testing::internal::CaptureStdout();
  info("to stdout", {{"job_id", "j-9"}});
  const std::string out = ::testing::internal::GetCapturedStdout();
  init("flux", Level::kInfo, Format::kJson);
  ASSERT_FALSE(out.empty());
  EXPECT_EQ(out.back(), '\n');
  const Json entry = Json::parse(out);
  EXPECT_EQ(entry["msg"], "to stdout");
  EXPECT_EQ(entry["job_id"], "j-9");
}

TEST(Log, NonObjectFieldsAreKept) {
  CapturedLog log;
  info("odd", Json::array({1, 2}));
  EXPECT_EQ(log.only_json()["fields"], Json::array({1, 2}));
}

TEST(Log, ConcurrentWritersProduceWholeLines) {
  CapturedLog log;
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([t] {
      for (int i = 0; i < 100; ++i) info("tick", {{"thread", t}, {"i", i}});
    });
  }
  for (auto& thread : threads) thread.join();
  const auto lines = log.lines();
  ASSERT_EQ(lines.size(), 800u);
  for (const auto& line : lines) EXPECT_NO_THROW(Json::parse(line)) << line;
}

}  // namespace
}  // namespace flux::log
