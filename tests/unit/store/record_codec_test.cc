#include "controlplane/store/record_codec.h"

#include <gtest/gtest.h>

#include <string>

#include <nlohmann/json.hpp>

namespace flux::controlplane::store {
namespace {

using nlohmann::json;

// What rows held when the document was built as a json object: the encoder
// must keep writing the same document, since older rows, SQLite's json_set
// (progress checkpoints) and json_extract (the webhook index) read it.
json reference_document(const model::JobRecord& job) {
  return {
      {"input_url", job.spec.input_url},
      {"preset", job.spec.preset},
      {"output",
       {{"storage", job.spec.output.storage},
        {"path", job.spec.output.path},
        {"type", job.spec.output.type},
        {"metadata", job.spec.output.metadata}}},
      {"callback_url", job.spec.callback_url},
      {"phase", job.phase},
      {"progress", job.progress},
      {"message", job.message},
      {"output_url", job.output_url},
      {"error", job.error},
      {"error_code", job.error_code},
      {"worker_id", job.worker_id},
      {"worker_address", job.worker_address},
      {"attempts", job.attempts},
      {"created_at", job.created_at},
      {"started_at", job.started_at},
      {"finished_at", job.finished_at},
      {"result", job.result},
      {"phase_durations", job.phase_durations},
      {"webhook",
       {{"state", job.webhook.state},
        {"attempts", job.webhook.attempts},
        {"last_status", job.webhook.last_status},
        {"last_error", job.webhook.last_error},
        {"delivered_at", job.webhook.delivered_at}}},
  };
}

std::string reference_dump(const model::JobRecord& job) {
  return reference_document(job).dump(-1, ' ', false, json::error_handler_t::replace);
}

model::JobRecord busy_job() {
  model::JobRecord job;
  job.job_id = "job_codec";
  job.spec.input_url = "https://example.com/in.mp4?sig=a%2Fb&x=\"y\"";
  job.spec.preset = "720p_h264";
  job.spec.output = {"s3", "out/a b/c.mp4", "single", {{"title", "Ünïcødé ✓ 🎬"}, {"q\"uote", "back\\slash"}}};
  job.spec.callback_url = "https://hooks.example.com/x";
  job.spec.priority = 3;
  job.status = model::JobStatus::kFailed;
  job.phase = "encoding";
  job.progress = 42.125;
  job.message = "line 1\nline 2\ttab\r\b\f\x01\x1f\x7f end";
  job.error = "ffmpeg said: \"no\"";
  job.error_code = "encode_failed";
  job.worker_id = "worker-a";
  job.worker_address = "127.0.0.1:50051";
  job.attempts = 2;
  job.created_at = "2026-11-30T08:43:25.123Z";
  job.finished_at = "2026-11-30T08:44:00.000Z";
  job.result = {{"duration_s", 12.5}, {"renditions", {{{"height", 720}}}}};
  job.phase_durations = {{"download", 1.5}, {"encode", 30.25}};
  job.webhook = {"pending", 2, 503, "unavailable", ""};
  return job;
}

TEST(RecordCodec, WritesTheSameDocumentAsAJsonObjectWould) {
  const model::JobRecord job = busy_job();
  const JobRow row = to_row(job);
  EXPECT_EQ(json::parse(row.doc), reference_document(job));
  // Byte for byte, numbers aside (the shortest form of a double may differ in spelling only).
  model::JobRecord integral = job;
  integral.progress = 0;
  integral.result = json::object();
  integral.phase_durations = json::object();
  std::string expected = reference_dump(integral);
  const std::string zero_as_float = R"("progress":0.0,)";
  ASSERT_NE(expected.find(zero_as_float), std::string::npos);
  expected.replace(expected.find(zero_as_float), zero_as_float.size(), R"("progress":0,)");
  EXPECT_EQ(to_row(integral).doc, expected);
}

TEST(RecordCodec, DefaultRecordRoundTrips) {
  model::JobRecord job;
  job.job_id = "job_default";
  const JobRow row = to_row(job);
  EXPECT_EQ(json::parse(row.doc), reference_document(job));
  auto back = from_row(row);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->phase, "queued");
  EXPECT_EQ(back->webhook.state, "none");
  EXPECT_EQ(back->result, json::object());
}

TEST(RecordCodec, InvalidUtf8IsReplacedExactlyAsBefore) {
  model::JobRecord job = busy_job();
  const char* broken[] = {"\xff\xfe",
                          "a\xc0\xaf"
                          "b",
                          "\xed\xa0\x80",
                          "trail\xe2\x82",
                          "\xf4\x90\x80\x80",
                          "ok\xc3"};
  for (const char* text : broken) {
    job.message = text;
    job.spec.output.metadata = {{text, text}};
    const std::string doc = to_row(job).doc;
    EXPECT_EQ(json::parse(doc), json::parse(reference_dump(job))) << text;
    auto back = from_row(to_row(job));
    ASSERT_TRUE(back.ok()) << back.status();
    EXPECT_NE(back->message.find("\xef\xbf\xbd"), std::string::npos) << "U+FFFD replaces the broken bytes";
  }
}

TEST(RecordCodec, EveryFieldRoundTrips) {
  const model::JobRecord job = busy_job();
  auto back = from_row(to_row(job));
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->spec.input_url, job.spec.input_url);
  EXPECT_EQ(back->spec.output.metadata, job.spec.output.metadata);
  EXPECT_EQ(back->spec.output.path, job.spec.output.path);
  EXPECT_EQ(back->message, job.message);
  EXPECT_EQ(back->error, job.error);
  EXPECT_DOUBLE_EQ(back->progress, job.progress);
  EXPECT_EQ(back->result, job.result);
  EXPECT_EQ(back->phase_durations, job.phase_durations);
  EXPECT_EQ(back->webhook.last_status, 503);
  EXPECT_EQ(back->spec.priority, 3);
  EXPECT_EQ(back->status, model::JobStatus::kFailed);
}

}  // namespace
}  // namespace flux::controlplane::store
