#pragma once
// How a watched job's progress looks, as pure functions of the event (and the
// terminal width), so every layout is unit-tested without a terminal.
#include <optional>
#include <string>

#include "cli/job_event.h"

namespace flux::cli {

// The live bar's text for a terminal `width` columns wide, e.g.
//   " 45% [#########...........] encoding  118 fps  4.7x  ETA 0:03"
// fps and speed appear when the event has them (while encoding); ETA too, as
// "ETA --:--" while encoding with no estimate yet. The result never takes
// more than width-1 columns (writing the last column makes some terminals
// wrap): when space is short the stats go first, then the bar, then the text
// is cut. Holds no control characters; the caller adds "\r" and clear-line.
std::string render_progress_bar(const JobEvent& event, int width);

// One plain progress line for a log or pipe (no bar, no redraw), e.g.
//   "[ 45%] encoding  118 fps  4.7x  ETA 0:03"
//   "[  0%] downloading: downloading input"
std::string render_progress_line(const JobEvent& event);

// Decides which events a plain (non-terminal) watcher prints, so a log gets a
// line per step rather than a flood: the first event, a status or phase
// change, and each further 10% of progress. Terminal events are left to the
// summary line and never selected.
class PlainProgressFilter {
 public:
  bool should_print(const JobEvent& event);

 private:
  bool printed_any_ = false;
  std::string status_;
  std::string phase_;
  int decile_ = 0;
};

// The last line of a watch, e.g.
//   "job_x completed: file:///out/a.mp4 (h264 1280x720, aac, 2.0 s, 1.2 MiB)"
//   "job_x failed: input not found: HTTP 404 (input_not_found)"
std::string render_summary(const JobEvent& final_state);

}  // namespace flux::cli
