#pragma once
// The steps of one job, in order: fetch the input, probe it and encode it
// with the preset (side by side: ffmpeg does not wait for ffprobe), validate
// the output, upload it. Each step reports its phase; any failure ends the
// job with that step's machine code, a refused input with the probe's
// (input_invalid, input_too_large, input_too_long) and a breached ffmpeg
// limit with its own (time_limit_exceeded, output_too_large,
// cpu_limit_exceeded, memory_limit_exceeded). The job's work directory is
// removed whatever the outcome.
#include <map>
#include <memory>
#include <string>

#include "worker/config/worker_config.h"
#include "worker/encoder/encoder.h"
#include "worker/input/input_fetcher.h"
#include "worker/jobs/job_manager.h"
#include "worker/pipeline/worker_metrics.h"
#include "worker/preset/preset.h"
#include "worker/uploader/uploader.h"
#include "worker/validator/media_info.h"

namespace flux::worker::pipeline {

using jobs::JobContext;
using jobs::JobOutcome;

class JobPipeline {
 public:
  JobPipeline(const config::WorkerConfig& config, const preset::Catalog& catalog, input::InputFetcher& fetcher,
              std::map<std::string, std::unique_ptr<uploader::Uploader>> uploaders, WorkerMetrics* metrics);

  JobOutcome run(const v1::JobRequest& request, JobContext& context);

  // Checks a request before it is admitted: ids, preset, storage, output path
  // and type. INVALID_ARGUMENT with a machine code naming the field.
  absl::Status check_request(const v1::JobRequest& request) const;

  std::vector<std::string> storage_types() const;

 private:
  absl::StatusOr<JobOutcome> run_steps(const v1::JobRequest& request, JobContext& context,
                                       const std::filesystem::path& job_dir);
  validator::ProbeOptions probe_options() const;
  encoder::EncodeLimits encode_limits() const;

  const config::WorkerConfig& config_;
  const preset::Catalog& catalog_;
  input::InputFetcher& fetcher_;
  std::map<std::string, std::unique_ptr<uploader::Uploader>> uploaders_;
  WorkerMetrics* metrics_;
};

// The job's directory name under WORK_DIR: the id when it is a safe file
// name, else its hash, so a job id never names a path.
std::string work_dir_name(const std::string& job_id);

// Removes every entry under `work_dir` (leftovers of a crash); creates it if missing.
absl::Status sweep_work_dir(const std::filesystem::path& work_dir);

}  // namespace flux::worker::pipeline
