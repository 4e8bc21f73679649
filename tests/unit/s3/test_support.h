#pragma once
// Test fixtures shared by the s3 and uploader tests: a temporary directory and
// a real s3rver on an ephemeral loopback port. (Scripted answers a real store
// will not give on demand: support/loopback_http_server.h.)
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
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

}  // namespace flux::test_support
