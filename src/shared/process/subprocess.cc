#include "shared/process/subprocess.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <system_error>
#include <thread>
#include <utility>

#include "shared/core/error.h"

extern char** environ;

namespace flux::process {
namespace {

#ifndef CLOSE_RANGE_CLOEXEC
constexpr unsigned kCloseRangeCloexec = 1U << 2;
#else
constexpr unsigned kCloseRangeCloexec = CLOSE_RANGE_CLOEXEC;
#endif

// Owns one file descriptor.
class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) : fd_(fd) {}
  UniqueFd(UniqueFd&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
  UniqueFd& operator=(UniqueFd&& o) noexcept {
    if (this != &o) {
      reset();
      fd_ = std::exchange(o.fd_, -1);
    }
    return *this;
  }
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;
  ~UniqueFd() { reset(); }
  int get() const { return fd_; }
  int release() { return std::exchange(fd_, -1); }
  void reset(int fd = -1) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = fd;
  }

 private:
  int fd_ = -1;
};

absl::Status spawn_error(std::string_view message) {
  return make_error(absl::StatusCode::kFailedPrecondition, "spawn_failed", message);
}

std::string errno_text(int err) { return std::error_code(err, std::generic_category()).message(); }

bool is_executable_file(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode) && ::access(path.c_str(), X_OK) == 0;
}

// The program to exec: argv[0] itself when it names a path, else the first
// executable match in PATH (resolved before fork, so the child only execs).
std::optional<std::string> resolve_program(const std::string& name) {
  if (name.find('/') != std::string::npos) return name;
  // NOLINTNEXTLINE(concurrency-mt-unsafe): PATH is only read, never set, by this program.
  const char* env_path = std::getenv("PATH");
  std::string_view search = env_path != nullptr && *env_path != '\0' ? env_path : "/usr/local/bin:/usr/bin:/bin";
  while (true) {
    size_t colon = search.find(':');
    std::string_view dir = search.substr(0, colon);
    std::string candidate = (dir.empty() ? std::string(".") : std::string(dir)) + "/" + name;
    if (is_executable_file(candidate)) return candidate;
    if (colon == std::string_view::npos) break;
    search.remove_prefix(colon + 1);
  }
  return std::nullopt;
}

// Creates a pipe with both ends close-on-exec.
absl::Status make_pipe(UniqueFd& read_end, UniqueFd& write_end) {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) return spawn_error("pipe: " + errno_text(errno));
  read_end.reset(fds[0]);
  write_end.reset(fds[1]);
  return absl::OkStatus();
}

// Moves a child-side fd to a number >= min_fd so that the child's dup2 calls
// onto 0, 1, 2 and progress_fd never overwrite another fd it still needs.
absl::Status move_at_or_above(UniqueFd& fd, int min_fd) {
  if (fd.get() < 0 || fd.get() >= min_fd) return absl::OkStatus();
  int moved = ::fcntl(fd.get(), F_DUPFD_CLOEXEC, min_fd);
  if (moved < 0) return spawn_error("fcntl: " + errno_text(errno));
  fd.reset(moved);
  return absl::OkStatus();
}

void set_nonblocking(int fd) {
  int flags = ::fcntl(fd, F_GETFL);
  if (flags >= 0) ::fcntl(fd, F_SETFL, flags | O_NONBLOCK);
}

// Marks [first, last] close-on-exec, in the child (async-signal-safe only).
void cloexec_range(unsigned first, unsigned last, int fallback_max_fd) {
  if (first > last) return;
  if (::syscall(SYS_close_range, first, last, kCloseRangeCloexec) == 0) return;
  unsigned end = std::min<unsigned>(last, static_cast<unsigned>(fallback_max_fd));
  for (unsigned fd = first; fd <= end; ++fd) {
    int flags = ::fcntl(static_cast<int>(fd), F_GETFD);
    if (flags >= 0) ::fcntl(static_cast<int>(fd), F_SETFD, flags | FD_CLOEXEC);
  }
}

// Async-signal-safe (a raw syscall wrapper): runs in the forked child.
void set_limit(int resource, uint64_t soft, uint64_t hard) {
  if (soft == 0) return;
  struct rlimit limit {};
  limit.rlim_cur = static_cast<rlim_t>(soft);
  limit.rlim_max = static_cast<rlim_t>(hard);
  // Lowering the hard limit may be refused when it is already lower; then at
  // least the soft limit applies.
  if (::setrlimit(resource, &limit) != 0) {
    struct rlimit current {};
    if (::getrlimit(resource, &current) == 0) {
      limit.rlim_max = current.rlim_max;
      if (current.rlim_max != RLIM_INFINITY && limit.rlim_cur > current.rlim_max) limit.rlim_cur = current.rlim_max;
      ::setrlimit(resource, &limit);
    }
  }
}

// Everything the child needs, prepared before fork: after fork in a
// multi-threaded parent only async-signal-safe calls are allowed.
struct ChildPlan {
  const char* program = nullptr;
  char* const* argv = nullptr;
  const char* cwd = nullptr;
  int stdin_fd = -1, stdout_fd = -1, stderr_fd = -1;
  int progress_src = -1, progress_target = -1;
  int exec_error_fd = -1;
  int fallback_max_fd = 1024;
  // -1 = keep the inherited niceness.
  int niceness = -1;
  pid_t parent = 0;  // set when the child must die with the spawning thread
  const SpawnOptions* opts = nullptr;
};

// Reports errno to the parent through the exec-error pipe and exits.
[[noreturn]] void child_failed(int exec_error_fd) {
  int err = errno;
  ssize_t ignored = ::write(exec_error_fd, &err, sizeof err);
  (void)ignored;
  ::_exit(127);
}

[[noreturn]] void run_child(const ChildPlan& plan) {
  auto fail = [&plan]() { child_failed(plan.exec_error_fd); };
  ::setpgid(0, 0);
  if (plan.parent != 0) {
    if (::prctl(PR_SET_PDEATHSIG, SIGKILL) != 0) fail();
    // The parent may have died between fork and prctl: then nobody would
    // send the signal.
    if (::getppid() != plan.parent) ::_exit(127);
  }
  if (::dup2(plan.stdin_fd, 0) < 0 || ::dup2(plan.stdout_fd, 1) < 0 || ::dup2(plan.stderr_fd, 2) < 0) fail();
  if (plan.progress_target >= 3 && ::dup2(plan.progress_src, plan.progress_target) < 0) fail();

  // Ignored signals and the blocked mask survive exec; the child starts clean.
  struct sigaction dfl {};
  dfl.sa_handler = SIG_DFL;
  sigemptyset(&dfl.sa_mask);
  for (int sig = 1; sig < NSIG; ++sig) {
    if (sig != SIGKILL && sig != SIGSTOP) ::sigaction(sig, &dfl, nullptr);
  }
  sigset_t none;
  sigemptyset(&none);
  // NOLINTNEXTLINE(concurrency-mt-unsafe): the forked child has a single thread.
  ::sigprocmask(SIG_SETMASK, &none, nullptr);

  if (plan.niceness >= 0 && ::setpriority(PRIO_PROCESS, 0, plan.niceness) != 0) fail();
  if (plan.cwd != nullptr && ::chdir(plan.cwd) != 0) fail();

  // No fd of the parent other than 0, 1, 2 and the progress pipe reaches the
  // program, whatever flags the parent's other threads opened them with.
  if (plan.progress_target >= 3) {
    cloexec_range(3, static_cast<unsigned>(plan.progress_target) - 1, plan.fallback_max_fd);
    cloexec_range(static_cast<unsigned>(plan.progress_target) + 1, ~0U, plan.fallback_max_fd);
  } else {
    cloexec_range(3, ~0U, plan.fallback_max_fd);
  }
  // Last, so that nothing above runs short of address space or CPU time.
  set_limit(RLIMIT_CPU, plan.opts->cpu_seconds, plan.opts->cpu_seconds + 1);
  set_limit(RLIMIT_FSIZE, plan.opts->file_size_bytes, plan.opts->file_size_bytes);
  set_limit(RLIMIT_AS, plan.opts->address_space_bytes, plan.opts->address_space_bytes);
  ::execve(plan.program, plan.argv, environ);
  child_failed(plan.exec_error_fd);
}

ExitStatus decode_wait_status(int raw, const struct rusage& usage) {
  ExitStatus status;
  auto seconds = [](const timeval& tv) { return static_cast<double>(tv.tv_sec) + tv.tv_usec / 1e6; };
  status.cpu_seconds = seconds(usage.ru_utime) + seconds(usage.ru_stime);
  if (WIFEXITED(raw)) {
    status.exit_code = WEXITSTATUS(raw);
  } else if (WIFSIGNALED(raw)) {
    status.signal = WTERMSIG(raw);
  }
  return status;
}

}  // namespace

std::string ExitStatus::describe() const {
  if (signal != 0) {
    const char* abbrev = ::sigabbrev_np(signal);
    return "killed by signal " + std::to_string(signal) + (abbrev != nullptr ? std::string(" (") + abbrev + ")" : "");
  }
  if (exit_code < 0) return "not exited";
  return "exit code " + std::to_string(exit_code);
}

absl::StatusOr<Subprocess> Subprocess::spawn(SpawnOptions opts) {
  if (opts.argv.empty() || opts.argv[0].empty()) return spawn_error("empty argv");
  if (opts.progress_fd >= 0 && opts.progress_fd < 3) {
    return make_error(absl::StatusCode::kInvalidArgument, "spawn_failed", "progress_fd must be >= 3");
  }
  std::optional<std::string> program = resolve_program(opts.argv[0]);
  if (!program) return spawn_error("program not found in PATH: " + opts.argv[0]);
  if (!is_executable_file(*program)) return spawn_error("program not found or not executable: " + *program);

  std::vector<char*> argv;
  argv.reserve(opts.argv.size() + 1);
  for (std::string& arg : opts.argv) argv.push_back(arg.data());
  argv.push_back(nullptr);
  std::string cwd = opts.cwd ? opts.cwd->string() : std::string();

  UniqueFd dev_null(::open("/dev/null", O_RDWR | O_CLOEXEC));
  if (dev_null.get() < 0) return spawn_error("open /dev/null: " + errno_text(errno));
  UniqueFd out_r, out_w, err_r, err_w, prog_r, prog_w, exec_r, exec_w;
  if (opts.capture_stdout) {
    if (auto s = make_pipe(out_r, out_w); !s.ok()) return s;
  }
  if (opts.capture_stderr) {
    if (auto s = make_pipe(err_r, err_w); !s.ok()) return s;
  }
  if (opts.progress_fd >= 3) {
    if (auto s = make_pipe(prog_r, prog_w); !s.ok()) return s;
  }
  if (auto s = make_pipe(exec_r, exec_w); !s.ok()) return s;
  const int min_child_fd = std::max(3, opts.progress_fd + 1);
  for (UniqueFd* fd : {&dev_null, &out_w, &err_w, &prog_w, &exec_w}) {
    if (auto s = move_at_or_above(*fd, min_child_fd); !s.ok()) return s;
  }

  ChildPlan plan;
  plan.program = program->c_str();
  plan.argv = argv.data();
  plan.cwd = opts.cwd ? cwd.c_str() : nullptr;
  plan.stdin_fd = dev_null.get();
  plan.stdout_fd = opts.capture_stdout ? out_w.get() : dev_null.get();
  plan.stderr_fd = opts.capture_stderr ? err_w.get() : dev_null.get();
  plan.progress_src = prog_w.get();
  plan.progress_target = opts.progress_fd >= 3 ? opts.progress_fd : -1;
  plan.exec_error_fd = exec_w.get();
  plan.opts = &opts;
  long open_max = ::sysconf(_SC_OPEN_MAX);
  plan.fallback_max_fd = static_cast<int>(std::clamp<long>(open_max, 1024, 1 << 16));
  if (opts.nice > 0) {
    errno = 0;
    int current = ::getpriority(PRIO_PROCESS, 0);
    if (errno == 0 && std::min(opts.nice, 19) > current) plan.niceness = std::min(opts.nice, 19);
  }

  if (opts.die_with_spawning_thread) plan.parent = ::getpid();

  pid_t pid = ::fork();
  if (pid < 0) return spawn_error("fork: " + errno_text(errno));
  if (pid == 0) run_child(plan);

  // The child also does this itself; doing it here too closes the window in
  // which a group kill could miss it. EACCES after its exec is harmless.
  ::setpgid(pid, pid);
  dev_null.reset();
  out_w.reset();
  err_w.reset();
  prog_w.reset();
  exec_w.reset();

  Subprocess child;
  child.pid_ = pid;
  // The exec-error pipe closes on a successful exec, or carries errno.
  int child_errno = 0;
  ssize_t n;
  do {
    n = ::read(exec_r.get(), &child_errno, sizeof child_errno);
  } while (n < 0 && errno == EINTR);
  if (n == static_cast<ssize_t>(sizeof child_errno)) {
    child.wait();
    return spawn_error("cannot start " + *program + ": " + errno_text(child_errno));
  }
  child.stdout_fd_ = out_r.release();
  child.stderr_fd_ = err_r.release();
  child.progress_fd_ = prog_r.release();
  for (int fd : {child.stdout_fd_, child.stderr_fd_, child.progress_fd_}) {
    if (fd >= 0) set_nonblocking(fd);
  }
  return child;
}

Subprocess::Subprocess(Subprocess&& other) noexcept
    : pid_(std::exchange(other.pid_, -1)),
      stdout_fd_(std::exchange(other.stdout_fd_, -1)),
      stderr_fd_(std::exchange(other.stderr_fd_, -1)),
      progress_fd_(std::exchange(other.progress_fd_, -1)),
      status_(std::exchange(other.status_, std::nullopt)) {}

Subprocess& Subprocess::operator=(Subprocess&& other) noexcept {
  if (this != &other) {
    release();
    pid_ = std::exchange(other.pid_, -1);
    stdout_fd_ = std::exchange(other.stdout_fd_, -1);
    stderr_fd_ = std::exchange(other.stderr_fd_, -1);
    progress_fd_ = std::exchange(other.progress_fd_, -1);
    status_ = std::exchange(other.status_, std::nullopt);
  }
  return *this;
}

Subprocess::~Subprocess() { release(); }

void Subprocess::release() {
  if (pid_ > 0 && !status_) {
    ::kill(-pid_, SIGKILL);
    ::kill(pid_, SIGKILL);
    reap_exited(/*block=*/true);
  }
  close_stdout();
  close_stderr();
  close_progress();
  pid_ = -1;
}

void Subprocess::close_stdout() {
  if (stdout_fd_ >= 0) ::close(std::exchange(stdout_fd_, -1));
}
void Subprocess::close_stderr() {
  if (stderr_fd_ >= 0) ::close(std::exchange(stderr_fd_, -1));
}
void Subprocess::close_progress() {
  if (progress_fd_ >= 0) ::close(std::exchange(progress_fd_, -1));
}

// The child is first observed without being reaped (WNOWAIT): while it is a
// zombie its pid, and so its process group id, cannot be reused, which makes
// killing what is left of the group safe. Only then is it reaped.
void Subprocess::reap_exited(bool block) {
  if (pid_ <= 0 || status_) return;
  siginfo_t info{};
  int flags = WEXITED | WNOWAIT | (block ? 0 : WNOHANG);
  int rc;
  do {
    rc = ::waitid(P_PID, static_cast<id_t>(pid_), &info, flags);
  } while (rc != 0 && errno == EINTR);
  if (rc != 0) {
    // Not our child any more (someone else reaped it): nothing to wait for.
    status_ = ExitStatus{};
    return;
  }
  if (info.si_pid == 0) return;  // still running
  ::kill(-pid_, SIGKILL);
  int raw = 0;
  struct rusage usage {};
  pid_t reaped;
  do {
    reaped = ::wait4(pid_, &raw, 0, &usage);
  } while (reaped < 0 && errno == EINTR);
  status_ = reaped == pid_ ? decode_wait_status(raw, usage) : ExitStatus{};
}

std::optional<ExitStatus> Subprocess::try_wait() {
  reap_exited(/*block=*/false);
  return status_;
}

ExitStatus Subprocess::wait() {
  reap_exited(/*block=*/true);
  return status_.value_or(ExitStatus{});
}

void Subprocess::terminate_group(std::chrono::milliseconds grace) {
  if (pid_ <= 0 || status_) return;
  if (grace.count() > 0) ::kill(-pid_, SIGTERM);
  auto deadline = std::chrono::steady_clock::now() + grace;
  while (!try_wait()) {
    auto now = std::chrono::steady_clock::now();
    if (now >= deadline) break;
    std::this_thread::sleep_for(
        std::min<std::chrono::steady_clock::duration>(deadline - now, std::chrono::milliseconds(10)));
  }
  if (!status_) {
    ::kill(-pid_, SIGKILL);
    ::kill(pid_, SIGKILL);
    wait();
  }
}

bool read_available(int fd, std::string& out, size_t cap) {
  char buf[16384];
  while (true) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n > 0) {
      size_t room = cap > out.size() ? cap - out.size() : 0;
      out.append(buf, std::min(room, static_cast<size_t>(n)));
      continue;
    }
    if (n == 0) return false;
    if (errno == EINTR) continue;
    return errno == EAGAIN || errno == EWOULDBLOCK;
  }
}

void LineReader::feed(std::string_view bytes, std::vector<std::string>& lines) {
  while (!bytes.empty()) {
    size_t newline = bytes.find('\n');
    std::string_view piece = bytes.substr(0, newline);
    if (!overlong_) {
      size_t room = max_line_bytes_ - partial_.size();
      if (piece.size() > room) {
        partial_.append(piece.substr(0, room));
        overlong_ = true;
      } else {
        partial_.append(piece);
      }
    }
    if (newline == std::string_view::npos) return;
    if (!partial_.empty() && partial_.back() == '\r') partial_.pop_back();
    lines.push_back(std::move(partial_));
    partial_.clear();
    overlong_ = false;
    bytes.remove_prefix(newline + 1);
  }
}

void LineReader::flush(std::vector<std::string>& lines) {
  if (!partial_.empty()) {
    if (partial_.back() == '\r') partial_.pop_back();
    lines.push_back(std::move(partial_));
  }
  partial_.clear();
  overlong_ = false;
}

bool LineReader::read_available(int fd, std::vector<std::string>& lines) {
  char buf[16384];
  while (true) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n > 0) {
      feed(std::string_view(buf, static_cast<size_t>(n)), lines);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return true;
    flush(lines);
    return false;
  }
}

absl::StatusOr<RunResult> run(std::vector<std::string> argv, std::chrono::milliseconds timeout, size_t max_output,
                              const flux::CancelToken* cancel) {
  SpawnOptions opts;
  opts.argv = std::move(argv);
  return run_with(std::move(opts), timeout, max_output, cancel);
}

absl::StatusOr<RunResult> run_with(SpawnOptions opts, std::chrono::milliseconds timeout, size_t max_output,
                                   const flux::CancelToken* cancel) {
  opts.capture_stdout = true;
  opts.capture_stderr = true;
  absl::StatusOr<Subprocess> spawned = Subprocess::spawn(std::move(opts));
  if (!spawned.ok()) return spawned.status();
  Subprocess& child = *spawned;
  RunResult result;
  const auto deadline = std::chrono::steady_clock::now() + timeout;

  auto drain = [&]() {
    if (child.stdout_fd() >= 0 && !read_available(child.stdout_fd(), result.out, max_output)) child.close_stdout();
    if (child.stderr_fd() >= 0 && !read_available(child.stderr_fd(), result.err, max_output)) child.close_stderr();
  };

  while (true) {
    if (cancel != nullptr && cancel->cancelled()) {
      child.terminate_group(std::chrono::milliseconds(0));
      std::string reason = cancel->reason();
      return make_error(absl::StatusCode::kCancelled, reason,
                        "process " + std::to_string(child.pid()) + " stopped: " + reason);
    }
    if (timeout.count() > 0 && std::chrono::steady_clock::now() >= deadline) {
      child.terminate_group(std::chrono::milliseconds(0));
      result.timed_out = true;
      drain();
      result.status = child.exit_status().value_or(ExitStatus{});
      return result;
    }
    if (auto status = child.try_wait()) {
      // Whatever it wrote before exiting is still in the pipes.
      drain();
      result.status = *status;
      return result;
    }
    pollfd fds[2];
    nfds_t count = 0;
    for (int fd : {child.stdout_fd(), child.stderr_fd()}) {
      if (fd >= 0) fds[count++] = pollfd{fd, POLLIN, 0};
    }
    int wait_ms = 25;
    if (timeout.count() > 0) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
      wait_ms = static_cast<int>(std::clamp<int64_t>(left.count() + 1, 0, wait_ms));
    }
    if (count == 0) {
      std::this_thread::sleep_for(std::chrono::milliseconds(wait_ms));
    } else {
      ::poll(fds, count, wait_ms);
      drain();
    }
  }
}

}  // namespace flux::process
