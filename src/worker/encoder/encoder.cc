#include "worker/encoder/encoder.h"

#include <poll.h>
#include <signal.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cstdio>
#include <deque>
#include <limits>
#include <regex>
#include <system_error>
#include <thread>

#include "shared/core/error.h"
#include "shared/process/subprocess.h"

namespace flux::worker::encoder {
namespace {

constexpr size_t kStderrTailLines = 50;
constexpr int kProgressFd = 3;

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t' || s.front() == '\r')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r')) s.remove_suffix(1);
  return s;
}

// Values are "N/A" when ffmpeg does not know them yet.
std::optional<double> parse_double(std::string_view text) {
  text = trim(text);
  if (!text.empty() && text.back() == 'x') text.remove_suffix(1);  // speed=1.5x
  if (text.empty() || text == "N/A") return std::nullopt;
  double value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size()) return std::nullopt;
  return value;
}

std::optional<int64_t> parse_int(std::string_view text) {
  text = trim(text);
  int64_t value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size()) return std::nullopt;
  return value;
}

std::string absolute_path(const std::filesystem::path& p) {
  std::error_code ec;
  auto abs = std::filesystem::absolute(p, ec);
  return (ec ? p : abs).lexically_normal().string();
}

void replace_all(std::string& text, const std::string& from, const std::string& to) {
  if (from.empty()) return;
  for (size_t pos = text.find(from); pos != std::string::npos; pos = text.find(from, pos + to.size())) {
    text.replace(pos, from.size(), to);
  }
}

std::string sanitize(std::string line, const EncodeRequest& request) {
  replace_all(line, "file:" + absolute_path(request.input), "input");
  replace_all(line, absolute_path(request.input), "input");
  replace_all(line, absolute_path(request.output_dir), "output");
  static const std::regex kContext(R"(\[([^\]@]+) @ 0x[0-9a-fA-F]+\])");
  return std::regex_replace(line, kContext, "[$1]");
}

bool meaningful(std::string_view line) {
  line = trim(line);
  return !line.empty() && line != "Conversion failed!" && line.rfind("Exiting", 0) != 0;
}

// What went wrong, in one line from ffmpeg's stderr, without the job's paths
// or ffmpeg's context addresses. ffmpeg's last line is often just
// "<input>: <strerror>"; the line before it then says why.
std::string summarize(const std::deque<std::string>& tail, const EncodeRequest& request) {
  std::vector<std::string> last_two;
  for (auto it = tail.rbegin(); it != tail.rend() && last_two.size() < 2; ++it) {
    if (meaningful(*it)) last_two.push_back(sanitize(std::string(trim(*it)), request));
  }
  if (last_two.empty()) return "";
  std::string summary = last_two[0];
  if (summary.rfind("input: ", 0) == 0 && last_two.size() == 2) summary += " (" + last_two[1] + ")";
  if (summary.size() > 300) summary = summary.substr(0, 300) + "...";
  return summary;
}

absl::Status encode_failed(std::string_view message) {
  return make_error(absl::StatusCode::kInternal, "encode_failed", message);
}

std::string fmt_millis(int64_t millis) {
  std::string digits = std::to_string(millis);
  return std::string(3 - std::min<size_t>(3, digits.size()), '0') + digits;
}

absl::Status limit_exceeded(std::string_view code, std::string_view message) {
  return make_error(absl::StatusCode::kResourceExhausted, code, message);
}

// "1", "1.5": a whole number of seconds without a fraction.
std::string format_seconds(std::chrono::milliseconds ms) {
  if (ms.count() % 1000 == 0) return std::to_string(ms.count() / 1000);
  std::string text = std::to_string(ms.count() / 1000) + "." + fmt_millis(ms.count() % 1000);
  while (text.back() == '0') text.pop_back();
  return text;
}

std::string lower(std::string_view text) {
  std::string out(text);
  std::transform(out.begin(), out.end(), out.begin(), [](unsigned char c) { return std::tolower(c); });
  return out;
}

// The last stderr line that says an allocation failed, if any.
std::optional<std::string> allocation_failure(const std::vector<std::string>& tail) {
  static constexpr std::string_view kMarkers[] = {
      "cannot allocate memory", "out of memory",    "failed to map segment", "bad_alloc", "malloc",
      "alloc failed",           "allocation failed"};
  for (auto it = tail.rbegin(); it != tail.rend(); ++it) {
    const std::string text = lower(*it);
    for (std::string_view marker : kMarkers) {
      if (text.find(marker) != std::string::npos) return std::string(trim(*it)).substr(0, 300);
    }
  }
  return std::nullopt;
}

// Whether ffmpeg's stderr says the input itself is broken.
bool blames_input(const std::vector<std::string>& tail) {
  static constexpr std::string_view kMarkers[] = {"invalid data found",  "error while decoding", "corrupt",
                                                  "moov atom not found", "invalid nal",          "not on whitelist",
                                                  "end of file",         "no such file"};
  return std::any_of(tail.begin(), tail.end(), [](const std::string& line) {
    const std::string text = lower(line);
    return std::any_of(std::begin(kMarkers), std::end(kMarkers),
                       [&text](std::string_view marker) { return text.find(marker) != std::string::npos; });
  });
}

bool mentions(const std::vector<std::string>& tail, std::string_view needle) {
  return std::any_of(tail.begin(), tail.end(),
                     [needle](const std::string& line) { return line.find(needle) != std::string::npos; });
}

}  // namespace

uint64_t directory_bytes(const std::filesystem::path& dir) {
  uint64_t total = 0;
  std::error_code ec;
  for (std::filesystem::recursive_directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    std::error_code entry_ec;
    if (it->is_regular_file(entry_ec)) {
      const auto size = it->file_size(entry_ec);
      if (!entry_ec) total += size;
    }
  }
  return total;
}

std::optional<absl::Status> limit_breach(const EncodeLimits& limits, const process::ExitStatus& status,
                                         uint64_t output_bytes, const std::vector<std::string>& stderr_tail) {
  const std::string how = status.describe();
  if (limits.max_output_bytes > 0 && (status.signal == SIGXFSZ || output_bytes > limits.max_output_bytes ||
                                      (!status.ok() && mentions(stderr_tail, "File too large")))) {
    return limit_exceeded("output_too_large", "ffmpeg's output exceeded MAX_OUTPUT_BYTES=" +
                                                  std::to_string(limits.max_output_bytes) + " bytes (" + how + ")");
  }
  if (status.ok()) return std::nullopt;
  if (limits.max_frame_pixels > 0 && mentions(stderr_tail, "exceeds specified max pixel count")) {
    return limit_exceeded("input_too_large", "a frame of the input is larger than MAX_INPUT_PIXELS=" +
                                                 std::to_string(limits.max_frame_pixels) + " pixels");
  }
  // The kernel sends SIGXCPU at the limit; ffmpeg catches it and exits 255,
  // or is killed a second later. Either way it used the whole allowance, as
  // far as the kernel's accounting goes: the CPU time wait4 reports can fall
  // short of it by several percent.
  if (limits.cpu_seconds > 0 &&
      (status.signal == SIGXCPU || status.cpu_seconds >= 0.9 * static_cast<double>(limits.cpu_seconds))) {
    char used[32];
    std::snprintf(used, sizeof used, "%.2f", status.cpu_seconds);
    return limit_exceeded("cpu_limit_exceeded",
                          "ffmpeg used up FFMPEG_CPU_SECONDS=" + std::to_string(limits.cpu_seconds) + " of CPU time (" +
                              used + " s used, " + how + ")");
  }
  if (limits.address_space_bytes > 0) {
    // RLIMIT_AS makes allocations fail, and what ffmpeg then does varies: an
    // error naming the failed allocation, a crash, or a bare "Error while
    // opening encoder" when a thread could not be created. The input has
    // passed the probe, so unless ffmpeg blames the input the limit is the
    // likely cause; the message says how sure that is.
    const std::string mb = "FFMPEG_MEMORY_MB=" + std::to_string(limits.address_space_bytes >> 20);
    if (auto line = allocation_failure(stderr_tail)) {
      return limit_exceeded("memory_limit_exceeded",
                            "ffmpeg ran out of memory under " + mb + " (" + how + "): " + *line);
    }
    if (status.signal == SIGSEGV || status.signal == SIGBUS || status.signal == SIGABRT) {
      return limit_exceeded("memory_limit_exceeded", "ffmpeg crashed under " + mb + " (" + how +
                                                         "), most likely an allocation refused by the limit");
    }
    if (!blames_input(stderr_tail)) {
      std::string last = stderr_tail.empty() ? "" : ": " + std::string(trim(stderr_tail.back())).substr(0, 300);
      return limit_exceeded("memory_limit_exceeded", "ffmpeg failed under " + mb + " (" + how +
                                                         ") without naming the cause, most likely an allocation "
                                                         "refused by the limit" +
                                                         last);
    }
  }
  return std::nullopt;
}

ProgressParser::ProgressParser(double duration_seconds) : duration_seconds_(duration_seconds) {}

std::optional<Progress> ProgressParser::feed_line(std::string_view line) {
  line = trim(line);
  size_t eq = line.find('=');
  if (eq == std::string_view::npos) return std::nullopt;
  std::string_view key = trim(line.substr(0, eq));
  std::string_view value = trim(line.substr(eq + 1));
  if (key == "fps") {
    if (auto v = parse_double(value); v && *v >= 0) current_.fps = *v;
  } else if (key == "speed") {
    if (auto v = parse_double(value); v && *v >= 0) current_.speed = *v;
  } else if (key == "out_time_us" || key == "out_time_ms") {
    // out_time_ms is microseconds too (a long-standing ffmpeg misnomer).
    if (auto v = parse_int(value); v && *v >= 0) current_.out_time_us = std::max(current_.out_time_us, *v);
  } else if (key == "progress") {
    const bool ended = value == "end";
    const double done_seconds = static_cast<double>(current_.out_time_us) / 1e6;
    if (ended) {
      current_.percent = 100;
      current_.eta_seconds = 0;
      current_.ended = true;
    } else {
      if (duration_seconds_ > 0) {
        // 100 is kept for the end block, so it always means "done".
        double percent = std::clamp(done_seconds / duration_seconds_ * 100.0, 0.0, 99.9);
        current_.percent = std::max(current_.percent, percent);
      }
      current_.eta_seconds = duration_seconds_ > 0 && current_.speed > 0
                                 ? std::max(0.0, (duration_seconds_ - done_seconds) / current_.speed)
                                 : -1;
    }
    return current_;
  }
  return std::nullopt;
}

std::vector<std::string> build_ffmpeg_argv(const EncodeRequest& request) {
  const auto interval_ms = std::max<int64_t>(100, request.progress_interval.count());
  std::string millis = std::to_string(interval_ms % 1000);
  const std::string stats_period =
      std::to_string(interval_ms / 1000) + "." + std::string(3 - millis.size(), '0') + millis;
  std::vector<std::string> argv = {request.ffmpeg_path, "-hide_banner", "-nostdin", "-y", "-nostats", "-loglevel",
                                   "error", "-progress", "pipe:" + std::to_string(kProgressFd), "-stats_period",
                                   stats_period,
                                   // Input side: local files only, media containers only,
                                   // so a crafted input cannot open other files or URLs.
                                   "-protocol_whitelist", "file", "-format_whitelist", kInputFormatWhitelist};
  if (request.limits.max_frame_pixels > 0) {
    // A frame larger than the probed ones (a stream that changes size) stops
    // the decoder instead of allocating it.
    const uint64_t capped = std::min<uint64_t>(request.limits.max_frame_pixels, std::numeric_limits<int32_t>::max());
    argv.insert(argv.end(), {"-max_pixels", std::to_string(capped)});
  }
  // "file:" so that a ':' in the name is never read as a protocol.
  argv.insert(argv.end(), {"-i", "file:" + absolute_path(request.input)});
  if (request.preset != nullptr) {
    auto out = preset::build_output_args(*request.preset, absolute_path(request.output_dir), request.input_has_audio);
    argv.insert(argv.end(), out.begin(), out.end());
  }
  return argv;
}

absl::Status run_encode(const EncodeRequest& request, const ProgressCallback& on_progress,
                        const flux::CancelToken& cancel, std::vector<std::string>* stderr_tail) {
  if (request.preset == nullptr) return invalid_argument("invalid_request", "no preset given");
  const std::string output_dir = absolute_path(request.output_dir);
  if (request.output_dir.empty() || output_dir.find_first_of("%$") != std::string::npos) {
    return invalid_argument("invalid_request", "output directory must be set and contain no '%' or '$'");
  }
  std::error_code ec;
  std::filesystem::create_directories(output_dir, ec);
  if (ec) return encode_failed("cannot create the output directory: " + ec.message());

  const EncodeLimits& limits = request.limits;
  process::SpawnOptions opts;
  opts.argv = build_ffmpeg_argv(request);
  opts.capture_stdout = false;
  opts.capture_stderr = true;
  opts.progress_fd = kProgressFd;
  opts.cwd = output_dir;
  opts.cpu_seconds = limits.cpu_seconds;
  opts.file_size_bytes = limits.max_output_bytes;
  opts.address_space_bytes = limits.address_space_bytes;
  opts.nice = limits.nice;
  const auto started = std::chrono::steady_clock::now();
  absl::StatusOr<process::Subprocess> spawned = process::Subprocess::spawn(std::move(opts));
  if (!spawned.ok()) return spawned.status();
  process::Subprocess& ffmpeg = *spawned;

  ProgressParser parser(request.input_duration_seconds);
  process::LineReader progress_reader;
  process::LineReader stderr_reader(4096);
  std::deque<std::string> tail;
  std::optional<Progress> pending;
  std::optional<Progress> final_snapshot;
  auto last_emit = started - request.progress_interval;
  // The output directory's total is summed a few times a second: RLIMIT_FSIZE
  // only bounds each file, and HLS and DASH write many.
  constexpr auto kOutputCheckEvery = std::chrono::milliseconds(200);
  auto last_output_check = started;
  std::vector<std::string> lines;

  auto read_progress = [&]() {
    if (ffmpeg.progress_fd() < 0) return;
    lines.clear();
    bool open = progress_reader.read_available(ffmpeg.progress_fd(), lines);
    for (const std::string& line : lines) {
      if (auto snapshot = parser.feed_line(line)) {
        // The end block is held back until the exit status says it succeeded.
        (snapshot->ended ? final_snapshot : pending) = *snapshot;
      }
    }
    if (!open) ffmpeg.close_progress();
  };
  auto read_stderr = [&]() {
    if (ffmpeg.stderr_fd() < 0) return;
    lines.clear();
    bool open = stderr_reader.read_available(ffmpeg.stderr_fd(), lines);
    for (std::string& line : lines) {
      if (trim(line).empty()) continue;
      tail.push_back(std::move(line));
      if (tail.size() > kStderrTailLines) tail.pop_front();
    }
    if (!open) ffmpeg.close_stderr();
  };
  auto hand_over_tail = [&]() {
    if (stderr_tail != nullptr) stderr_tail->assign(tail.begin(), tail.end());
  };
  // Stops ffmpeg at once (its output is thrown away) and returns `error`.
  auto stop_with = [&](absl::Status error) {
    ffmpeg.terminate_group(std::chrono::milliseconds(0));
    read_stderr();
    hand_over_tail();
    return error;
  };

  std::optional<process::ExitStatus> status;
  while (!status) {
    if (cancel.cancelled()) {
      ffmpeg.terminate_group(request.kill_grace);
      read_stderr();
      hand_over_tail();
      const std::string reason = cancel.reason();
      return make_error(absl::StatusCode::kCancelled, reason, "encode stopped: " + reason);
    }
    if (request.stop != nullptr && request.stop->cancelled()) {
      const std::string reason = request.stop->reason();
      return stop_with(make_error(absl::StatusCode::kAborted, reason, "encode stopped: " + reason));
    }
    const auto now = std::chrono::steady_clock::now();
    if (limits.max_wall.count() > 0 && now - started >= limits.max_wall) {
      return stop_with(limit_exceeded("time_limit_exceeded",
                                      "ffmpeg ran longer than FFMPEG_MAX_SECONDS=" + format_seconds(limits.max_wall) +
                                          " (wall time) and was stopped"));
    }
    if (limits.max_output_bytes > 0 && now - last_output_check >= kOutputCheckEvery) {
      last_output_check = now;
      if (const uint64_t bytes = directory_bytes(output_dir); bytes > limits.max_output_bytes) {
        return stop_with(limit_exceeded(
            "output_too_large", "ffmpeg's output exceeded MAX_OUTPUT_BYTES=" + std::to_string(limits.max_output_bytes) +
                                    " bytes (" + std::to_string(bytes) + " written) and was stopped"));
      }
    }
    if (parser.duration() <= 0 && request.duration_source) {
      if (const double duration = request.duration_source(); duration > 0) parser.set_duration(duration);
    }
    pollfd fds[2];
    nfds_t count = 0;
    for (int fd : {ffmpeg.progress_fd(), ffmpeg.stderr_fd()}) {
      if (fd >= 0) fds[count++] = pollfd{fd, POLLIN, 0};
    }
    if (count > 0) {
      ::poll(fds, count, 50);
    } else {
      cancel.wait_for(std::chrono::milliseconds(50));
    }
    read_progress();
    read_stderr();
    if (pending && on_progress && std::chrono::steady_clock::now() - last_emit >= request.progress_interval) {
      on_progress(*pending);
      pending.reset();
      last_emit = std::chrono::steady_clock::now();
    }
    status = ffmpeg.try_wait();
  }
  // What ffmpeg wrote just before exiting is still in the pipes.
  read_progress();
  read_stderr();
  hand_over_tail();

  std::vector<std::string> clean_tail;
  clean_tail.reserve(tail.size());
  for (const std::string& line : tail) clean_tail.push_back(sanitize(line, request));
  const uint64_t output_bytes = limits.max_output_bytes > 0 ? directory_bytes(output_dir) : 0;
  if (auto breach = limit_breach(limits, *status, output_bytes, clean_tail)) return *breach;
  if (status->ok()) {
    Progress done = final_snapshot.value_or(parser.current());
    done.ended = true;
    done.percent = 100;
    done.eta_seconds = 0;
    if (on_progress) on_progress(done);
    return absl::OkStatus();
  }
  std::string summary = summarize(tail, request);
  std::string message = "ffmpeg failed (" + status->describe() + ")" + (summary.empty() ? "" : ": " + summary);
  if (limits.address_space_bytes > 0) {
    // Not shown to be the limit, not ruled out either.
    message += " (FFMPEG_MEMORY_MB=" + std::to_string(limits.address_space_bytes >> 20) + " was in force)";
  }
  return encode_failed(message);
}

}  // namespace flux::worker::encoder
