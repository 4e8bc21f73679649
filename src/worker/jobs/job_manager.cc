#include "worker/jobs/job_manager.h"

#include <algorithm>

#include "shared/core/error.h"
#include "shared/core/time.h"

namespace flux::worker::jobs {
namespace {

bool is_terminal(v1::JobStatus s) {
  return s == v1::JOB_STATUS_COMPLETED || s == v1::JOB_STATUS_FAILED || s == v1::JOB_STATUS_CANCELLED;
}

absl::Status grpc_style(absl::StatusCode code, const std::string& machine, const std::string& message) {
  return make_error(code, machine, message);
}

}  // namespace

// ---- Subscription -----------------------------------------------------------

std::optional<v1::JobProgress> Subscription::next(std::chrono::milliseconds timeout) {
  std::unique_lock lock(mu_);
  if (!cv_.wait_for(lock, timeout, [this] { return !events_.empty(); })) return std::nullopt;
  v1::JobProgress event = std::move(events_.front());
  events_.pop_front();
  return event;
}

void Subscription::push(const v1::JobProgress& event) {
  {
    std::lock_guard lock(mu_);
    if (events_.size() >= kMaxBuffered) {
      // A slow watcher loses intermediate progress, never the end.
      auto victim = std::find_if(events_.begin(), events_.end(),
                                 [](const v1::JobProgress& e) { return !is_terminal(e.status()); });
      if (victim != events_.end()) events_.erase(victim);
    }
    events_.push_back(event);
  }
  cv_.notify_one();
}

// ---- Job --------------------------------------------------------------------

struct JobManager::Job {
  v1::JobRequest request;
  std::shared_ptr<CancelToken> cancel = std::make_shared<CancelToken>();
  v1::JobProgress last;
  uint64_t sequence = 0;
  Clock::time_point deadline;
  bool finished = false;
  bool collected = false;
  Clock::time_point finished_at;
  std::vector<std::weak_ptr<Subscription>> subscribers;
  std::thread thread;
};

class JobManager::Context final : public JobContext {
 public:
  Context(JobManager& manager, std::shared_ptr<Job> job) : manager_(manager), job_(std::move(job)) {}
  const std::string& job_id() const override { return job_->request.job_id(); }
  const CancelToken& cancel_token() const override { return *job_->cancel; }
  void report(const ProgressUpdate& update) override {
    v1::JobProgress event;
    event.set_status(update.status);
    event.set_phase(update.phase);
    event.set_progress(update.progress);
    event.set_message(update.message);
    event.set_fps(update.fps);
    event.set_speed(update.speed);
    event.set_eta_seconds(update.eta_seconds);
    std::lock_guard lock(manager_.mu_);
    if (job_->finished) return;
    manager_.publish(*job_, std::move(event));
  }

 private:
  JobManager& manager_;
  std::shared_ptr<Job> job_;
};

// ---- JobManager -------------------------------------------------------------

JobManager::JobManager(JobManagerOptions options, JobRunner runner)
    : options_(std::move(options)), runner_(std::move(runner)), idle_since_(Clock::now()) {}

JobManager::~JobManager() {
  cancel_all("worker_shutdown");
  std::vector<std::shared_ptr<Job>> jobs;
  {
    std::lock_guard lock(mu_);
    for (auto& [id, job] : jobs_) jobs.push_back(job);
  }
  for (auto& job : jobs) {
    if (job->thread.joinable()) job->thread.join();
  }
}

void JobManager::publish(Job& job, v1::JobProgress event) {
  event.set_job_id(job.request.job_id());
  event.set_timestamp(now_rfc3339());
  event.set_sequence(++job.sequence);
  job.last = event;
  auto& subs = job.subscribers;
  subs.erase(std::remove_if(subs.begin(), subs.end(),
                            [&event](const std::weak_ptr<Subscription>& weak) {
                              auto sub = weak.lock();
                              if (!sub) return true;
                              sub->push(event);
                              return false;
                            }),
             subs.end());
}

absl::StatusOr<std::shared_ptr<Subscription>> JobManager::submit(const v1::JobRequest& request) {
  std::shared_ptr<Job> job;
  auto subscription = std::make_shared<Subscription>(request.job_id());
  {
    std::lock_guard lock(mu_);
    if (draining_) {
      return grpc_style(absl::StatusCode::kUnavailable, "worker_draining", "worker is draining and takes no new jobs");
    }
    if (auto it = jobs_.find(request.job_id()); it != jobs_.end()) {
      // A copy that ended without output and whose end was collected may run
      // again (a control plane retrying after it stopped that copy); anything
      // else would run a job twice or lose a result not yet delivered.
      Job& old = *it->second;
      const bool rerunnable = old.finished && old.collected && old.last.status() != v1::JOB_STATUS_COMPLETED;
      if (!rerunnable) {
        return grpc_style(absl::StatusCode::kAlreadyExists, "job_exists",
                          "job " + request.job_id() + " already exists on this worker");
      }
      // Its thread has published the end; only its return remains.
      if (old.thread.joinable()) old.thread.join();
      jobs_.erase(it);
    }
    if (running_ >= options_.max_concurrent_jobs) {
      return grpc_style(absl::StatusCode::kResourceExhausted, "worker_full",
                        "worker is at capacity (" + std::to_string(options_.max_concurrent_jobs) + " jobs)");
    }
    job = std::make_shared<Job>();
    job->request = request;
    const auto timeout = request.timeout_seconds() > 0 ? std::chrono::milliseconds(request.timeout_seconds() * 1000LL)
                                                       : options_.default_timeout;
    job->deadline = Clock::now() + timeout;
    job->subscribers.push_back(subscription);
    jobs_[request.job_id()] = job;
    ++running_;
    ever_had_job_ = true;
    update_idle();
    v1::JobProgress queued;
    queued.set_status(v1::JOB_STATUS_QUEUED);
    queued.set_phase(v1::JOB_PHASE_QUEUED);
    queued.set_message("accepted");
    queued.set_eta_seconds(-1);
    publish(*job, std::move(queued));
    // The thread starts under the lock so `thread` is assigned before anyone can join it.
    job->thread = std::thread([this, job] { run_job(job); });
  }
  return subscription;
}

void JobManager::run_job(const std::shared_ptr<Job>& job) {
  Context context(*this, job);
  JobOutcome outcome;
  if (job->cancel->cancelled()) {
    outcome.status =
        make_error(absl::StatusCode::kCancelled, job->cancel->reason(), "job was cancelled before it started");
  } else {
    outcome = runner_(job->request, context);
  }
  finish(job, outcome);
}

void JobManager::finish(const std::shared_ptr<Job>& job, const JobOutcome& outcome) {
  v1::JobProgress event;
  if (outcome.status.ok()) {
    event.set_status(v1::JOB_STATUS_COMPLETED);
    event.set_progress(100);
    event.set_message("completed");
    event.set_output_url(outcome.output_url);
    *event.mutable_result() = outcome.result;
  } else {
    const std::string code = error_code(outcome.status);
    event.set_status(code == "cancelled" ? v1::JOB_STATUS_CANCELLED : v1::JOB_STATUS_FAILED);
    event.set_progress(job->last.progress());
    event.set_error(std::string(outcome.status.message()));
    event.set_error_code(code);
    event.set_message(code == "cancelled" ? "cancelled" : "failed");
  }
  event.set_phase(v1::JOB_PHASE_DONE);
  event.set_eta_seconds(0);
  {
    std::lock_guard lock(mu_);
    publish(*job, event);
    job->finished = true;
    job->finished_at = Clock::now();
    --running_;
    update_idle();
  }
  if (options_.on_finished) options_.on_finished(job->request.job_id(), job->last);
}

absl::StatusOr<std::shared_ptr<Subscription>> JobManager::watch(const std::string& job_id) {
  std::lock_guard lock(mu_);
  auto it = jobs_.find(job_id);
  if (it == jobs_.end()) {
    return grpc_style(absl::StatusCode::kNotFound, "job_not_found", "job " + job_id + " is not known to this worker");
  }
  auto subscription = std::make_shared<Subscription>(job_id);
  subscription->push(it->second->last);
  if (!it->second->finished) it->second->subscribers.push_back(subscription);
  return subscription;
}

void JobManager::unsubscribe(const std::shared_ptr<Subscription>& subscription) {
  std::lock_guard lock(mu_);
  auto it = jobs_.find(subscription->job_id());
  if (it == jobs_.end()) return;
  auto& subs = it->second->subscribers;
  subs.erase(std::remove_if(subs.begin(), subs.end(),
                            [&](const std::weak_ptr<Subscription>& weak) {
                              auto sub = weak.lock();
                              return !sub || sub == subscription;
                            }),
             subs.end());
}

bool JobManager::cancel(const std::string& job_id, const std::string& reason) {
  std::lock_guard lock(mu_);
  auto it = jobs_.find(job_id);
  if (it == jobs_.end() || it->second->finished) return false;
  it->second->cancel->cancel(reason);
  return true;
}

void JobManager::mark_collected(const std::string& job_id) {
  std::lock_guard lock(mu_);
  auto it = jobs_.find(job_id);
  if (it == jobs_.end()) return;
  it->second->collected = true;
  update_idle();
}

ManagerStatus JobManager::status() const {
  std::lock_guard lock(mu_);
  ManagerStatus s;
  s.current_jobs = running_;
  s.draining = draining_;
  for (const auto& [id, job] : jobs_) {
    if (!job->finished) {
      s.active_job_ids.push_back(id);
    } else if (!job->collected) {
      s.held_job_ids.push_back(id);
    }
  }
  return s;
}

void JobManager::start_draining() {
  std::lock_guard lock(mu_);
  draining_ = true;
}

void JobManager::cancel_all(const std::string& reason) {
  std::lock_guard lock(mu_);
  for (auto& [id, job] : jobs_) {
    if (!job->finished) job->cancel->cancel(reason);
  }
}

void JobManager::tick(Clock::time_point now) {
  std::vector<std::shared_ptr<Job>> expired;
  {
    std::lock_guard lock(mu_);
    for (auto it = jobs_.begin(); it != jobs_.end();) {
      Job& job = *it->second;
      if (!job.finished && now >= job.deadline) job.cancel->cancel("timeout");
      if (job.finished && now - job.finished_at >= options_.result_hold) {
        expired.push_back(it->second);
        it = jobs_.erase(it);
      } else {
        ++it;
      }
    }
    if (!expired.empty()) update_idle();
  }
  for (auto& job : expired) {
    if (job->thread.joinable()) job->thread.join();
  }
}

void JobManager::update_idle() {
  bool busy = running_ > 0;
  for (const auto& [id, job] : jobs_) {
    if (job->finished && !job->collected) busy = true;
  }
  if (busy) {
    idle_since_.reset();
  } else if (!idle_since_) {
    idle_since_ = Clock::now();
  }
}

std::optional<Clock::time_point> JobManager::idle_since() const {
  std::lock_guard lock(mu_);
  return idle_since_;
}

bool JobManager::ever_had_job() const {
  std::lock_guard lock(mu_);
  return ever_had_job_;
}

}  // namespace flux::worker::jobs
