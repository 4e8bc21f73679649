#include "controlplane/dispatch/worker_events.h"

#include <array>
#include <string_view>

namespace flux::controlplane::dispatch {

std::optional<model::JobStatus> to_job_status(v1::JobStatus status) {
  switch (status) {
    case v1::JOB_STATUS_QUEUED:
      return model::JobStatus::kQueued;
    case v1::JOB_STATUS_PROCESSING:
      return model::JobStatus::kProcessing;
    case v1::JOB_STATUS_UPLOADING:
      return model::JobStatus::kUploading;
    case v1::JOB_STATUS_COMPLETED:
      return model::JobStatus::kCompleted;
    case v1::JOB_STATUS_FAILED:
      return model::JobStatus::kFailed;
    case v1::JOB_STATUS_CANCELLED:
      return model::JobStatus::kCancelled;
    default:
      return std::nullopt;
  }
}

bool is_terminal(v1::JobStatus status) {
  return status == v1::JOB_STATUS_COMPLETED || status == v1::JOB_STATUS_FAILED || status == v1::JOB_STATUS_CANCELLED;
}

std::string phase_name(v1::JobPhase phase) {
  switch (phase) {
    case v1::JOB_PHASE_QUEUED:
      return "queued";
    case v1::JOB_PHASE_DOWNLOADING:
      return "downloading";
    case v1::JOB_PHASE_PROBING:
      return "probing";
    case v1::JOB_PHASE_ENCODING:
      return "encoding";
    case v1::JOB_PHASE_VALIDATING:
      return "validating";
    case v1::JOB_PHASE_UPLOADING:
      return "uploading";
    case v1::JOB_PHASE_DONE:
      return "done";
    default:
      return "";
  }
}

nlohmann::json result_to_json(const v1::JobResult& result) {
  nlohmann::json files = nlohmann::json::array();
  for (const auto& file : result.files()) {
    files.push_back({{"key", file.key()}, {"size_bytes", file.size_bytes()}, {"url", file.url()}});
  }
  const bool has_audio = !result.audio_codec().empty();
  return {
      {"duration_seconds", result.duration_seconds()},
      {"size_bytes", result.size_bytes()},
      {"file_count", result.file_count()},
      {"video_codec", result.video_codec()},
      {"width", result.width()},
      {"height", result.height()},
      {"fps", result.fps()},
      {"pixel_format", result.pixel_format()},
      {"audio_codec", has_audio ? nlohmann::json(result.audio_codec()) : nlohmann::json()},
      {"audio_channels", result.audio_channels()},
      {"audio_sample_rate", result.audio_sample_rate()},
      {"files", std::move(files)},
  };
}

nlohmann::json phase_durations(const v1::JobResult& result) {
  return {{"download", result.download_seconds()},
          {"probe", result.probe_seconds()},
          {"encode", result.encode_seconds()},
          {"validate", result.validate_seconds()},
          {"upload", result.upload_seconds()}};
}

bool is_retryable(const std::string& error_code) {
  static constexpr std::array<std::string_view, 11> kRetryable = {
      "worker_shutdown",   "worker_draining",   "worker_full",        "internal",      "io_error", "spawn_failed",
      "work_dir_unusable", "file_write_failed", "input_write_failed", "upload_failed", "abandoned"};
  if (error_code.empty()) return true;
  for (std::string_view code : kRetryable) {
    if (code == error_code) return true;
  }
  return false;
}

bool is_retried_after_backoff(const std::string& error_code) {
  if (error_code == "worker_shutdown" || error_code == "worker_draining" || error_code == "worker_full") return false;
  return is_retryable(error_code);
}

}  // namespace flux::controlplane::dispatch
