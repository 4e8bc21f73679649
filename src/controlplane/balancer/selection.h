#pragma once
// The original worker-selection algorithm (SPEC §4) as a pure function, so
// that it can be driven by fake answers: start after the worker chosen last,
// ask each in turn, take the first one with room.
#include <cstddef>
#include <functional>
#include <optional>
#include <string>

#include "worker/v1/worker.pb.h"

namespace flux::controlplane::balancer {

namespace v1 = ::worker::v1;

// What a job needs from a worker.
struct JobNeeds {
  std::string storage;  // "" = any
  std::string preset;   // "" = any
};

// True when `status` describes a worker that takes a new job with `needs`:
// ready (an original worker, which reports no state, counts as ready),
// current_jobs < max_concurrent_jobs, and serving the storage type and the
// preset. A worker that lists no storage types (or no presets) is an original
// one and is taken to serve them all.
bool has_room(const v1::WorkerStatus& status, const JobNeeds& needs);

// Answers one worker's GetStatus; nullopt when it did not answer in time.
using AskWorker = std::function<std::optional<v1::WorkerStatus>(size_t index)>;

// Round robin over `count` workers starting after `last` (-1 = start at 0):
// asks each in turn and returns the index of the first with room, asking no
// further. `avoid` (-1 = none) is taken only when no other worker has room,
// which may cost asking every worker. nullopt when none has room.
std::optional<size_t> select_index(size_t count, int last, const JobNeeds& needs, const AskWorker& ask, int avoid = -1);

}  // namespace flux::controlplane::balancer
