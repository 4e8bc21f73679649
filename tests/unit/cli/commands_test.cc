#include "cli/commands.h"

#include <gtest/gtest.h>

#include <sstream>

#include "fake_job_service.h"

namespace flux::cli {
namespace {

using nlohmann::json;
using testing::event_json;
using testing::FakeJobService;

struct Run {
  int exit_code;
  std::string out;
  std::string err;
};

Run run(const std::vector<std::string>& args, FakeJobService& service, bool terminal = false) {
  auto parsed = parse_command_line(args, {});
  EXPECT_TRUE(parsed.invocation) << parsed.err;
  std::ostringstream out, err;
  Console console{out, err, terminal, [] { return 100; }};
  WatchOptions options;
  options.sleep = [](std::chrono::milliseconds) { return true; };
  const int code = run_command(*parsed.invocation, service, console, options);
  return {code, out.str(), err.str()};
}

const std::vector<std::string> kSubmit = {"submit",    "--input",  "http://h/in.mp4", "--preset",
                                          "720p_h264", "--output", "out/a.mp4"};

std::vector<std::string> with(std::vector<std::string> args, const std::vector<std::string>& more) {
  args.insert(args.end(), more.begin(), more.end());
  return args;
}

TEST(Commands, SubmitBuildsTheRequest) {
  FakeJobService service;
  auto r = run(with(kSubmit, {"--storage", "local", "--type", "single", "--priority", "5", "--callback",
                              "http://hook/x", "--metadata", "title=T", "--idempotency-key", "k"}),
               service);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  ASSERT_EQ(service.submitted.size(), 1u);
  EXPECT_EQ(service.submitted[0], json::parse(R"({"input_url":"http://h/in.mp4","preset":"720p_h264",
      "output":{"path":"out/a.mp4","storage":"local","type":"single","metadata":{"title":"T"}},
      "callback_url":"http://hook/x","priority":5})"));
  EXPECT_EQ(service.idempotency_keys[0], "k");
  EXPECT_EQ(service.workers_calls, 0);
  EXPECT_NE(r.out.find("job_1 accepted"), std::string::npos) << r.out;
}

TEST(Commands, SubmitPicksTheStorageTheWorkersServe) {
  FakeJobService service;
  service.workers_answer = json{{"workers", {{{"storage_types", {"local"}}}}}};
  EXPECT_EQ(run(kSubmit, service).exit_code, 0);
  EXPECT_EQ(service.submitted[0]["output"]["storage"], "local");
  EXPECT_FALSE(service.submitted[0].contains("priority"));
  EXPECT_FALSE(service.submitted[0]["output"].contains("type"));

  service.workers_answer = json{{"workers", {{{"storage_types", {"local"}}}, {{"storage_types", {"s3"}}}}}};
  EXPECT_EQ(run(kSubmit, service).exit_code, 0);
  EXPECT_EQ(service.submitted[1]["output"]["storage"], "s3");
  service.workers_answer = json{{"workers", json::array()}};
  EXPECT_EQ(run(kSubmit, service).exit_code, 0);
  EXPECT_EQ(service.submitted[2]["output"]["storage"], "s3");
}

TEST(Commands, SubmitJsonPrintsTheAnswer) {
  FakeJobService service;
  auto r = run(with(kSubmit, {"--storage", "s3", "--json"}), service);
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_EQ(json::parse(r.out)["job_id"], "job_1");
}

TEST(Commands, ServerErrorsPrintMessageAndCodeAndExitThree) {
  FakeJobService service;
  service.submit_answer = invalid_argument("preset_unknown", "preset \"nope\" is not in the catalogue");
  auto r = run(with(kSubmit, {"--storage", "s3"}), service);
  EXPECT_EQ(r.exit_code, 3);
  EXPECT_EQ(r.err, "error: preset \"nope\" is not in the catalogue (preset_unknown)\n");
  EXPECT_EQ(r.out, "");
  auto j = run(with(kSubmit, {"--storage", "s3", "--json"}), service);
  EXPECT_EQ(j.exit_code, 3);
  EXPECT_EQ(json::parse(j.out)["code"], "preset_unknown");
}

TEST(Commands, WaitFollowsTheJobAndExitsByItsStatus) {
  FakeJobService service;
  service.connections.push_back(
      {{FakeJobService::event("1", event_json("queued", "queued", 0)),
        FakeJobService::event("2", event_json("processing", "encoding", 50)),
        FakeJobService::event(
            "3", event_json("failed", "encoding", 50, R"(,"error":"boom","error_code":"encode_failed")"))}});
  auto r = run(with(kSubmit, {"--storage", "s3", "--wait"}), service);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.out,
            "job_1 accepted\n"
            "[  0%] queued\n"
            "[ 50%] encoding  ETA --:--\n"
            "job_1 failed: boom (encode_failed)\n");
}

TEST(Commands, WatchOnATerminalRedrawsAndJsonPrintsTheDocument) {
  FakeJobService service;
  auto script = [&service] {
    service.connections.push_back({{FakeJobService::event("1", event_json("processing", "encoding", 30)),
                                    FakeJobService::event("2", event_json("completed", "done", 100))}});
  };
  script();
  auto tty = run({"watch", "job_1"}, service, /*terminal=*/true);
  EXPECT_EQ(tty.exit_code, 0);
  EXPECT_NE(tty.out.find("\r\x1b[2K 30% ["), std::string::npos) << tty.out;
  EXPECT_NE(tty.out.find("\njob_1 completed\n"), std::string::npos) << tty.out;

  script();
  service.documents.push_back(json{{"job_id", "job_1"}, {"status", "completed"}, {"output_url", "s3://b/k"}});
  auto j = run({"--json", "watch", "job_1"}, service, /*terminal=*/true);
  EXPECT_EQ(j.exit_code, 0);
  EXPECT_EQ(json::parse(j.out)["output_url"], "s3://b/k");  // one document, no progress drawing
}

TEST(Commands, GetListWorkersPresetsCancel) {
  FakeJobService service;
  service.documents.push_back(json{{"job_id", "job_1"}, {"status", "queued"}, {"progress", 0}});
  auto get = run({"get", "job_1"}, service);
  EXPECT_EQ(get.exit_code, 0);
  EXPECT_NE(get.out.find("Status  queued (0%)"), std::string::npos) << get.out;
  EXPECT_EQ(run({"list"}, service).out, "no jobs\n");
  EXPECT_EQ(run({"workers"}, service).out, "no workers configured\n");
  EXPECT_EQ(run({"presets", "--json"}, service).out, "{\n  \"presets\": []\n}\n");
  service.cancel_answer = json{{"job_id", "job_1"}, {"status", "cancelled"}};
  EXPECT_EQ(run({"cancel", "job_1"}, service).out, "job_1 cancelled\n");
  service.cancel_answer = make_error(absl::StatusCode::kFailedPrecondition, "job_finished", "job already finished");
  auto finished = run({"cancel", "job_1"}, service);
  EXPECT_EQ(finished.exit_code, 3);
  EXPECT_EQ(finished.err, "error: job already finished (job_finished)\n");
}

}  // namespace
}  // namespace flux::cli
