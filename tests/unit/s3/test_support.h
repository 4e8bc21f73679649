#pragma once
// Test fixtures shared by the s3 and uploader tests: a temporary directory, a
// real s3rver on an ephemeral loopback port, and a scripted HTTP server that
// answers S3 requests with canned replies and records what it received.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <mutex>
#include <random>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

extern char** environ;

namespace flux::test_support {

namespace fs = std::filesystem;

class TempDir {
 public:
  TempDir() {
    std::string pattern = (fs::temp_directory_path() / "flux-test-XXXXXX").string();
    if (::mkdtemp(pattern.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
    path_ = pattern;
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

inline std::string random_bytes(size_t size, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::string data(size, '\0');
  for (size_t i = 0; i < size; i += 8) {
    const uint64_t word = rng();
    for (size_t j = 0; j < 8 && i + j < size; ++j) data[i + j] = static_cast<char>(word >> (8 * j));
  }
  return data;
}

inline void write_file(const fs::path& path, const std::string& data) {
  fs::create_directories(path.parent_path());
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(data.data(), static_cast<std::streamsize>(data.size()));
}

inline std::string read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

inline int free_loopback_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    ::close(fd);
    throw std::runtime_error("cannot find a free port");
  }
  ::close(fd);
  return ntohs(addr.sin_port);
}

inline bool port_accepts(int port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  const bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  ::close(fd);
  return ok;
}

// s3rver (tests/node_modules) on 127.0.0.1, storing under `data_dir`, with
// `bucket` created. Credentials it accepts: S3RVER / S3RVER. It does not check
// SigV4 signatures (tests/s3_oracle does).
class S3rver {
 public:
  static constexpr const char* kAccessKey = "S3RVER";
  static constexpr const char* kSecretKey = "S3RVER";

  S3rver(fs::path data_dir, std::string bucket, int port = 0)
      : data_dir_(std::move(data_dir)), bucket_(std::move(bucket)) {
    start(port);
  }
  ~S3rver() { kill(); }
  S3rver(const S3rver&) = delete;
  S3rver& operator=(const S3rver&) = delete;

  int port() const { return port_; }
  std::string endpoint() const { return "http://127.0.0.1:" + std::to_string(port_); }
  const fs::path& data_dir() const { return data_dir_; }

  // SIGKILL, as a crash would.
  void kill() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGKILL);
    int status = 0;
    ::waitpid(pid_, &status, 0);
    pid_ = -1;
  }

  // Starts again on the same port and data (after kill()).
  void restart() { start(port_); }

 private:
  void start(int port) {
    fs::create_directories(data_dir_);
    port_ = port != 0 ? port : free_loopback_port();
    const std::string s3rver = std::string(FLUX_SOURCE_DIR) + "/tests/node_modules/.bin/s3rver";
    const std::string port_text = std::to_string(port_);
    const std::string dir = data_dir_.string();
    const std::string log = (data_dir_.parent_path() / ("s3rver-" + port_text + ".log")).string();
    std::vector<std::string> args = {s3rver, "-d", dir, "-a", "127.0.0.1", "-p", port_text, "--configure-bucket",
                                     bucket_};
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    posix_spawn_file_actions_adddup2(&actions, STDOUT_FILENO, STDERR_FILENO);
    posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
    const int rc = posix_spawn(&pid_, argv[0], &actions, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    if (rc != 0) throw std::runtime_error("cannot start s3rver: " + std::to_string(rc));
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    while (!port_accepts(port_)) {
      int status = 0;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        throw std::runtime_error("s3rver exited at start; see " + log);
      }
      if (std::chrono::steady_clock::now() > deadline) throw std::runtime_error("s3rver did not listen; see " + log);
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  }

  fs::path data_dir_;
  std::string bucket_;
  int port_ = 0;
  pid_t pid_ = -1;
};

// Waits until s3rver has stored the first part of a multipart upload of `key`
// (s3rver keeps each upload in <data>/<bucket>/._S3rver_uploads/<id>/ with the
// key in a file named "key" and part n in a file named n).
inline bool wait_for_first_part(const fs::path& data_dir, const std::string& bucket, const std::string& key,
                                std::chrono::seconds timeout = std::chrono::seconds(20)) {
  const fs::path uploads = data_dir / bucket / "._S3rver_uploads";
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    std::error_code ec;
    for (auto it = fs::directory_iterator(uploads, ec); !ec && it != fs::directory_iterator(); it.increment(ec)) {
      if (fs::exists(it->path() / "1") && read_file(it->path() / "key") == key) return true;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  return false;
}

// A one-request-per-connection HTTP/1.1 server on loopback that answers from a
// script, for error and retry paths a real store will not produce on demand.
class ScriptedServer {
 public:
  struct Received {
    std::string method;
    std::string target;   // path?query
    std::string headers;  // raw header block
    std::string body;
  };
  struct Reply {
    Reply(int status = 200, std::string body = "", std::vector<std::pair<std::string, std::string>> headers = {})
        : status(status), body(std::move(body)), headers(std::move(headers)) {}
    int status;
    std::string body;
    std::vector<std::pair<std::string, std::string>> headers;
    bool hang_up = false;  // close the connection without answering
  };
  using Script = std::function<Reply(const Received&)>;

  explicit ScriptedServer(Script script) : script_(std::move(script)) {
    listen_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    ::setsockopt(listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof addr;
    if (::bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 || ::listen(listen_fd_, 16) != 0 ||
        ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
      throw std::runtime_error("scripted server cannot listen");
    }
    port_ = ntohs(addr.sin_port);
    thread_ = std::thread([this] { serve(); });
  }
  ~ScriptedServer() {
    stop_ = true;
    thread_.join();
    ::close(listen_fd_);
  }
  ScriptedServer(const ScriptedServer&) = delete;
  ScriptedServer& operator=(const ScriptedServer&) = delete;

  std::string endpoint() const { return "http://127.0.0.1:" + std::to_string(port_); }
  std::vector<Received> received() const {
    std::lock_guard lock(mu_);
    return received_;
  }

 private:
  void serve() {
    while (!stop_) {
      pollfd pfd{listen_fd_, POLLIN, 0};
      if (::poll(&pfd, 1, 20) <= 0) continue;
      const int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (fd < 0) continue;
      handle(fd);
      ::close(fd);
    }
  }

  static bool read_some(int fd, std::string& buffer) {
    pollfd pfd{fd, POLLIN, 0};
    if (::poll(&pfd, 1, 5000) <= 0) return false;
    char chunk[65536];
    const ssize_t n = ::read(fd, chunk, sizeof chunk);
    if (n <= 0) return false;
    buffer.append(chunk, static_cast<size_t>(n));
    return true;
  }

  static void write_all(int fd, const std::string& data) {
    size_t done = 0;
    while (done < data.size()) {
      const ssize_t n = ::send(fd, data.data() + done, data.size() - done, MSG_NOSIGNAL);
      if (n <= 0) return;
      done += static_cast<size_t>(n);
    }
  }

  static std::string header_value(const std::string& headers, const std::string& lower_name) {
    std::istringstream lines(headers);
    std::string line;
    while (std::getline(lines, line)) {
      const auto colon = line.find(':');
      if (colon == std::string::npos) continue;
      std::string name = line.substr(0, colon);
      for (auto& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      if (name != lower_name) continue;
      std::string value = line.substr(colon + 1);
      while (!value.empty() && (value.front() == ' ')) value.erase(0, 1);
      while (!value.empty() && (value.back() == '\r' || value.back() == ' ')) value.pop_back();
      return value;
    }
    return "";
  }

  void handle(int fd) {
    std::string buffer;
    size_t header_end;
    while ((header_end = buffer.find("\r\n\r\n")) == std::string::npos) {
      if (!read_some(fd, buffer)) return;
    }
    Received r;
    const std::string head = buffer.substr(0, header_end);
    const size_t line_end = head.find("\r\n");
    std::istringstream request_line(head.substr(0, line_end));
    request_line >> r.method >> r.target;
    r.headers = line_end == std::string::npos ? "" : head.substr(line_end + 2);
    r.body = buffer.substr(header_end + 4);
    const size_t length = std::strtoull(header_value(r.headers, "content-length").c_str(), nullptr, 10);
    if (r.body.size() < length && header_value(r.headers, "expect") == "100-continue") {
      write_all(fd, "HTTP/1.1 100 Continue\r\n\r\n");
    }
    while (r.body.size() < length) {
      if (!read_some(fd, r.body)) break;
    }
    {
      std::lock_guard lock(mu_);
      received_.push_back(r);
    }
    const Reply reply = script_(r);
    if (reply.hang_up) return;
    std::string out = "HTTP/1.1 " + std::to_string(reply.status) + " Scripted\r\nConnection: close\r\n";
    for (const auto& [name, value] : reply.headers) out += name + ": " + value + "\r\n";
    out += "Content-Length: " + std::to_string(reply.body.size()) + "\r\n\r\n";
    if (r.method != "HEAD") out += reply.body;
    write_all(fd, out);
  }

  Script script_;
  int listen_fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  mutable std::mutex mu_;
  std::vector<Received> received_;
  std::thread thread_;
};

}  // namespace flux::test_support
