#pragma once
// Real flux-worker processes for the control plane's tests: each with its own
// port, work dir, output dir and captured log. The binary comes from
// FLUX_WORKER_BIN; tests skip (GTEST_SKIP) when it is unset.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "absl/status/status.h"
#include "shared/process/subprocess.h"
#include "worker/v1/worker.grpc.pb.h"

namespace flux::controlplane::testing {

namespace fs = std::filesystem;

// A loopback port nothing listens on right now.
inline uint16_t free_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  socklen_t len = sizeof(addr);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  ::close(fd);
  return ntohs(addr.sin_port);
}

// A fresh directory under the system temp dir, removed with its contents.
class TempDir {
 public:
  TempDir() {
    std::random_device rd;
    path_ = fs::temp_directory_path() / ("flux-cp-test-" + std::to_string(::getpid()) + "-" + std::to_string(rd()));
    fs::create_directories(path_);
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

// FLUX_WORKER_BIN, else the flux-worker of this build tree when it exists.
inline std::string worker_binary() {
  if (const char* bin = std::getenv("FLUX_WORKER_BIN"); bin != nullptr && *bin != '\0') return bin;
#ifdef FLUX_BINARY_DIR
  const fs::path built = fs::path(FLUX_BINARY_DIR) / "bin" / "flux-worker";
  if (fs::exists(built)) return built.string();
#endif
  return "";
}

#define FLUX_REQUIRE_WORKER_BIN()                                                                         \
  do {                                                                                                    \
    if (::flux::controlplane::testing::worker_binary().empty()) {                                         \
      GTEST_SKIP() << "FLUX_WORKER_BIN is not set and this build has no bin/flux-worker; set it to a "    \
                      "built flux-worker (e.g. build/asan/bin/flux-worker) to run the real-worker tests"; \
    }                                                                                                     \
  } while (0)

// ffmpeg lavfi clip: 320x240 at 25 fps with stereo sine audio.
inline absl::Status make_clip(const fs::path& target, int seconds) {
  auto result = process::run({"ffmpeg",
                              "-v",
                              "error",
                              "-nostdin",
                              "-y",
                              "-f",
                              "lavfi",
                              "-i",
                              "testsrc2=size=320x240:rate=25",
                              "-f",
                              "lavfi",
                              "-i",
                              "sine=frequency=440:sample_rate=48000",
                              "-t",
                              std::to_string(seconds),
                              "-c:v",
                              "libx264",
                              "-preset",
                              "ultrafast",
                              "-pix_fmt",
                              "yuv420p",
                              "-c:a",
                              "aac",
                              "-ac",
                              "2",
                              target.string()},
                             std::chrono::seconds(60));
  if (!result.ok()) return result.status();
  if (!result->status.ok()) return absl::InternalError("ffmpeg failed: " + result->err);
  return absl::OkStatus();
}

// A preset slow enough (veryslow x264) that a few seconds of input keep a
// worker busy for a few seconds: for tests that act on a running job.
inline constexpr char kTestPresets[] = R"(presets:
  - name: test_slow_240p
    description: deliberately slow, for tests
    type: single
    x264_preset: veryslow
    crf: 20
    audio: true
    variants:
      - height: 240
)";

struct TestWorkerOptions {
  std::string name = "worker";
  int max_jobs = 2;
  uint16_t port = 0;     // 0 = a free one
  fs::path input_dir{};  // LOCAL_INPUT_DIR
  fs::path presets_file{};
  std::map<std::string, std::string> env{};  // extra or overriding variables
};

class TestWorker {
 public:
  TestWorker(const fs::path& root, TestWorkerOptions options) : options_(std::move(options)) {
    if (options_.port == 0) options_.port = free_port();
    root_ = root / options_.name;
    fs::create_directories(root_ / "work");
    fs::create_directories(root_ / "out");
  }
  ~TestWorker() { stop(); }
  TestWorker(const TestWorker&) = delete;
  TestWorker& operator=(const TestWorker&) = delete;

  // Starts the worker and waits until it answers GetStatus.
  absl::Status start() {
    if (auto s = spawn(); !s.ok()) return s;
    return wait_ready();
  }

  // Starts the worker without waiting (start several, then wait_ready each).
  absl::Status spawn() {
    std::vector<std::string> argv = {"/usr/bin/env", "-i"};
    for (const char* name :
         {"PATH", "HOME", "TMPDIR", "LANG", "ASAN_OPTIONS", "LSAN_OPTIONS", "UBSAN_OPTIONS", "TSAN_OPTIONS"}) {
      if (const char* value = std::getenv(name)) argv.push_back(std::string(name) + "=" + value);
    }
    std::map<std::string, std::string> env = {
        {"GRPC_PORT", std::to_string(options_.port)},
        {"GRPC_BIND_ADDRESS", "127.0.0.1"},
        {"METRICS_PORT", "0"},
        {"WORK_DIR", (root_ / "work").string()},
        {"WORKER_ID", options_.name},
        {"MAX_CONCURRENT_JOBS", std::to_string(options_.max_jobs)},
        {"STORAGE_TYPE", "local"},
        {"LOCAL_STORAGE_DIR", (root_ / "out").string()},
        {"ALLOW_PRIVATE_INPUTS", "true"},
        {"DISABLE_AUTO_SHUTDOWN", "true"},
        {"VALIDATION_LEVEL", "minimal"},
        {"DRAIN_TIMEOUT", "5"},
        {"LOG_LEVEL", "info"},
        {"FFMPEG_NICE", "0"},
    };
    if (!options_.input_dir.empty()) env["LOCAL_INPUT_DIR"] = options_.input_dir.string();
    if (!options_.presets_file.empty()) env["PRESETS_FILE"] = options_.presets_file.string();
    for (const auto& [k, v] : options_.env) env[k] = v;
    for (const auto& [k, v] : env) argv.push_back(k + "=" + v);
    argv.push_back(worker_binary());
    process::SpawnOptions spawn;
    spawn.argv = std::move(argv);
    auto proc = process::Subprocess::spawn(std::move(spawn));
    if (!proc.ok()) return proc.status();
    proc_.emplace(*std::move(proc));
    done_ = false;
    drain_ = std::thread([this] { drain(); });
    return absl::OkStatus();
  }

  absl::Status wait_ready() {
    auto channel = grpc::CreateChannel(address(), grpc::InsecureChannelCredentials());
    auto stub = ::worker::v1::WorkerService::NewStub(channel);
    const auto end = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    while (std::chrono::steady_clock::now() < end) {
      grpc::ClientContext context;
      context.set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(500));
      context.set_wait_for_ready(true);
      ::worker::v1::WorkerStatus status;
      if (stub->GetStatus(&context, {}, &status).ok()) return absl::OkStatus();
      if (proc_->try_wait()) return absl::InternalError("worker exited at start:\n" + log());
    }
    return absl::DeadlineExceededError("worker did not answer GetStatus:\n" + log());
  }

  // SIGKILL: the worker vanishes mid-job. Its ffmpeg children (in their own
  // process groups) are killed too, as a crashed machine would lose them.
  void kill() {
    if (!proc_) return;
    ::kill(proc_->pid(), SIGKILL);
    proc_->wait();
    kill_strays();
    finish();
  }

  // SIGTERM and wait (the worker drains, then exits).
  void stop() {
    if (!proc_) return;
    thaw();
    proc_->terminate_group(std::chrono::seconds(10));
    kill_strays();
    finish();
  }

  // SIGSTOP / SIGCONT: a worker that hangs without closing its connections.
  void freeze() {
    if (proc_) ::kill(proc_->pid(), SIGSTOP);
  }
  void thaw() {
    if (proc_) ::kill(proc_->pid(), SIGCONT);
  }

  bool running() const { return proc_.has_value(); }
  uint16_t port() const { return options_.port; }
  std::string address() const { return "127.0.0.1:" + std::to_string(options_.port); }
  fs::path output_dir() const { return root_ / "out"; }

  std::string log() const {
    std::lock_guard lock(mu_);
    return log_;
  }
  // Lines of the worker's log with `msg` and `job_id`.
  int count_log(const std::string& msg, const std::string& job_id) const {
    const std::string text = log();
    int count = 0;
    size_t start = 0;
    while (start < text.size()) {
      size_t end = text.find('\n', start);
      if (end == std::string::npos) end = text.size();
      const std::string line = text.substr(start, end - start);
      if (line.find("\"msg\":\"" + msg + "\"") != std::string::npos &&
          line.find("\"job_id\":\"" + job_id + "\"") != std::string::npos) {
        ++count;
      }
      start = end + 1;
    }
    return count;
  }

 private:
  void drain() {
    std::string buffer;
    bool out_open = true;
    bool err_open = true;
    while (out_open || err_open) {
      pollfd fds[2] = {{proc_->stdout_fd(), POLLIN, 0}, {proc_->stderr_fd(), POLLIN, 0}};
      ::poll(fds, 2, 100);
      std::string chunk;
      if (out_open) out_open = process::read_available(fds[0].fd, chunk, 1 << 20);
      if (err_open) err_open = process::read_available(fds[1].fd, chunk, 1 << 20);
      if (!chunk.empty()) {
        std::lock_guard lock(mu_);
        log_ += chunk;
      }
      if (done_ && chunk.empty()) break;
    }
  }

  void finish() {
    done_ = true;
    if (drain_.joinable()) drain_.join();
    proc_.reset();
  }

  void kill_strays() {
    const std::string needle = (root_ / "work").string();
    for (const auto& entry : fs::directory_iterator("/proc")) {
      const std::string pid = entry.path().filename().string();
      if (pid.find_first_not_of("0123456789") != std::string::npos) continue;
      std::ifstream in(entry.path() / "cmdline", std::ios::binary);
      std::string cmdline((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
      if (cmdline.find(needle) != std::string::npos) ::kill(std::stoi(pid), SIGKILL);
    }
  }

  TestWorkerOptions options_;
  fs::path root_;
  std::optional<process::Subprocess> proc_;
  std::thread drain_;
  std::atomic<bool> done_{false};
  mutable std::mutex mu_;
  std::string log_;
};

}  // namespace flux::controlplane::testing
