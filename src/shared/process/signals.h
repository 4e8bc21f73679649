#pragma once
// Programs take SIGTERM/SIGINT synchronously on one thread (sigwait), so no
// handler ever runs inside gRPC, Asio or ffmpeg bookkeeping.
#include <signal.h>

namespace flux::process {

// Blocks SIGTERM and SIGINT in the calling thread, and so in every thread it
// starts afterwards, and ignores SIGPIPE. Call it before starting any thread;
// returns the set to pass to sigwait.
sigset_t block_termination_signals();

}  // namespace flux::process
