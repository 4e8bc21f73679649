#include "controlplane/balancer/worker_client.h"

#include "shared/core/error.h"
#include "shared/core/time.h"

namespace flux::controlplane::balancer {
namespace {

using Clock = std::chrono::system_clock;

std::shared_ptr<grpc::Channel> make_channel(const std::string& address) {
  grpc::ChannelArguments args;
  // A worker that comes back (restarted, or started by its platform) is seen
  // within a second instead of after gRPC's default backoff of up to 2 minutes.
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 100);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 1000);
  // Detects a worker that vanished without closing the connection (a network
  // partition) during a long job. A gRPC server by default treats pings less
  // than 5 minutes apart as abuse, hence 5.5 minutes. A progress stream sends
  // nothing from this side, so pings must not need outgoing data.
  args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, 330000);
  args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 20000);
  args.SetInt(GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0);
  return grpc::CreateCustomChannel(address, grpc::InsecureChannelCredentials(), args);
}

Clock::time_point deadline_after(std::chrono::milliseconds d) { return Clock::now() + d; }

}  // namespace

absl::Status from_grpc(const grpc::Status& status, const grpc::ClientContext& context) {
  if (status.ok()) return absl::OkStatus();
  const auto code = static_cast<absl::StatusCode>(status.error_code());
  const auto& trailers = context.GetServerTrailingMetadata();
  if (auto it = trailers.find("flux-error-code"); it != trailers.end()) {
    return make_error(code, std::string(it->second.data(), it->second.size()), status.error_message());
  }
  std::string machine;
  switch (status.error_code()) {
    case grpc::StatusCode::UNAVAILABLE:
      machine = "worker_unavailable";
      break;
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      machine = "worker_timeout";
      break;
    default:
      return make_error(code, "", status.error_message());
  }
  return make_error(code, machine, status.error_message());
}

WorkerClient::WorkerClient(std::string address)
    : address_(std::move(address)), channel_(make_channel(address_)), stub_(v1::WorkerService::NewStub(channel_)) {
  snapshot_.address = address_;
}

absl::StatusOr<v1::WorkerStatus> WorkerClient::get_status(std::chrono::milliseconds deadline, bool wait_for_ready) {
  if (wait_for_ready && channel_->GetState(false) != GRPC_CHANNEL_READY) {
    std::lock_guard lock(mu_);
    snapshot_.state = "starting";
  }
  grpc::ClientContext context;
  context.set_deadline(deadline_after(deadline));
  context.set_wait_for_ready(wait_for_ready);
  v1::WorkerStatus status;
  const grpc::Status result = stub_->GetStatus(&context, v1::StatusRequest(), &status);
  if (!result.ok()) {
    record_no_answer();
    return from_grpc(result, context);
  }
  record_answer(status);
  return status;
}

absl::StatusOr<v1::CancelResponse> WorkerClient::cancel_job(const std::string& job_id, const std::string& reason,
                                                            std::chrono::milliseconds deadline) {
  grpc::ClientContext context;
  context.set_deadline(deadline_after(deadline));
  v1::CancelRequest request;
  request.set_job_id(job_id);
  request.set_reason(reason);
  v1::CancelResponse response;
  const grpc::Status result = stub_->CancelJob(&context, request, &response);
  if (!result.ok()) return from_grpc(result, context);
  return response;
}

bool WorkerClient::wait_connected(std::chrono::milliseconds timeout, const std::function<bool()>& stop) {
  const auto end = Clock::now() + timeout;
  for (;;) {
    grpc_connectivity_state state = channel_->GetState(true);
    if (state == GRPC_CHANNEL_READY) return true;
    if (stop && stop()) return false;
    const auto now = Clock::now();
    if (now >= end) return false;
    // Wakes on a state change or after 100 ms, whichever is first, so that
    // `stop` stays responsive.
    channel_->WaitForStateChange(state, std::min(end, now + std::chrono::milliseconds(100)));
  }
}

WorkerSnapshot WorkerClient::snapshot() const {
  std::lock_guard lock(mu_);
  return snapshot_;
}

bool WorkerClient::startup_given_up() const {
  std::lock_guard lock(mu_);
  return startup_given_up_;
}

void WorkerClient::set_startup_given_up(bool given_up) {
  std::lock_guard lock(mu_);
  startup_given_up_ = given_up;
}

void WorkerClient::record_answer(const v1::WorkerStatus& status) {
  std::lock_guard lock(mu_);
  startup_given_up_ = false;
  WorkerSnapshot& s = snapshot_;
  s.state = status.state() == v1::WORKER_STATE_DRAINING ? "draining" : "up";
  s.worker_id = status.worker_id();
  s.version = status.version();
  s.current_jobs = status.current_jobs();
  s.max_jobs = status.max_concurrent_jobs();
  s.active_job_ids.assign(status.active_job_ids().begin(), status.active_job_ids().end());
  s.storage_types.assign(status.storage_types().begin(), status.storage_types().end());
  s.presets.assign(status.presets().begin(), status.presets().end());
  s.last_seen = now_rfc3339();
}

void WorkerClient::record_no_answer() {
  std::lock_guard lock(mu_);
  snapshot_.state = "down";
}

}  // namespace flux::controlplane::balancer
