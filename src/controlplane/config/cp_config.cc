#include "controlplane/config/cp_config.h"

#include <algorithm>

#include "shared/core/error.h"

namespace flux::controlplane::config {
namespace {

absl::Status check_host_port(const std::string& node) {
  const auto colon = node.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == node.size()) {
    return invalid_argument("invalid_config", "WORKER_NODES: \"" + node + "\" is not host:port");
  }
  const std::string port = node.substr(colon + 1);
  if (!std::all_of(port.begin(), port.end(), [](unsigned char c) { return std::isdigit(c) != 0; }) || port.size() > 5 ||
      std::stoi(port) == 0 || std::stoi(port) > 65535) {
    return invalid_argument("invalid_config", "WORKER_NODES: \"" + node + "\" has an invalid port");
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<ControlPlaneConfig> load_control_plane_config(const flux::config::Env& env) {
  ControlPlaneConfig c;
  int64_t number = 0;
  FLUX_ASSIGN_OR_RETURN(number, env.integer("PORT", 8080, 0, 65535));
  c.port = static_cast<uint16_t>(number);
  FLUX_ASSIGN_OR_RETURN(c.bind_address, env.string("BIND_ADDRESS", "0.0.0.0"));
  FLUX_ASSIGN_OR_RETURN(c.worker_nodes, env.list("WORKER_NODES", {}));
  for (const auto& node : c.worker_nodes) {
    if (auto s = check_host_port(node); !s.ok()) return s;
  }
  FLUX_ASSIGN_OR_RETURN(c.worker_startup_timeout, env.seconds("WORKER_STARTUP_TIMEOUT", 60, 0, 3600));
  FLUX_ASSIGN_OR_RETURN(c.env, env.one_of("ENV", "production", {"development", "production"}));
  std::string level;
  FLUX_ASSIGN_OR_RETURN(level, env.one_of("LOG_LEVEL", "info", {"debug", "info", "warn", "error"}));
  FLUX_ASSIGN_OR_RETURN(c.log_level, log::parse_level(level));
  FLUX_ASSIGN_OR_RETURN(c.api_keys, env.list("API_KEYS", {}));
  if (c.api_keys.empty()) {
    if (auto key = env.raw("API_KEY")) c.api_keys.push_back(*key);
  }
  for (const auto& key : c.api_keys) {
    if (key.size() < 16) {
      return invalid_argument("invalid_config", "API_KEYS: every key must be at least 16 characters");
    }
  }
  if (c.api_keys.empty() && !c.development()) {
    return invalid_argument("invalid_config",
                            "API_KEYS: no API key configured; set API_KEYS (or API_KEY), or ENV=development to run "
                            "without authentication");
  }
  std::string db;
  FLUX_ASSIGN_OR_RETURN(db, env.string("DATABASE_PATH", "./data/flux.db"));
  c.database_path = db;
  FLUX_ASSIGN_OR_RETURN(number, env.integer("QUEUE_LIMIT", 1000, 0, 10000000));
  c.queue_limit = static_cast<int>(number);
  FLUX_ASSIGN_OR_RETURN(number, env.integer("MAX_ATTEMPTS", 3, 1, 100));
  c.max_attempts = static_cast<int>(number);
  FLUX_ASSIGN_OR_RETURN(c.job_timeout, env.seconds("JOB_TIMEOUT", 3600, 1, 7 * 86400.0));
  FLUX_ASSIGN_OR_RETURN(c.webhook_secret, env.string("WEBHOOK_SECRET", ""));
  FLUX_ASSIGN_OR_RETURN(number, env.integer("RATE_LIMIT_RPS", 0, 0, 1000000));
  c.rate_limit_rps = static_cast<double>(number);
  FLUX_ASSIGN_OR_RETURN(number, env.integer("RATE_LIMIT_BURST", std::max<int64_t>(1, number * 2), 1, 10000000));
  c.rate_limit_burst = static_cast<double>(number);
  FLUX_ASSIGN_OR_RETURN(c.metrics_token, env.string("METRICS_TOKEN", ""));
  FLUX_ASSIGN_OR_RETURN(c.input_schemes, env.list("INPUT_SCHEMES", {"https", "http", "s3"}));
  for (const auto& scheme : c.input_schemes) {
    if (scheme != "https" && scheme != "http" && scheme != "s3" && scheme != "file") {
      return invalid_argument("invalid_config",
                              "INPUT_SCHEMES: unsupported scheme \"" + scheme + "\" (allowed: https, http, s3, file)");
    }
  }
  FLUX_ASSIGN_OR_RETURN(c.allow_private_inputs, env.boolean("ALLOW_PRIVATE_INPUTS", false));
  if (auto dir = env.raw("LOCAL_INPUT_DIR")) {
    c.local_input_dir = std::filesystem::absolute(*dir).lexically_normal();
    if (std::find(c.input_schemes.begin(), c.input_schemes.end(), "file") == c.input_schemes.end()) {
      c.input_schemes.emplace_back("file");
    }
  }
  if (auto file = env.raw("PRESETS_FILE")) c.presets_file = *file;
  FLUX_ASSIGN_OR_RETURN(number, env.integer("HTTP_THREADS", 2, 1, 256));
  c.http_threads = static_cast<int>(number);
  FLUX_ASSIGN_OR_RETURN(c.http_pin_threads, env.boolean("HTTP_PIN_THREADS", false));
  FLUX_ASSIGN_OR_RETURN(number, env.integer("HTTP_MAX_CONNECTIONS", 20000, 0, 10'000'000));
  c.http_max_connections = static_cast<size_t>(number);
  FLUX_ASSIGN_OR_RETURN(c.sse_keepalive, env.seconds("SSE_KEEPALIVE", 15, 0.05, 3600));
  return c;
}

}  // namespace flux::controlplane::config
