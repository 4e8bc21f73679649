#include "worker/app/worker_app.h"

#include <grpcpp/grpcpp.h>

#include <thread>

#include "flux_version.h"
#include "shared/core/error.h"
#include "shared/log/log.h"
#include "shared/metrics/metrics.h"
#include "shared/metrics/metrics_server.h"
#include "shared/s3/s3_client.h"
#include "worker/grpc/worker_service.h"
#include "worker/input/input_fetcher.h"
#include "worker/jobs/job_manager.h"
#include "worker/pipeline/job_pipeline.h"
#include "worker/pipeline/worker_metrics.h"
#include "worker/preset/preset.h"
#include "worker/uploader/uploader.h"

namespace flux::worker::app {
namespace {
using Clock = std::chrono::steady_clock;
constexpr std::chrono::milliseconds kTick{50};
// After the drain deadline: how long cancelled jobs get to stop and report.
constexpr std::chrono::seconds kCancelWait{10};
// During a drain with no job running: how long an uncollected final state waits.
constexpr std::chrono::seconds kHeldResultWaitOnDrain{5};

}  // namespace

// Declared in the header only by name so that users of WorkerApp do not
// compile gRPC and every module; order of members is the order of teardown
// in reverse: the server goes before the manager it calls.
struct WorkerApp::Parts {
  config::WorkerConfig config;
  metrics::Registry registry;
  std::unique_ptr<pipeline::WorkerMetrics> metrics;
  preset::Catalog catalog = preset::Catalog::builtin();
  std::shared_ptr<s3::S3Client> s3;
  std::unique_ptr<input::InputFetcher> fetcher;
  std::unique_ptr<pipeline::JobPipeline> job_pipeline;
  std::unique_ptr<jobs::JobManager> manager;
  std::unique_ptr<grpc_service::WorkerService> service;
  std::unique_ptr<grpc::Server> server;
  std::unique_ptr<metrics::MetricsServer> metrics_server;
  int bound_port = 0;
  std::atomic<bool> drain_requested{false};
};

absl::StatusOr<std::unique_ptr<WorkerApp>> WorkerApp::create(config::WorkerConfig config) {
  auto parts = std::make_unique<Parts>();
  parts->config = std::move(config);
  const config::WorkerConfig& c = parts->config;
  parts->metrics = std::make_unique<pipeline::WorkerMetrics>(parts->registry);

  if (c.presets_file) {
    if (auto s = parts->catalog.merge_file(*c.presets_file); !s.ok()) {
      return annotate(s, "PRESETS_FILE " + c.presets_file->string());
    }
  }
  if (auto s = pipeline::sweep_work_dir(c.work_dir); !s.ok()) return s;

  if (!c.s3_bucket.empty() || !c.s3_endpoint.empty() || std::getenv("AWS_ACCESS_KEY_ID") != nullptr) {
    s3::S3Config s3_config;
    s3_config.region = c.s3_region;
    s3_config.endpoint = c.s3_endpoint;
    s3_config.force_path_style = c.s3_force_path_style;
    s3_config.credentials = s3::Credentials::from_env();
    s3_config.multipart_threshold = c.s3_multipart_threshold;
    s3_config.part_size = c.s3_part_size;
    parts->s3 = std::make_shared<s3::S3Client>(s3_config);
  }

  input::FetchOptions fetch;
  fetch.policy.allowed_schemes = c.input_schemes;
  fetch.policy.allow_private = c.allow_private_inputs;
  fetch.policy.local_input_dir = c.local_input_dir;
  fetch.max_bytes = c.max_input_bytes;
  parts->fetcher = std::make_unique<input::InputFetcher>(fetch, parts->s3);

  std::map<std::string, std::unique_ptr<uploader::Uploader>> uploaders;
  if (c.local_storage_dir) {
    std::error_code ec;
    std::filesystem::create_directories(*c.local_storage_dir, ec);
    if (ec) {
      return failed_precondition("invalid_config",
                                 "LOCAL_STORAGE_DIR " + c.local_storage_dir->string() + ": " + ec.message());
    }
    uploaders["local"] = uploader::make_local_uploader(*c.local_storage_dir);
  }
  if (!c.s3_bucket.empty()) uploaders["s3"] = uploader::make_s3_uploader(parts->s3, c.s3_bucket);
  parts->job_pipeline = std::make_unique<pipeline::JobPipeline>(c, parts->catalog, *parts->fetcher,
                                                                std::move(uploaders), parts->metrics.get());

  jobs::JobManagerOptions options;
  options.max_concurrent_jobs = c.max_concurrent_jobs;
  options.result_hold = c.result_hold;
  options.default_timeout = c.job_timeout;
  Parts* raw = parts.get();
  pipeline::JobPipeline* job_pipeline = parts->job_pipeline.get();
  parts->manager = std::make_unique<jobs::JobManager>(
      options, [job_pipeline, raw](const v1::JobRequest& request, jobs::JobContext& context) {
        raw->metrics->active_jobs.inc();
        jobs::JobOutcome outcome = job_pipeline->run(request, context);
        raw->metrics->active_jobs.dec();
        const std::string code = error_code(outcome.status);
        const std::string label = outcome.status.ok() ? "completed" : code == "cancelled" ? "cancelled" : "failed";
        raw->metrics->jobs_total.with({request.preset(), label}).inc();
        return outcome;
      });

  parts->service = std::make_unique<grpc_service::WorkerService>(
      *parts->manager, *parts->job_pipeline, parts->catalog,
      grpc_service::WorkerIdentity{c.worker_id, FLUX_VERSION, c.max_concurrent_jobs});
  grpc::ServerBuilder builder;
  builder.AddListeningPort(c.bind_address + ":" + std::to_string(c.grpc_port), grpc::InsecureServerCredentials(),
                           &parts->bound_port);
  builder.RegisterService(parts->service.get());
  parts->server = builder.BuildAndStart();
  if (!parts->server || parts->bound_port == 0) {
    return unavailable("listen_failed", "GRPC_PORT " + std::to_string(c.grpc_port) + ": cannot listen on " +
                                            c.bind_address + ":" + std::to_string(c.grpc_port));
  }
  if (c.metrics_port != 0) {
    auto server = metrics::MetricsServer::start(c.bind_address, c.metrics_port, parts->registry);
    if (!server.ok()) return annotate(server.status(), "METRICS_PORT " + std::to_string(c.metrics_port));
    parts->metrics_server = std::move(*server);
  }
  log::info("worker listening", {{"grpc_port", parts->bound_port},
                                 {"metrics_port", parts->metrics_server ? parts->metrics_server->port() : 0},
                                 {"worker_id", c.worker_id},
                                 {"max_concurrent_jobs", c.max_concurrent_jobs},
                                 {"storage_types", parts->job_pipeline->storage_types()},
                                 {"version", FLUX_VERSION}});
  return std::unique_ptr<WorkerApp>(new WorkerApp(std::move(parts)));
}

WorkerApp::WorkerApp(std::unique_ptr<Parts> parts) : parts_(std::move(parts)) {}

WorkerApp::~WorkerApp() {
  if (parts_->server) parts_->server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
  if (parts_->metrics_server) parts_->metrics_server->stop();
  parts_->manager.reset();  // cancels and joins what still runs
}

uint16_t WorkerApp::grpc_port() const { return static_cast<uint16_t>(parts_->bound_port); }

void WorkerApp::request_drain() { parts_->drain_requested = true; }

int WorkerApp::run() {
  const config::WorkerConfig& c = parts_->config;
  jobs::JobManager& manager = *parts_->manager;
  const auto started = Clock::now();
  std::optional<Clock::time_point> drain_deadline;
  std::optional<Clock::time_point> cancel_deadline;
  std::optional<Clock::time_point> no_running_since;
  std::string reason;
  while (true) {
    std::this_thread::sleep_for(kTick);
    const auto now = Clock::now();
    manager.tick(now);
    if (parts_->drain_requested && !drain_deadline) {
      manager.start_draining();
      drain_deadline = now + c.drain_timeout;
      log::info("draining", {{"running_jobs", manager.status().current_jobs},
                             {"drain_timeout_seconds", c.drain_timeout.count() / 1000.0}});
    }
    const auto idle = manager.idle_since();
    if (drain_deadline) {
      if (idle) {
        reason = "drained";
        break;
      }
      // Nothing runs any more: a final state nobody collected gets a short
      // wait, not the whole drain timeout (a control plane that is alive
      // collects it at once; a dead one requeues the job elsewhere).
      if (manager.status().current_jobs == 0) {
        if (!no_running_since) no_running_since = now;
        if (now - *no_running_since >= kHeldResultWaitOnDrain) {
          reason = "drained_with_uncollected_results";
          break;
        }
      }
      if (now >= *drain_deadline && !cancel_deadline) {
        log::warn("drain deadline reached; cancelling running jobs");
        manager.cancel_all("worker_shutdown");
        // ffmpeg gets its SIGTERM grace, then the final events their delivery.
        cancel_deadline = now + kCancelWait;
      }
      if (cancel_deadline && now >= *cancel_deadline) {
        reason = "drain_timeout";
        break;
      }
      continue;
    }
    if (!c.disable_auto_shutdown && manager.ever_had_job() && idle && now - *idle >= c.auto_shutdown_grace) {
      reason = "idle_after_jobs";
      break;
    }
    if (c.idle_timeout.count() > 0 && !manager.ever_had_job() && now - started >= c.idle_timeout) {
      reason = "idle_timeout";
      break;
    }
  }
  manager.start_draining();
  log::info("worker stopping", {{"reason", reason}});
  // Every final event has been delivered (or its hold expired) by now, so the
  // deadline only bounds calls that are still arriving. A long one keeps the
  // exit waiting on idle client channels, which a platform would bill for.
  parts_->server->Shutdown(std::chrono::system_clock::now() + std::chrono::milliseconds(200));
  parts_->server->Wait();
  if (parts_->metrics_server) parts_->metrics_server->stop();
  parts_->manager.reset();
  log::info("worker stopped", {{"reason", reason}});
  return 0;
}

}  // namespace flux::worker::app
