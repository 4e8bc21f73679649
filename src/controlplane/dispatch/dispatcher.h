#pragma once
// The queue and its dispatch to workers (SPEC §4).
//
// Promises:
// - A job accepted by submit() is durable before submit() returns and is
//   never lost: it stays queued until a worker has room (never refused because
//   workers are busy), and a job whose worker vanished goes back to the queue.
// - Queue order: higher priority first, FIFO (creation order) within one.
// - Every status change is written durably (store.update) before on_change
//   reports it; progress ticks are checkpointed (store.checkpoint_progress).
// - Before a worker is asked to run a job, the record names that worker
//   (worker_address) durably, so a restarted control plane re-attaches with
//   WatchJob instead of running the job again (the worker keeps a finished
//   job's final state for its RESULT_HOLD; a control plane down for longer
//   finds the job unknown and runs it again). A job is never handed to a
//   second worker while the first may still finish it, except after that
//   worker stayed unreachable for reattach_timeout; it is then also cancelled
//   there as soon as the worker answers again.
// - attempts counts the workers a job was handed to. A lost worker (stream
//   broken and WatchJob impossible or NOT_FOUND) or a retryable failure (see
//   is_retryable) requeues the job preferring another worker, up to
//   max_attempts, then FAILED "max_attempts_exceeded". Deterministic failures
//   are final at once. A worker refusing the job for lack of room
//   (RESOURCE_EXHAUSTED, draining) puts it back without counting an attempt.
//   A job lost with its worker goes to another worker at once; one the worker
//   failed for its surroundings (is_retried_after_backoff: the object store
//   down, a full disk) waits retry_backoff × 2^(attempts−1), at most
//   retry_backoff_max, before it can be dispatched again, so that an outage
//   of a dependency every worker shares does not use up max_attempts within
//   seconds (the wait is not persisted: a restart dispatches it at once).
// - JobRecord.sequence grows by one with every change reported to on_change,
//   across attempts (a usable SSE event id).
// - on_change is called from the dispatcher's threads and from submit() and
//   cancel(), never under the dispatcher's lock, in order for any one job; it
//   must be thread-safe. status_changed is true for creation, each status
//   change (durable) and each terminal state.
// - JOB_TIMEOUT counts from each dispatch (time in the queue is not counted)
//   and is also sent to the worker as JobRequest.timeout_seconds.
#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "absl/status/statusor.h"
#include "controlplane/balancer/worker_pool.h"
#include "controlplane/model/job.h"
#include "controlplane/store/job_store.h"

namespace flux::controlplane::dispatch {

struct DispatchOptions {
  // Most jobs waiting in the queue (then submit → RESOURCE_EXHAUSTED
  // "queue_full"). 0 = the original: UNAVAILABLE "no_worker_available" at once
  // unless a worker has room right now.
  int queue_limit = 1000;
  int max_attempts = 3;                            // MAX_ATTEMPTS
  std::chrono::milliseconds job_timeout{3600000};  // JOB_TIMEOUT, per attempt
  std::chrono::milliseconds retry_delay{1000};     // re-selection when no worker had room
  std::chrono::milliseconds retry_backoff{5000};   // before the 2nd attempt after a failure; doubles
  std::chrono::milliseconds retry_backoff_max{60000};
  std::chrono::milliseconds reattach_timeout{10000};  // a broken stream's worker gets this long to be reachable
  std::chrono::milliseconds cancel_grace{10000};      // a cancelled job's worker gets this long to confirm
  std::chrono::milliseconds rpc_timeout{5000};        // CancelJob
};

struct DispatchStats {
  uint64_t dispatched = 0;    // jobs handed to a worker (SubmitJob admitted)
  uint64_t refused = 0;       // SubmitJob refused for room (RESOURCE_EXHAUSTED, draining)
  uint64_t requeued = 0;      // lost workers and retryable failures sent back to the queue
  uint64_t reattached = 0;    // WatchJob streams opened (restart or broken stream)
  uint64_t timed_out = 0;     // jobs failed with "timeout" by JOB_TIMEOUT
  uint64_t cancel_waits = 0;  // cancels that waited for the job to be queued or for another cancel of it
};

using ChangeCallback = std::function<void(const model::JobRecord& job, bool status_changed)>;

// The store and the pool must outlive the dispatcher.
class Dispatcher {
 public:
  Dispatcher(store::JobStore& store, balancer::WorkerPool& pool, DispatchOptions options, ChangeCallback on_change);
  ~Dispatcher();  // stop()
  Dispatcher(const Dispatcher&) = delete;
  Dispatcher& operator=(const Dispatcher&) = delete;

  // Stores the job durably and queues it. Fills job_id, created_at/created_ms
  // when empty and resets the lifecycle fields. With an idempotency key already
  // used, returns the earlier job (created=false) and queues nothing.
  // RESOURCE_EXHAUSTED "queue_full" when queue_limit jobs wait; with
  // queue_limit 0, UNAVAILABLE "no_worker_available" unless a worker has room
  // (asking the workers, as the original did). UNAVAILABLE
  // "no_worker_configured" with no worker at all, "dispatcher_stopped" after stop().
  absl::StatusOr<store::CreateResult> submit(model::JobRecord job);

  // A queued job is cancelled at once. A running one gets CancelJob on its
  // worker and becomes CANCELLED when the worker confirms, or after
  // cancel_grace; the record returned is then still the running one.
  // Idempotent for a cancelled job, concurrent cancels of one job included;
  // FAILED_PRECONDITION "job_finished" for a completed or failed one;
  // NOT_FOUND "job_not_found" for an unknown id. A job submit() is still
  // storing, or another cancel is taking out of the queue, is waited for.
  // UNAVAILABLE "dispatcher_not_started" only before start() loaded the job.
  absl::StatusOr<model::JobRecord> cancel(const std::string& job_id);

  // Loads every unfinished job from the store (queued ones are queued; ones
  // that name a worker are re-attached with WatchJob, and requeued if that
  // worker no longer knows them) and starts dispatching. Once only.
  absl::Status start();

  // Stops dispatching and closes every worker stream WITHOUT cancelling the
  // jobs on the workers: they keep running and a later start() (of this or a
  // new Dispatcher on the same store) re-attaches to them. Idempotent.
  void stop();

  size_t queued() const;
  size_t running() const;  // jobs handed to a worker (or being re-attached)
  DispatchStats stats() const;

 private:
  struct QueueKey {
    int negative_priority = 0;
    int64_t created_ms = 0;
    uint64_t order = 0;
    auto operator<=>(const QueueKey&) const = default;
  };
  struct QueuedJob {
    model::JobRecord job;
    std::string avoid;                                   // the worker that lost it
    balancer::WorkerClient* preferred = nullptr;         // chosen at submit (queue_limit 0)
    std::chrono::steady_clock::time_point not_before{};  // retry backoff
  };
  struct RunningJob;
  struct StreamOutcome;
  struct Orphan {
    std::string job_id;
    std::string address;
    std::chrono::steady_clock::time_point next_try;
    std::chrono::steady_clock::time_point expires;
  };

  void enqueue_locked(model::JobRecord job, std::string avoid, balancer::WorkerClient* preferred,
                      std::chrono::steady_clock::time_point not_before = {});
  std::shared_ptr<RunningJob> start_running_locked(model::JobRecord job, balancer::WorkerClient* worker, bool reattach);
  void dispatch_loop();
  void housekeeping_loop();
  void housekeeping_tick();

  void relay(const std::shared_ptr<RunningJob>& r);
  StreamOutcome run_stream(const std::shared_ptr<RunningJob>& r, bool watch);
  bool handle_event(const std::shared_ptr<RunningJob>& r, const ::worker::v1::JobProgress& event);
  void apply_progress(const std::shared_ptr<RunningJob>& r, const ::worker::v1::JobProgress& event);
  void finish_from_worker(const std::shared_ptr<RunningJob>& r, const ::worker::v1::JobProgress& event);
  // Terminal states and requeues; each removes the job from running_.
  void finalize(const std::shared_ptr<RunningJob>& r, const std::function<void(model::JobRecord&)>& mutate);
  // `backoff`: the job waits (retry_backoff, doubling per attempt) before it is dispatched again.
  void lose(const std::shared_ptr<RunningJob>& r, const std::string& reason, bool orphaned, bool backoff = false);
  void requeue(const std::shared_ptr<RunningJob>& r, bool counted, const std::string& message, bool backoff = false);
  void detach(const std::shared_ptr<RunningJob>& r);  // stop(): forget without touching the record
  void release_locked(const std::shared_ptr<RunningJob>& r);
  void arrived_locked(const std::string& job_id);  // leaves in_transit_
  void signal_admission(const std::shared_ptr<RunningJob>& r, bool admitted);
  enum class Write { kNone, kCheckpoint, kDurable };
  // Writes the change to the store as told, then reports it to on_change.
  void publish(const model::JobRecord& job, bool status_changed, Write write);

  store::JobStore& store_;
  balancer::WorkerPool& pool_;
  const DispatchOptions options_;
  const ChangeCallback on_change_;

  mutable std::mutex mu_;
  std::condition_variable cv_;  // queue, capacity, admissions, running_ changes
  std::condition_variable housekeeping_cv_;
  bool started_ = false;
  bool stopping_ = false;
  std::map<QueueKey, QueuedJob> queue_;
  std::unordered_map<std::string, QueueKey> queue_keys_;
  uint64_t next_order_ = 0;
  size_t reserved_ = 0;  // submissions between the queue_limit check and the enqueue
  std::unordered_map<std::string, std::shared_ptr<RunningJob>> running_;
  // Jobs on their way between the store and the queue, in neither queue_ nor
  // running_ although the store says queued: stored by submit() but not
  // queued yet, or taken out of the queue by cancel() and not yet stored as
  // cancelled. A cancel() of one waits on transit_cv_ until it has arrived.
  std::set<std::string> in_transit_;
  std::condition_variable transit_cv_;
  int transit_waiters_ = 0;
  std::vector<std::thread> finished_threads_;
  std::vector<Orphan> orphans_;
  // What the dispatch loop waits for after a pass that found no worker.
  uint64_t capacity_generation_ = 0;
  std::set<std::string> failed_needs_;
  bool new_needs_ = false;
  DispatchStats stats_;

  std::thread dispatch_thread_;
  std::thread housekeeping_thread_;
};

}  // namespace flux::controlplane::dispatch
