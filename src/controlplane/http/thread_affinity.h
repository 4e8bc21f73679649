#pragma once
// Pinning the HTTP io threads to CPUs (HTTP_PIN_THREADS).
//
// Unpinned, the kernel may stack both io threads of a busy fan-out on one CPU
// while a low-priority process (an encoder sharing the machine) keeps the
// other to itself: its load balancer moves cache-hot threads reluctantly.
// One io thread per CPU keeps each CPU's io thread ahead of such work.
#include <sched.h>

#include <thread>
#include <vector>

#include "absl/status/status.h"

namespace flux::controlplane::http {

// The CPU of each of `threads` io threads: thread i gets the i-th CPU of
// `allowed` (the process's affinity), wrapping around when there are more
// threads than CPUs. Empty when `allowed` holds no CPU.
std::vector<int> io_thread_cpus(const cpu_set_t& allowed, int threads);

// Pins `thread` to `cpu`. Errors: pin_failed.
absl::Status pin_thread(std::thread& thread, int cpu);

}  // namespace flux::controlplane::http
