// flux-worker: reads its configuration, wires the worker and runs it.
#include <pthread.h>
#include <signal.h>

#include <atomic>
#include <cstdio>
#include <cstring>
#include <string>
#include <thread>

#include "flux_version.h"
#include "shared/config/env.h"
#include "shared/config/program_args.h"
#include "shared/log/log.h"
#include "shared/process/signals.h"
#include "worker/app/worker_app.h"
#include "worker/config/worker_config.h"

namespace {

constexpr char kUsage[] = R"(flux-worker — encodes jobs with named ffmpeg presets and uploads the results.

Usage: flux-worker [--help] [--version]

Configuration comes from the environment:
  GRPC_PORT              gRPC port (50051)
  MAX_CONCURRENT_JOBS    jobs run at once (2)
  WORK_DIR               per-job scratch directories (/tmp/ffmpeg-jobs)
  STORAGE_TYPE           local | s3 (local)
  LOCAL_STORAGE_DIR      output root for local storage (./data/output)
  S3_BUCKET, S3_REGION, S3_ENDPOINT, S3_FORCE_PATH_STYLE
  S3_MULTIPART_THRESHOLD, S3_PART_SIZE   multipart upload tuning (16MiB, 8MiB)
  AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN
  WORKER_ID              name reported to the control plane (host name)
  LOG_LEVEL              debug | info | warn | error (info)
  ENV                    development | production (production; development logs text)
  DISABLE_AUTO_SHUTDOWN  true keeps the worker up when idle (false)
  AUTO_SHUTDOWN_GRACE    seconds idle after the last job before exiting (1)
  IDLE_TIMEOUT           seconds before a worker that never got a job exits (off)
  RESULT_HOLD            seconds a finished job's result waits for WatchJob (600)
  DRAIN_TIMEOUT          seconds SIGTERM waits for running jobs (600)
  JOB_TIMEOUT            default per-job time limit in seconds (3600)
  PRESETS_FILE           YAML or JSON file adding or overriding presets
  FFMPEG_PATH, FFPROBE_PATH
  METRICS_PORT           Prometheus metrics port, 0 = off (9091)
  VALIDATION_LEVEL       minimal | standard | strict (standard)
  LOCAL_INPUT_DIR        directory file:// inputs may come from (off)
  ALLOW_PRIVATE_INPUTS   allow inputs on loopback/private addresses (false)
  INPUT_SCHEMES          allowed input URL schemes (https,http,s3)
  MAX_INPUT_BYTES        largest input accepted (20GiB)
)";

}  // namespace

int main(int argc, char** argv) {
  if (auto code = flux::config::handle_program_args(argc, argv, "flux-worker", FLUX_VERSION, kUsage)) return *code;

  auto config = flux::worker::config::load_worker_config(flux::config::Env::from_process());
  if (!config.ok()) {
    std::fprintf(stderr, "flux-worker: configuration error: %s\n", std::string(config.status().message()).c_str());
    return 2;
  }
  flux::log::init("worker", config->log_level,
                  config->env == "development" ? flux::log::Format::kText : flux::log::Format::kJson);

  sigset_t signals = flux::process::block_termination_signals();

  auto app = flux::worker::app::WorkerApp::create(*std::move(config));
  if (!app.ok()) {
    flux::log::error("cannot start", {{"error", std::string(app.status().message())}});
    std::fprintf(stderr, "flux-worker: %s\n", std::string(app.status().message()).c_str());
    return 2;
  }
  std::atomic<bool> exiting{false};
  std::thread signal_thread([&signals, &exiting, worker = app->get()] {
    int sig = 0;
    while (sigwait(&signals, &sig) == 0) {
      if (exiting) return;
      flux::log::info("signal received; draining", {{"signal", strsignal(sig)}});
      worker->request_drain();
    }
  });
  const int code = (*app)->run();
  // Wake the signal thread with a signal it waits for, after marking the exit.
  exiting = true;
  pthread_kill(signal_thread.native_handle(), SIGTERM);
  signal_thread.join();
  app->reset();
  return code;
}
