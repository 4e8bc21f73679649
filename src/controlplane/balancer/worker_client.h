#pragma once
// One configured worker as the control plane sees it: a single gRPC channel,
// created once and reused for every call (selection, jobs, cancels), and the
// last thing the worker said about itself.
#include <grpcpp/grpcpp.h>

#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "worker/v1/worker.grpc.pb.h"

namespace flux::controlplane::balancer {

namespace v1 = ::worker::v1;

// What GET /api/v1/workers/status reports about one worker.
struct WorkerSnapshot {
  std::string address;
  std::string state = "down";  // up | starting | down | draining
  std::string worker_id;
  std::string version;
  int current_jobs = 0;
  int max_jobs = 0;
  std::vector<std::string> active_job_ids;
  std::vector<std::string> storage_types;
  std::vector<std::string> presets;
  std::string last_seen;  // RFC 3339 of the last answer; "" = never answered
};

// A gRPC status as an absl::Status with the worker's machine code (its
// "flux-error-code" trailer) when it sent one, else one derived from the code.
absl::Status from_grpc(const grpc::Status& status, const grpc::ClientContext& context);

class WorkerClient {
 public:
  explicit WorkerClient(std::string address);
  WorkerClient(const WorkerClient&) = delete;
  WorkerClient& operator=(const WorkerClient&) = delete;

  const std::string& address() const { return address_; }
  v1::WorkerService::Stub& stub() { return *stub_; }
  grpc::Channel& channel() { return *channel_; }

  // GetStatus within `deadline`. With wait_for_ready the call waits for a
  // connection (a machine being started by its platform) instead of failing
  // at once. The answer, or its absence, updates snapshot(). Errors:
  // UNAVAILABLE "worker_unavailable" / DEADLINE_EXCEEDED "worker_timeout".
  absl::StatusOr<v1::WorkerStatus> get_status(std::chrono::milliseconds deadline, bool wait_for_ready = true);

  // CancelJob; success=false in the answer when the worker does not run the job.
  absl::StatusOr<v1::CancelResponse> cancel_job(const std::string& job_id, const std::string& reason,
                                                std::chrono::milliseconds deadline);

  // Waits until the channel is connected (true), `timeout` passes or `stop`
  // returns true (false). Checks `stop` every 100 ms.
  bool wait_connected(std::chrono::milliseconds timeout, const std::function<bool()>& stop = {});

  WorkerSnapshot snapshot() const;
  // Selection gave this worker its whole startup timeout and it did not
  // answer; cleared by its next answer.
  bool startup_given_up() const;
  void set_startup_given_up(bool given_up);

  // Records an answer that arrived by another path (the pool's parallel refresh).
  void record_answer(const v1::WorkerStatus& status);
  void record_no_answer();

 private:
  std::string address_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::WorkerService::Stub> stub_;
  mutable std::mutex mu_;
  WorkerSnapshot snapshot_;
  bool startup_given_up_ = false;
};

}  // namespace flux::controlplane::balancer
