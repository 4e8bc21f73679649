#include "controlplane/http/server.h"

#include <curl/curl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <future>
#include <mutex>
#include <thread>

#include "raw_client.h"

namespace flux::controlplane::http {
namespace {

using namespace std::chrono_literals;
using json = nlohmann::json;
using testing::get_request;
using testing::RawClient;

ServerOptions test_options() {
  ServerOptions options;
  options.bind = "127.0.0.1";
  options.port = 0;
  options.threads = 2;
  return options;
}

std::unique_ptr<HttpServer> start_server(Router router, ServerOptions options = test_options(), Hooks hooks = {}) {
  auto server = HttpServer::start(std::move(options), std::move(router), std::move(hooks));
  EXPECT_TRUE(server.ok()) << server.status();
  return server.ok() ? std::move(*server) : nullptr;
}

json body_of(const testing::RawResponse& response) { return json::parse(response.body); }

// Echoes what the handler was given.
Router echo_router() {
  Router router;
  router.add("GET", "/api/v1/jobs/{id}", [](const Request& request, Responder respond) {
    json headers = json::object();
    for (const auto& [name, value] : request.headers) headers[name] = value;
    respond(json_response(200, {{"id", request.params.at("id")},
                                {"query", request.query},
                                {"route", request.route},
                                {"path", request.path},
                                {"remote", request.remote_address},
                                {"headers", headers},
                                {"principal", request.principal}}));
  });
  router.add("POST", "/api/v1/jobs", [](const Request& request, Responder respond) {
    respond(json_response(202, {{"size", request.body.size()}, {"body", request.body}}));
  });
  router.add("GET", "/api/v1/jobs", [](const Request&, Responder respond) { respond(json_response(200, {})); });
  return router;
}

TEST(HttpServerTest, RoutesWithDecodedParametersQueryAndHeaders) {
  auto server = start_server(echo_router());
  RawClient client(server->port());
  ASSERT_TRUE(client.connected());
  client.send(get_request("/api/v1/jobs/job%201?limit=5&cursor=a%2Bb&x=c+d", "X-Thing: One\r\nx-thing: two\r\n"));
  const auto response = client.read_response();
  ASSERT_TRUE(response.has_value());
  EXPECT_EQ(response->status, 200);
  EXPECT_EQ(response->headers.at("content-type"), "application/json");
  const auto body = body_of(*response);
  EXPECT_EQ(body["id"], "job 1");
  EXPECT_EQ(body["query"], (json{{"limit", "5"}, {"cursor", "a+b"}, {"x", "c d"}}));
  EXPECT_EQ(body["route"], "/api/v1/jobs/{id}");
  EXPECT_EQ(body["path"], "/api/v1/jobs/job%201");
  EXPECT_EQ(body["remote"], "127.0.0.1");
  EXPECT_EQ(body["headers"]["x-thing"], "One, two");
}

TEST(HttpServerTest, UnknownRouteIs404AndWrongMethodIs405WithAllow) {
  auto server = start_server(echo_router());
  RawClient client(server->port());
  client.send(get_request("/nowhere"));
  auto response = client.read_response();
  ASSERT_TRUE(response.has_value());
  EXPECT_EQ(response->status, 404);
  EXPECT_EQ(body_of(*response)["code"], "not_found");
  EXPECT_TRUE(body_of(*response).contains("error"));

  client.send("DELETE /api/v1/jobs HTTP/1.1\r\nHost: x\r\n\r\n");
  response = client.read_response();
  ASSERT_TRUE(response.has_value());
  EXPECT_EQ(response->status, 405);
  EXPECT_EQ(response->headers.at("allow"), "GET, HEAD, POST");
  EXPECT_EQ(body_of(*response)["code"], "method_not_allowed");

  client.send(get_request("/api/v1/jobs/%zz"));
  response = client.read_response();
  ASSERT_TRUE(response.has_value());
  EXPECT_EQ(response->status, 400);
  EXPECT_EQ(body_of(*response)["code"], "bad_request");
}

// Load balancers probe with HEAD: the GET answer's status and headers, no
// body, and the kept-alive connection stays in step for the next request.
TEST(HttpServerTest, HeadAnswersLikeGetWithoutABody) {
  auto server = start_server(echo_router());
  RawClient client(server->port());
  ASSERT_TRUE(client.connected());
  client.send("HEAD /api/v1/jobs/j1 HTTP/1.1\r\nHost: x\r\n\r\n" + get_request("/api/v1/jobs/j2") +
              "HEAD /nowhere HTTP/1.1\r\nHost: x\r\n\r\n" + get_request("/api/v1/jobs/j3"));
  ASSERT_TRUE(client.read_until("\r\n\r\n"));
  const std::string head = client.buffered().substr(0, client.buffered().find("\r\n\r\n") + 4);
  EXPECT_EQ(head.rfind("HTTP/1.1 200 ", 0), 0u) << head;
  EXPECT_NE(head.find("Content-Length: "), std::string::npos) << head;
  EXPECT_EQ(head.find("Content-Length: 0\r\n"), std::string::npos) << head;  // the GET body's length
  // The very next bytes are the GET's answer: no body was sent for the HEAD.
  ASSERT_TRUE(client.read_until("\"id\":\"j2\""));
  EXPECT_EQ(client.buffered().substr(head.size(), 13), "HTTP/1.1 200 ") << client.buffered();
  // The server's own errors to a HEAD have no body either.
  ASSERT_TRUE(client.read_until("\"id\":\"j3\""));
  const std::string& all = client.buffered();
  const size_t not_found = all.find("HTTP/1.1 404 ");
  ASSERT_NE(not_found, std::string::npos) << all;
  const size_t next = all.find("\r\n\r\n", not_found) + 4;
  EXPECT_EQ(all.substr(next, 13), "HTTP/1.1 200 ") << all;
}

TEST(HttpServerTest, BodyOverTheCapIs413ByContentLengthBeforeReadingIt) {
  ServerOptions options = test_options();
  options.max_body_bytes = 1024;
  auto server = start_server(echo_router(), options);
  RawClient client(server->port());
  client.send(
      "POST /api/v1/jobs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n");
  const auto response = client.read_response();
  ASSERT_TRUE(response.has_value());
  EXPECT_EQ(response->status, 413);
  EXPECT_EQ(body_of(*response)["code"], "body_too_large");
  EXPECT_TRUE(client.wait_closed());

  // At the cap exactly: accepted.
  RawClient exact(server->port());
  exact.send("POST /api/v1/jobs HTTP/1.1\r\nHost: x\r\nContent-Length: 1024\r\n\r\n" + std::string(1024, 'a'));
  const auto accepted = exact.read_response();
  ASSERT_TRUE(accepted.has_value());
  EXPECT_EQ(accepted->status, 202);
  EXPECT_EQ(body_of(*accepted)["size"], 1024);
}

TEST(HttpServerTest, ChunkedBodyOverTheCapIs413) {
  ServerOptions options = test_options();
  options.max_body_bytes = 1024;
  auto server = start_server(echo_router(), options);
  RawClient client(server->port());
  std::string request = "POST /api/v1/jobs HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n";
  for (int i = 0; i < 8; ++i) request += "200\r\n" + std::string(512, 'b') + "\r\n";
  request += "0\r\n\r\n";
  client.send(request);
  const auto response = client.read_response();
  ASSERT_TRUE(response.has_value());
  EXPECT_EQ(response->status, 413);
  EXPECT_EQ(body_of(*response)["code"], "body_too_large");

  // A small chunked body is reassembled.
  RawClient small(server->port());
  small.send(
      "POST /api/v1/jobs HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n");
  const auto accepted = small.read_response();
  ASSERT_TRUE(accepted.has_value());
  EXPECT_EQ(accepted->status, 202);
  EXPECT_EQ(body_of(*accepted)["body"], "abcde");
}

// What a chunked body carries besides its data (extensions, trailer fields)
// is bounded too: both used to be read for as long as the client sent them.
TEST(HttpServerTest, EndlessTrailersAndChunkExtensionsAreCut) {
  ServerOptions options = test_options();
  options.max_body_bytes = 1024;
  options.max_header_bytes = 2048;
  auto server = start_server(echo_router(), options);
  const std::string head = "POST /api/v1/jobs HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n";

  RawClient trailers(server->port());
  trailers.send(head + "2\r\n{}\r\n0\r\n");
  for (int i = 0; i < 20000 && trailers.send("X-Trailer: vvvvvvvvvvvvvvvv\r\n"); ++i) {
  }
  auto response = trailers.read_response();
  ASSERT_TRUE(response.has_value()) << trailers.buffered().substr(0, 200);
  EXPECT_EQ(response->status, 400);
  EXPECT_EQ(body_of(*response)["code"], "bad_request");

  // Many chunks, each with a long extension: complete, parsed one by one,
  // and no body data to speak of.
  RawClient extensions(server->port());
  extensions.send(head);
  for (int i = 0; i < 2000 && extensions.send("1;e=" + std::string(200, 'v') + "\r\nx\r\n"); ++i) {
    if (i % 100 == 0) std::this_thread::sleep_for(1ms);
  }
  response = extensions.read_response();
  ASSERT_TRUE(response.has_value()) << extensions.buffered().substr(0, 200);
  EXPECT_EQ(response->status, 413);
  EXPECT_EQ(body_of(*response)["code"], "body_too_large");

  RawClient extension(server->port());
  extension.send(head + "2");
  for (int i = 0; i < 20000 && extension.send(";ext=vvvvvvvvvvvvvvvvvvvvvvvv"); ++i) {
  }
  response = extension.read_response();
  ASSERT_TRUE(response.has_value()) << extension.buffered().substr(0, 200);
  EXPECT_EQ(response->status, 400);
  EXPECT_EQ(body_of(*response)["code"], "bad_request");

  // Small extensions and trailers are still fine.
  RawClient fine(server->port());
  fine.send(head + "3;a=b\r\nabc\r\n0\r\nX-T: 1\r\n\r\n");
  response = fine.read_response();
  ASSERT_TRUE(response.has_value());
  EXPECT_EQ(response->status, 202);
  EXPECT_EQ(body_of(*response)["body"], "abc");
}

// RFC 9112 6.1: a Transfer-Encoding whose last coding is not chunked leaves
// the body length unknowable; reading none and parsing the rest as the next
// request is how requests get smuggled past a proxy.
TEST(HttpServerTest, TransferEncodingNotEndingInChunkedIs400AndClosed) {
  auto server = start_server(echo_router());
  for (const char* coding : {"gzip", "chunked, gzip", "identity", "xchunked"}) {
    RawClient client(server->port());
    client.send(std::string("POST /api/v1/jobs HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: ") + coding +
                "\r\n\r\n0\r\n\r\nGET /api/v1/jobs/smuggled HTTP/1.1\r\nHost: x\r\n\r\n");
    const auto response = client.read_response();
    ASSERT_TRUE(response.has_value()) << coding;
    EXPECT_EQ(response->status, 400) << coding;
    EXPECT_EQ(body_of(*response)["code"], "bad_request") << coding;
    EXPECT_TRUE(client.wait_closed()) << coding;
    EXPECT_EQ(client.buffered().find("smuggled"), std::string::npos) << coding;
  }
}

TEST(HttpServerTest, HeadersOverTheCapAre431) {
  ServerOptions options = test_options();
  options.max_header_bytes = 4096;
  auto server = start_server(echo_router(), options);
  RawClient client(server->port());
  client.send(get_request("/api/v1/jobs/x", "X-Big: " + std::string(8000, 'h') + "\r\n"));
  const auto response = client.read_response();
  ASSERT_TRUE(response.has_value());
  EXPECT_EQ(response->status, 431);
  EXPECT_EQ(body_of(*response)["code"], "header_too_large");
  EXPECT_TRUE(client.wait_closed());
}

// The cap is on the head as a whole: many small fields, each complete and
// arriving in separate writes, used to pass it (Beast 1.74 only checks what
// is left unparsed of each read) and pile up until the header timeout.
TEST(HttpServerTest, ManySmallHeaderFieldsOverTheCapAre431) {
  ServerOptions options = test_options();
  options.max_header_bytes = 4096;
  auto server = start_server(echo_router(), options);
  RawClient client(server->port());
  ASSERT_TRUE(client.send("GET /api/v1/jobs/x HTTP/1.1\r\nHost: x\r\n"));
  bool cut = false;
  for (int i = 0; i < 2000 && !cut; ++i) {
    cut = !client.send("X-Small-" + std::to_string(i) + ": v\r\n");
    if (i % 50 == 0) std::this_thread::sleep_for(1ms);  // separate reads on the server side
  }
  client.send("\r\n");
  const auto response = client.read_response();
  ASSERT_TRUE(response.has_value()) << client.buffered().substr(0, 300);
  EXPECT_EQ(response->status, 431);
  EXPECT_EQ(body_of(*response)["code"], "header_too_large");
  EXPECT_TRUE(client.wait_closed());

  // A head just under the cap, sent in pieces, is still served.
  RawClient fine(server->port());
  ASSERT_TRUE(fine.send("GET /api/v1/jobs/y HTTP/1.1\r\nHost: x\r\n"));
  for (int i = 0; i < 100; ++i) fine.send("X-F" + std::to_string(i) + ": v\r\n");
  fine.send("\r\n");
  const auto served = fine.read_response();
  ASSERT_TRUE(served.has_value());
  EXPECT_EQ(served->status, 200);
  EXPECT_EQ(body_of(*served)["id"], "y");
}

TEST(HttpServerTest, MalformedRequestIs400) {
  auto server = start_server(echo_router());
  RawClient client(server->port());
  client.send("THIS IS NOT HTTP\r\n\r\n");
  const auto response = client.read_response();
  ASSERT_TRUE(response.has_value());
  EXPECT_EQ(response->status, 400);
  EXPECT_EQ(body_of(*response)["code"], "bad_request");
  EXPECT_TRUE(client.wait_closed());
}

TEST(HttpServerTest, ClientStallingMidHeaderIsCutWhileOthersAreServed) {
  ServerOptions options = test_options();
  options.header_timeout = 300ms;
  auto server = start_server(echo_router(), options);
  RawClient slow(server->port());
  const auto started = std::chrono::steady_clock::now();
  slow.send("GET /api/v1/jobs/x HTTP/1.1\r\nHost: x\r\nX-Half: ");

  // Meanwhile another client is served at once.
  RawClient other(server->port());
  other.send(get_request("/api/v1/jobs/y"));
  const auto response = other.read_response(1000ms);
  ASSERT_TRUE(response.has_value());
  EXPECT_EQ(response->status, 200);

  EXPECT_TRUE(slow.wait_closed(3000ms));
  const auto elapsed = std::chrono::steady_clock::now() - started;
  EXPECT_GE(elapsed, 250ms);
  EXPECT_LT(elapsed, 2000ms);
  EXPECT_EQ(slow.buffered(), "");  // cut without an answer

  // A connection that never sends anything is cut too.
  RawClient silent(server->port());
  EXPECT_TRUE(silent.wait_closed(3000ms));
}

TEST(HttpServerTest, SlowBodyIsCutAfterTheBodyTimeout) {
  ServerOptions options = test_options();
  options.body_timeout = 300ms;
  auto server = start_server(echo_router(), options);
  RawClient client(server->port());
  client.send("POST /api/v1/jobs HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nonly a little");
  EXPECT_TRUE(client.wait_closed(3000ms));
}

TEST(HttpServerTest, KeepAliveServesSeveralRequestsOnOneConnectionAndIdleOnesAreClosed) {
  ServerOptions options = test_options();
  options.idle_timeout = 400ms;
  auto server = start_server(echo_router(), options);
  RawClient client(server->port());
  client.send(get_request("/api/v1/jobs/1"));
  auto first = client.read_response();
  ASSERT_TRUE(first.has_value());
  EXPECT_EQ(body_of(*first)["id"], "1");
  client.send(get_request("/api/v1/jobs/2"));
  auto second = client.read_response();
  ASSERT_TRUE(second.has_value());
  EXPECT_EQ(body_of(*second)["id"], "2");
  // Pipelined: both in one write, answered in order.
  client.send(get_request("/api/v1/jobs/3") + get_request("/api/v1/jobs/4"));
  auto third = client.read_response();
  auto fourth = client.read_response();
  ASSERT_TRUE(third.has_value());
  ASSERT_TRUE(fourth.has_value());
  EXPECT_EQ(body_of(*third)["id"], "3");
  EXPECT_EQ(body_of(*fourth)["id"], "4");
  EXPECT_EQ(server->open_connections(), 1u);
  EXPECT_TRUE(client.wait_closed(3000ms));  // idle past idle_timeout

  RawClient closing(server->port());
  closing.send(get_request("/api/v1/jobs/5", "Connection: close\r\n"));
  auto last = closing.read_response();
  ASSERT_TRUE(last.has_value());
  EXPECT_EQ(last->headers.at("connection"), "close");
  EXPECT_TRUE(closing.wait_closed(1000ms));
}

TEST(HttpServerTest, ConnectionsBeyondTheCapAre503AndRoomComesBackWhenOneCloses) {
  ServerOptions options = test_options();
  options.max_connections = 2;
  auto server = start_server(echo_router(), options);
  // Two idle keep-alive connections fill the server (each answered once, so
  // both are surely adopted before the third arrives).
  RawClient first(server->port());
  RawClient second(server->port());
  for (RawClient* client : {&first, &second}) {
    client->send(get_request("/api/v1/jobs/1"));
    auto answer = client->read_response();
    ASSERT_TRUE(answer.has_value());
    EXPECT_EQ(answer->status, 200);
  }
  RawClient third(server->port());
  third.send(get_request("/api/v1/jobs/3"));
  auto refused = third.read_response();
  ASSERT_TRUE(refused.has_value());
  EXPECT_EQ(refused->status, 503);
  EXPECT_EQ(refused->headers.at("retry-after"), "1");
  EXPECT_EQ(body_of(*refused)["code"], "too_many_connections");
  EXPECT_TRUE(third.wait_closed(1000ms));
  EXPECT_EQ(server->open_connections(), 2u);

  first.close();
  auto deadline = std::chrono::steady_clock::now() + 3s;
  while (server->open_connections() > 1 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(10ms);
  }
  RawClient fourth(server->port());
  fourth.send(get_request("/api/v1/jobs/4"));
  auto served = fourth.read_response();
  ASSERT_TRUE(served.has_value());
  EXPECT_EQ(served->status, 200);
  EXPECT_EQ(body_of(*served)["id"], "4");
}

TEST(HttpServerTest, HandlerMayAnswerFromAnotherThread) {
  Router router;
  std::vector<std::thread> workers;
  std::mutex workers_mutex;
  router.add("GET", "/later", [&](const Request&, Responder respond) {
    std::lock_guard lock(workers_mutex);
    workers.emplace_back([respond] {
      std::this_thread::sleep_for(50ms);
      respond(json_response(200, {{"from", "worker"}}));
      respond(json_response(500, {}));  // a second answer is ignored
    });
  });
  auto server = start_server(std::move(router));
  RawClient client(server->port());
  client.send(get_request("/later") + get_request("/later"));
  for (int i = 0; i < 2; ++i) {
    const auto response = client.read_response();
    ASSERT_TRUE(response.has_value());
    EXPECT_EQ(response->status, 200);
    EXPECT_EQ(body_of(*response)["from"], "worker");
  }
  server->stop();
  for (auto& worker : workers) worker.join();
}

TEST(HttpServerTest, HandlerThatThrowsOrDropsItsResponderGets500) {
  Router router;
  router.add("GET", "/throws", [](const Request&, Responder) { throw std::runtime_error("boom"); });
  router.add("GET", "/drops", [](const Request&, Responder) {});
  std::thread dropper;
  router.add("GET", "/drops-later", [&](const Request&, Responder respond) {
    dropper = std::thread([respond = std::move(respond)]() mutable {
      std::this_thread::sleep_for(20ms);
      respond = nullptr;
    });
  });
  auto server = start_server(std::move(router));
  for (const char* path : {"/throws", "/drops", "/drops-later"}) {
    RawClient client(server->port());
    client.send(get_request(path));
    const auto response = client.read_response();
    ASSERT_TRUE(response.has_value()) << path;
    EXPECT_EQ(response->status, 500) << path;
    EXPECT_EQ(body_of(*response)["code"], "internal") << path;
  }
  dropper.join();
}

TEST(HttpServerTest, HooksAuthorizeAndReportEveryResponse) {
  struct Report {
    std::string method, route;
    int status;
  };
  std::mutex mutex;
  std::vector<Report> reports;
  Hooks hooks;
  hooks.before_handler = [](Request& request) -> std::optional<Response> {
    const std::string* authorization = request.header("authorization");
    if (authorization == nullptr || *authorization != "Bearer good") {
      Response refusal = error_response(401, "unauthorized", "missing or invalid API key");
      refusal.headers.emplace_back("WWW-Authenticate", "Bearer");
      return refusal;
    }
    request.principal = "key-1";
    return std::nullopt;
  };
  hooks.on_request_done = [&](std::string_view method, std::string_view route, int status, double seconds) {
    EXPECT_GE(seconds, 0.0);
    std::lock_guard lock(mutex);
    reports.push_back({std::string(method), std::string(route), status});
  };
  auto server = start_server(echo_router(), test_options(), hooks);
  RawClient client(server->port());
  client.send(get_request("/api/v1/jobs/a"));
  auto response = client.read_response();
  ASSERT_TRUE(response.has_value());
  EXPECT_EQ(response->status, 401);
  EXPECT_EQ(response->headers.at("www-authenticate"), "Bearer");
  client.send(get_request("/api/v1/jobs/a", "Authorization: Bearer good\r\n"));
  response = client.read_response();
  ASSERT_TRUE(response.has_value());
  EXPECT_EQ(response->status, 200);
  EXPECT_EQ(body_of(*response)["principal"], "key-1");
  client.send(get_request("/missing"));
  ASSERT_TRUE(client.read_response().has_value());
  server->stop();

  std::lock_guard lock(mutex);
  ASSERT_EQ(reports.size(), 3u);
  EXPECT_EQ(reports[0].route, "/api/v1/jobs/{id}");
  EXPECT_EQ(reports[0].status, 401);
  EXPECT_EQ(reports[1].status, 200);
  EXPECT_EQ(reports[1].method, "GET");
  EXPECT_EQ(reports[2].route, "unmatched");
  EXPECT_EQ(reports[2].status, 404);
}

TEST(HttpServerTest, GracefulStopFinishesAnInFlightResponseThenRefusesConnections) {
  Router router;
  std::thread worker;
  std::promise<void> handler_started;
  router.add("GET", "/slow", [&](const Request&, Responder respond) {
    handler_started.set_value();
    worker = std::thread([respond] {
      std::this_thread::sleep_for(300ms);
      respond(json_response(200, {{"done", true}}));
    });
  });
  router.add("GET", "/fast", [](const Request&, Responder respond) { respond(json_response(200, {})); });
  auto server = start_server(std::move(router));
  const uint16_t port = server->port();

  RawClient idle(port);  // kept alive, between requests
  idle.send(get_request("/fast"));
  ASSERT_TRUE(idle.read_response().has_value());

  RawClient client(port);
  client.send(get_request("/slow"));
  handler_started.get_future().wait();
  const auto started = std::chrono::steady_clock::now();
  server->stop();
  const auto stop_took = std::chrono::steady_clock::now() - started;

  const auto response = client.read_response(1000ms);
  ASSERT_TRUE(response.has_value());
  EXPECT_EQ(response->status, 200);
  EXPECT_EQ(body_of(*response)["done"], true);
  EXPECT_EQ(response->headers.at("connection"), "close");
  EXPECT_TRUE(client.wait_closed(1000ms));
  EXPECT_TRUE(idle.wait_closed(1000ms));
  EXPECT_GE(stop_took, 200ms);  // it waited for the response
  EXPECT_LT(stop_took, 5000ms);

  RawClient late(port);
  EXPECT_FALSE(late.connected() && late.send(get_request("/fast")) && late.read_response(500ms).has_value());
  worker.join();
}

TEST(HttpServerTest, StopGivesUpOnAHandlerThatNeverAnswers) {
  Router router;
  Responder kept;
  std::promise<void> handler_started;
  router.add("GET", "/never", [&](const Request&, Responder respond) {
    kept = std::move(respond);
    handler_started.set_value();
  });
  ServerOptions options = test_options();
  options.stop_timeout = 200ms;
  auto server = start_server(std::move(router), options);
  RawClient client(server->port());
  client.send(get_request("/never"));
  handler_started.get_future().wait();
  const auto started = std::chrono::steady_clock::now();
  server->stop();
  EXPECT_LT(std::chrono::steady_clock::now() - started, 2000ms);
  server.reset();
  kept(json_response(200, {}));  // after the server is gone: ignored, not a crash
  kept = nullptr;
}

TEST(HttpServerTest, StartFailsClearlyOnABadAddressOrABusyPort) {
  ServerOptions options = test_options();
  options.bind = "not-an-ip";
  auto bad = HttpServer::start(options, Router{});
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);

  auto first = start_server(Router{});
  options = test_options();
  options.port = first->port();
  auto busy = HttpServer::start(options, Router{});
  EXPECT_FALSE(busy.ok());
}

size_t discard(char*, size_t size, size_t count, void*) { return size * count; }

// A real client: curl sends "Expect: 100-continue" for bodies over 1 KiB and
// would wait a second for the interim answer if the server did not send it.
TEST(HttpServerTest, CurlPostOfALargerBodyIsAnsweredPromptly) {
  auto server = start_server(echo_router());
  const std::string body = json{{"input_url", std::string(2000, 'u')}}.dump();
  CURL* curl = curl_easy_init();
  ASSERT_NE(curl, nullptr);
  const std::string url = "http://127.0.0.1:" + std::to_string(server->port()) + "/api/v1/jobs";
  curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
  curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body.c_str());
  curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE, static_cast<long>(body.size()));
  curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, discard);
  curl_slist* headers = curl_slist_append(nullptr, "Expect: 100-continue");
  curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
  const auto started = std::chrono::steady_clock::now();
  ASSERT_EQ(curl_easy_perform(curl), CURLE_OK);
  const auto elapsed = std::chrono::steady_clock::now() - started;
  long status = 0;
  curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
  curl_slist_free_all(headers);
  curl_easy_cleanup(curl);
  EXPECT_EQ(status, 202);
  EXPECT_LT(elapsed, 800ms);
}

}  // namespace
}  // namespace flux::controlplane::http
