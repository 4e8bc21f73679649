#pragma once
// Child processes without a shell: argv only, each child in its own process
// group so that everything it starts can be stopped together, no inherited
// file descriptors beyond the ones asked for, and RAII so that a forgotten
// child never outlives its owner.
#include <sys/types.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "shared/core/cancel_token.h"

namespace flux::process {

// How a child ended: a normal exit (exit_code >= 0, signal 0) or death by a
// signal (signal > 0, exit_code -1).
struct ExitStatus {
  int exit_code = -1;
  int signal = 0;
  // User plus system CPU time the child used (from wait4), in seconds.
  double cpu_seconds = 0;
  bool ok() const { return signal == 0 && exit_code == 0; }
  // "exit code 1", "killed by signal 9 (KILL)".
  std::string describe() const;
};

struct SpawnOptions {
  // argv[0] is the program: a path when it contains '/', else looked up in PATH.
  std::vector<std::string> argv;
  // When false the stream goes to /dev/null.
  bool capture_stdout = true;
  bool capture_stderr = true;
  // When >= 3 the child gets the write end of an extra pipe at exactly this fd
  // number (for "ffmpeg -progress pipe:3"); progress_fd() is the read end.
  int progress_fd = -1;
  std::optional<std::filesystem::path> cwd;
  // Limits applied in the child just before exec; 0 = unlimited / unchanged.
  // RLIMIT_CPU: SIGXCPU at cpu_seconds, SIGKILL one second later (a program
  // that handles SIGXCPU, as ffmpeg does, gets that second to stop).
  uint64_t cpu_seconds = 0;
  uint64_t address_space_bytes = 0;  // RLIMIT_AS
  uint64_t file_size_bytes = 0;      // RLIMIT_FSIZE: SIGXFSZ on a write past it
  // The niceness the child runs at (0..19). Never below the parent's own:
  // lowering it would need privileges, so a parent already nicer than this
  // passes its own niceness on. 0 = the parent's.
  int nice = 0;
  // SIGKILL the child when the thread that spawned it ends, which includes the
  // parent being SIGKILLed: a killed worker leaves no ffmpeg behind, without
  // waiting for its destructor. The thread that spawns must then outlive the
  // child (spawn and wait on one thread, as run() and the encoder do).
  bool die_with_spawning_thread = true;
};

// A running child. Move-only. The destructor SIGKILLs the child's whole
// process group and reaps the child, so nothing it started survives it.
// When the child itself is seen to exit (try_wait/wait), whatever it left
// running in its group is killed too. Not thread-safe: one owner at a time.
class Subprocess {
 public:
  // Starts the child in a new process group (pgid == pid), stdin from
  // /dev/null, signal dispositions and mask reset, every fd other than
  // 0, 1, 2 and progress_fd closed on exec. Errors carry code "spawn_failed"
  // (program missing or not executable, exec failure, fork/pipe failure).
  static absl::StatusOr<Subprocess> spawn(SpawnOptions opts);

  Subprocess(Subprocess&& other) noexcept;
  Subprocess& operator=(Subprocess&& other) noexcept;
  Subprocess(const Subprocess&) = delete;
  Subprocess& operator=(const Subprocess&) = delete;
  ~Subprocess();

  pid_t pid() const { return pid_; }
  // Read ends of the pipes, non-blocking; -1 when not captured or closed.
  int stdout_fd() const { return stdout_fd_; }
  int stderr_fd() const { return stderr_fd_; }
  int progress_fd() const { return progress_fd_; }
  // Closes a read end early (e.g. after EOF); the accessor then returns -1.
  void close_stdout();
  void close_stderr();
  void close_progress();

  // SIGTERM to the group, up to `grace` for the child to exit, then SIGKILL to
  // the group. A grace <= 0 means SIGKILL at once. Returns once the child is
  // reaped.
  void terminate_group(std::chrono::milliseconds grace);
  // Non-blocking: the exit status once the child has exited (reaped then).
  std::optional<ExitStatus> try_wait();
  // Blocks until the child exits.
  ExitStatus wait();
  // The status once reaped.
  const std::optional<ExitStatus>& exit_status() const { return status_; }

 private:
  Subprocess() = default;
  void reap_exited(bool block);
  void release();

  pid_t pid_ = -1;
  int stdout_fd_ = -1;
  int stderr_fd_ = -1;
  int progress_fd_ = -1;
  std::optional<ExitStatus> status_;
};

struct RunResult {
  ExitStatus status;
  std::string out;
  std::string err;
  bool timed_out = false;
};

// Runs argv to completion collecting stdout and stderr (each capped at
// max_output bytes; the rest is read and discarded so the child never blocks).
// On timeout (<= 0 means none) the group is killed and timed_out is set.
// When `cancel` is cancelled the group is killed and an error whose code is
// cancel->reason() is returned. Spawn errors carry "spawn_failed".
absl::StatusOr<RunResult> run(std::vector<std::string> argv, std::chrono::milliseconds timeout,
                              size_t max_output = 16 << 20, const flux::CancelToken* cancel = nullptr);
// The same with every spawn option (limits, nice, cwd); stdout and stderr are
// always captured.
absl::StatusOr<RunResult> run_with(SpawnOptions opts, std::chrono::milliseconds timeout, size_t max_output = 16 << 20,
                                   const flux::CancelToken* cancel = nullptr);

// Splits bytes from a pipe into lines ('\n'-terminated, a trailing '\r'
// dropped). Lines longer than max_line_bytes are cut there; the rest of such a
// line is discarded.
class LineReader {
 public:
  explicit LineReader(size_t max_line_bytes = size_t{64} * 1024) : max_line_bytes_(max_line_bytes) {}
  // Appends the complete lines found in `bytes`.
  void feed(std::string_view bytes, std::vector<std::string>& lines);
  // Reads whatever is available on a non-blocking fd, appending complete
  // lines. Returns false once the fd reached end of file (or failed); the
  // unterminated last line, if any, is then appended too.
  bool read_available(int fd, std::vector<std::string>& lines);
  // Appends the unterminated last line, if any (for use at end of file).
  void flush(std::vector<std::string>& lines);

 private:
  size_t max_line_bytes_;
  std::string partial_;
  bool overlong_ = false;
};

// Reads whatever is available on a non-blocking fd into `out`, keeping at
// most `cap` bytes in it (the rest is discarded). Returns false at end of file
// or on error, true while the fd may still deliver data.
bool read_available(int fd, std::string& out, size_t cap);

}  // namespace flux::process
