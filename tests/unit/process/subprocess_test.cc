#include "shared/process/subprocess.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <thread>

#include "shared/core/error.h"

namespace flux::process {
namespace {

using namespace std::chrono_literals;

// A process that has exited but was reparented to an init that does not
// reap shows as a zombie: it no longer runs, which is what matters here.
bool process_gone(pid_t pid) {
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  if (!stat) return true;
  std::string content((std::istreambuf_iterator<char>(stat)), std::istreambuf_iterator<char>());
  size_t paren = content.rfind(')');
  return paren == std::string::npos || content.size() < paren + 3 || content[paren + 2] == 'Z';
}

bool wait_until_gone(pid_t pid, std::chrono::milliseconds limit = 3000ms) {
  auto deadline = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < deadline) {
    if (process_gone(pid)) return true;
    std::this_thread::sleep_for(10ms);
  }
  return process_gone(pid);
}

// Hands out the lines of a non-blocking fd one at a time.
class Lines {
 public:
  explicit Lines(int fd) : fd_(fd) {}
  // The next line, waiting up to `limit`; "" at end of file or timeout.
  std::string next(std::chrono::milliseconds limit = 3000ms) {
    auto deadline = std::chrono::steady_clock::now() + limit;
    while (buffered_.empty() && open_ && std::chrono::steady_clock::now() < deadline) {
      pollfd p{fd_, POLLIN, 0};
      ::poll(&p, 1, 50);
      open_ = reader_.read_available(fd_, buffered_);
    }
    if (buffered_.empty()) return "";
    std::string line = buffered_.front();
    buffered_.erase(buffered_.begin());
    return line;
  }

 private:
  int fd_;
  bool open_ = true;
  LineReader reader_;
  std::vector<std::string> buffered_;
};

std::string read_line(int fd) { return Lines(fd).next(); }

TEST(Run, ReportsExitCodeAndOutput) {
  auto result = run({"/bin/sh", "-c", "echo out; echo err >&2; exit 3"}, 5000ms);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->status.exit_code, 3);
  EXPECT_EQ(result->status.signal, 0);
  EXPECT_FALSE(result->status.ok());
  EXPECT_EQ(result->out, "out\n");
  EXPECT_EQ(result->err, "err\n");
  EXPECT_FALSE(result->timed_out);
  EXPECT_EQ(result->status.describe(), "exit code 3");
}

TEST(Run, SuccessLooksUpProgramInPath) {
  auto result = run({"true"}, 5000ms);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_TRUE(result->status.ok());
}

TEST(Run, ReportsDeathBySignal) {
  auto result = run({"/bin/sh", "-c", "kill -TERM $$"}, 5000ms);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->status.signal, SIGTERM);
  EXPECT_FALSE(result->status.ok());
  EXPECT_EQ(result->status.describe(), "killed by signal 15 (TERM)");
}

TEST(Run, CapsOutputAndStillRunsToCompletion) {
  // 1 MiB is far more than a pipe buffer: the child only finishes if the
  // excess is read and discarded.
  auto result = run({"/bin/sh", "-c", "head -c 1048576 /dev/zero; echo done >&2"}, 10000ms, 1000);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_TRUE(result->status.ok());
  EXPECT_EQ(result->out.size(), 1000u);
  EXPECT_EQ(result->err, "done\n");
}

TEST(Run, TimeoutKillsTheWholeGroup) {
  auto start = std::chrono::steady_clock::now();
  auto result = run({"/bin/sh", "-c", "sleep 100 & echo $!; wait"}, 300ms);
  auto elapsed = std::chrono::steady_clock::now() - start;
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_TRUE(result->timed_out);
  EXPECT_EQ(result->status.signal, SIGKILL);
  EXPECT_LT(elapsed, 3s);
  pid_t grandchild = std::stoi(result->out);
  ASSERT_GT(grandchild, 0);
  EXPECT_TRUE(wait_until_gone(grandchild)) << "sleep " << grandchild << " survived";
}

TEST(Run, CancelStopsTheGroupWithTheTokensReason) {
  CancelToken token;
  std::thread canceller([&token] {
    std::this_thread::sleep_for(200ms);
    token.cancel("timeout");
  });
  auto start = std::chrono::steady_clock::now();
  auto result = run({"/bin/sh", "-c", "sleep 100"}, 60000ms, 1024, &token);
  auto elapsed = std::chrono::steady_clock::now() - start;
  canceller.join();
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(error_code(result.status()), "timeout");
  EXPECT_LT(elapsed, 3s);
}

TEST(Run, MissingProgramIsSpawnFailed) {
  auto result = run({"flux-no-such-program-xyz"}, 1000ms);
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(error_code(result.status()), "spawn_failed");
  EXPECT_NE(result.status().message().find("flux-no-such-program-xyz"), absl::string_view::npos);

  auto by_path = run({"/nonexistent/dir/prog"}, 1000ms);
  ASSERT_FALSE(by_path.ok());
  EXPECT_EQ(error_code(by_path.status()), "spawn_failed");

  auto empty = run({}, 1000ms);
  EXPECT_EQ(error_code(empty.status()), "spawn_failed");
}

TEST(Spawn, ExecFailureInChildIsSpawnFailed) {
  SpawnOptions opts;
  opts.argv = {"/bin/true"};
  opts.cwd = "/nonexistent-flux-dir";
  auto child = Subprocess::spawn(opts);
  ASSERT_FALSE(child.ok());
  EXPECT_EQ(error_code(child.status()), "spawn_failed");
  EXPECT_NE(child.status().message().find("No such file"), absl::string_view::npos) << child.status();
}

TEST(Spawn, DeliversProgressPipeAtTheRequestedFd) {
  for (int target : {3, 7}) {
    SpawnOptions opts;
    opts.argv = {"/bin/sh", "-c", "echo progress=continue >&" + std::to_string(target)};
    opts.progress_fd = target;
    auto child = Subprocess::spawn(opts);
    ASSERT_TRUE(child.ok()) << child.status();
    ASSERT_GE(child->progress_fd(), 0);
    EXPECT_EQ(read_line(child->progress_fd()), "progress=continue") << "fd " << target;
    EXPECT_TRUE(child->wait().ok());
  }
}

TEST(Spawn, NoParentFdLeaksIntoTheChild) {
  // An fd the parent opened without O_CLOEXEC (as third-party code might).
  int leaky = ::fcntl(::open("/dev/null", O_RDONLY), F_DUPFD, 20);
  ASSERT_GE(leaky, 20);
  SpawnOptions opts;
  opts.argv = {"/bin/sh", "-c", "ls /proc/$$/fd"};
  opts.progress_fd = 3;
  auto child = Subprocess::spawn(opts);
  ASSERT_TRUE(child.ok()) << child.status();
  std::string out;
  while (read_available(child->stdout_fd(), out, 1 << 16)) {
    pollfd p{child->stdout_fd(), POLLIN, 0};
    ::poll(&p, 1, 100);
  }
  child->wait();
  ::close(leaky);
  std::istringstream fds(out);
  std::vector<int> open_fds;
  for (int fd; fds >> fd;) open_fds.push_back(fd);
  // 0-2, the progress pipe at 3, and possibly the fd ls itself opened to
  // read the directory (which is its own, not inherited).
  for (int fd : open_fds) EXPECT_NE(fd, leaky) << "the parent's fd " << leaky << " leaked: " << out;
  EXPECT_GE(open_fds.size(), 4u) << out;
  EXPECT_LE(open_fds.size(), 5u) << out;
}

TEST(Spawn, StdoutToDevNullWhenNotCaptured) {
  SpawnOptions opts;
  opts.argv = {"/bin/sh", "-c", "a=$(readlink /proc/$$/fd/1); b=$(readlink /proc/$$/fd/0); echo $a >&2; echo $b >&2"};
  opts.capture_stdout = false;
  auto child = Subprocess::spawn(opts);
  ASSERT_TRUE(child.ok()) << child.status();
  EXPECT_EQ(child->stdout_fd(), -1);
  Lines err(child->stderr_fd());
  EXPECT_EQ(err.next(), "/dev/null");
  EXPECT_EQ(err.next(), "/dev/null");
  child->wait();
}

TEST(Spawn, DestructorKillsGroupAndReaps) {
  pid_t child_pid = -1;
  pid_t grandchild = -1;
  {
    SpawnOptions opts;
    opts.argv = {"/bin/sh", "-c", "sleep 100 & echo $!; wait"};
    auto child = Subprocess::spawn(opts);
    ASSERT_TRUE(child.ok()) << child.status();
    child_pid = child->pid();
    grandchild = std::stoi(read_line(child->stdout_fd()));
    EXPECT_FALSE(child->try_wait().has_value());
  }
  // Reaped: no longer our child.
  errno = 0;
  EXPECT_EQ(::waitpid(child_pid, nullptr, WNOHANG), -1);
  EXPECT_EQ(errno, ECHILD);
  EXPECT_TRUE(process_gone(child_pid));
  EXPECT_TRUE(wait_until_gone(grandchild));
}

// What a SIGKILLed worker looks like to its ffmpeg: the spawning thread is
// gone and no destructor runs. The Subprocess is moved out of the thread so
// that only the thread's end can stop the child.
TEST(Spawn, ChildDiesWithTheThreadThatSpawnedIt) {
  std::optional<Subprocess> child;
  std::thread([&child] {
    SpawnOptions opts;
    opts.argv = {"/bin/sleep", "100"};
    auto spawned = Subprocess::spawn(opts);
    ASSERT_TRUE(spawned.ok()) << spawned.status();
    child.emplace(std::move(*spawned));
  }).join();
  ASSERT_TRUE(child.has_value());
  ExitStatus status = child->wait();
  EXPECT_EQ(status.signal, SIGKILL) << status.describe();
}

TEST(Spawn, ChildMayOutliveItsThreadWhenAsked) {
  std::optional<Subprocess> child;
  std::thread([&child] {
    SpawnOptions opts;
    opts.argv = {"/bin/sleep", "100"};
    opts.die_with_spawning_thread = false;
    auto spawned = Subprocess::spawn(opts);
    ASSERT_TRUE(spawned.ok()) << spawned.status();
    child.emplace(std::move(*spawned));
  }).join();
  ASSERT_TRUE(child.has_value());
  std::this_thread::sleep_for(200ms);
  EXPECT_FALSE(child->try_wait().has_value());
}

TEST(Spawn, GroupLeftoversAreKilledWhenTheChildExits) {
  SpawnOptions opts;
  opts.argv = {"/bin/sh", "-c", "sleep 100 & echo $!"};
  auto child = Subprocess::spawn(opts);
  ASSERT_TRUE(child.ok()) << child.status();
  pid_t grandchild = std::stoi(read_line(child->stdout_fd()));
  EXPECT_TRUE(child->wait().ok());
  EXPECT_TRUE(wait_until_gone(grandchild));
}

TEST(Spawn, TerminateGroupUsesSigtermThenSigkill) {
  {
    SpawnOptions opts;
    opts.argv = {"/bin/sh", "-c", "trap 'exit 7' TERM; echo ready; while :; do sleep 0.05; done"};
    auto child = Subprocess::spawn(opts);
    ASSERT_TRUE(child.ok()) << child.status();
    ASSERT_EQ(read_line(child->stdout_fd()), "ready");
    child->terminate_group(5000ms);
    ASSERT_TRUE(child->exit_status().has_value());
    EXPECT_EQ(child->exit_status()->exit_code, 7);  // handled SIGTERM itself
  }
  {
    SpawnOptions opts;
    opts.argv = {"/bin/sh", "-c", "trap '' TERM; echo ready; while :; do sleep 0.05; done"};
    auto child = Subprocess::spawn(opts);
    ASSERT_TRUE(child.ok()) << child.status();
    ASSERT_EQ(read_line(child->stdout_fd()), "ready");
    auto start = std::chrono::steady_clock::now();
    child->terminate_group(300ms);
    auto elapsed = std::chrono::steady_clock::now() - start;
    ASSERT_TRUE(child->exit_status().has_value());
    EXPECT_EQ(child->exit_status()->signal, SIGKILL);
    EXPECT_GE(elapsed, 250ms);
    EXPECT_LT(elapsed, 3s);
  }
}

TEST(Spawn, AppliesCwdFileSizeLimitAndNice) {
  auto dir = std::filesystem::temp_directory_path() / ("flux-process-test-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  SpawnOptions opts;
  opts.argv = {"/bin/sh", "-c", "pwd; nice; head -c 100000 /dev/zero > big"};
  opts.cwd = dir;
  opts.file_size_bytes = 1000;
  opts.nice = 5;
  auto child = Subprocess::spawn(opts);
  ASSERT_TRUE(child.ok()) << child.status();
  Lines out(child->stdout_fd());
  EXPECT_EQ(out.next(), dir.string());
  // A level, not an increment; never below the parent's own.
  int expected_nice = std::max(5, ::getpriority(PRIO_PROCESS, 0));
  EXPECT_EQ(out.next(), std::to_string(expected_nice));
  ExitStatus status = child->wait();
  EXPECT_FALSE(status.ok());  // the shell reports head's SIGXFSZ as a failure
  EXPECT_LE(std::filesystem::file_size(dir / "big"), 1000u);
  std::filesystem::remove_all(dir);
}

std::string read_text(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// "Max cpu time   7   8   seconds" -> {"7", "8"}.
std::pair<std::string, std::string> limit_of(const std::string& limits, const std::string& name) {
  size_t at = limits.find(name);
  if (at == std::string::npos) return {};
  std::istringstream line(limits.substr(at + name.size(), limits.find('\n', at) - at - name.size()));
  std::pair<std::string, std::string> soft_hard;
  line >> soft_hard.first >> soft_hard.second;
  return soft_hard;
}

// The limits as the kernel holds them for the running program (after exec).
TEST(Spawn, LimitsAndNiceAreThoseOfTheRunningProgram) {
  SpawnOptions opts;
  opts.argv = {"sleep", "30"};
  opts.cpu_seconds = 7;
  opts.address_space_bytes = 512ull << 20;
  opts.file_size_bytes = 123456;
  opts.nice = 7;
  auto child = Subprocess::spawn(opts);
  ASSERT_TRUE(child.ok()) << child.status();
  const std::string proc = "/proc/" + std::to_string(child->pid());
  // The exec has happened once the command line is sleep's.
  for (int i = 0; i < 300 && read_text(proc + "/cmdline").rfind("sleep", 0) != 0; ++i)
    std::this_thread::sleep_for(10ms);
  const std::string limits = read_text(proc + "/limits");
  EXPECT_EQ(limit_of(limits, "Max cpu time"), std::make_pair(std::string("7"), std::string("8"))) << limits;
  EXPECT_EQ(limit_of(limits, "Max address space"), std::make_pair(std::to_string(512 << 20), std::to_string(512 << 20)))
      << limits;
  EXPECT_EQ(limit_of(limits, "Max file size"), std::make_pair(std::string("123456"), std::string("123456"))) << limits;
  // Field 19 of stat is the niceness.
  std::string stat = read_text(proc + "/stat");
  std::istringstream fields(stat.substr(stat.rfind(')') + 2));
  std::string field;
  for (int i = 3; i <= 19; ++i) fields >> field;
  EXPECT_EQ(field, std::to_string(std::max(7, ::getpriority(PRIO_PROCESS, 0))));
  child->terminate_group(0ms);
}

TEST(Spawn, CpuLimitStopsTheChildAndItsCpuTimeIsReported) {
  SpawnOptions opts;
  opts.argv = {"/bin/sh", "-c", "while :; do :; done"};
  opts.cpu_seconds = 1;
  auto child = Subprocess::spawn(opts);
  ASSERT_TRUE(child.ok()) << child.status();
  ExitStatus status = child->wait();
  // The shell does not handle SIGXCPU, so it dies of it at one second (the
  // time wait4 reports may fall a little short of the kernel's own count).
  EXPECT_EQ(status.signal, SIGXCPU) << status.describe();
  EXPECT_GE(status.cpu_seconds, 0.8);
  EXPECT_LT(status.cpu_seconds, 3);
}

TEST(Run, WithSpawnOptions) {
  SpawnOptions opts;
  opts.argv = {"/bin/sh", "-c", "nice; echo oops >&2"};
  opts.nice = 3;
  opts.capture_stdout = false;  // run() always captures
  auto result = run_with(opts, 10s);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->out, std::to_string(std::max(3, ::getpriority(PRIO_PROCESS, 0))) + "\n");
  EXPECT_EQ(result->err, "oops\n");
}

TEST(Spawn, MoveTransfersOwnership) {
  SpawnOptions opts;
  opts.argv = {"/bin/sh", "-c", "exit 4"};
  auto child = Subprocess::spawn(opts);
  ASSERT_TRUE(child.ok());
  Subprocess moved = std::move(*child);
  EXPECT_EQ(child->pid(), -1);
  EXPECT_EQ(moved.wait().exit_code, 4);
}

TEST(LineReader, SplitsChunksIntoLines) {
  LineReader reader(8);
  std::vector<std::string> lines;
  reader.feed("fra", lines);
  EXPECT_TRUE(lines.empty());
  reader.feed("me=1\r\nfps=2", lines);
  reader.feed("5\n\nthis line is far too long\nok\nend", lines);
  reader.flush(lines);
  EXPECT_EQ(lines, (std::vector<std::string>{"frame=1", "fps=25", "", "this lin", "ok", "end"}));
}

}  // namespace
}  // namespace flux::process
