#pragma once
// A deliberately dumb HTTP client on a plain loopback socket, so that tests
// control every byte: half-sent headers, stalls, pipelining, tiny buffers.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>

namespace flux::controlplane::http::testing {

using namespace std::chrono_literals;

struct RawResponse {
  int status = 0;
  std::map<std::string, std::string> headers;  // lower-case names
  std::string body;
};

class RawClient {
 public:
  // receive_buffer > 0 sets SO_RCVBUF before connecting (a small window).
  explicit RawClient(uint16_t port, int receive_buffer = 0) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    if (receive_buffer > 0) ::setsockopt(fd_, SOL_SOCKET, SO_RCVBUF, &receive_buffer, sizeof receive_buffer);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_port = htons(port);
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    connected_ = ::connect(fd_, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0;
  }
  ~RawClient() { close(); }
  RawClient(const RawClient&) = delete;
  RawClient& operator=(const RawClient&) = delete;

  bool connected() const { return connected_; }
  int fd() const { return fd_; }

  void close() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

  bool send(std::string_view data) {
    while (!data.empty()) {
      const ssize_t n = ::send(fd_, data.data(), data.size(), MSG_NOSIGNAL);
      if (n <= 0) return false;
      data.remove_prefix(static_cast<size_t>(n));
    }
    return true;
  }

  // Reads what arrives within `timeout` into buffered(). False on EOF or error.
  bool read_once(std::chrono::milliseconds timeout) {
    pollfd p{fd_, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(timeout.count())) <= 0) return true;  // nothing yet
    char chunk[65536];
    const ssize_t n = ::recv(fd_, chunk, sizeof chunk, 0);
    if (n <= 0) {
      eof_ = true;
      return false;
    }
    buffer_.append(chunk, static_cast<size_t>(n));
    return true;
  }

  // Reads until `buffered()` contains `text`; false on timeout or EOF first.
  bool read_until(std::string_view text, std::chrono::milliseconds timeout = 5000ms) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (buffer_.find(text) == std::string::npos) {
      const auto left =
          std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
      if (left <= 0ms) return false;
      if (!read_once(left)) return buffer_.find(text) != std::string::npos;
    }
    return true;
  }

  // True when the server closes the connection within `timeout` (data before
  // the close is kept in buffered()).
  bool wait_closed(std::chrono::milliseconds timeout = 5000ms) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (!eof_) {
      const auto left =
          std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
      if (left <= 0ms) return false;
      read_once(left);
    }
    return true;
  }

  // One response with a Content-Length body (what the server writes for
  // everything but SSE). Consumes it from the buffer.
  std::optional<RawResponse> read_response(std::chrono::milliseconds timeout = 5000ms) {
    if (!read_until("\r\n\r\n", timeout)) return std::nullopt;
    const size_t head_end = buffer_.find("\r\n\r\n");
    RawResponse response;
    const std::string head = buffer_.substr(0, head_end);
    if (head.rfind("HTTP/1.", 0) != 0 || head.size() < 12) return std::nullopt;
    response.status = std::stoi(head.substr(9, 3));
    size_t line_start = head.find("\r\n");
    while (line_start != std::string::npos && line_start + 2 < head.size()) {
      const size_t line_end = head.find("\r\n", line_start + 2);
      const std::string line = head.substr(line_start + 2, line_end - line_start - 2);
      const size_t colon = line.find(':');
      if (colon != std::string::npos) {
        std::string name = line.substr(0, colon);
        for (auto& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
        size_t value_start = colon + 1;
        while (value_start < line.size() && line[value_start] == ' ') ++value_start;
        response.headers[name] = line.substr(value_start);
      }
      line_start = line_end;
    }
    size_t length = 0;
    if (auto it = response.headers.find("content-length"); it != response.headers.end())
      length = std::stoul(it->second);
    const size_t body_start = head_end + 4;
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (buffer_.size() < body_start + length) {
      const auto left =
          std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
      if (left <= 0ms || !read_once(left)) {
        if (buffer_.size() < body_start + length) return std::nullopt;
      }
    }
    response.body = buffer_.substr(body_start, length);
    buffer_.erase(0, body_start + length);
    return response;
  }

  const std::string& buffered() const { return buffer_; }
  void clear() { buffer_.clear(); }
  bool eof() const { return eof_; }

 private:
  int fd_ = -1;
  bool connected_ = false;
  bool eof_ = false;
  std::string buffer_;
};

inline std::string get_request(std::string_view target, std::string_view extra_headers = "") {
  return "GET " + std::string(target) + " HTTP/1.1\r\nHost: 127.0.0.1\r\n" + std::string(extra_headers) + "\r\n";
}

}  // namespace flux::controlplane::http::testing
