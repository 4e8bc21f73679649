#pragma once
// The gRPC face of the worker: a thin translation between WorkerService RPCs
// and the JobManager. Request checks live in JobPipeline::check_request.
#include <string>

#include "worker/jobs/job_manager.h"
#include "worker/pipeline/job_pipeline.h"
#include "worker/preset/preset.h"
#include "worker/v1/worker.grpc.pb.h"

namespace flux::worker::grpc_service {

struct WorkerIdentity {
  std::string worker_id;
  std::string version;
  int max_concurrent_jobs = 0;
};

class WorkerService final : public v1::WorkerService::Service {
 public:
  WorkerService(jobs::JobManager& manager, const pipeline::JobPipeline& pipeline, const preset::Catalog& catalog,
                WorkerIdentity identity);

  grpc::Status SubmitJob(grpc::ServerContext* context, const v1::JobRequest* request,
                         grpc::ServerWriter<v1::JobProgress>* writer) override;
  grpc::Status GetStatus(grpc::ServerContext* context, const v1::StatusRequest* request,
                         v1::WorkerStatus* response) override;
  grpc::Status CancelJob(grpc::ServerContext* context, const v1::CancelRequest* request,
                         v1::CancelResponse* response) override;
  grpc::Status ListPresets(grpc::ServerContext* context, const v1::ListPresetsRequest* request,
                           v1::ListPresetsResponse* response) override;
  grpc::Status WatchJob(grpc::ServerContext* context, const v1::WatchJobRequest* request,
                        grpc::ServerWriter<v1::JobProgress>* writer) override;

 private:
  // Relays a subscription until the terminal event is written or the client goes away.
  grpc::Status relay(grpc::ServerContext* context, const std::shared_ptr<jobs::Subscription>& subscription,
                     grpc::ServerWriter<v1::JobProgress>* writer);

  jobs::JobManager& manager_;
  const pipeline::JobPipeline& pipeline_;
  const preset::Catalog& catalog_;
  WorkerIdentity identity_;
};

// absl::Status → grpc::Status, with the machine code in the "flux-error-code" trailer.
grpc::Status to_grpc_status(const absl::Status& status, grpc::ServerContext* context);

}  // namespace flux::worker::grpc_service
