#include "worker/grpc/worker_service.h"

#include <algorithm>

#include "shared/core/error.h"
#include "shared/log/log.h"

namespace flux::worker::grpc_service {
namespace {

bool is_terminal(v1::JobStatus s) {
  return s == v1::JOB_STATUS_COMPLETED || s == v1::JOB_STATUS_FAILED || s == v1::JOB_STATUS_CANCELLED;
}

constexpr std::chrono::milliseconds kPollInterval{100};

}  // namespace

grpc::Status to_grpc_status(const absl::Status& status, grpc::ServerContext* context) {
  if (status.ok()) return grpc::Status::OK;
  if (context != nullptr) context->AddTrailingMetadata("flux-error-code", error_code(status));
  // absl and gRPC share the canonical code numbering.
  return {static_cast<grpc::StatusCode>(status.code()), std::string(status.message())};
}

WorkerService::WorkerService(jobs::JobManager& manager, const pipeline::JobPipeline& pipeline,
                             const preset::Catalog& catalog, WorkerIdentity identity)
    : manager_(manager), pipeline_(pipeline), catalog_(catalog), identity_(std::move(identity)) {}

grpc::Status WorkerService::relay(grpc::ServerContext* context, const std::shared_ptr<jobs::Subscription>& subscription,
                                  grpc::ServerWriter<v1::JobProgress>* writer) {
  while (!context->IsCancelled()) {
    auto event = subscription->next(kPollInterval);
    if (!event) continue;
    const bool terminal = is_terminal(event->status());
    if (!writer->Write(*event)) break;
    if (terminal) {
      manager_.mark_collected(subscription->job_id());
      manager_.unsubscribe(subscription);
      return grpc::Status::OK;
    }
  }
  // The watcher left; the job goes on and its result is held for WatchJob.
  manager_.unsubscribe(subscription);
  log::info("progress stream detached", {{"job_id", subscription->job_id()}});
  return {grpc::StatusCode::CANCELLED, "stream closed by the client; the job keeps running"};
}

grpc::Status WorkerService::SubmitJob(grpc::ServerContext* context, const v1::JobRequest* request,
                                      grpc::ServerWriter<v1::JobProgress>* writer) {
  if (auto checked = pipeline_.check_request(*request); !checked.ok()) {
    log::warn("job refused", {{"job_id", request->job_id()},
                              {"error_code", error_code(checked)},
                              {"error", std::string(checked.message())}});
    return to_grpc_status(checked, context);
  }
  auto subscription = manager_.submit(*request);
  if (!subscription.ok()) {
    log::warn("job refused", {{"job_id", request->job_id()},
                              {"error_code", error_code(subscription.status())},
                              {"error", std::string(subscription.status().message())}});
    return to_grpc_status(subscription.status(), context);
  }
  log::info("job accepted",
            {{"job_id", request->job_id()}, {"preset", request->preset()}, {"storage", request->output().storage()}});
  return relay(context, *subscription, writer);
}

grpc::Status WorkerService::WatchJob(grpc::ServerContext* context, const v1::WatchJobRequest* request,
                                     grpc::ServerWriter<v1::JobProgress>* writer) {
  auto subscription = manager_.watch(request->job_id());
  if (!subscription.ok()) return to_grpc_status(subscription.status(), context);
  log::info("progress stream attached", {{"job_id", request->job_id()}});
  return relay(context, *subscription, writer);
}

grpc::Status WorkerService::GetStatus(grpc::ServerContext*, const v1::StatusRequest*, v1::WorkerStatus* response) {
  const jobs::ManagerStatus s = manager_.status();
  response->set_current_jobs(s.current_jobs);
  response->set_max_concurrent_jobs(identity_.max_concurrent_jobs);
  for (const auto& id : s.active_job_ids) response->add_active_job_ids(id);
  for (const auto& id : s.held_job_ids) response->add_held_job_ids(id);
  response->set_worker_id(identity_.worker_id);
  response->set_version(identity_.version);
  response->set_state(s.draining ? v1::WORKER_STATE_DRAINING : v1::WORKER_STATE_READY);
  for (const auto& type : pipeline_.storage_types()) response->add_storage_types(type);
  for (const preset::Preset* p : catalog_.all()) response->add_presets(p->name);
  return grpc::Status::OK;
}

grpc::Status WorkerService::CancelJob(grpc::ServerContext*, const v1::CancelRequest* request,
                                      v1::CancelResponse* response) {
  // Only a short machine word may become a job's error code.
  std::string reason = request->reason();
  if (reason.empty() || reason.size() > 32 ||
      !std::all_of(reason.begin(), reason.end(), [](char c) { return (c >= 'a' && c <= 'z') || c == '_'; })) {
    reason = "cancelled";
  }
  const bool cancelled = manager_.cancel(request->job_id(), reason);
  response->set_success(cancelled);
  response->set_message(cancelled ? "cancelling" : "job is not running on this worker");
  log::info("cancel requested", {{"job_id", request->job_id()}, {"running", cancelled}});
  return grpc::Status::OK;
}

grpc::Status WorkerService::ListPresets(grpc::ServerContext*, const v1::ListPresetsRequest*,
                                        v1::ListPresetsResponse* response) {
  for (const preset::Preset* p : catalog_.all()) {
    auto* info = response->add_presets();
    info->set_name(p->name);
    info->set_description(p->description);
    info->set_output_type(std::string(preset::to_string(p->type)));
    info->set_extension(p->extension);
    info->set_has_audio(p->audio);
    info->set_video_codec(p->video_codec);
    for (const auto& variant : p->variants) info->add_heights(variant.height);
  }
  return grpc::Status::OK;
}

}  // namespace flux::worker::grpc_service
