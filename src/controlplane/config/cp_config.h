#pragma once
// Everything the control plane reads from its environment (SPEC §4), parsed
// and checked once at start; a malformed value names its variable.
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "shared/config/env.h"
#include "shared/log/log.h"

namespace flux::controlplane::config {

struct ControlPlaneConfig {
  uint16_t port = 8080;
  std::string bind_address = "0.0.0.0";
  std::vector<std::string> worker_nodes;  // host:port
  std::chrono::milliseconds worker_startup_timeout{60000};
  std::string env = "production";
  log::Level log_level = log::Level::kInfo;
  std::vector<std::string> api_keys;  // never logged
  std::filesystem::path database_path = "./data/flux.db";
  int queue_limit = 1000;
  int max_attempts = 3;
  std::chrono::milliseconds job_timeout{3600000};
  std::string webhook_secret;
  double rate_limit_rps = 0;  // 0 = off
  double rate_limit_burst = 0;
  std::string metrics_token;
  std::vector<std::string> input_schemes{"https", "http", "s3"};
  bool allow_private_inputs = false;
  std::optional<std::filesystem::path> local_input_dir;
  std::optional<std::filesystem::path> presets_file;
  int http_threads = 2;
  bool http_pin_threads = false;        // one io thread per CPU (HttpServer ServerOptions::pin_threads)
  size_t http_max_connections = 20000;  // HTTP_MAX_CONNECTIONS (SSE streams included); 0 = no cap
  std::chrono::milliseconds sse_keepalive{15000};

  bool development() const { return env == "development"; }
};

absl::StatusOr<ControlPlaneConfig> load_control_plane_config(const flux::config::Env& env);

}  // namespace flux::controlplane::config
