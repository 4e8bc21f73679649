#include "cli/output_format.h"

#include <gtest/gtest.h>

namespace flux::cli {
namespace {

using nlohmann::json;

TEST(Table, AlignsColumnsWithoutTrailingSpaces) {
  const std::string table =
      render_table({"NAME", "TYPE", "DESCRIPTION"}, {{"720p_h264", "single", "H.264 720p"}, {"hls", "hls", ""}});
  EXPECT_EQ(table,
            "NAME       TYPE    DESCRIPTION\n"
            "720p_h264  single  H.264 720p\n"
            "hls        hls\n");
}

TEST(Table, CountsUtf8AsOneColumn) {
  const std::string table = render_table({"A", "B"}, {{"äé", "x"}, {"abc", "y"}});
  EXPECT_EQ(table, "A    B\näé   x\nabc  y\n");
}

json completed_job() {
  return json::parse(R"({
    "job_id": "job_01", "status": "completed", "phase": "done", "progress": 100, "message": "completed",
    "preset": "720p_h264", "input_url": "http://127.0.0.1:9/in.mp4",
    "output": {"storage": "local", "path": "out/a.mp4", "type": null, "metadata": {"title": "Sample"}},
    "output_url": "file:///data/out/a.mp4", "callback_url": null, "priority": 2, "worker_id": "w1",
    "attempts": 1, "created_at": "2026-01-02T03:04:05.678Z", "started_at": "2026-01-02T03:04:06.000Z",
    "finished_at": "2026-01-02T03:04:09.000Z",
    "phase_durations": {"download": 0.1, "encode": 2.5, "probe": 0.2, "upload": 0, "validate": 0.3},
    "result": {"video_codec": "h264", "width": 1280, "height": 720, "fps": 25, "audio_codec": "aac",
               "audio_channels": 2, "duration_seconds": 2.0, "size_bytes": 2048, "file_count": 1},
    "webhook": {"state": "none", "attempts": 0, "last_status": 0, "last_error": null, "delivered_at": null}
  })");
}

TEST(JobDetails, ShowsWhatAnOperatorNeeds) {
  const std::string text = render_job_details(completed_job());
  EXPECT_NE(text.find("Job         job_01\n"), std::string::npos) << text;
  EXPECT_NE(text.find("Status      completed (100%)\n"), std::string::npos) << text;
  EXPECT_NE(text.find("Output      local out/a.mp4\n"), std::string::npos) << text;
  EXPECT_NE(text.find("Metadata    title=Sample\n"), std::string::npos) << text;
  EXPECT_NE(text.find("Output URL  file:///data/out/a.mp4\n"), std::string::npos) << text;
  EXPECT_NE(text.find("Result      h264 1280x720 25 fps, aac 2ch, 2.0 s, 2.0 KiB, 1 file\n"), std::string::npos)
      << text;
  EXPECT_NE(text.find("Phases      download 0.1 s, probe 0.2 s, encode 2.5 s, validate 0.3 s, upload 0.0 s\n"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("Worker      w1 (attempt 1)\n"), std::string::npos) << text;
  EXPECT_NE(text.find("Created     2026-01-02 03:04:05 UTC\n"), std::string::npos) << text;
  EXPECT_EQ(text.find("Error"), std::string::npos) << text;
  EXPECT_EQ(text.find("Webhook"), std::string::npos) << text;   // state "none" is not news
  EXPECT_EQ(text.find("Callback"), std::string::npos) << text;  // null
}

TEST(JobDetails, FailedJobShowsErrorAndCode) {
  json doc = completed_job();
  doc["status"] = "failed";
  doc["phase"] = "downloading";
  doc["progress"] = 0;
  doc["message"] = "failed";
  doc["error"] = "input not found (HTTP 404)";
  doc["error_code"] = "input_not_found";
  doc["result"] = nullptr;
  doc["webhook"] = {{"state", "failed"}, {"attempts", 3}, {"last_status", 500}, {"last_error", "HTTP 500"}};
  const std::string text = render_job_details(doc);
  EXPECT_NE(text.find("Status      failed (downloading, 0%)\n"), std::string::npos) << text;
  EXPECT_NE(text.find("Error       input not found (HTTP 404) (input_not_found)\n"), std::string::npos) << text;
  EXPECT_NE(text.find("Webhook     failed (3 attempts, last HTTP 500, HTTP 500)\n"), std::string::npos) << text;
  EXPECT_EQ(text.find("Result"), std::string::npos) << text;
}

TEST(JobDetails, ServerStringsCannotDriveTheTerminal) {
  json doc = completed_job();
  doc["output"]["metadata"] = {{"title", "\x1b]0;pwned\x07"}};
  const std::string text = render_job_details(doc);
  EXPECT_EQ(text.find('\x1b'), std::string::npos);
  EXPECT_EQ(text.find('\x07'), std::string::npos);
}

TEST(JobList, TableWithDetailAndNextPage) {
  json failed = completed_job();
  failed["job_id"] = "job_02";
  failed["status"] = "failed";
  failed["error_code"] = "input_not_found";
  json running = completed_job();
  running["job_id"] = "job_03";
  running["status"] = "processing";
  running["phase"] = "encoding";
  running["progress"] = 42.7;
  const std::string text = render_job_list({{"jobs", {running, failed, completed_job()}}, {"next_cursor", "abc"}});
  EXPECT_EQ(text,
            "JOB ID  STATUS      PROGRESS  PRESET     CREATED (UTC)        DETAIL\n"
            "job_03  processing  42%       720p_h264  2026-01-02 03:04:05  encoding\n"
            "job_02  failed      100%      720p_h264  2026-01-02 03:04:05  input_not_found\n"
            "job_01  completed   100%      720p_h264  2026-01-02 03:04:05  file:///data/out/a.mp4\n"
            "more: repeat with --cursor abc\n");
  EXPECT_EQ(render_job_list({{"jobs", json::array()}, {"next_cursor", nullptr}}), "no jobs\n");
}

TEST(Workers, Table) {
  const json answer = json::parse(R"({"workers": [
    {"address": "127.0.0.1:9001", "worker_id": "w1", "state": "up", "current_jobs": 1, "max_jobs": 2,
     "active_job_ids": ["job_1"], "storage_types": ["local", "s3"], "version": "0.1.0",
     "last_seen": "2026-01-02T03:04:05.000Z"},
    {"address": "127.0.0.1:9002", "worker_id": null, "state": "down", "current_jobs": 0, "max_jobs": 0,
     "active_job_ids": [], "storage_types": [], "version": null, "last_seen": null}]})");
  EXPECT_EQ(render_workers(answer),
            "ADDRESS         WORKER ID  STATE  JOBS  STORAGE   VERSION  LAST SEEN (UTC)\n"
            "127.0.0.1:9001  w1         up     1/2   local,s3  0.1.0    2026-01-02 03:04:05\n"
            "127.0.0.1:9002  -          down   0/0   -         -        -\n");
  EXPECT_EQ(render_workers({{"workers", json::array()}}), "no workers configured\n");
}

TEST(Presets, Table) {
  const json answer = json::parse(R"({"presets": [
    {"name": "720p_h264", "description": "H.264 1280x720", "output_type": "single", "extension": "mp4"},
    {"name": "hls_720p_abr", "description": "HLS ladder", "output_type": "hls", "extension": "m3u8"}]})");
  EXPECT_EQ(render_presets(answer),
            "NAME          TYPE    EXT   DESCRIPTION\n"
            "720p_h264     single  mp4   H.264 1280x720\n"
            "hls_720p_abr  hls     m3u8  HLS ladder\n");
}

}  // namespace
}  // namespace flux::cli
