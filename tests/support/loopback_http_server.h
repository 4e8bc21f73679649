#pragma once
// A small HTTP/1.1 server on a loopback address for unit tests: one thread,
// one request per connection (Connection: close), each answered by a handler.
// It records every request and counts connections, so a test can prove what a
// client sent, or that a refused URL never reached it; a response can stall
// before its body, omit Content-Length or hang up without answering, for the
// error paths a real server will not produce on demand.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <functional>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace flux::testing {

class LoopbackHttpServer {
 public:
  struct Request {
    std::string method;
    std::string path;  // the request-target as sent: path and query
    std::vector<std::pair<std::string, std::string>> headers;
    std::string body;
    // The first header of that name (case-insensitive), or "".
    std::string header(const std::string& name) const {
      for (const auto& [key, value] : headers) {
        if (strcasecmp(key.c_str(), name.c_str()) == 0) return value;
      }
      return "";
    }
  };
  struct Response {
    Response(int status = 200, std::string body = "", std::vector<std::pair<std::string, std::string>> headers = {})
        : status(status), body(std::move(body)), headers(std::move(headers)) {}
    int status;
    std::string body;
    std::vector<std::pair<std::string, std::string>> headers;
    // Headers are sent, then the server waits this long before the body.
    std::chrono::milliseconds stall_before_body{0};
    // Without Content-Length the body ends when the connection closes.
    bool send_content_length = true;
    // Close the connection without answering at all.
    bool hang_up = false;
  };
  using Handler = std::function<Response(const Request&)>;

  explicit LoopbackHttpServer(Handler handler, std::string address = "127.0.0.1")
      : handler_(std::move(handler)), address_(std::move(address)) {
    listen_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (listen_fd_ < 0) throw std::runtime_error("socket");
    const int one = 1;
    setsockopt(listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    inet_pton(AF_INET, address_.c_str(), &addr.sin_addr);
    socklen_t len = sizeof(addr);
    if (::bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 || ::listen(listen_fd_, 16) != 0 ||
        ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
      ::close(listen_fd_);
      throw std::runtime_error("bind/listen on " + address_);
    }
    port_ = ntohs(addr.sin_port);
    thread_ = std::thread([this] { serve(); });
  }
  ~LoopbackHttpServer() {
    stop_ = true;
    thread_.join();
    ::close(listen_fd_);
  }
  LoopbackHttpServer(const LoopbackHttpServer&) = delete;
  LoopbackHttpServer& operator=(const LoopbackHttpServer&) = delete;

  int port() const { return port_; }
  std::string endpoint() const { return "http://" + address_ + ":" + std::to_string(port_); }
  std::string url(const std::string& path) const { return endpoint() + path; }
  int connections() const { return connections_.load(); }
  std::vector<Request> requests() const {
    std::lock_guard lock(mu_);
    return requests_;
  }

 private:
  void serve() {
    while (!stop_) {
      pollfd pfd{listen_fd_, POLLIN, 0};
      if (::poll(&pfd, 1, 20) <= 0) continue;
      const int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (fd < 0) continue;
      ++connections_;
      handle(fd);
      ::close(fd);
    }
  }

  // Reads until `predicate(buffer)` holds, the peer closes, or stop.
  template <class Pred>
  bool read_until(int fd, std::string& buffer, Pred predicate) {
    char chunk[65536];
    while (!predicate(buffer)) {
      pollfd pfd{fd, POLLIN, 0};
      if (stop_) return false;
      if (::poll(&pfd, 1, 20) <= 0) continue;
      const ssize_t n = ::recv(fd, chunk, sizeof(chunk), 0);
      if (n <= 0) return false;
      buffer.append(chunk, static_cast<size_t>(n));
    }
    return true;
  }

  void handle(int fd) {
    std::string data;
    if (!read_until(fd, data, [](const std::string& b) { return b.find("\r\n\r\n") != std::string::npos; })) return;
    const size_t head_end = data.find("\r\n\r\n");
    Request request;
    size_t line_end = data.find("\r\n");
    const std::string request_line = data.substr(0, line_end);
    const size_t sp1 = request_line.find(' ');
    const size_t sp2 = request_line.find(' ', sp1 + 1);
    request.method = request_line.substr(0, sp1);
    request.path = request_line.substr(sp1 + 1, sp2 - sp1 - 1);
    size_t pos = line_end + 2;
    while (pos < head_end) {
      line_end = data.find("\r\n", pos);
      const std::string line = data.substr(pos, line_end - pos);
      const size_t colon = line.find(':');
      if (colon != std::string::npos) {
        size_t value_start = colon + 1;
        while (value_start < line.size() && line[value_start] == ' ') ++value_start;
        request.headers.emplace_back(line.substr(0, colon), line.substr(value_start));
      }
      pos = line_end + 2;
    }
    const size_t body_length = std::strtoull(request.header("Content-Length").c_str(), nullptr, 10);
    // A client that asks first (S3 uploads do) gets its go-ahead instead of
    // waiting out its own timeout.
    if (data.size() < head_end + 4 + body_length && strcasecmp(request.header("Expect").c_str(), "100-continue") == 0) {
      send_all(fd, "HTTP/1.1 100 Continue\r\n\r\n");
    }
    read_until(fd, data, [&](const std::string& b) { return b.size() >= head_end + 4 + body_length; });
    request.body = data.substr(head_end + 4, body_length);
    {
      std::lock_guard lock(mu_);
      requests_.push_back(request);
    }

    const Response response = handler_(request);
    if (response.hang_up) return;
    std::string head = "HTTP/1.1 " + std::to_string(response.status) + " X\r\nConnection: close\r\n";
    if (response.send_content_length) head += "Content-Length: " + std::to_string(response.body.size()) + "\r\n";
    for (const auto& [name, value] : response.headers) head += name + ": " + value + "\r\n";
    head += "\r\n";
    if (!send_all(fd, head)) return;
    const auto until = std::chrono::steady_clock::now() + response.stall_before_body;
    while (!stop_ && std::chrono::steady_clock::now() < until)
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    if (request.method != "HEAD") send_all(fd, response.body);
  }

  static bool send_all(int fd, const std::string& data) {
    size_t sent = 0;
    while (sent < data.size()) {
      const ssize_t n = ::send(fd, data.data() + sent, data.size() - sent, MSG_NOSIGNAL);
      if (n <= 0) return false;
      sent += static_cast<size_t>(n);
    }
    return true;
  }

  Handler handler_;
  std::string address_;
  int listen_fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  std::atomic<int> connections_{0};
  mutable std::mutex mu_;
  std::vector<Request> requests_;
  std::thread thread_;
};

}  // namespace flux::testing
