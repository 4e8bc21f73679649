#include "shared/metrics/metrics_server.h"

#include <arpa/inet.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>

namespace flux::metrics {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

// A connected loopback socket, closed on destruction.
class Client {
 public:
  explicit Client(uint16_t port) : fd_(::socket(AF_INET, SOCK_STREAM, 0)) {
    timeval timeout{5, 0};  // a hung server fails the test instead of hanging it
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    connected_ = ::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  }
  ~Client() { ::close(fd_); }
  bool connected() const { return connected_; }

  void send(const std::string& data) {
    size_t sent = 0;
    while (sent < data.size()) {
      const ssize_t n = ::send(fd_, data.data() + sent, data.size() - sent, MSG_NOSIGNAL);
      if (n <= 0) return;
      sent += static_cast<size_t>(n);
    }
  }
  // Everything until the server closes the connection (or 5 s pass).
  std::string read_all() {
    std::string out;
    char buf[4096];
    ssize_t n;
    while ((n = ::recv(fd_, buf, sizeof buf, 0)) > 0) out.append(buf, static_cast<size_t>(n));
    return out;
  }

 private:
  int fd_;
  bool connected_ = false;
};

struct Response {
  std::string status_line, headers, body;
};

Response get(uint16_t port, const std::string& request) {
  Client client(port);
  EXPECT_TRUE(client.connected());
  client.send(request);
  const std::string raw = client.read_all();
  Response r;
  const auto head_end = raw.find("\r\n\r\n");
  if (head_end == std::string::npos) return r;
  r.status_line = raw.substr(0, raw.find("\r\n"));
  r.headers = raw.substr(0, head_end);
  r.body = raw.substr(head_end + 4);
  return r;
}

std::string request(const std::string& method, const std::string& target) {
  return method + " " + target + " HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
}

class MetricsServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    registry_.counter("flux_jobs", "Jobs.", {"status"}).with({"completed"}).inc(7);
    auto server = MetricsServer::start("127.0.0.1", 0, registry_, [this] { return healthy_.load(); });
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
    ASSERT_NE(server_->port(), 0);
  }
  Registry registry_;
  std::atomic<bool> healthy_{true};
  std::unique_ptr<MetricsServer> server_;
};

TEST_F(MetricsServerTest, ServesMetrics) {
  const Response r = get(server_->port(), request("GET", "/metrics"));
  EXPECT_EQ(r.status_line, "HTTP/1.1 200 OK");
  EXPECT_THAT(r.headers, HasSubstr("Content-Type: text/plain; version=0.0.4; charset=utf-8"));
  EXPECT_EQ(r.body, registry_.render());
  EXPECT_THAT(r.body, HasSubstr("flux_jobs_total{status=\"completed\"} 7\n"));

  // Later changes show up in the next scrape; a query string is ignored.
  registry_.gauge("flux_active_jobs", "Active.").with().set(2);
  EXPECT_THAT(get(server_->port(), request("GET", "/metrics?x=1")).body, HasSubstr("flux_active_jobs 2\n"));
}

TEST_F(MetricsServerTest, Health) {
  Response r = get(server_->port(), request("GET", "/health"));
  EXPECT_EQ(r.status_line, "HTTP/1.1 200 OK");
  EXPECT_EQ(r.body, "ok");
  healthy_ = false;
  r = get(server_->port(), request("GET", "/health"));
  EXPECT_EQ(r.status_line, "HTTP/1.1 503 Service Unavailable");
}

TEST_F(MetricsServerTest, UnknownPathAndMethod) {
  EXPECT_EQ(get(server_->port(), request("GET", "/nope")).status_line, "HTTP/1.1 404 Not Found");
  const Response post = get(server_->port(), request("POST", "/metrics"));
  EXPECT_EQ(post.status_line, "HTTP/1.1 405 Method Not Allowed");
  EXPECT_THAT(post.headers, HasSubstr("Allow: GET"));
}

TEST_F(MetricsServerTest, KeepAliveServesSeveralRequests) {
  Client client(server_->port());
  ASSERT_TRUE(client.connected());
  client.send("GET /health HTTP/1.1\r\nHost: x\r\n\r\nGET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
  const std::string raw = client.read_all();
  size_t count = 0;
  for (size_t at = raw.find("HTTP/1.1 200 OK"); at != std::string::npos; at = raw.find("HTTP/1.1 200 OK", at + 1)) {
    ++count;
  }
  EXPECT_EQ(count, 2u) << raw;
}

TEST_F(MetricsServerTest, OversizedRequestIsRefused) {
  Client client(server_->port());
  ASSERT_TRUE(client.connected());
  client.send("GET /metrics HTTP/1.1\r\nHost: x\r\nX-Filler: " + std::string(64 * 1024, 'a') + "\r\n\r\n");
  EXPECT_THAT(client.read_all(), ::testing::Not(HasSubstr("200 OK")));
}

TEST_F(MetricsServerTest, SilentClientDoesNotBlockOthersOrStop) {
  Client idle(server_->port());
  ASSERT_TRUE(idle.connected());
  idle.send("GET /metr");  // half a request, then silence
  EXPECT_EQ(get(server_->port(), request("GET", "/health")).status_line, "HTTP/1.1 200 OK");

  const auto started = std::chrono::steady_clock::now();
  server_->stop();
  EXPECT_LT(std::chrono::steady_clock::now() - started, std::chrono::seconds(1));
  server_->stop();  // idempotent

  // The idle connection was closed by the server, not left to its deadline.
  const auto read_started = std::chrono::steady_clock::now();
  EXPECT_EQ(idle.read_all(), "");
  EXPECT_LT(std::chrono::steady_clock::now() - read_started, std::chrono::seconds(1));

  // The listener is gone after stop().
  Client late(server_->port());
  EXPECT_FALSE(late.connected());
}

TEST(MetricsServer, StartErrors) {
  Registry registry;
  auto bad_address = MetricsServer::start("not-an-ip", 0, registry);
  EXPECT_FALSE(bad_address.ok());

  auto first = MetricsServer::start("127.0.0.1", 0, registry);
  ASSERT_TRUE(first.ok()) << first.status();
  auto second = MetricsServer::start("127.0.0.1", (*first)->port(), registry);
  ASSERT_FALSE(second.ok());
  EXPECT_THAT(std::string(second.status().message()), HasSubstr(std::to_string((*first)->port())));
}

}  // namespace
}  // namespace flux::metrics
