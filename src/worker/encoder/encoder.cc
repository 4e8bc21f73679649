#include "worker/encoder/encoder.h"

#include <poll.h>
#include <signal.h>

#include <algorithm>
#include <charconv>
#include <deque>
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

}  // namespace

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
                                   "-protocol_whitelist", "file", "-format_whitelist", kInputFormatWhitelist,
                                   // "file:" so that a ':' in the name is never read as a protocol.
                                   "-i", "file:" + absolute_path(request.input)};
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

  process::SpawnOptions opts;
  opts.argv = build_ffmpeg_argv(request);
  opts.capture_stdout = false;
  opts.capture_stderr = true;
  opts.progress_fd = kProgressFd;
  opts.cwd = output_dir;
  opts.cpu_seconds = request.cpu_seconds;
  opts.file_size_bytes = request.max_output_file_bytes;
  opts.address_space_bytes = request.address_space_bytes;
  opts.nice = request.nice;
  absl::StatusOr<process::Subprocess> spawned = process::Subprocess::spawn(std::move(opts));
  if (!spawned.ok()) return spawned.status();
  process::Subprocess& ffmpeg = *spawned;

  ProgressParser parser(request.input_duration_seconds);
  process::LineReader progress_reader;
  process::LineReader stderr_reader(4096);
  std::deque<std::string> tail;
  std::optional<Progress> pending;
  std::optional<Progress> final_snapshot;
  auto last_emit = std::chrono::steady_clock::now() - request.progress_interval;
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

  std::optional<process::ExitStatus> status;
  while (!status) {
    if (cancel.cancelled()) {
      ffmpeg.terminate_group(request.kill_grace);
      read_stderr();
      hand_over_tail();
      const std::string reason = cancel.reason();
      return make_error(absl::StatusCode::kCancelled, reason, "encode stopped: " + reason);
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

  if (status->ok()) {
    Progress done = final_snapshot.value_or(parser.current());
    done.ended = true;
    done.percent = 100;
    done.eta_seconds = 0;
    if (on_progress) on_progress(done);
    return absl::OkStatus();
  }
  if (status->signal == SIGXFSZ) return encode_failed("ffmpeg stopped: output exceeds the file size limit");
  if (status->signal == SIGXCPU) return encode_failed("ffmpeg stopped: CPU time limit exceeded");
  std::string summary = summarize(tail, request);
  return encode_failed("ffmpeg failed (" + status->describe() + ")" + (summary.empty() ? "" : ": " + summary));
}

}  // namespace flux::worker::encoder
