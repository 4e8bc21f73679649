#pragma once
// Following a job's progress stream to its end, across dropped connections.
#include <chrono>
#include <functional>
#include <ostream>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "cli/job_event.h"
#include "cli/job_service.h"
#include "cli/progress_view.h"

namespace flux::cli {

// Sees what a watch sees, to show it.
class WatchObserver {
 public:
  virtual ~WatchObserver() = default;
  // Every event, in order, the terminal one included.
  virtual void on_event(const JobEvent& event) = 0;
  // The stream dropped; the watch reconnects after `delay`.
  virtual void on_reconnecting(int attempt, int max_attempts, std::chrono::milliseconds delay,
                               const absl::Status& reason) = 0;
};

struct WatchOptions {
  // Reconnects in a row that bring no event before the watch gives up.
  int max_reconnects = 8;
  std::chrono::milliseconds initial_backoff{250};
  std::chrono::milliseconds max_backoff{std::chrono::seconds(5)};
  // Waits out a backoff; returns false when interrupted. Default: sleep.
  std::function<bool(std::chrono::milliseconds)> sleep;
};

// The pause before reconnect number `attempt` (1-based): initial_backoff
// doubled each time, capped at max_backoff.
std::chrono::milliseconds reconnect_delay(const WatchOptions& options, int attempt);

// Reads the job's progress stream until its terminal event and returns that
// event. When the stream breaks or closes early it reconnects with
// Last-Event-ID (the last id seen) after a backoff; a 204 answer means the
// job ended and the client is up to date, so the job document is fetched for
// the final state. Errors: the first connection failing, or any
// non-retryable answer (404, 401, ...), returns at once; more than
// max_reconnects reconnects in a row without an event return "stream_lost";
// an interrupted backoff returns "interrupted".
absl::StatusOr<JobEvent> watch_job(JobService& service, const std::string& job_id, WatchObserver& observer,
                                   const WatchOptions& options);

// A live bar redrawn in place ("\r" + clear line) on a terminal. The terminal
// event is drawn and ends the line.
class TerminalProgressPrinter final : public WatchObserver {
 public:
  TerminalProgressPrinter(std::ostream& out, std::function<int()> terminal_width);
  void on_event(const JobEvent& event) override;
  void on_reconnecting(int attempt, int max_attempts, std::chrono::milliseconds delay,
                       const absl::Status& reason) override;
  // Ends a line left open (after an error or an interrupt).
  void finish();

 private:
  void draw(const std::string& line);

  std::ostream& out_;
  std::function<int()> terminal_width_;
  std::string drawn_;
  bool open_line_ = false;
};

// Plain lines for logs and pipes: a line per step (PlainProgressFilter);
// reconnects are reported on `err`.
class PlainProgressPrinter final : public WatchObserver {
 public:
  PlainProgressPrinter(std::ostream& out, std::ostream& err);
  void on_event(const JobEvent& event) override;
  void on_reconnecting(int attempt, int max_attempts, std::chrono::milliseconds delay,
                       const absl::Status& reason) override;

 private:
  std::ostream& out_;
  std::ostream& err_;
  PlainProgressFilter filter_;
};

// Shows nothing (--json prints only the final document).
class SilentObserver final : public WatchObserver {
 public:
  void on_event(const JobEvent&) override {}
  void on_reconnecting(int, int, std::chrono::milliseconds, const absl::Status&) override {}
};

}  // namespace flux::cli
