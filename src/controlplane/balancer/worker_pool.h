#pragma once
// The configured workers and the original selection algorithm over them
// (SPEC §4): round robin from the worker chosen last, GetStatus on each in
// turn, the first with room wins; a worker that does not answer is given up
// to the startup timeout (a scale-to-zero machine being started by its
// platform) and skipped when it passes.
//
// One refinement: a worker that already used up its whole startup timeout
// without answering is probed with a short deadline (`down_probe`) by later
// selections until it answers again, so one dead machine does not cost every
// dispatch the whole startup timeout. The probes keep its channel
// reconnecting, so a machine that does come up is seen by the next selection.
#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "controlplane/balancer/selection.h"
#include "controlplane/balancer/worker_client.h"

namespace flux::controlplane::balancer {

struct SelectionStats {
  uint64_t selections = 0;        // select() calls
  uint64_t get_status_calls = 0;  // GetStatus RPCs made by select()
  uint64_t no_worker = 0;         // select() calls that found no worker with room
  std::chrono::nanoseconds total_time{0};
  std::chrono::nanoseconds last_time{0};
};

struct WorkerPoolOptions {
  std::chrono::milliseconds startup_timeout{60000};  // WORKER_STARTUP_TIMEOUT
  std::chrono::milliseconds down_probe{500};         // deadline for a worker known to be down
};

class WorkerPool {
 public:
  WorkerPool(std::vector<std::string> addresses, std::chrono::milliseconds startup_timeout);
  WorkerPool(std::vector<std::string> addresses, WorkerPoolOptions options);
  WorkerPool(const WorkerPool&) = delete;
  WorkerPool& operator=(const WorkerPool&) = delete;

  // A worker with room that serves `storage` and `preset` ("" = any). `avoid`
  // (an address) is chosen only when no other worker has room. UNAVAILABLE
  // "no_worker_available" when none has room (or none is configured).
  // Thread-safe; concurrent selections may pick the same worker, whose
  // SubmitJob then answers RESOURCE_EXHAUSTED.
  absl::StatusOr<WorkerClient*> select(const std::string& storage, const std::string& preset,
                                       const std::string& avoid = "");

  // Last known state of every configured worker, in configuration order.
  std::vector<WorkerSnapshot> snapshots() const;
  // Asks every worker at once (no waiting for connections, `deadline` each)
  // and returns the fresh snapshots.
  std::vector<WorkerSnapshot> refresh(std::chrono::milliseconds deadline);

  // nullptr when `address` is not configured.
  WorkerClient* find(const std::string& address);
  const std::vector<std::unique_ptr<WorkerClient>>& workers() const { return workers_; }
  size_t size() const { return workers_.size(); }

  SelectionStats stats() const;

 private:
  std::optional<v1::WorkerStatus> ask(WorkerClient& worker);

  WorkerPoolOptions options_;
  std::vector<std::unique_ptr<WorkerClient>> workers_;
  mutable std::mutex mu_;
  int last_ = -1;  // index chosen last
  SelectionStats stats_;
};

}  // namespace flux::controlplane::balancer
