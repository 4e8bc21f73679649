#pragma once
// JobManager owns the jobs a worker runs: admission (capacity, duplicates,
// draining), one thread per job, the event stream of each job and every
// watcher of it, cancellation, timeouts, and the results held for a control
// plane that lost its stream. It knows nothing about gRPC: the service turns
// its subscriptions into streams.
#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "shared/core/cancel_token.h"
#include "worker/v1/worker.pb.h"

namespace flux::worker {
// The generated gRPC types live in ::worker::v1, which `worker::` inside this
// namespace would not find.
namespace v1 = ::worker::v1;
}  // namespace flux::worker

namespace flux::worker::jobs {

using Clock = std::chrono::steady_clock;

// What a running job tells its watchers between the start and the end.
struct ProgressUpdate {
  v1::JobStatus status = v1::JOB_STATUS_PROCESSING;
  v1::JobPhase phase = v1::JOB_PHASE_UNSPECIFIED;
  float progress = 0;
  std::string message;
  float fps = 0;
  float speed = 0;
  float eta_seconds = -1;
};

// How a job ended. status OK = completed; otherwise its machine code decides:
// "cancelled" → CANCELLED, anything else → FAILED with that error_code.
struct JobOutcome {
  absl::Status status;
  std::string output_url;
  v1::JobResult result;
};

class JobContext {
 public:
  virtual ~JobContext() = default;
  virtual const std::string& job_id() const = 0;
  virtual void report(const ProgressUpdate& update) = 0;
  virtual const CancelToken& cancel_token() const = 0;
};

// Runs one job to its end on the job's own thread.
using JobRunner = std::function<JobOutcome(const v1::JobRequest&, JobContext&)>;

// One watcher's view of a job: the job's state at subscription time, then
// every later event. Its buffer is bounded: when a watcher falls behind, the
// oldest progress events are dropped (never the terminal one).
class Subscription {
 public:
  // The next event, or nullopt if none arrived within `timeout`.
  std::optional<v1::JobProgress> next(std::chrono::milliseconds timeout);
  const std::string& job_id() const { return job_id_; }

  // Internal: the manager pushes events here.
  void push(const v1::JobProgress& event);
  explicit Subscription(std::string job_id) : job_id_(std::move(job_id)) {}

 private:
  static constexpr size_t kMaxBuffered = 256;
  std::string job_id_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<v1::JobProgress> events_;
};

struct JobManagerOptions {
  int max_concurrent_jobs = 2;
  std::chrono::milliseconds result_hold{600000};
  std::chrono::milliseconds default_timeout{3600000};
  std::function<void(const std::string& job_id, const v1::JobProgress& terminal)> on_finished;  // metrics, logs
};

struct ManagerStatus {
  int current_jobs = 0;
  std::vector<std::string> active_job_ids;
  std::vector<std::string> held_job_ids;  // ended, final state not yet delivered
  bool draining = false;
};

class JobManager {
 public:
  JobManager(JobManagerOptions options, JobRunner runner);
  ~JobManager();  // cancels running jobs ("worker_shutdown") and joins their threads
  JobManager(const JobManager&) = delete;
  JobManager& operator=(const JobManager&) = delete;

  // Admits and starts a job. RESOURCE_EXHAUSTED when full, ALREADY_EXISTS for
  // a known id, UNAVAILABLE while draining. The subscription starts with QUEUED.
  absl::StatusOr<std::shared_ptr<Subscription>> submit(const v1::JobRequest& request);
  // Current state then live events of a running or held job; NOT_FOUND otherwise.
  absl::StatusOr<std::shared_ptr<Subscription>> watch(const std::string& job_id);
  void unsubscribe(const std::shared_ptr<Subscription>& subscription);
  // Cancels a running job; false if it is unknown or already finished.
  bool cancel(const std::string& job_id, const std::string& reason = "cancelled");
  // A watcher delivered the terminal event: the result no longer waits to be collected.
  void mark_collected(const std::string& job_id);

  ManagerStatus status() const;
  void start_draining();
  void cancel_all(const std::string& reason);

  // Housekeeping, called periodically: cancels jobs past their deadline with
  // reason "timeout", forgets finished jobs older than result_hold.
  void tick(Clock::time_point now);
  // Since when nothing runs and no result waits to be collected; nullopt when busy.
  std::optional<Clock::time_point> idle_since() const;
  bool ever_had_job() const;

 private:
  struct Job;
  class Context;
  void run_job(const std::shared_ptr<Job>& job);
  void publish(Job& job, v1::JobProgress event);  // requires mu_
  void finish(const std::shared_ptr<Job>& job, const JobOutcome& outcome);
  void update_idle();  // requires mu_

  JobManagerOptions options_;
  JobRunner runner_;
  mutable std::mutex mu_;
  std::map<std::string, std::shared_ptr<Job>> jobs_;
  int running_ = 0;
  bool draining_ = false;
  bool ever_had_job_ = false;
  std::optional<Clock::time_point> idle_since_;
};

}  // namespace flux::worker::jobs
