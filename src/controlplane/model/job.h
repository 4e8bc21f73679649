#pragma once
// The control plane's job: what a client asked for (JobSpec) and everything
// the control plane knows about it since (JobRecord). Shared by the store,
// the dispatcher, the API and the webhooks.
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

namespace flux::controlplane::model {

enum class JobStatus { kQueued, kProcessing, kUploading, kCompleted, kFailed, kCancelled };

std::string_view to_string(JobStatus status);  // "queued", "processing", ...
std::optional<JobStatus> parse_job_status(std::string_view text);
bool is_terminal(JobStatus status);

struct OutputSpec {
  std::string storage;  // "s3" | "local"
  std::string path;     // relative key (a prefix for hls/dash)
  std::string type;     // "single" | "hls" | "dash" ("" = the preset's)
  std::map<std::string, std::string> metadata;
};

// A validated job request (SPEC §3.1).
struct JobSpec {
  std::string input_url;
  std::string preset;
  OutputSpec output;
  std::string callback_url;  // "" = none
  int priority = 0;          // -10..10, higher first
};

struct WebhookState {
  std::string state = "none";  // none | pending | delivered | failed
  int attempts = 0;
  int last_status = 0;  // HTTP status of the last try, 0 = no response
  std::string last_error;
  std::string delivered_at;  // RFC 3339, "" until delivered
};

struct JobRecord {
  std::string job_id;
  JobSpec spec;
  JobStatus status = JobStatus::kQueued;
  std::string phase = "queued";  // queued, downloading, probing, encoding, validating, uploading, done
  double progress = 0;           // 0..100
  std::string message;
  std::string output_url;
  std::string error;       // human reason when failed/cancelled
  std::string error_code;  // machine code when failed/cancelled
  std::string worker_id;
  std::string worker_address;                        // host:port of the worker that has (or had) it
  int attempts = 0;                                  // dispatches so far
  std::string created_at;                            // RFC 3339 UTC ms
  std::string started_at;                            // "" until first dispatched
  std::string finished_at;                           // "" until terminal
  int64_t created_ms = 0;                            // creation time in ms since the epoch; with job_id, the list order
  nlohmann::json result = nlohmann::json::object();  // JobProgress.result as JSON, on completion
  nlohmann::json phase_durations = nlohmann::json::object();  // {"download": s, "probe": s, ...}
  WebhookState webhook;
  std::string idempotency_key;  // "" = none; scoped by api_key_id
  std::string api_key_id;       // a non-secret id of the API key that created it ("" = none)
  uint64_t sequence = 0;        // last progress event number the control plane saw
  // Live encode figures from the last progress event; not stored (they only
  // matter while the job runs).
  double fps = 0;
  double speed = 0;
  double eta_seconds = -1;  // < 0 unknown
};

// The job document of SPEC §3.2 (GET /api/v1/jobs/{id}).
nlohmann::json to_document(const JobRecord& job);

// A new job id: "job_" + 26 lowercase base32 chars, time-ordered then random
// (80 bits), so ids are unguessable and sort by creation time.
std::string new_job_id();

}  // namespace flux::controlplane::model
