#include "controlplane/dispatch/worker_events.h"

#include <gtest/gtest.h>

namespace flux::controlplane::dispatch {
namespace {

TEST(WorkerEvents, StatusesMapOneToOne) {
  EXPECT_EQ(to_job_status(v1::JOB_STATUS_QUEUED), model::JobStatus::kQueued);
  EXPECT_EQ(to_job_status(v1::JOB_STATUS_PROCESSING), model::JobStatus::kProcessing);
  EXPECT_EQ(to_job_status(v1::JOB_STATUS_UPLOADING), model::JobStatus::kUploading);
  EXPECT_EQ(to_job_status(v1::JOB_STATUS_COMPLETED), model::JobStatus::kCompleted);
  EXPECT_EQ(to_job_status(v1::JOB_STATUS_FAILED), model::JobStatus::kFailed);
  EXPECT_EQ(to_job_status(v1::JOB_STATUS_CANCELLED), model::JobStatus::kCancelled);
  EXPECT_EQ(to_job_status(v1::JOB_STATUS_UNSPECIFIED), std::nullopt);
  EXPECT_TRUE(is_terminal(v1::JOB_STATUS_CANCELLED));
  EXPECT_FALSE(is_terminal(v1::JOB_STATUS_UPLOADING));
}

TEST(WorkerEvents, PhaseNames) {
  EXPECT_EQ(phase_name(v1::JOB_PHASE_DOWNLOADING), "downloading");
  EXPECT_EQ(phase_name(v1::JOB_PHASE_PROBING), "probing");
  EXPECT_EQ(phase_name(v1::JOB_PHASE_ENCODING), "encoding");
  EXPECT_EQ(phase_name(v1::JOB_PHASE_VALIDATING), "validating");
  EXPECT_EQ(phase_name(v1::JOB_PHASE_UPLOADING), "uploading");
  EXPECT_EQ(phase_name(v1::JOB_PHASE_DONE), "done");
  EXPECT_EQ(phase_name(v1::JOB_PHASE_UNSPECIFIED), "");
}

TEST(WorkerEvents, ResultBecomesTheDocumentsResultBlock) {
  v1::JobResult result;
  result.set_duration_seconds(2.04);
  result.set_size_bytes(123456789012ull);  // beyond 32 bits stays a number
  result.set_file_count(1);
  result.set_video_codec("h264");
  result.set_width(854);
  result.set_height(480);
  result.set_fps(25);
  result.set_pixel_format("yuv420p");
  result.set_audio_codec("aac");
  result.set_audio_channels(2);
  result.set_audio_sample_rate(48000);
  result.set_encode_seconds(1.5);
  result.set_upload_seconds(0.25);
  auto* file = result.add_files();
  file->set_key("out/a.mp4");
  file->set_size_bytes(42);
  file->set_url("file:///x/out/a.mp4");
  const nlohmann::json doc = result_to_json(result);
  EXPECT_EQ(doc["size_bytes"], 123456789012ull);
  EXPECT_EQ(doc["height"], 480);
  EXPECT_EQ(doc["audio_codec"], "aac");
  EXPECT_EQ(doc["files"][0]["key"], "out/a.mp4");
  EXPECT_EQ(doc["files"][0]["size_bytes"], 42);
  const nlohmann::json phases = phase_durations(result);
  EXPECT_DOUBLE_EQ(phases["encode"].get<double>(), 1.5);
  EXPECT_DOUBLE_EQ(phases["upload"].get<double>(), 0.25);
  EXPECT_TRUE(phases.contains("download") && phases.contains("probe") && phases.contains("validate"));

  result.clear_audio_codec();
  EXPECT_TRUE(result_to_json(result)["audio_codec"].is_null()) << "no audio is null, not \"\"";
}

TEST(WorkerEvents, OnlyFailuresOfTheWorkerItselfAreRetried) {
  for (const char* code : {"worker_shutdown", "upload_failed", "internal", "io_error", "spawn_failed", ""}) {
    EXPECT_TRUE(is_retryable(code)) << code;
  }
  for (const char* code :
       {"input_not_found", "input_invalid", "url_address_forbidden", "preset_unknown", "validation_failed",
        "encode_failed", "output_missing", "probe_failed", "timeout", "cancelled", "storage_unsupported"}) {
    EXPECT_FALSE(is_retryable(code)) << code;
  }
}

TEST(WorkerEvents, FailuresOfTheJobsSurroundingsWaitBeforeTheNextAttempt) {
  for (const char* code : {"upload_failed", "io_error", "internal", "spawn_failed", "work_dir_unusable",
                           "file_write_failed", "input_write_failed", ""}) {
    EXPECT_TRUE(is_retried_after_backoff(code)) << code;
  }
  // The worker's own state: another worker takes the job at once.
  for (const char* code : {"worker_shutdown", "worker_draining", "worker_full"}) {
    EXPECT_FALSE(is_retried_after_backoff(code)) << code;
  }
  // Final anyway.
  for (const char* code : {"encode_failed", "input_unreachable", "timeout", "cancelled"}) {
    EXPECT_FALSE(is_retried_after_backoff(code)) << code;
  }
}

}  // namespace
}  // namespace flux::controlplane::dispatch
