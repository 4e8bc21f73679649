#pragma once
// Runs a parsed fluxctl command against a JobService and prints the outcome.
#include <functional>
#include <ostream>

#include "cli/command_line.h"
#include "cli/job_service.h"
#include "cli/watch.h"

namespace flux::cli {

struct Console {
  std::ostream& out;
  std::ostream& err;
  // stdout is a terminal: --wait / watch draw a live bar instead of lines.
  bool out_is_terminal = false;
  // Columns of the terminal, asked at each redraw (it may be resized).
  std::function<int()> terminal_width = [] { return 80; };
};

// Runs the command; returns the process exit code (exit_codes.h).
//
// Human output goes to `out`; errors are printed to `err` as
// "error: <message> (<code>)". With --json, `out` gets exactly one JSON
// document: the server's answer (submit: the 202 answer; submit --wait and
// watch: the final job document; get, cancel: the job document; list,
// workers, presets: the answer as is), or {"error", "code"} on failure.
int run_command(const Invocation& invocation, JobService& service, const Console& console,
                const WatchOptions& watch_options);

}  // namespace flux::cli
