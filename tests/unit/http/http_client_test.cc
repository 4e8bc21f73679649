#include "shared/http/http_client.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <sstream>
#include <string>
#include <thread>

#include "shared/core/error.h"
#include "support/loopback_http_server.h"

namespace flux::http {
namespace {

namespace fs = std::filesystem;
using flux::testing::LoopbackHttpServer;
using Response = LoopbackHttpServer::Response;
using namespace std::chrono_literals;

std::string read_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// Bytes that are not text, so a body mangled on the way (truncated,
// transcoded, with a header left in) cannot pass for the original.
std::string binary_body(size_t size) {
  std::string body(size, '\0');
  uint32_t x = 12345;
  for (auto& c : body) {
    x = x * 1103515245u + 12345u;
    c = static_cast<char>(x >> 24);
  }
  return body;
}

class DownloadTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char pattern[] = "/tmp/flux-http-test-XXXXXX";
    ASSERT_NE(mkdtemp(pattern), nullptr);
    dir_ = pattern;
    dest_ = dir_ / "input.mp4";
  }
  void TearDown() override { fs::remove_all(dir_); }

  // Loopback is forbidden; the test server's address 127.0.0.1 is let
  // through by the test-only allow-list, every other forbidden one is not.
  static DownloadOptions strict_options() {
    DownloadOptions options;
    options.policy.test_only_allowed_addresses = {"127.0.0.1"};
    options.total_timeout = 10s;
    return options;
  }
  bool dir_is_empty() const { return fs::is_empty(dir_); }

  fs::path dir_, dest_;
};

TEST_F(DownloadTest, SavesTheBodyIntact) {
  const std::string body = binary_body(300 * 1024 + 7);
  LoopbackHttpServer server([&](const auto&) { return Response{200, body}; });
  const absl::Status status = download_to_file(server.url("/clip.mp4"), dest_, strict_options(), nullptr);
  ASSERT_TRUE(status.ok()) << status;
  EXPECT_EQ(read_file(dest_), body);
  EXPECT_EQ(std::distance(fs::directory_iterator(dir_), fs::directory_iterator()), 1);  // no temp file left
  ASSERT_EQ(server.requests().size(), 1u);
  EXPECT_EQ(server.requests()[0].path, "/clip.mp4");
}

TEST_F(DownloadTest, AllowPrivateReachesLoopback) {
  LoopbackHttpServer server([](const auto&) { return Response{200, "ok"}; });
  DownloadOptions options;
  options.policy.allow_private = true;
  ASSERT_TRUE(download_to_file(server.url("/a"), dest_, options, nullptr).ok());
  EXPECT_EQ(read_file(dest_), "ok");
}

// ALLOW_PRIVATE_INPUTS opens loopback and private networks, never the cloud
// metadata service, even when a harmless-looking name (or a redirect) leads
// there: the refusal happens on the address curl is about to connect to.
TEST_F(DownloadTest, AllowPrivateNeverReachesMetadataAddresses) {
  LoopbackHttpServer front([](const LoopbackHttpServer::Request&) {
    return Response{302, "moved", {{"Location", "http://metadata-alias.example/latest/meta-data/"}}};
  });
  DownloadOptions options;
  options.policy.allow_private = true;
  options.total_timeout = 10s;
  options.test_only_resolve = {"metadata-alias.example:80:169.254.169.254", "aws6.example:80:[fd00:ec2::254]"};
  for (const char* url : {"http://metadata-alias.example/latest/meta-data/", "http://aws6.example/"}) {
    ASSERT_TRUE(check_url(url, options.policy).ok()) << url;  // the text alone passes
    const absl::Status status = download_to_file(url, dest_, options, nullptr);
    EXPECT_EQ(flux::error_code(status), "url_address_forbidden") << url << ": " << status;
  }
  const absl::Status redirected = download_to_file(front.url("/r"), dest_, options, nullptr);
  EXPECT_EQ(flux::error_code(redirected), "url_address_forbidden") << redirected;
  EXPECT_NE(std::string(redirected.message()).find("169.254.169.254"), std::string::npos) << redirected;
  EXPECT_TRUE(dir_is_empty());
}

TEST_F(DownloadTest, NotFoundAndGoneAreInputNotFound) {
  LoopbackHttpServer server([](const LoopbackHttpServer::Request& r) {
    return Response{r.path == "/gone" ? 410 : 404, "<html>no such thing</html>"};
  });
  for (const char* path : {"/missing", "/gone"}) {
    const absl::Status status = download_to_file(server.url(path), dest_, strict_options(), nullptr);
    EXPECT_EQ(flux::error_code(status), "input_not_found") << status;
    EXPECT_EQ(status.code(), absl::StatusCode::kNotFound);
  }
  EXPECT_TRUE(dir_is_empty());
}

TEST_F(DownloadTest, ServerErrorsAreTransientClientErrorsAreNot) {
  LoopbackHttpServer server([](const LoopbackHttpServer::Request& r) {
    return Response{r.path == "/busy" ? 503 : 403, "no"};
  });
  const absl::Status busy = download_to_file(server.url("/busy"), dest_, strict_options(), nullptr);
  EXPECT_EQ(flux::error_code(busy), "input_download_failed");
  EXPECT_EQ(busy.code(), absl::StatusCode::kUnavailable);
  EXPECT_NE(std::string(busy.message()).find("503"), std::string::npos) << busy;
  const absl::Status denied = download_to_file(server.url("/denied"), dest_, strict_options(), nullptr);
  EXPECT_EQ(flux::error_code(denied), "input_download_failed");
  EXPECT_EQ(denied.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(dir_is_empty());
}

TEST_F(DownloadTest, SizeCapWithAndWithoutContentLength) {
  const std::string body = binary_body(256 * 1024);
  LoopbackHttpServer server([&](const LoopbackHttpServer::Request& r) {
    Response response{200, body};
    response.send_content_length = r.path == "/declared";
    return response;
  });
  DownloadOptions options = strict_options();
  options.max_bytes = 100 * 1024;
  for (const char* path : {"/declared", "/undeclared"}) {
    const absl::Status status = download_to_file(server.url(path), dest_, options, nullptr);
    EXPECT_EQ(flux::error_code(status), "input_too_large") << path << ": " << status;
    EXPECT_TRUE(dir_is_empty()) << path;
  }
  options.max_bytes = body.size();  // exactly at the cap is fine
  ASSERT_TRUE(download_to_file(server.url("/undeclared"), dest_, options, nullptr).ok());
  EXPECT_EQ(read_file(dest_), body);
}

TEST_F(DownloadTest, LoopbackRefusedBeforeAnyConnection) {
  LoopbackHttpServer server([](const auto&) { return Response{200, "secret"}; });
  DownloadOptions options;  // allow_private = false, nothing exempted
  const absl::Status status = download_to_file(server.url("/a"), dest_, options, nullptr);
  EXPECT_EQ(flux::error_code(status), "url_address_forbidden") << status;
  const std::string spelled = "http://2130706433:" + std::to_string(server.port()) + "/a";
  EXPECT_EQ(flux::error_code(download_to_file(spelled, dest_, options, nullptr)), "url_address_forbidden");
  std::this_thread::sleep_for(50ms);
  EXPECT_EQ(server.connections(), 0);
  EXPECT_TRUE(dir_is_empty());
}

// A name that looks public but resolves to loopback (DNS rebinding): only the
// check on the address curl connects to can catch it.
TEST_F(DownloadTest, NameResolvingToForbiddenAddressRefusedAtConnect) {
  LoopbackHttpServer server([](const auto&) { return Response{200, "secret"}; });
  DownloadOptions options;
  const std::string port = std::to_string(server.port());
  options.test_only_resolve = {"public.example:" + port + ":127.0.0.1"};
  const std::string url = "http://public.example:" + port + "/a";
  ASSERT_TRUE(check_url(url, options.policy).ok());  // the text alone passes
  const absl::Status status = download_to_file(url, dest_, options, nullptr);
  EXPECT_EQ(flux::error_code(status), "url_address_forbidden") << status;
  EXPECT_NE(std::string(status.message()).find("127.0.0.1"), std::string::npos) << status;
  std::this_thread::sleep_for(50ms);
  EXPECT_EQ(server.connections(), 0);
  EXPECT_TRUE(dir_is_empty());

  // Same name, same server, address allowed: it downloads, so the refusal
  // above was the address check and nothing else.
  options.policy.test_only_allowed_addresses = {"127.0.0.1"};
  ASSERT_TRUE(download_to_file(url, dest_, options, nullptr).ok());
  EXPECT_EQ(read_file(dest_), "secret");
}

TEST_F(DownloadTest, RedirectsAreFollowedAndEachHopRechecked) {
  // 127.0.0.2 is loopback too, and not in the test allow-list: forbidden.
  LoopbackHttpServer internal([](const auto&) { return Response{200, "internal secret"}; }, "127.0.0.2");
  const std::string internal_port = std::to_string(internal.port());
  LoopbackHttpServer front([&](const LoopbackHttpServer::Request& r) {
    if (r.path == "/final") return Response{200, "public body"};
    std::string location;
    if (r.path == "/to-final") location = "/final";
    if (r.path == "/to-literal") location = internal.url("/x");
    if (r.path == "/to-name") location = "http://rebind.example:" + internal_port + "/x";
    if (r.path == "/to-gopher") location = "gopher://example.com/";
    if (r.path == "/to-file") location = "file:///etc/passwd";
    if (r.path == "/loop") location = "/loop";
    return Response{302, "moved", {{"Location", location}}};
  });
  DownloadOptions options = strict_options();
  options.test_only_resolve = {"rebind.example:" + internal_port + ":127.0.0.2"};

  ASSERT_TRUE(download_to_file(front.url("/to-final"), dest_, options, nullptr).ok());
  EXPECT_EQ(read_file(dest_), "public body");  // the 302's own body is not kept
  fs::remove(dest_);

  EXPECT_EQ(flux::error_code(download_to_file(front.url("/to-literal"), dest_, options, nullptr)),
            "url_address_forbidden");
  const absl::Status by_name = download_to_file(front.url("/to-name"), dest_, options, nullptr);
  EXPECT_EQ(flux::error_code(by_name), "url_address_forbidden") << by_name;
  EXPECT_EQ(flux::error_code(download_to_file(front.url("/to-gopher"), dest_, options, nullptr)),
            "url_scheme_forbidden");
  EXPECT_EQ(flux::error_code(download_to_file(front.url("/to-file"), dest_, options, nullptr)), "url_scheme_forbidden");
  const absl::Status loop = download_to_file(front.url("/loop"), dest_, options, nullptr);
  EXPECT_EQ(flux::error_code(loop), "input_download_failed") << loop;
  EXPECT_NE(std::string(loop.message()).find("redirects"), std::string::npos) << loop;

  std::this_thread::sleep_for(50ms);
  EXPECT_EQ(internal.connections(), 0);
  EXPECT_TRUE(dir_is_empty());

  // With redirects disabled a 302 is an error, not a silent empty file.
  options.max_redirects = 0;
  EXPECT_EQ(flux::error_code(download_to_file(front.url("/to-final"), dest_, options, nullptr)),
            "input_download_failed");
}

TEST_F(DownloadTest, StalledServerTimesOut) {
  LoopbackHttpServer server([](const auto&) {
    Response response{200, "late"};
    response.stall_before_body = 5s;
    return response;
  });
  DownloadOptions options = strict_options();
  options.total_timeout = 700ms;
  const auto start = std::chrono::steady_clock::now();
  const absl::Status status = download_to_file(server.url("/slow"), dest_, options, nullptr);
  const auto elapsed = std::chrono::steady_clock::now() - start;
  EXPECT_EQ(flux::error_code(status), "input_download_failed") << status;
  EXPECT_EQ(status.code(), absl::StatusCode::kDeadlineExceeded) << status;
  EXPECT_LT(elapsed, 3s);
  EXPECT_TRUE(dir_is_empty());
}

TEST_F(DownloadTest, CancelStopsATransferInFlight) {
  LoopbackHttpServer server([](const auto&) {
    Response response{200, "late"};
    response.stall_before_body = 5s;
    return response;
  });
  flux::CancelToken cancel;
  std::thread canceller([&] {
    std::this_thread::sleep_for(200ms);
    cancel.cancel("job cancelled");
  });
  const auto start = std::chrono::steady_clock::now();
  const absl::Status status = download_to_file(server.url("/slow"), dest_, strict_options(), &cancel);
  const auto elapsed = std::chrono::steady_clock::now() - start;
  canceller.join();
  EXPECT_EQ(flux::error_code(status), "cancelled") << status;
  EXPECT_EQ(status.code(), absl::StatusCode::kCancelled);
  EXPECT_LT(elapsed, 3s);
  EXPECT_TRUE(dir_is_empty());
}

TEST_F(DownloadTest, ConnectionRefusedIsTransient) {
  int port = 0;
  {
    LoopbackHttpServer gone([](const auto&) { return Response{}; });
    port = gone.port();
  }
  const absl::Status status =
      download_to_file("http://127.0.0.1:" + std::to_string(port) + "/a", dest_, strict_options(), nullptr);
  EXPECT_EQ(flux::error_code(status), "input_download_failed") << status;
  EXPECT_EQ(status.code(), absl::StatusCode::kUnavailable);
}

TEST(Request, SendsMethodHeadersAndBodyAndReturnsTheAnswer) {
  LoopbackHttpServer server([](const LoopbackHttpServer::Request& r) {
    Response response{r.header("X-Signature") == "abc" ? 202 : 400, "got " + r.method + " " + r.body};
    response.headers = {{"X-Reply", "yes"}};
    return response;
  });
  RequestOptions options;
  options.policy.test_only_allowed_addresses = {"127.0.0.1"};
  HttpRequest req{
      "POST", server.url("/hook"), {{"X-Signature", "abc"}, {"Content-Type", "application/json"}}, R"({"job":"1"})"};
  auto response = request(req, options, nullptr);
  ASSERT_TRUE(response.ok()) << response.status();
  EXPECT_EQ(response->status, 202);
  EXPECT_EQ(response->body, R"(got POST {"job":"1"})");
  EXPECT_EQ(header_value(response->headers, "x-reply"), "yes");
  EXPECT_EQ(server.requests().at(0).header("Content-Type"), "application/json");
}

TEST(Request, RefusesForbiddenAddressesAndHeaderInjection) {
  LoopbackHttpServer server([](const auto&) { return Response{200, "ok"}; });
  RequestOptions options;
  auto refused = request(HttpRequest{"POST", server.url("/hook"), {}, "{}"}, options, nullptr);
  EXPECT_EQ(flux::error_code(refused.status()), "url_address_forbidden");
  options.policy.test_only_allowed_addresses = {"127.0.0.1"};
  auto injected = request(HttpRequest{"POST", server.url("/hook"), {{"X-A", "1\r\nX-B: 2"}}, "{}"}, options, nullptr);
  EXPECT_EQ(flux::error_code(injected.status()), "http_request_invalid");
  EXPECT_EQ(server.connections(), 0);
}

TEST(Request, RedirectsNotFollowedByDefaultAndCapsTheBody) {
  LoopbackHttpServer server([](const LoopbackHttpServer::Request& r) {
    if (r.path == "/big") return Response{200, std::string(10000, 'x')};
    return Response{307, "elsewhere", {{"Location", "/other"}}};
  });
  RequestOptions options;
  options.policy.test_only_allowed_addresses = {"127.0.0.1"};
  auto moved = request(HttpRequest{"GET", server.url("/hook"), {}, ""}, options, nullptr);
  ASSERT_TRUE(moved.ok()) << moved.status();
  EXPECT_EQ(moved->status, 307);
  EXPECT_EQ(server.requests().size(), 1u);
  options.max_response_bytes = 1000;
  auto big = request(HttpRequest{"GET", server.url("/big"), {}, ""}, options, nullptr);
  EXPECT_EQ(flux::error_code(big.status()), "http_response_too_large");
}

TEST(Request, FollowedRedirectsBecomeGetAndDropCredentialsAcrossHosts) {
  LoopbackHttpServer other(
      [](const LoopbackHttpServer::Request& r) {
        return Response{200, r.method + " " + r.body};
      },
      "127.0.0.2");
  LoopbackHttpServer front([&](const LoopbackHttpServer::Request& r) {
    if (r.path == "/same") return Response{200, r.method + " auth=" + r.header("Authorization")};
    if (r.path == "/see-other") return Response{303, "", {{"Location", "/same"}}};
    return Response{307, "", {{"Location", other.url("/elsewhere")}}};
  });
  RequestOptions options;
  options.policy.test_only_allowed_addresses = {"127.0.0.1", "127.0.0.2"};
  options.max_redirects = 3;
  const HttpHeaders auth{{"Authorization", "Bearer secret"}};

  auto same = request(HttpRequest{"POST", front.url("/see-other"), auth, "payload"}, options, nullptr);
  ASSERT_TRUE(same.ok()) << same.status();
  EXPECT_EQ(same->body, "GET auth=Bearer secret");  // same host keeps credentials

  auto moved = request(HttpRequest{"POST", front.url("/temporary"), auth, "payload"}, options, nullptr);
  ASSERT_TRUE(moved.ok()) << moved.status();
  EXPECT_EQ(moved->body, "POST payload");  // 307 keeps method and body
  ASSERT_EQ(other.requests().size(), 1u);
  EXPECT_EQ(other.requests()[0].header("Authorization"), "");  // but not the credentials
}

}  // namespace
}  // namespace flux::http
