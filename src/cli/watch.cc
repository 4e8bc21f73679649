#include "cli/watch.h"

#include <algorithm>
#include <optional>
#include <thread>

#include <fmt/format.h>

#include "cli/text.h"
#include "shared/core/error.h"

namespace flux::cli {
namespace {

std::string seconds_text(std::chrono::milliseconds delay) {
  return fmt::format("{:.1f} s", static_cast<double>(delay.count()) / 1000.0);
}

}  // namespace

std::chrono::milliseconds reconnect_delay(const WatchOptions& options, int attempt) {
  auto delay = options.initial_backoff;
  for (int i = 1; i < attempt && delay < options.max_backoff; ++i) delay *= 2;
  return std::min(delay, options.max_backoff);
}

absl::StatusOr<JobEvent> watch_job(JobService& service, const std::string& job_id, WatchObserver& observer,
                                   const WatchOptions& options) {
  std::string last_event_id;
  bool connected_before = false;
  int reconnects = 0;
  for (;;) {
    std::optional<JobEvent> final_state;
    bool got_event = false;
    absl::Status event_error;
    auto end = service.stream_job(job_id, last_event_id, [&](const SseEvent& sse) {
      if (!sse.id.empty()) last_event_id = sse.id;
      if (sse.type != "message") return true;  // a named event is not ours
      got_event = true;
      auto event = parse_job_event(sse.data);
      if (!event.ok()) {
        event_error = event.status();
        return false;
      }
      observer.on_event(*event);
      if (event->terminal()) {
        final_state = *std::move(event);
        return false;
      }
      return true;
    });
    if (final_state) return *std::move(final_state);
    if (!event_error.ok()) return event_error;

    absl::Status reason;
    if (end.ok() && *end == StreamEnd::kNoContent) {
      // Up to date with a job that has ended: its document is the final state.
      auto document = service.get_job(job_id);
      if (document.ok()) {
        JobEvent state = job_event_from_json(*document);
        if (state.terminal()) {
          observer.on_event(state);
          return state;
        }
        reason = unavailable("stream_ended", "the progress stream ended before the job did");
      } else if (!is_retryable(document.status())) {
        return document.status();
      } else {
        reason = document.status();
      }
    } else if (end.ok()) {
      reason = unavailable("stream_ended", "the progress stream closed before the job ended");
    } else {
      // Only a stream that worked once is worth reconnecting to: a first
      // connection that fails is an answer in itself.
      if (!is_retryable(end.status()) || (!connected_before && !got_event)) return end.status();
      reason = end.status();
    }
    if (got_event) {
      connected_before = true;
      reconnects = 0;
    }
    if (++reconnects > options.max_reconnects) {
      return unavailable("stream_lost", "lost the progress stream of " + job_id + " (" +
                                            std::to_string(options.max_reconnects) +
                                            " reconnects failed): " + std::string(reason.message()));
    }
    const auto delay = reconnect_delay(options, reconnects);
    observer.on_reconnecting(reconnects, options.max_reconnects, delay, reason);
    const bool slept = options.sleep ? options.sleep(delay) : (std::this_thread::sleep_for(delay), true);
    if (!slept) return make_error(absl::StatusCode::kCancelled, "interrupted", "interrupted");
  }
}

TerminalProgressPrinter::TerminalProgressPrinter(std::ostream& out, std::function<int()> terminal_width)
    : out_(out), terminal_width_(std::move(terminal_width)) {}

void TerminalProgressPrinter::draw(const std::string& line) {
  if (open_line_ && line == drawn_) return;
  // Carriage return, then erase the whole line: a shorter line leaves no tail.
  out_ << "\r\x1b[2K" << line << std::flush;
  drawn_ = line;
  open_line_ = true;
}

void TerminalProgressPrinter::on_event(const JobEvent& event) {
  draw(render_progress_bar(event, terminal_width_()));
  if (event.terminal()) finish();
}

void TerminalProgressPrinter::on_reconnecting(int attempt, int max_attempts, std::chrono::milliseconds delay,
                                              const absl::Status& reason) {
  const std::string line = "reconnecting in " + seconds_text(delay) + " (" + std::to_string(attempt) + "/" +
                           std::to_string(max_attempts) + "): " + printable(std::string(reason.message()));
  draw(truncate_to_width(line, static_cast<size_t>(std::max(terminal_width_(), 2) - 1)));
}

void TerminalProgressPrinter::finish() {
  if (!open_line_) return;
  out_ << "\n" << std::flush;
  open_line_ = false;
  drawn_.clear();
}

PlainProgressPrinter::PlainProgressPrinter(std::ostream& out, std::ostream& err) : out_(out), err_(err) {}

void PlainProgressPrinter::on_event(const JobEvent& event) {
  if (filter_.should_print(event)) out_ << render_progress_line(event) << "\n" << std::flush;
}

void PlainProgressPrinter::on_reconnecting(int attempt, int max_attempts, std::chrono::milliseconds delay,
                                           const absl::Status& reason) {
  err_ << "progress stream interrupted (" << printable(std::string(reason.message())) << "); reconnecting in "
       << seconds_text(delay) << " (" << attempt << "/" << max_attempts << ")\n"
       << std::flush;
}

}  // namespace flux::cli
