#include "controlplane/dispatch/dispatcher.h"

#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <limits>

#include "controlplane/dispatch/worker_events.h"
#include "shared/core/error.h"
#include "shared/core/named_thread.h"
#include "shared/core/time.h"
#include "shared/log/log.h"

namespace flux::controlplane::dispatch {
namespace {

using Clock = std::chrono::steady_clock;
using model::JobRecord;
using model::JobStatus;

// How long the dispatch loop waits for a worker to admit a job before it
// selects for the next one (so that the next GetStatus sees this job).
constexpr std::chrono::milliseconds kAdmissionWait{10000};
constexpr std::chrono::milliseconds kHousekeepingPeriod{100};
constexpr std::chrono::milliseconds kOrphanRetry{1000};
constexpr std::chrono::minutes kOrphanLifetime{15};
constexpr size_t kOrphansPerTick = 4;
// Bounds on one dispatch pass over a long queue whose head no worker can take.
constexpr size_t kMaxScan = 1000;
constexpr size_t kMaxNeedsPerPass = 8;
// Broken streams in a row without a single event before the worker is given up.
constexpr int kMaxFruitlessStreams = 3;

std::string needs_key(const JobRecord& job) { return job.spec.output.storage + '\n' + job.spec.preset; }

int32_t timeout_seconds(std::chrono::milliseconds timeout) {
  const int64_t seconds = (timeout.count() + 999) / 1000;
  return static_cast<int32_t>(std::clamp<int64_t>(seconds, 1, std::numeric_limits<int32_t>::max()));
}

v1::JobRequest build_request(const JobRecord& job, std::chrono::milliseconds timeout) {
  v1::JobRequest request;
  request.set_job_id(job.job_id);
  request.set_input_url(job.spec.input_url);
  request.set_preset(job.spec.preset);
  auto* output = request.mutable_output();
  output->set_storage(job.spec.output.storage);
  output->set_path(job.spec.output.path);
  output->set_type(job.spec.output.type);
  for (const auto& [key, value] : job.spec.output.metadata) (*output->mutable_metadata())[key] = value;
  // callback_url stays with the control plane, which sends the webhooks.
  request.set_timeout_seconds(timeout_seconds(timeout));
  return request;
}

// Stops a copy of a job the control plane gave up on, on a worker that may
// be reachable again, and collects its final state so that the worker does
// not hold it (and stay up) for RESULT_HOLD. True once nothing is left there.
bool abandon_on_worker(balancer::WorkerClient& worker, const std::string& job_id) {
  constexpr std::chrono::milliseconds kDeadline{1000};
  auto cancelled = worker.cancel_job(job_id, "abandoned", kDeadline);
  if (!cancelled.ok()) return false;
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + kDeadline);
  v1::WatchJobRequest request;
  request.set_job_id(job_id);
  auto reader = worker.stub().WatchJob(&context, request);
  v1::JobProgress event;
  bool ended = false;
  while (reader->Read(&event)) ended = ended || is_terminal(event.status());
  const grpc::Status status = reader->Finish();
  if (!ended && status.error_code() != grpc::StatusCode::NOT_FOUND) return false;  // still stopping
  log::info("stopped an abandoned copy of a job on a worker that answers again",
            {{"job_id", job_id}, {"worker", worker.address()}, {"was_running", cancelled->success()}});
  return true;
}

}  // namespace

struct Dispatcher::RunningJob {
  JobRecord job;                             // guarded by mu_; written by the relay thread only
  balancer::WorkerClient* worker = nullptr;  // nullptr: the recorded worker is no longer configured
  bool reattach = false;
  std::shared_ptr<grpc::ClientContext> context;  // the stream being read, if any
  bool admission_done = false;
  bool admitted = false;  // the worker has (or had) the job
  bool cancel_requested = false;
  bool cancel_sent = false;
  bool timed_out = false;
  bool given_up = false;  // cancel_grace passed without the worker confirming
  Clock::time_point deadline;
  Clock::time_point cancel_deadline;
  std::thread thread;
};

struct Dispatcher::StreamOutcome {
  bool finished = false;  // a terminal event was handled
  bool received_any = false;
  absl::Status status;
};

Dispatcher::Dispatcher(store::JobStore& store, balancer::WorkerPool& pool, DispatchOptions options,
                       ChangeCallback on_change)
    : store_(store), pool_(pool), options_(options), on_change_(std::move(on_change)) {}

Dispatcher::~Dispatcher() { stop(); }

// ---- submission and cancel ----------------------------------------------------

absl::StatusOr<store::CreateResult> Dispatcher::submit(JobRecord job) {
  if (job.job_id.empty()) job.job_id = model::new_job_id();
  if (job.created_ms == 0 || job.created_at.empty()) {
    const auto now = std::chrono::system_clock::now();
    job.created_ms = std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count();
    job.created_at = format_rfc3339(now);
  }
  job.status = JobStatus::kQueued;
  job.phase = "queued";
  job.progress = 0;
  job.message = "queued";
  job.output_url.clear();
  job.error.clear();
  job.error_code.clear();
  job.worker_id.clear();
  job.worker_address.clear();
  job.attempts = 0;
  job.started_at.clear();
  job.finished_at.clear();
  job.result = nlohmann::json::object();
  job.phase_durations = nlohmann::json::object();
  job.sequence = 1;

  if (pool_.size() == 0) return unavailable("no_worker_configured", "no worker is configured (WORKER_NODES)");
  const std::string job_id = job.job_id;
  {
    std::lock_guard lock(mu_);
    if (stopping_) return unavailable("dispatcher_stopped", "the control plane is shutting down");
    if (options_.queue_limit > 0) {
      if (queue_.size() + reserved_ >= static_cast<size_t>(options_.queue_limit)) {
        return make_error(absl::StatusCode::kResourceExhausted, "queue_full",
                          "the queue is full (" + std::to_string(options_.queue_limit) + " jobs waiting)");
      }
    }
    ++reserved_;
    in_transit_.insert(job_id);
  }
  const auto give_up = [&] {
    std::lock_guard lock(mu_);
    --reserved_;
    arrived_locked(job_id);
  };
  balancer::WorkerClient* preferred = nullptr;
  if (options_.queue_limit == 0) {
    auto worker = pool_.select(job.spec.output.storage, job.spec.preset);
    if (!worker.ok()) {
      give_up();
      return worker.status();
    }
    preferred = *worker;
  }
  auto created = store_.create(job);
  if (!created.ok() || !created->created) {
    give_up();
    return created;
  }
  // Reported before the job can be dispatched, so that on_change sees its
  // events in order.
  publish(created->job, true, Write::kNone);
  {
    std::lock_guard lock(mu_);
    --reserved_;
    enqueue_locked(created->job, "", preferred);
    arrived_locked(job_id);
  }
  log::debug("job queued", {{"job_id", created->job.job_id},
                            {"preset", created->job.spec.preset},
                            {"priority", created->job.spec.priority}});
  return created;
}

absl::StatusOr<JobRecord> Dispatcher::cancel(const std::string& job_id) {
  std::unique_lock lock(mu_);
  if (in_transit_.count(job_id) != 0) {
    // Neither queued nor running right now, yet not finished: looking in the
    // store would find it "queued" and unknown here.
    ++stats_.cancel_waits;
    ++transit_waiters_;
    transit_cv_.wait(lock, [&] { return in_transit_.count(job_id) == 0; });
    --transit_waiters_;
  }
  if (auto it = queue_keys_.find(job_id); it != queue_keys_.end()) {
    auto node = queue_.extract(it->second);
    queue_keys_.erase(it);
    in_transit_.insert(job_id);
    lock.unlock();
    JobRecord job = node.mapped().job;
    job.status = JobStatus::kCancelled;
    job.phase = "done";
    job.message = "cancelled";
    job.error = "cancelled by request while queued";
    job.error_code = "cancelled";
    job.finished_at = now_rfc3339();
    ++job.sequence;
    if (auto s = store_.update(job); !s.ok()) {
      // Not cancelled after all: the store still says queued.
      std::lock_guard relock(mu_);
      enqueue_locked(node.mapped().job, node.mapped().avoid, nullptr);
      arrived_locked(job_id);
      return s;
    }
    {
      std::lock_guard relock(mu_);
      arrived_locked(job_id);
    }
    publish(job, true, Write::kNone);
    log::info("job cancelled while queued", {{"job_id", job_id}});
    return job;
  }
  if (auto it = running_.find(job_id); it != running_.end()) {
    std::shared_ptr<RunningJob> r = it->second;
    if (model::is_terminal(r->job.status)) {
      if (r->job.status == JobStatus::kCancelled) return r->job;
      return failed_precondition("job_finished", "job " + job_id + " has already finished");
    }
    bool send = false;
    if (!r->cancel_requested) {
      r->cancel_requested = true;
      r->cancel_deadline = Clock::now() + options_.cancel_grace;
      if (r->admitted && !r->cancel_sent && r->worker != nullptr) send = r->cancel_sent = true;
    }
    JobRecord job = r->job;
    balancer::WorkerClient* worker = r->worker;
    lock.unlock();
    log::info("cancel requested", {{"job_id", job_id}, {"worker", job.worker_address}});
    if (send) {
      if (auto answer = worker->cancel_job(job_id, "", options_.rpc_timeout); !answer.ok()) {
        log::warn(
            "CancelJob failed; the job is cancelled after the grace period",
            {{"job_id", job_id}, {"worker", worker->address()}, {"error", std::string(answer.status().message())}});
      }
    }
    return job;
  }
  lock.unlock();
  auto stored = store_.get(job_id);
  if (!stored.ok()) return stored.status();
  if (stored->status == JobStatus::kCancelled) return *stored;
  if (model::is_terminal(stored->status)) {
    return failed_precondition("job_finished", "job " + job_id + " has already finished");
  }
  // Unfinished but unknown here: the dispatcher has not loaded it (yet).
  return unavailable("dispatcher_not_started", "job " + job_id + " is not loaded yet; try again");
}

// ---- queue --------------------------------------------------------------------

void Dispatcher::enqueue_locked(JobRecord job, std::string avoid, balancer::WorkerClient* preferred,
                                Clock::time_point not_before) {
  if (queue_keys_.count(job.job_id) != 0 || running_.count(job.job_id) != 0) return;
  const QueueKey key{-job.spec.priority, job.created_ms, next_order_++};
  // The dispatch loop is woken only when it may have something new to do:
  // not by every submission while no worker has room for jobs like this one.
  const bool wake = queue_.empty() || failed_needs_.count(needs_key(job)) == 0;
  if (wake) new_needs_ = true;
  queue_keys_[job.job_id] = key;
  queue_.emplace(key, QueuedJob{std::move(job), std::move(avoid), preferred, not_before});
  if (wake) cv_.notify_all();
}

std::shared_ptr<Dispatcher::RunningJob> Dispatcher::start_running_locked(JobRecord job, balancer::WorkerClient* worker,
                                                                         bool reattach) {
  auto r = std::make_shared<RunningJob>();
  r->worker = worker;
  r->reattach = reattach;
  r->deadline = Clock::now() + options_.job_timeout;
  if (reattach) {
    r->admission_done = true;
    r->admitted = true;
  } else {
    job.attempts += 1;
    job.worker_address = worker->address();
    if (std::string id = worker->snapshot().worker_id; !id.empty()) job.worker_id = id;
    if (job.started_at.empty()) job.started_at = now_rfc3339();
    job.message = "dispatched to worker " + (job.worker_id.empty() ? job.worker_address : job.worker_id);
    ++job.sequence;
    // The job goes to this worker again: it must not be cancelled there.
    std::erase_if(orphans_, [&](const Orphan& o) { return o.job_id == job.job_id && o.address == job.worker_address; });
  }
  r->job = std::move(job);
  running_[r->job.job_id] = r;
  // Started under mu_ so that `thread` is assigned before the relay can move it.
  r->thread = start_named_thread("cp-relay", [this, r] { relay(r); });
  return r;
}

absl::Status Dispatcher::start() {
  {
    std::lock_guard lock(mu_);
    if (started_) return failed_precondition("dispatcher_started", "the dispatcher is already started");
    if (stopping_) return failed_precondition("dispatcher_stopped", "the dispatcher was stopped");
    started_ = true;
  }
  auto jobs = store_.load_unfinished();
  if (!jobs.ok()) {
    std::lock_guard lock(mu_);
    started_ = false;
    return annotate(jobs.status(), "loading unfinished jobs");
  }
  size_t requeued = 0;
  size_t reattached = 0;
  std::lock_guard lock(mu_);
  for (auto& job : *jobs) {
    if (queue_keys_.count(job.job_id) != 0 || running_.count(job.job_id) != 0) continue;
    if (!job.worker_address.empty()) {
      // Handed to a worker before the restart: re-attach there.
      balancer::WorkerClient* worker = pool_.find(job.worker_address);
      start_running_locked(std::move(job), worker, true);
      ++reattached;
    } else {
      enqueue_locked(std::move(job), "", nullptr);
      ++requeued;
    }
  }
  dispatch_thread_ = start_named_thread("cp-dispatch", [this] { dispatch_loop(); });
  housekeeping_thread_ = start_named_thread("cp-housekeeping", [this] { housekeeping_loop(); });
  log::info("dispatcher started", {{"queued", requeued}, {"reattaching", reattached}, {"workers", pool_.size()}});
  return absl::OkStatus();
}

void Dispatcher::stop() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
    // Closing the streams leaves the jobs running on their workers.
    for (auto& [id, r] : running_) {
      if (r->context) r->context->TryCancel();
    }
  }
  cv_.notify_all();
  housekeeping_cv_.notify_all();
  if (dispatch_thread_.joinable()) dispatch_thread_.join();
  if (housekeeping_thread_.joinable()) housekeeping_thread_.join();
  std::vector<std::thread> threads;
  {
    std::unique_lock lock(mu_);
    cv_.wait(lock, [this] { return running_.empty(); });
    threads.swap(finished_threads_);
  }
  for (auto& thread : threads) thread.join();
  if (auto s = store_.flush(); !s.ok()) {
    log::error("flushing progress checkpoints failed", {{"error", std::string(s.message())}});
  }
}

size_t Dispatcher::queued() const {
  std::lock_guard lock(mu_);
  return queue_.size();
}

size_t Dispatcher::running() const {
  std::lock_guard lock(mu_);
  return running_.size();
}

DispatchStats Dispatcher::stats() const {
  std::lock_guard lock(mu_);
  return stats_;
}

// ---- dispatch loop ------------------------------------------------------------

void Dispatcher::dispatch_loop() {
  std::unique_lock lock(mu_);
  while (!stopping_) {
    if (queue_.empty()) {
      cv_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
      continue;
    }
    const uint64_t generation = capacity_generation_;
    new_needs_ = false;
    std::set<std::string> failed;
    bool pass_again = false;  // something was dispatched, or the queue changed under us
    size_t scanned = 0;
    const auto pass_started = Clock::now();
    auto backoff_ends = Clock::time_point::max();  // the first job in retry backoff to become due
    auto it = queue_.begin();
    while (!stopping_ && it != queue_.end() && scanned < kMaxScan && failed.size() < kMaxNeedsPerPass) {
      ++scanned;
      if (it->second.not_before > pass_started) {
        backoff_ends = std::min(backoff_ends, it->second.not_before);
        ++it;
        continue;
      }
      const QueueKey key = it->first;
      const std::string needs = needs_key(it->second.job);
      if (failed.count(needs) != 0) {
        ++it;
        continue;
      }
      const std::string job_id = it->second.job.job_id;
      balancer::WorkerClient* worker = std::exchange(it->second.preferred, nullptr);
      if (worker == nullptr) {
        const std::string storage = it->second.job.spec.output.storage;
        const std::string preset = it->second.job.spec.preset;
        const std::string avoid = it->second.avoid;
        lock.unlock();
        auto selected = pool_.select(storage, preset, avoid);
        lock.lock();
        if (stopping_) return;
        if (!selected.ok()) {
          failed.insert(needs);
          it = queue_.upper_bound(key);
          continue;
        }
        worker = *selected;
      }
      auto found = queue_.find(key);
      if (found == queue_.end() || found->second.job.job_id != job_id) {  // cancelled meanwhile
        pass_again = true;
        break;
      }
      JobRecord job = std::move(found->second.job);
      queue_.erase(found);
      queue_keys_.erase(job_id);
      auto r = start_running_locked(std::move(job), worker, false);
      cv_.wait_for(lock, kAdmissionWait, [this, &r] { return stopping_ || r->admission_done; });
      pass_again = true;
      break;
    }
    if (pass_again) continue;
    failed_needs_ = std::move(failed);
    auto wait = options_.retry_delay;
    if (backoff_ends != Clock::time_point::max()) {
      const auto until_due = std::chrono::ceil<std::chrono::milliseconds>(backoff_ends - Clock::now());
      wait = std::max(std::chrono::milliseconds(1), std::min(until_due, wait));
    }
    cv_.wait_for(lock, wait,
                 [this, generation] { return stopping_ || capacity_generation_ != generation || new_needs_; });
  }
}

// ---- housekeeping -------------------------------------------------------------

void Dispatcher::housekeeping_loop() {
  std::unique_lock lock(mu_);
  while (!stopping_) {
    housekeeping_cv_.wait_for(lock, kHousekeepingPeriod, [this] { return stopping_; });
    if (stopping_) break;
    lock.unlock();
    housekeeping_tick();
    lock.lock();
  }
}

void Dispatcher::housekeeping_tick() {
  std::vector<std::pair<balancer::WorkerClient*, std::string>> cancels;
  std::vector<std::thread> threads;
  std::vector<Orphan> due;
  {
    std::lock_guard lock(mu_);
    const auto now = Clock::now();
    for (auto& [id, r] : running_) {
      if (model::is_terminal(r->job.status)) continue;
      if (!r->timed_out && now >= r->deadline) {
        r->timed_out = true;
        r->cancel_deadline = now + options_.cancel_grace;
        if (r->worker != nullptr && r->admitted && !r->cancel_sent) {
          r->cancel_sent = true;
          cancels.emplace_back(r->worker, id);
        }
        log::warn("job exceeded JOB_TIMEOUT; cancelling it on its worker",
                  {{"job_id", id}, {"timeout_ms", options_.job_timeout.count()}});
      }
      if ((r->timed_out || r->cancel_requested) && !r->given_up && now >= r->cancel_deadline) {
        r->given_up = true;
        if (r->context) r->context->TryCancel();
      }
    }
    threads.swap(finished_threads_);
    std::erase_if(orphans_, [now](const Orphan& o) { return now >= o.expires; });
    for (Orphan& orphan : orphans_) {
      // Each costs up to two short RPCs; a few per tick keep timeouts and
      // cancels on time.
      if (now < orphan.next_try || due.size() >= kOrphansPerTick) continue;
      orphan.next_try = now + kOrphanRetry;
      due.push_back(orphan);
    }
  }
  for (auto& thread : threads) thread.join();
  for (auto& [worker, id] : cancels) {
    if (auto answer = worker->cancel_job(id, "", options_.rpc_timeout); !answer.ok()) {
      log::warn("CancelJob failed",
                {{"job_id", id}, {"worker", worker->address()}, {"error", std::string(answer.status().message())}});
    }
  }
  for (const Orphan& orphan : due) {
    balancer::WorkerClient* worker = pool_.find(orphan.address);
    if (worker == nullptr || !abandon_on_worker(*worker, orphan.job_id)) continue;
    std::lock_guard lock(mu_);
    std::erase_if(orphans_, [&](const Orphan& o) { return o.job_id == orphan.job_id && o.address == orphan.address; });
  }
}

// ---- relay: one thread per job on a worker -------------------------------------

void Dispatcher::relay(const std::shared_ptr<RunningJob>& r) {
  const std::string job_id = r->job.job_id;  // never changes
  bool watch = r->reattach;
  if (watch) {
    std::lock_guard lock(mu_);
    ++stats_.reattached;
  } else {
    JobRecord snapshot;
    bool cancelled;
    {
      std::lock_guard lock(mu_);
      snapshot = r->job;
      cancelled = r->cancel_requested;
    }
    if (cancelled) {
      signal_admission(r, false);
      finalize(r, [](JobRecord& job) {
        job.attempts = std::max(0, job.attempts - 1);
        job.worker_address.clear();
        job.status = JobStatus::kCancelled;
        job.message = "cancelled";
        job.error = "cancelled by request before it reached a worker";
        job.error_code = "cancelled";
      });
      return;
    }
    // Durable before the worker hears of it: a restarted control plane then
    // looks for the job on this worker instead of running it again.
    if (auto s = store_.update(snapshot); !s.ok()) {
      log::error("recording the dispatch failed; job requeued",
                 {{"job_id", job_id}, {"error", std::string(s.message())}});
      signal_admission(r, false);
      // A failing store fails every dispatch: pace the retries.
      std::this_thread::sleep_for(options_.retry_delay);
      requeue(r, false, "the store could not record the dispatch");
      return;
    }
    publish(snapshot, false, Write::kNone);
  }
  int fruitless = 0;
  for (;;) {
    if (r->worker == nullptr) {
      lose(r, "its worker " + r->job.worker_address + " is no longer configured", false);
      return;
    }
    StreamOutcome out = run_stream(r, watch);
    signal_admission(r, false);  // no-op once admitted
    if (out.finished) return;
    bool stopping;
    bool given_up;
    {
      std::lock_guard lock(mu_);
      stopping = stopping_;
      given_up = r->given_up;
    }
    if (stopping) {
      detach(r);
      return;
    }
    const auto forced = [&] {
      bool timed_out;
      {
        std::lock_guard lock(mu_);
        timed_out = r->timed_out;
        orphans_.push_back({job_id, r->worker->address(), Clock::now(), Clock::now() + kOrphanLifetime});
      }
      finalize(r, [timed_out](JobRecord& job) {
        if (timed_out) {
          job.status = JobStatus::kFailed;
          job.error_code = "timeout";
          job.error = "job exceeded its time limit; its worker did not confirm the cancel";
          job.message = "failed";
        } else {
          job.status = JobStatus::kCancelled;
          job.error_code = "cancelled";
          job.error = "cancelled by request; its worker did not confirm the cancel";
          job.message = "cancelled";
        }
      });
    };
    if (given_up) {
      forced();
      return;
    }
    const absl::StatusCode code = out.status.code();
    const std::string machine = error_code(out.status);
    if (!watch && !out.received_any) {
      if (code == absl::StatusCode::kAlreadyExists) {
        // The worker has this job already (handed over before a restart): follow it.
        watch = true;
        continue;
      }
      if (code == absl::StatusCode::kResourceExhausted || machine == "worker_draining" || machine == "worker_full") {
        {
          std::lock_guard lock(mu_);
          ++stats_.refused;
        }
        requeue(r, false, "worker " + r->worker->address() + " refused it (" + machine + ")");
        return;
      }
      if (code != absl::StatusCode::kUnavailable && code != absl::StatusCode::kDeadlineExceeded &&
          code != absl::StatusCode::kCancelled && code != absl::StatusCode::kUnknown &&
          code != absl::StatusCode::kInternal) {
        // The worker refused the request itself (a preset or storage it
        // does not know...): the same request fails everywhere.
        const std::string reason(out.status.message());
        finalize(r, [&](JobRecord& job) {
          job.status = JobStatus::kFailed;
          job.error_code = machine.empty() ? "worker_refused" : machine;
          job.error = reason;
          job.message = "failed";
        });
        return;
      }
    }
    if (watch && code == absl::StatusCode::kNotFound) {
      lose(r, "worker " + r->worker->address() + " no longer knows the job", false);
      return;
    }
    if (watch && code == absl::StatusCode::kUnimplemented) {
      // An original worker: no WatchJob, and it cancels a job whose stream broke.
      lose(r, "worker " + r->worker->address() + " cannot re-attach (no WatchJob)", false);
      return;
    }
    fruitless = out.received_any ? 0 : fruitless + 1;
    if (fruitless >= kMaxFruitlessStreams) {
      lose(r, "worker " + r->worker->address() + " keeps failing: " + std::string(out.status.message()), true);
      return;
    }
    log::warn("worker stream broken; re-attaching with WatchJob",
              {{"job_id", job_id}, {"worker", r->worker->address()}, {"error", std::string(out.status.message())}});
    const bool connected = r->worker->wait_connected(options_.reattach_timeout, [this, &r] {
      std::lock_guard lock(mu_);
      return stopping_ || r->given_up;
    });
    {
      std::lock_guard lock(mu_);
      stopping = stopping_;
      given_up = r->given_up;
    }
    if (stopping) {
      detach(r);
      return;
    }
    if (given_up) {
      forced();
      return;
    }
    if (!connected) {
      lose(r, "worker " + r->worker->address() + " unreachable", true);
      return;
    }
    watch = true;
    std::lock_guard lock(mu_);
    ++stats_.reattached;
  }
}

Dispatcher::StreamOutcome Dispatcher::run_stream(const std::shared_ptr<RunningJob>& r, bool watch) {
  auto context = std::make_shared<grpc::ClientContext>();
  JobRecord job;
  {
    std::lock_guard lock(mu_);
    if (stopping_ || r->given_up) return {.status = make_error(absl::StatusCode::kCancelled, "stream_closed", "")};
    r->context = context;
    job = r->job;
  }
  std::unique_ptr<grpc::ClientReader<v1::JobProgress>> reader;
  if (watch) {
    v1::WatchJobRequest request;
    request.set_job_id(job.job_id);
    reader = r->worker->stub().WatchJob(context.get(), request);
  } else {
    reader = r->worker->stub().SubmitJob(context.get(), build_request(job, options_.job_timeout));
  }
  StreamOutcome out;
  v1::JobProgress event;
  while (reader->Read(&event)) {
    if (!out.received_any) {
      out.received_any = true;
      if (!watch) signal_admission(r, true);
    }
    // Whatever follows a terminal event is ignored; the worker closes the
    // stream right after it.
    if (!out.finished && handle_event(r, event)) out.finished = true;
  }
  const grpc::Status status = reader->Finish();
  {
    std::lock_guard lock(mu_);
    if (r->context == context) r->context.reset();
  }
  out.status = balancer::from_grpc(status, *context);
  return out;
}

void Dispatcher::signal_admission(const std::shared_ptr<RunningJob>& r, bool admitted) {
  balancer::WorkerClient* cancel_on = nullptr;
  {
    std::lock_guard lock(mu_);
    if (r->admission_done) return;
    r->admission_done = true;
    r->admitted = admitted;
    if (admitted) {
      ++stats_.dispatched;
      if ((r->cancel_requested || r->timed_out) && !r->cancel_sent) {
        r->cancel_sent = true;
        cancel_on = r->worker;
      }
    }
  }
  cv_.notify_all();
  if (cancel_on != nullptr) (void)cancel_on->cancel_job(r->job.job_id, "", options_.rpc_timeout);
}

bool Dispatcher::handle_event(const std::shared_ptr<RunningJob>& r, const v1::JobProgress& event) {
  if (!is_terminal(event.status())) {
    apply_progress(r, event);
    return false;
  }
  finish_from_worker(r, event);
  return true;
}

void Dispatcher::apply_progress(const std::shared_ptr<RunningJob>& r, const v1::JobProgress& event) {
  JobRecord copy;
  bool changed;
  {
    std::lock_guard lock(mu_);
    JobRecord& job = r->job;
    const JobStatus status = to_job_status(event.status()).value_or(job.status);
    changed = status != job.status;
    job.status = status;
    if (std::string phase = phase_name(event.phase()); !phase.empty()) job.phase = std::move(phase);
    job.progress = event.progress();
    job.message = event.message();
    job.fps = event.fps();
    job.speed = event.speed();
    job.eta_seconds = event.eta_seconds();
    ++job.sequence;
    copy = job;
  }
  publish(copy, changed, changed ? Write::kDurable : Write::kCheckpoint);
}

void Dispatcher::finish_from_worker(const std::shared_ptr<RunningJob>& r, const v1::JobProgress& event) {
  bool timed_out;
  bool cancel_requested;
  {
    std::lock_guard lock(mu_);
    timed_out = r->timed_out;
    cancel_requested = r->cancel_requested;
  }
  const auto fail = [&](std::string code, std::string error) {
    finalize(r, [&](JobRecord& job) {
      job.status = JobStatus::kFailed;
      job.error_code = std::move(code);
      job.error = std::move(error);
      job.message = "failed";
      job.progress = event.progress();
    });
  };
  switch (event.status()) {
    case v1::JOB_STATUS_COMPLETED:
      finalize(r, [&](JobRecord& job) {
        job.status = JobStatus::kCompleted;
        job.progress = 100;
        job.message = event.message().empty() ? "completed" : event.message();
        job.output_url = event.output_url();
        job.result = result_to_json(event.result());
        job.phase_durations = phase_durations(event.result());
        job.error.clear();
        job.error_code.clear();
      });
      return;
    case v1::JOB_STATUS_CANCELLED:
      if (timed_out) {
        fail("timeout", "job exceeded its time limit");
        return;
      }
      finalize(r, [&](JobRecord& job) {
        job.status = JobStatus::kCancelled;
        job.message = "cancelled";
        job.error = event.error().empty() ? "job was cancelled" : event.error();
        job.error_code = event.error_code().empty() ? "cancelled" : event.error_code();
        job.progress = event.progress();
      });
      return;
    default: {
      const std::string& code = event.error_code();
      if (timed_out) {
        fail("timeout", "job exceeded its time limit");
      } else if (!cancel_requested && is_retryable(code)) {
        lose(r, "worker failed it (" + (code.empty() ? std::string("no code") : code) + "): " + event.error(), false,
             is_retried_after_backoff(code));
      } else {
        fail(code.empty() ? "job_failed" : code, event.error().empty() ? "job failed" : event.error());
      }
      return;
    }
  }
}

// ---- endings ------------------------------------------------------------------

void Dispatcher::finalize(const std::shared_ptr<RunningJob>& r, const std::function<void(JobRecord&)>& mutate) {
  JobRecord copy;
  {
    std::lock_guard lock(mu_);
    mutate(r->job);
    r->job.phase = "done";
    r->job.finished_at = now_rfc3339();
    ++r->job.sequence;
    if (r->job.status == JobStatus::kFailed && r->job.error_code == "timeout") ++stats_.timed_out;
    copy = r->job;
  }
  publish(copy, true, Write::kDurable);
  {
    std::lock_guard lock(mu_);
    release_locked(r);
  }
  log::info("job finished", {{"job_id", copy.job_id},
                             {"status", std::string(model::to_string(copy.status))},
                             {"error_code", copy.error_code},
                             {"attempts", copy.attempts},
                             {"worker", copy.worker_address}});
}

void Dispatcher::lose(const std::shared_ptr<RunningJob>& r, const std::string& reason, bool orphaned, bool backoff) {
  int attempts;
  {
    std::lock_guard lock(mu_);
    attempts = r->job.attempts;
    if (orphaned && r->worker != nullptr) {
      orphans_.push_back({r->job.job_id, r->worker->address(), Clock::now(), Clock::now() + kOrphanLifetime});
    }
  }
  if (attempts >= options_.max_attempts) {
    finalize(r, [&](JobRecord& job) {
      job.status = JobStatus::kFailed;
      job.error_code = "max_attempts_exceeded";
      job.error = "gave up after " + std::to_string(attempts) + " attempts; last: " + reason;
      job.message = "failed";
    });
    return;
  }
  requeue(r, true, reason, backoff);
}

void Dispatcher::requeue(const std::shared_ptr<RunningJob>& r, bool counted, const std::string& message, bool backoff) {
  // A job cancelled (or timed out) while it lost its worker ends here rather
  // than going back to the queue.
  const auto end_instead = [&](bool timed_out) {
    finalize(r, [timed_out](JobRecord& job) {
      job.worker_address.clear();
      if (timed_out) {
        job.status = JobStatus::kFailed;
        job.error_code = "timeout";
        job.error = "job exceeded its time limit";
        job.message = "failed";
      } else {
        job.status = JobStatus::kCancelled;
        job.error_code = "cancelled";
        job.error = "cancelled by request";
        job.message = "cancelled";
      }
    });
  };
  JobRecord copy;
  bool changed = false;
  std::string avoid;
  std::optional<bool> end_timed_out;
  Clock::time_point not_before{};
  {
    std::lock_guard lock(mu_);
    if (r->cancel_requested || r->timed_out) {
      end_timed_out = r->timed_out;
    } else {
      JobRecord& job = r->job;
      if (backoff) {
        const int doublings = std::clamp(job.attempts - 1, 0, 20);
        const auto delay = std::min(options_.retry_backoff * (int64_t{1} << doublings), options_.retry_backoff_max);
        not_before = Clock::now() + delay;
      }
      changed = job.status != JobStatus::kQueued;
      if (!counted) job.attempts = std::max(0, job.attempts - 1);
      avoid = job.worker_address;
      job.status = JobStatus::kQueued;
      job.phase = "queued";
      job.progress = 0;
      job.message = "requeued: " + message;
      job.worker_address.clear();
      ++job.sequence;
      if (counted) ++stats_.requeued;
      copy = job;
    }
  }
  if (end_timed_out) {
    end_instead(*end_timed_out);
    return;
  }
  publish(copy, changed, Write::kDurable);
  bool requeued = false;
  {
    std::lock_guard lock(mu_);
    if (!r->cancel_requested) {
      release_locked(r);
      enqueue_locked(copy, avoid, nullptr, not_before);
      requeued = true;
    }
  }
  if (!requeued) {
    end_instead(false);  // cancelled while it was being requeued
    return;
  }
  const auto backoff_ms = std::chrono::duration_cast<std::chrono::milliseconds>(not_before - Clock::now()).count();
  log::warn("job requeued", {{"job_id", copy.job_id},
                             {"reason", message},
                             {"attempts", copy.attempts},
                             {"retry_in_ms", std::max<int64_t>(0, backoff_ms)}});
}

void Dispatcher::detach(const std::shared_ptr<RunningJob>& r) {
  std::lock_guard lock(mu_);
  release_locked(r);
}

void Dispatcher::release_locked(const std::shared_ptr<RunningJob>& r) {
  if (auto it = running_.find(r->job.job_id); it != running_.end() && it->second == r) running_.erase(it);
  if (r->thread.joinable()) finished_threads_.push_back(std::move(r->thread));
  ++capacity_generation_;
  cv_.notify_all();
}

void Dispatcher::arrived_locked(const std::string& job_id) {
  in_transit_.erase(job_id);
  if (transit_waiters_ > 0) transit_cv_.notify_all();
}

void Dispatcher::publish(const JobRecord& job, bool status_changed, Write write) {
  if (write == Write::kDurable) {
    if (auto s = store_.update(job); !s.ok()) {
      log::error("storing a job change failed", {{"job_id", job.job_id}, {"error", std::string(s.message())}});
    }
  } else if (write == Write::kCheckpoint) {
    store_.checkpoint_progress(job.job_id, job.progress, job.phase, job.message, job.sequence);
  }
  if (!on_change_) return;
  try {
    on_change_(job, status_changed);
  } catch (const std::exception& e) {
    log::error("job change listener threw", {{"job_id", job.job_id}, {"error", e.what()}});
  } catch (...) {
    log::error("job change listener threw", {{"job_id", job.job_id}});
  }
}

}  // namespace flux::controlplane::dispatch
