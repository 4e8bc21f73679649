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
  const auto match = router.match("GET", "/api/v1/jobs/a%2Fb%20c");
  ASSERT_EQ(match.kind, Kind::kFound);
  EXPECT_EQ(match.params.at("id"), "a/b c");
  EXPECT_EQ(router.match("GET", "/api/v1/jobs/%zz").kind, Kind::kBadPath);
  EXPECT_EQ(router.match("GET", "/api/v1/jobs/%00").kind, Kind::kBadPath);
  EXPECT_EQ(router.match("GET", "api/v1/jobs").kind, Kind::kBadPath);
  EXPECT_EQ(router.match("GET", "").kind, Kind::kBadPath);
  // Encoded literals are not the literal.
  EXPECT_EQ(router.match("GET", "/%61pi/v1/jobs").kind, Kind::kNotFound);
}

TEST(RouterTest, UnknownPathsAndWrongMethods) {
  const Router router = make_router();
  EXPECT_EQ(router.match("GET", "/nope").kind, Kind::kNotFound);
  EXPECT_EQ(router.match("GET", "/api/v1/jobs/").kind, Kind::kNotFound);  // empty parameter
  EXPECT_EQ(router.match("GET", "/api/v1/jobs//cancel").kind, Kind::kNotFound);
  EXPECT_EQ(router.match("GET", "/health/").kind, Kind::kNotFound);

  auto match = router.match("DELETE", "/api/v1/jobs");
  EXPECT_EQ(match.kind, Kind::kMethodNotAllowed);
  EXPECT_EQ(match.allow, "GET, POST");
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
