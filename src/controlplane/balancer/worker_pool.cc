#include "controlplane/balancer/worker_pool.h"

#include <condition_variable>

#include "shared/core/error.h"
#include "shared/log/log.h"

namespace flux::controlplane::balancer {

WorkerPool::WorkerPool(std::vector<std::string> addresses, std::chrono::milliseconds startup_timeout)
    : WorkerPool(std::move(addresses), WorkerPoolOptions{.startup_timeout = startup_timeout}) {}

WorkerPool::WorkerPool(std::vector<std::string> addresses, WorkerPoolOptions options) : options_(options) {
  options_.down_probe = std::min(options_.down_probe, options_.startup_timeout);
  for (auto& address : addresses) workers_.push_back(std::make_unique<WorkerClient>(std::move(address)));
}

std::optional<v1::WorkerStatus> WorkerPool::ask(WorkerClient& worker) {
  const bool known_down = worker.startup_given_up();
  auto status = worker.get_status(known_down ? options_.down_probe : options_.startup_timeout, true);
  {
    std::lock_guard lock(mu_);
    ++stats_.get_status_calls;
  }
  if (!status.ok()) {
    if (!known_down) {
      worker.set_startup_given_up(true);
      log::warn("worker did not answer within the startup timeout; skipped",
                {{"worker", worker.address()},
                 {"timeout_ms", options_.startup_timeout.count()},
                 {"error", std::string(status.status().message())}});
    }
    return std::nullopt;
  }
  return *std::move(status);
}

absl::StatusOr<WorkerClient*> WorkerPool::select(const std::string& storage, const std::string& preset,
                                                 const std::string& avoid) {
  const auto started = std::chrono::steady_clock::now();
  int last;
  {
    std::lock_guard lock(mu_);
    last = last_;
  }
  int avoid_index = -1;
  for (size_t i = 0; i < workers_.size(); ++i) {
    if (!avoid.empty() && workers_[i]->address() == avoid) avoid_index = static_cast<int>(i);
  }
  const JobNeeds needs{storage, preset};
  const auto chosen = select_index(
      workers_.size(), last, needs, [this](size_t i) { return ask(*workers_[i]); }, avoid_index);
  const auto took = std::chrono::steady_clock::now() - started;
  std::lock_guard lock(mu_);
  ++stats_.selections;
  stats_.total_time += took;
  stats_.last_time = took;
  if (!chosen) {
    ++stats_.no_worker;
    return make_error(absl::StatusCode::kUnavailable, "no_worker_available",
                      workers_.empty() ? "no worker is configured" : "no worker has room for the job");
  }
  last_ = static_cast<int>(*chosen);
  return workers_[*chosen].get();
}

std::vector<WorkerSnapshot> WorkerPool::snapshots() const {
  std::vector<WorkerSnapshot> out;
  out.reserve(workers_.size());
  for (const auto& worker : workers_) out.push_back(worker->snapshot());
  return out;
}

std::vector<WorkerSnapshot> WorkerPool::refresh(std::chrono::milliseconds deadline) {
  // One callback-API call per worker, all in flight together.
  struct Call {
    grpc::ClientContext context;
    v1::StatusRequest request;
    v1::WorkerStatus response;
  };
  std::vector<std::unique_ptr<Call>> calls;
  std::mutex mu;
  std::condition_variable cv;
  size_t pending = workers_.size();
  for (auto& worker : workers_) {
    auto call = std::make_unique<Call>();
    call->context.set_deadline(std::chrono::system_clock::now() + deadline);
    WorkerClient* client = worker.get();
    Call* raw = call.get();
    calls.push_back(std::move(call));
    client->stub().async()->GetStatus(&raw->context, &raw->request, &raw->response,
                                      [client, raw, &mu, &cv, &pending](grpc::Status status) {
                                        if (status.ok()) {
                                          client->record_answer(raw->response);
                                        } else {
                                          client->record_no_answer();
                                        }
                                        std::lock_guard lock(mu);
                                        if (--pending == 0) cv.notify_all();
                                      });
  }
  {
    std::unique_lock lock(mu);
    cv.wait(lock, [&pending] { return pending == 0; });
  }
  return snapshots();
}

WorkerClient* WorkerPool::find(const std::string& address) {
  for (auto& worker : workers_) {
    if (worker->address() == address) return worker.get();
  }
  return nullptr;
}

SelectionStats WorkerPool::stats() const {
  std::lock_guard lock(mu_);
  return stats_;
}

}  // namespace flux::controlplane::balancer
