#pragma once
// Everything the worker reads from its environment, parsed and checked once at
// start. A malformed value is a start-up error naming the variable.
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "shared/config/env.h"
#include "shared/log/log.h"
#include "worker/validator/validator.h"

namespace flux::worker::config {

struct WorkerConfig {
  uint16_t grpc_port = 50051;
  std::string bind_address = "0.0.0.0";
  int max_concurrent_jobs = 2;
  std::filesystem::path work_dir = "/tmp/ffmpeg-jobs";
  std::string storage_type = "local";  // the primary storage; see storage_types()
  std::optional<std::filesystem::path> local_storage_dir;
  std::string s3_bucket;
  std::string s3_region = "us-east-1";
  std::string s3_endpoint;
  bool s3_force_path_style = false;
  uint64_t s3_multipart_threshold = 16ull << 20;
  uint64_t s3_part_size = 8ull << 20;
  std::string worker_id;
  log::Level log_level = log::Level::kInfo;
  std::string env = "production";
  bool disable_auto_shutdown = false;
  std::chrono::milliseconds auto_shutdown_grace{1000};
  std::chrono::milliseconds idle_timeout{0};  // 0 = never
  std::chrono::milliseconds result_hold{600000};
  std::chrono::milliseconds drain_timeout{600000};
  std::chrono::milliseconds job_timeout{3600000};  // default per-job wall-clock limit
  std::optional<std::filesystem::path> presets_file;
  std::string ffmpeg_path = "ffmpeg";
  std::string ffprobe_path = "ffprobe";
  uint16_t metrics_port = 9091;  // 0 = off
  validator::Level validation_level = validator::Level::kStandard;
  std::optional<std::filesystem::path> local_input_dir;
  bool allow_private_inputs = false;
  std::vector<std::string> input_schemes{"https", "http", "s3"};
  uint64_t max_input_bytes = 20ull << 30;

  // Limits on ffmpeg and on the probed input; 0 = off for each.
  std::chrono::milliseconds ffmpeg_max_wall{21600 * 1000};     // FFMPEG_MAX_SECONDS, per encode
  uint64_t max_output_bytes = 50ull << 30;                     // MAX_OUTPUT_BYTES, the job's output total
  uint64_t ffmpeg_cpu_seconds = 0;                             // FFMPEG_CPU_SECONDS (RLIMIT_CPU)
  uint64_t ffmpeg_memory_mb = 0;                               // FFMPEG_MEMORY_MB (RLIMIT_AS)
  int ffmpeg_nice = 10;                                        // FFMPEG_NICE, for ffmpeg and ffprobe
  uint64_t max_input_pixels = 8192ull * 4320;                  // MAX_INPUT_PIXELS, probed width x height
  std::chrono::milliseconds max_input_duration{86400 * 1000};  // MAX_INPUT_DURATION, probed

  // Storage types this worker can write to: "local" when it has a local
  // directory, "s3" when it has a bucket.
  std::vector<std::string> storage_types() const;
};

absl::StatusOr<WorkerConfig> load_worker_config(const flux::config::Env& env);

}  // namespace flux::worker::config
