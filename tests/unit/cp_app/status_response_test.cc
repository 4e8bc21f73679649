#include "controlplane/app/status_response.h"

#include <gtest/gtest.h>

#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "shared/core/error.h"
#include "shared/log/log.h"

namespace flux::controlplane::app {
namespace {

std::optional<std::string> header(const http::Response& response, const std::string& name) {
  for (const auto& [key, value] : response.headers) {
    if (key == name) return value;
  }
  return std::nullopt;
}

std::string body_code(const http::Response& response) {
  return nlohmann::json::parse(response.body).at("code").get<std::string>();
}

// A submission that reaches the dispatcher after SIGTERM stopped it: the
// client is told to come back (another replica, or this one restarted), not
// that the server broke.
TEST(StatusResponse, ShuttingDownIs503WithRetryAfter) {
  const auto stopped = unavailable("dispatcher_stopped", "the control plane is shutting down");
  const http::Response r = status_response(stopped);
  EXPECT_EQ(r.status, 503);
  EXPECT_EQ(body_code(r), "dispatcher_stopped");
  EXPECT_EQ(header(r, "Retry-After"), "5");
  // The same code from cancel() (FAILED_PRECONDITION there) answers the same.
  EXPECT_EQ(status_response(failed_precondition("dispatcher_stopped", "stopped")).status, 503);
  for (const char* code : {"dispatcher_not_started", "store_closed"}) {
    const http::Response other = status_response(unavailable(code, "not now"));
    EXPECT_EQ(other.status, 503) << code;
    EXPECT_EQ(body_code(other), code);
    EXPECT_TRUE(header(other, "Retry-After").has_value()) << code;
  }
}

TEST(StatusResponse, QueueAndWorkerShortagesAre503WithRetryAfter) {
  const struct {
    absl::Status status;
    std::string retry_after;
  } cases[] = {
      {make_error(absl::StatusCode::kResourceExhausted, "queue_full", "full"), "5"},
      {unavailable("no_worker_available", "busy"), "2"},
      {unavailable("no_worker_configured", "none"), "30"},
  };
  for (const auto& c : cases) {
    const http::Response r = status_response(c.status);
    EXPECT_EQ(r.status, 503) << c.status;
    EXPECT_EQ(body_code(r), error_code(c.status));
    EXPECT_EQ(header(r, "Retry-After"), c.retry_after) << c.status;
  }
}

TEST(StatusResponse, ClientMistakesKeepTheirStatus) {
  const http::Response missing = status_response(not_found("job_not_found", "no job job_x"));
  EXPECT_EQ(missing.status, 404);
  EXPECT_EQ(body_code(missing), "job_not_found");
  const http::Response finished = status_response(failed_precondition("job_finished", "completed"));
  EXPECT_EQ(finished.status, 409);
  EXPECT_EQ(body_code(finished), "job_finished");
  const http::Response cursor = status_response(invalid_argument("cursor_invalid", "bad cursor"));
  EXPECT_EQ(cursor.status, 400);
  EXPECT_EQ(nlohmann::json::parse(cursor.body).at("field"), "cursor");
  for (const auto& r : {missing, finished, cursor}) EXPECT_FALSE(header(r, "Retry-After").has_value());
}

TEST(StatusResponse, AnythingElseIsAnOpaque500ThatIsLogged) {
  std::vector<std::string> lines;
  log::set_sink_for_testing([&lines](const std::string& line) { lines.push_back(line); });
  const http::Response r =
      status_response(internal_error("store_error", "disk I/O error at /var/lib/flux/secret-path.db"));
  log::set_sink_for_testing(nullptr);
  EXPECT_EQ(r.status, 500);
  EXPECT_EQ(body_code(r), "internal");
  EXPECT_EQ(r.body.find("secret-path"), std::string::npos) << "details stay in the log";
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_NE(lines[0].find("store_error"), std::string::npos);
}

}  // namespace
}  // namespace flux::controlplane::app
