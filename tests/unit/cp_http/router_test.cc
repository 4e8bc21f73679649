#include "controlplane/http/router.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace flux::controlplane::http {
namespace {

using Kind = Router::Match::Kind;

Router make_router() {
  Router router;
  const Handler noop = [](const Request&, Responder) {};
  router.add("POST", "/api/v1/jobs", noop);
  router.add("GET", "/api/v1/jobs", noop);
  router.add("GET", "/api/v1/jobs/{id}", noop);
  router.add("POST", "/api/v1/jobs/{id}/cancel", noop);
  router.add("GET", "/api/v1/jobs/export", noop);
  router.add_sse("GET", "/api/v1/jobs/{id}/stream",
                 [](const Request&) -> std::variant<Response, SseStream> { return Response{}; });
  router.add("GET", "/health", noop);
  return router;
}

TEST(RouterTest, MatchesLiteralAndParameterSegments) {
  const Router router = make_router();
  auto match = router.match("GET", "/api/v1/jobs/job_123");
  ASSERT_EQ(match.kind, Kind::kFound);
  EXPECT_EQ(match.route->pattern, "/api/v1/jobs/{id}");
  EXPECT_EQ(match.params.at("id"), "job_123");

  match = router.match("POST", "/api/v1/jobs/job_9/cancel");
  ASSERT_EQ(match.kind, Kind::kFound);
  EXPECT_EQ(match.params.at("id"), "job_9");

  match = router.match("GET", "/api/v1/jobs/j/stream");
  ASSERT_EQ(match.kind, Kind::kFound);
  EXPECT_TRUE(match.route->sse_handler != nullptr);
  EXPECT_TRUE(match.route->handler == nullptr);

  EXPECT_EQ(router.match("GET", "/health").kind, Kind::kFound);
}

TEST(RouterTest, PrefersTheMostLiteralRoute) {
  const Router router = make_router();
  const auto match = router.match("GET", "/api/v1/jobs/export");
  ASSERT_EQ(match.kind, Kind::kFound);
  EXPECT_EQ(match.route->pattern, "/api/v1/jobs/export");
}

TEST(RouterTest, DecodesParametersSegmentBySegment) {
  const Router router = make_router();
  const auto match = router.match("GET", "/api/v1/jobs/a%20b%C3%A9c");
  ASSERT_EQ(match.kind, Kind::kFound);
  EXPECT_EQ(match.params.at("id"),
            "a b\xC3\xA9"
            "c");
  // Decoded once: a double-encoded dot stays a literal "%2e".
  EXPECT_EQ(router.match("GET", "/api/v1/jobs/%252e%252e").params.at("id"), "%2e%2e");
  EXPECT_EQ(router.match("GET", "/api/v1/jobs/%zz").kind, Kind::kBadPath);
  EXPECT_EQ(router.match("GET", "/api/v1/jobs/%00").kind, Kind::kBadPath);
  EXPECT_EQ(router.match("GET", "api/v1/jobs").kind, Kind::kBadPath);
  EXPECT_EQ(router.match("GET", "").kind, Kind::kBadPath);
  // Encoded literals are not the literal.
  EXPECT_EQ(router.match("GET", "/%61pi/v1/jobs").kind, Kind::kNotFound);
}

TEST(RouterTest, TraversalInAnyEncodingIsABadPath) {
  const Router router = make_router();
  for (const char* path :
       {"/api/v1/jobs/..", "/api/v1/jobs/.", "/api/v1/jobs/%2e%2e", "/api/v1/jobs/%2E.",
        "/api/v1/jobs/..%2f..%2fetc%2fpasswd", "/api/v1/jobs/%2e%2e%2f", "/api/v1/jobs/..%5c", "/api/v1/jobs/..\\..\\x",
        "/api/v1/jobs/%c0%ae%c0%ae", "/api/v1/jobs/%c0%af", "/api/v1/jobs/%e0%80%ae", "/api/v1/jobs/%ed%a0%80",
        "/api/v1/jobs/%ff", "/api/v1/jobs/a%0d%0ab", "/api/v1/jobs/a%7f", "/api/v1/jobs/x/../../../etc/passwd",
        "/../health", "/./health", "/api/v1/jobs/%2e%2e/cancel"}) {
    EXPECT_EQ(router.match("GET", path).kind, Kind::kBadPath) << path;
    EXPECT_EQ(router.match("POST", path).kind, Kind::kBadPath) << path;
  }
}

TEST(RouterTest, HeadIsServedByThePlainGetRoute) {
  const Router router = make_router();
  auto match = router.match("HEAD", "/health");
  ASSERT_EQ(match.kind, Kind::kFound);
  EXPECT_EQ(match.route->pattern, "/health");
  match = router.match("HEAD", "/api/v1/jobs/j1");
  ASSERT_EQ(match.kind, Kind::kFound);
  EXPECT_EQ(match.params.at("id"), "j1");
  // Not an SSE stream, and not a POST-only route.
  match = router.match("HEAD", "/api/v1/jobs/j1/stream");
  EXPECT_EQ(match.kind, Kind::kMethodNotAllowed);
  EXPECT_EQ(match.allow, "GET");
  match = router.match("HEAD", "/api/v1/jobs/j1/cancel");
  EXPECT_EQ(match.kind, Kind::kMethodNotAllowed);
  EXPECT_EQ(match.allow, "POST");
}

TEST(RouterTest, UnknownPathsAndWrongMethods) {
  const Router router = make_router();
  EXPECT_EQ(router.match("GET", "/nope").kind, Kind::kNotFound);
  EXPECT_EQ(router.match("GET", "/api/v1/jobs/").kind, Kind::kNotFound);  // empty parameter
  EXPECT_EQ(router.match("GET", "/api/v1/jobs//cancel").kind, Kind::kNotFound);
  EXPECT_EQ(router.match("GET", "/health/").kind, Kind::kNotFound);

  auto match = router.match("DELETE", "/api/v1/jobs");
  EXPECT_EQ(match.kind, Kind::kMethodNotAllowed);
  EXPECT_EQ(match.allow, "GET, HEAD, POST");
  match = router.match("GET", "/api/v1/jobs/x/cancel");
  EXPECT_EQ(match.kind, Kind::kMethodNotAllowed);
  EXPECT_EQ(match.allow, "POST");
}

TEST(RouterTest, ParsesQueries) {
  auto query = parse_query("status=queued&limit=5&cursor=a%2Bb&empty&x=a+b&status=failed");
  ASSERT_TRUE(query.has_value());
  EXPECT_EQ(query->at("status"), "queued");
  EXPECT_EQ(query->at("limit"), "5");
  EXPECT_EQ(query->at("cursor"), "a+b");
  EXPECT_EQ(query->at("empty"), "");
  EXPECT_EQ(query->at("x"), "a b");
  EXPECT_TRUE(parse_query("")->empty());
  EXPECT_EQ(parse_query("a=%"), std::nullopt);
  EXPECT_EQ(parse_query("a=%4"), std::nullopt);
  EXPECT_EQ(percent_decode("%41%42c", false), "ABc");
  EXPECT_EQ(percent_decode("a+b", false), "a+b");
}

TEST(ResponseTest, ErrorBodyFollowsTheSpec) {
  const Response response = error_response(400, "invalid_priority", "priority must be -10..10", "priority");
  EXPECT_EQ(response.status, 400);
  EXPECT_EQ(response.content_type, "application/json");
  const auto body = nlohmann::json::parse(response.body);
  EXPECT_EQ(body, (nlohmann::json{
                      {"error", "priority must be -10..10"}, {"code", "invalid_priority"}, {"field", "priority"}}));
  EXPECT_FALSE(nlohmann::json::parse(error_response(404, "not_found", "x").body).contains("field"));
}

}  // namespace
}  // namespace flux::controlplane::http
