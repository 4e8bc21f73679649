// flux-controlplane: reads its configuration, wires the control plane and
// serves until SIGTERM/SIGINT.
#include <pthread.h>
#include <signal.h>

#include <cstdio>
#include <cstring>
#include <string>

#include "controlplane/app/control_plane.h"
#include "controlplane/config/cp_config.h"
#include "flux_version.h"
#include "shared/config/env.h"
#include "shared/config/program_args.h"
#include "shared/log/log.h"
#include "shared/process/signals.h"

namespace {

constexpr char kUsage[] = R"(flux-controlplane — accepts encoding jobs over REST, keeps them durably,
dispatches them to workers over gRPC and streams their progress over SSE.

Usage: flux-controlplane [--help] [--version]

Configuration comes from the environment:
  PORT                    HTTP port (8080)
  WORKER_NODES            workers, comma-separated host:port
  WORKER_STARTUP_TIMEOUT  seconds a stopped worker gets to start (60)
  ENV                     development | production (production)
  LOG_LEVEL               debug | info | warn | error (info)
  API_KEYS / API_KEY      bearer keys (comma-separated), at least 16 characters each;
                          required unless ENV=development
  DATABASE_PATH           SQLite file (./data/flux.db)
  QUEUE_LIMIT             most waiting jobs, then 503; 0 = 503 when no worker is free (1000)
  MAX_ATTEMPTS            dispatches per job before it fails (3)
  JOB_TIMEOUT             seconds per job (3600)
  WEBHOOK_SECRET          HMAC-SHA256 key for X-Flux-Signature
  RATE_LIMIT_RPS, RATE_LIMIT_BURST   per-key token bucket (off)
  METRICS_TOKEN           bearer token for /metrics (open when unset)
  INPUT_SCHEMES           allowed input schemes (https,http,s3)
  ALLOW_PRIVATE_INPUTS    allow inputs/callbacks on private addresses (false)
  LOCAL_INPUT_DIR         directory file:// inputs may come from
  PRESETS_FILE            extra presets (the workers need the same file)
  SSE_KEEPALIVE           seconds between SSE keep-alive comments (15)
  HTTP_THREADS            HTTP io threads (2)
  HTTP_PIN_THREADS        pin io thread i to the i-th allowed CPU (false)
  HTTP_MAX_CONNECTIONS    open connections at most, SSE streams included; 0 = no cap (20000)
)";

}  // namespace

int main(int argc, char** argv) {
  if (auto code = flux::config::handle_program_args(argc, argv, "flux-controlplane", FLUX_VERSION, kUsage))
    return *code;
  auto config = flux::controlplane::config::load_control_plane_config(flux::config::Env::from_process());
  if (!config.ok()) {
    std::fprintf(stderr, "flux-controlplane: configuration error: %s\n",
                 std::string(config.status().message()).c_str());
    return 2;
  }
  flux::log::init("controlplane", config->log_level,
                  config->development() ? flux::log::Format::kText : flux::log::Format::kJson);

  sigset_t signals = flux::process::block_termination_signals();

  auto app = flux::controlplane::app::ControlPlane::start(*std::move(config));
  if (!app.ok()) {
    flux::log::error("cannot start", {{"error", std::string(app.status().message())}});
    std::fprintf(stderr, "flux-controlplane: %s\n", std::string(app.status().message()).c_str());
    return 2;
  }
  int sig = 0;
  sigwait(&signals, &sig);
  flux::log::info("signal received; stopping", {{"signal", strsignal(sig)}});
  (*app)->stop();
  app->reset();
  return 0;
}
