#include "worker/config/worker_config.h"

#include <unistd.h>

#include <array>

#include "shared/core/error.h"

namespace flux::worker::config {
namespace {

std::string default_worker_id() {
  std::array<char, 256> host{};
  if (gethostname(host.data(), host.size() - 1) != 0 || host[0] == '\0') return "worker";
  return host.data();
}

std::optional<std::filesystem::path> optional_dir(const flux::config::Env& env, std::string_view name) {
  auto raw = env.raw(name);
  if (!raw) return std::nullopt;
  return std::filesystem::absolute(*raw).lexically_normal();
}

}  // namespace

std::vector<std::string> WorkerConfig::storage_types() const {
  std::vector<std::string> types;
  if (local_storage_dir) types.emplace_back("local");
  if (!s3_bucket.empty()) types.emplace_back("s3");
  return types;
}

absl::StatusOr<WorkerConfig> load_worker_config(const flux::config::Env& env) {
  WorkerConfig c;
  int64_t port = 0;
  FLUX_ASSIGN_OR_RETURN(port, env.integer("GRPC_PORT", 50051, 0, 65535));
  c.grpc_port = static_cast<uint16_t>(port);
  FLUX_ASSIGN_OR_RETURN(c.bind_address, env.string("GRPC_BIND_ADDRESS", "0.0.0.0"));
  int64_t jobs = 0;
  FLUX_ASSIGN_OR_RETURN(jobs, env.integer("MAX_CONCURRENT_JOBS", 2, 1, 256));
  c.max_concurrent_jobs = static_cast<int>(jobs);
  std::string work_dir;
  FLUX_ASSIGN_OR_RETURN(work_dir, env.string("WORK_DIR", "/tmp/ffmpeg-jobs"));
  c.work_dir = std::filesystem::absolute(work_dir).lexically_normal();
  FLUX_ASSIGN_OR_RETURN(c.storage_type, env.one_of("STORAGE_TYPE", "local", {"local", "s3"}));
  c.local_storage_dir = optional_dir(env, "LOCAL_STORAGE_DIR");
  FLUX_ASSIGN_OR_RETURN(c.s3_bucket, env.string("S3_BUCKET", ""));
  FLUX_ASSIGN_OR_RETURN(c.s3_region, env.string("S3_REGION", env.raw("AWS_REGION").value_or("us-east-1")));
  FLUX_ASSIGN_OR_RETURN(c.s3_endpoint, env.string("S3_ENDPOINT", ""));
  FLUX_ASSIGN_OR_RETURN(c.s3_force_path_style, env.boolean("S3_FORCE_PATH_STYLE", !c.s3_endpoint.empty()));
  FLUX_ASSIGN_OR_RETURN(c.s3_multipart_threshold, env.bytes("S3_MULTIPART_THRESHOLD", 16ull << 20));
  FLUX_ASSIGN_OR_RETURN(c.s3_part_size, env.bytes("S3_PART_SIZE", 8ull << 20));
  if (c.s3_part_size == 0) return invalid_argument("invalid_config", "S3_PART_SIZE: must be greater than 0");
  if (c.storage_type == "s3" && c.s3_bucket.empty()) {
    return invalid_argument("invalid_config", "S3_BUCKET: required when STORAGE_TYPE=s3");
  }
  if (c.storage_type == "local" && !c.local_storage_dir) {
    // Embedded default: outputs next to the working directory.
    c.local_storage_dir = std::filesystem::absolute("data/output").lexically_normal();
  }
  FLUX_ASSIGN_OR_RETURN(c.worker_id, env.string("WORKER_ID", default_worker_id()));
  std::string level;
  FLUX_ASSIGN_OR_RETURN(level, env.one_of("LOG_LEVEL", "info", {"debug", "info", "warn", "error"}));
  FLUX_ASSIGN_OR_RETURN(c.log_level, log::parse_level(level));
  FLUX_ASSIGN_OR_RETURN(c.env, env.one_of("ENV", "production", {"development", "production"}));
  FLUX_ASSIGN_OR_RETURN(c.disable_auto_shutdown, env.boolean("DISABLE_AUTO_SHUTDOWN", false));
  FLUX_ASSIGN_OR_RETURN(c.auto_shutdown_grace, env.seconds("AUTO_SHUTDOWN_GRACE", 1, 0, 86400));
  FLUX_ASSIGN_OR_RETURN(c.idle_timeout, env.seconds("IDLE_TIMEOUT", 0, 0, 30 * 86400.0));
  FLUX_ASSIGN_OR_RETURN(c.result_hold, env.seconds("RESULT_HOLD", 600, 0, 7 * 86400.0));
  FLUX_ASSIGN_OR_RETURN(c.drain_timeout, env.seconds("DRAIN_TIMEOUT", 600, 0, 86400));
  FLUX_ASSIGN_OR_RETURN(c.job_timeout, env.seconds("JOB_TIMEOUT", 3600, 1, 7 * 86400.0));
  if (auto file = env.raw("PRESETS_FILE")) c.presets_file = *file;
  FLUX_ASSIGN_OR_RETURN(c.ffmpeg_path, env.string("FFMPEG_PATH", "ffmpeg"));
  FLUX_ASSIGN_OR_RETURN(c.ffprobe_path, env.string("FFPROBE_PATH", "ffprobe"));
  FLUX_ASSIGN_OR_RETURN(port, env.integer("METRICS_PORT", 9091, 0, 65535));
  c.metrics_port = static_cast<uint16_t>(port);
  std::string validation;
  FLUX_ASSIGN_OR_RETURN(validation, env.one_of("VALIDATION_LEVEL", "standard", {"minimal", "standard", "strict"}));
  FLUX_ASSIGN_OR_RETURN(c.validation_level, validator::parse_level(validation));
  c.local_input_dir = optional_dir(env, "LOCAL_INPUT_DIR");
  FLUX_ASSIGN_OR_RETURN(c.allow_private_inputs, env.boolean("ALLOW_PRIVATE_INPUTS", false));
  FLUX_ASSIGN_OR_RETURN(c.input_schemes, env.list("INPUT_SCHEMES", {"https", "http", "s3"}));
  for (const auto& scheme : c.input_schemes) {
    if (scheme != "https" && scheme != "http" && scheme != "s3" && scheme != "file") {
      return invalid_argument("invalid_config",
                              "INPUT_SCHEMES: unsupported scheme \"" + scheme + "\" (allowed: https, http, s3, file)");
    }
  }
  if (c.local_input_dir && std::find(c.input_schemes.begin(), c.input_schemes.end(), "file") == c.input_schemes.end()) {
    c.input_schemes.emplace_back("file");  // LOCAL_INPUT_DIR is the opt-in for file:// inputs
  }
  FLUX_ASSIGN_OR_RETURN(c.max_input_bytes, env.bytes("MAX_INPUT_BYTES", 20ull << 30));

  constexpr double kMaxSeconds = 365 * 86400.0;
  FLUX_ASSIGN_OR_RETURN(c.ffmpeg_max_wall, env.seconds("FFMPEG_MAX_SECONDS", 21600, 0, kMaxSeconds));
  FLUX_ASSIGN_OR_RETURN(c.max_output_bytes, env.bytes("MAX_OUTPUT_BYTES", 50ull << 30));
  int64_t number = 0;
  FLUX_ASSIGN_OR_RETURN(number, env.integer("FFMPEG_CPU_SECONDS", 0, 0, static_cast<int64_t>(kMaxSeconds)));
  c.ffmpeg_cpu_seconds = static_cast<uint64_t>(number);
  // Up to 1 PiB: far beyond any machine, far below an overflow in bytes.
  FLUX_ASSIGN_OR_RETURN(number, env.integer("FFMPEG_MEMORY_MB", 0, 0, int64_t{1} << 30));
  c.ffmpeg_memory_mb = static_cast<uint64_t>(number);
  FLUX_ASSIGN_OR_RETURN(number, env.integer("FFMPEG_NICE", 10, 0, 19));
  c.ffmpeg_nice = static_cast<int>(number);
  FLUX_ASSIGN_OR_RETURN(number, env.integer("MAX_INPUT_PIXELS", 8192 * 4320, 0, int64_t{1} << 40));
  c.max_input_pixels = static_cast<uint64_t>(number);
  FLUX_ASSIGN_OR_RETURN(c.max_input_duration, env.seconds("MAX_INPUT_DURATION", 86400, 0, kMaxSeconds));
  return c;
}

}  // namespace flux::worker::config
