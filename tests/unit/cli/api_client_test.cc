// HttpJobService against a real HTTP server on loopback.
#include "cli/api_client.h"

#include <curl/curl.h>
#include <gtest/gtest.h>

#include "cli/watch.h"
#include "shared/core/error.h"
#include "support/loopback_http_server.h"

namespace flux::cli {
namespace {

using flux::testing::LoopbackHttpServer;
using Response = LoopbackHttpServer::Response;

class ApiClientTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { curl_global_init(CURL_GLOBAL_DEFAULT); }
  static void TearDownTestSuite() { curl_global_cleanup(); }

  static HttpJobService client(const LoopbackHttpServer& server, const std::string& key = "test-key-0123456789") {
    ClientOptions options;
    options.base_url = server.url("/");  // the trailing slash is ignored
    options.api_key = key;
    options.request_timeout = std::chrono::seconds(5);
    return HttpJobService(options);
  }
};

Response json_response(int status, const std::string& body) {
  return Response(status, body, {{"Content-Type", "application/json"}});
}

Response sse_response(const std::string& body) { return Response(200, body, {{"Content-Type", "text/event-stream"}}); }

TEST_F(ApiClientTest, GetSendsTheKeyAndEscapesTheId) {
  LoopbackHttpServer server([](const auto&) { return json_response(200, R"({"job_id":"job_1","status":"queued"})"); });
  auto service = client(server);
  auto doc = service.get_job("job_1");
  ASSERT_TRUE(doc.ok()) << doc.status();
  EXPECT_EQ((*doc)["status"], "queued");
  ASSERT_TRUE(service.get_job("../x?y=1#z").ok());
  auto requests = server.requests();
  ASSERT_EQ(requests.size(), 2u);
  EXPECT_EQ(requests[0].method, "GET");
  EXPECT_EQ(requests[0].path, "/api/v1/jobs/job_1");
  EXPECT_EQ(requests[0].header("Authorization"), "Bearer test-key-0123456789");
  EXPECT_EQ(requests[1].path, "/api/v1/jobs/%2E%2E%2Fx%3Fy%3D1%23z");
}

TEST_F(ApiClientTest, NoKeyNoAuthorizationHeader) {
  LoopbackHttpServer server([](const auto&) { return json_response(200, R"({"presets":[]})"); });
  auto service = client(server, "");
  ASSERT_TRUE(service.presets().ok());
  EXPECT_EQ(server.requests().at(0).header("Authorization"), "");
  EXPECT_EQ(server.requests().at(0).path, "/api/v1/presets");
}

TEST_F(ApiClientTest, SubmitPostsJsonWithIdempotencyKey) {
  LoopbackHttpServer server(
      [](const auto&) { return json_response(202, R"({"job_id":"job_9","status":"accepted","stream_url":"/s"})"); });
  auto service = client(server);
  auto answer = service.submit({{"preset", "720p_h264"}}, "retry-1");
  ASSERT_TRUE(answer.ok()) << answer.status();
  EXPECT_EQ((*answer)["job_id"], "job_9");
  const auto request = server.requests().at(0);
  EXPECT_EQ(request.method, "POST");
  EXPECT_EQ(request.path, "/api/v1/jobs");
  EXPECT_EQ(request.header("Content-Type"), "application/json");
  EXPECT_EQ(request.header("Idempotency-Key"), "retry-1");
  EXPECT_EQ(nlohmann::json::parse(request.body), (nlohmann::json{{"preset", "720p_h264"}}));
}

TEST_F(ApiClientTest, ListBuildsTheQuery) {
  LoopbackHttpServer server([](const auto&) { return json_response(200, R"({"jobs":[],"next_cursor":null})"); });
  auto service = client(server);
  ASSERT_TRUE(service.list_jobs({"failed", 5, "c/1"}).ok());
  ASSERT_TRUE(service.list_jobs({}).ok());
  EXPECT_EQ(server.requests().at(0).path, "/api/v1/jobs?status=failed&limit=5&cursor=c%2F1");
  EXPECT_EQ(server.requests().at(1).path, "/api/v1/jobs");
}

TEST_F(ApiClientTest, ServerErrorsKeepTheirCodeAndMessage) {
  LoopbackHttpServer server([](const LoopbackHttpServer::Request& r) {
    if (r.path.find("cancel") != std::string::npos) {
      return json_response(409, R"({"error":"job already finished","code":"job_finished"})");
    }
    if (r.path == "/api/v1/presets") return Response(502, "<html>bad gateway</html>");
    return json_response(401, R"({"error":"missing or invalid API key","code":"unauthorized"})");
  });
  auto service = client(server);
  auto unauthorized = service.workers();
  ASSERT_FALSE(unauthorized.ok());
  EXPECT_EQ(error_code(unauthorized.status()), "unauthorized");
  EXPECT_EQ(unauthorized.status().message(), "missing or invalid API key");
  EXPECT_EQ(unauthorized.status().code(), absl::StatusCode::kUnauthenticated);
  auto finished = service.cancel_job("job_1");
  EXPECT_EQ(error_code(finished.status()), "job_finished");
  auto gateway = service.presets();
  EXPECT_EQ(error_code(gateway.status()), "http_502");
  EXPECT_TRUE(is_retryable(gateway.status()));
  EXPECT_FALSE(is_retryable(unauthorized.status()));
}

TEST_F(ApiClientTest, InvalidAnswersAreReported) {
  LoopbackHttpServer server([](const auto&) { return json_response(200, "not json"); });
  auto service = client(server);
  EXPECT_EQ(error_code(service.workers().status()), "response_invalid");
}

TEST_F(ApiClientTest, UnreachableServerIsAConnectionError) {
  int port = 0;
  {
    LoopbackHttpServer gone([](const auto&) { return Response(200); });
    port = gone.port();
  }
  ClientOptions options;
  options.base_url = "http://127.0.0.1:" + std::to_string(port);
  HttpJobService service(options);
  auto result = service.get_job("job_1");
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(error_code(result.status()), "connection_failed");
  EXPECT_TRUE(is_retryable(result.status()));
  EXPECT_NE(result.status().message().find(options.base_url), absl::string_view::npos);
}

TEST_F(ApiClientTest, InterruptFlagStopsATransfer) {
  std::atomic<bool> interrupted{true};
  LoopbackHttpServer server([](const auto&) {
    Response r = json_response(200, "{}");
    r.stall_before_body = std::chrono::milliseconds(3000);
    return r;
  });
  ClientOptions options;
  options.base_url = server.url("");
  options.interrupted = &interrupted;
  HttpJobService service(options);
  const auto start = std::chrono::steady_clock::now();
  auto result = service.workers();
  EXPECT_EQ(error_code(result.status()), "interrupted");
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::milliseconds(2500));
}

TEST_F(ApiClientTest, StreamDeliversEventsAndSendsLastEventId) {
  LoopbackHttpServer server([](const auto&) {
    return sse_response(
        ": hello\n\nid: 4\ndata: {\"status\":\"processing\"}\n\nid: 5\ndata: {\"status\":\"completed\"}\n\n");
  });
  auto service = client(server);
  std::vector<SseEvent> seen;
  auto end = service.stream_job("job_1", "3", [&](const SseEvent& e) {
    seen.push_back(e);
    return true;
  });
  ASSERT_TRUE(end.ok()) << end.status();
  EXPECT_EQ(*end, StreamEnd::kClosed);
  ASSERT_EQ(seen.size(), 2u);
  EXPECT_EQ(seen[1].id, "5");
  const auto request = server.requests().at(0);
  EXPECT_EQ(request.path, "/api/v1/jobs/job_1/stream");
  EXPECT_EQ(request.header("Last-Event-ID"), "3");
  EXPECT_EQ(request.header("Accept"), "text/event-stream");
  EXPECT_EQ(request.header("Authorization"), "Bearer test-key-0123456789");
}

TEST_F(ApiClientTest, StreamStatuses) {
  LoopbackHttpServer server([](const LoopbackHttpServer::Request& r) {
    if (r.path.find("done") != std::string::npos) return Response(204);
    if (r.path.find("html") != std::string::npos) return Response(200, "<html>", {{"Content-Type", "text/html"}});
    return json_response(404, R"({"error":"job not found","code":"job_not_found"})");
  });
  auto service = client(server);
  auto ignore = [](const SseEvent&) { return true; };
  auto done = service.stream_job("done", "9", ignore);
  ASSERT_TRUE(done.ok()) << done.status();
  EXPECT_EQ(*done, StreamEnd::kNoContent);
  auto missing = service.stream_job("missing", "", ignore);
  EXPECT_EQ(error_code(missing.status()), "job_not_found");
  EXPECT_FALSE(is_retryable(missing.status()));
  EXPECT_EQ(error_code(service.stream_job("html", "", ignore).status()), "response_invalid");
}

TEST_F(ApiClientTest, BrokenStreamIsRetryable) {
  LoopbackHttpServer server([](const auto&) {
    // Promises more than it sends, then closes: the transfer breaks mid-stream.
    Response r(200, "id: 1\ndata: {\"status\":\"processing\"}\n\n",
               {{"Content-Type", "text/event-stream"}, {"Content-Length", "100000"}});
    r.send_content_length = false;
    return r;
  });
  auto service = client(server);
  int events = 0;
  auto end = service.stream_job("job_1", "", [&](const SseEvent&) {
    ++events;
    return true;
  });
  EXPECT_EQ(events, 1);
  ASSERT_FALSE(end.ok());
  EXPECT_EQ(error_code(end.status()), "stream_broken");
  EXPECT_TRUE(is_retryable(end.status()));
}

// The whole reconnect path over real HTTP: the first stream breaks after two
// events; the second connection must carry Last-Event-ID: 2 and gets the end.
TEST_F(ApiClientTest, WatchReconnectsOverHttp) {
  LoopbackHttpServer server([](const LoopbackHttpServer::Request& r) {
    if (r.header("Last-Event-ID").empty()) {
      Response first(
          200,
          "id: 1\ndata: {\"job_id\":\"job_1\",\"status\":\"processing\",\"phase\":\"encoding\",\"progress\":10}"
          "\n\nid: 2\ndata: {\"job_id\":\"job_1\",\"status\":\"processing\",\"phase\":\"encoding\","
          "\"progress\":20}\n\n",
          {{"Content-Type", "text/event-stream"}, {"Content-Length", "100000"}});
      first.send_content_length = false;
      return first;
    }
    return sse_response(
        "id: 3\ndata: {\"job_id\":\"job_1\",\"status\":\"completed\",\"phase\":\"done\","
        "\"progress\":100,\"output_url\":\"file:///o.mp4\"}\n\n");
  });
  auto service = client(server);
  SilentObserver observer;
  WatchOptions options;
  options.sleep = [](std::chrono::milliseconds) { return true; };
  auto final_state = watch_job(service, "job_1", observer, options);
  ASSERT_TRUE(final_state.ok()) << final_state.status();
  EXPECT_EQ(final_state->output_url, "file:///o.mp4");
  const auto requests = server.requests();
  ASSERT_EQ(requests.size(), 2u);
  EXPECT_EQ(requests[1].header("Last-Event-ID"), "2");
}

TEST(ErrorFromResponse, MapsStatusesAndBodies) {
  auto s = error_from_response(400, R"({"error":"preset \"x\" is unknown","code":"preset_unknown","field":"preset"})");
  EXPECT_EQ(error_code(s), "preset_unknown");
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(error_from_response(503, "{}").code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(error_code(error_from_response(503, "{}")), "http_503");
  EXPECT_EQ(error_from_response(429, "").code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(error_from_response(500, "").code(), absl::StatusCode::kInternal);
  EXPECT_EQ(error_from_response(500, "").message(), "HTTP 500");
}

}  // namespace
}  // namespace flux::cli
