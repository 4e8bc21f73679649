#include "controlplane/model/job.h"

#include <openssl/rand.h>

#include <array>
#include <chrono>
#include <cstdint>
#include <cstdlib>

namespace flux::controlplane::model {
namespace {
constexpr std::array<std::string_view, 6> kStatusNames = {"queued",    "processing", "uploading",
                                                          "completed", "failed",     "cancelled"};
}  // namespace

std::string_view to_string(JobStatus status) { return kStatusNames[static_cast<size_t>(status)]; }

std::optional<JobStatus> parse_job_status(std::string_view text) {
  for (size_t i = 0; i < kStatusNames.size(); ++i) {
    if (kStatusNames[i] == text) return static_cast<JobStatus>(i);
  }
  return std::nullopt;
}

bool is_terminal(JobStatus status) {
  return status == JobStatus::kCompleted || status == JobStatus::kFailed || status == JobStatus::kCancelled;
}

nlohmann::json to_document(const JobRecord& job) {
  auto optional = [](const std::string& s) -> nlohmann::json {
    return s.empty() ? nlohmann::json() : nlohmann::json(s);
  };
  nlohmann::json output = {
      {"storage", job.spec.output.storage},
      {"path", job.spec.output.path},
      {"type", job.spec.output.type.empty() ? nlohmann::json() : nlohmann::json(job.spec.output.type)},
      {"metadata", job.spec.output.metadata}};
  nlohmann::json doc = {
      {"job_id", job.job_id},
      {"status", to_string(job.status)},
      {"phase", job.phase},
      {"progress", job.progress},
      {"message", job.message},
      {"preset", job.spec.preset},
      {"input_url", job.spec.input_url},
      {"output", output},
      {"output_url", optional(job.output_url)},
      {"callback_url", optional(job.spec.callback_url)},
      {"priority", job.spec.priority},
      {"worker_id", optional(job.worker_id)},
      {"attempts", job.attempts},
      {"created_at", job.created_at},
      {"started_at", optional(job.started_at)},
      {"finished_at", optional(job.finished_at)},
      {"phase_durations", job.phase_durations},
      {"result", job.result.empty() ? nlohmann::json() : job.result},
      {"webhook",
       {{"state", job.webhook.state},
        {"attempts", job.webhook.attempts},
        {"last_status", job.webhook.last_status},
        {"last_error", optional(job.webhook.last_error)},
        {"delivered_at", optional(job.webhook.delivered_at)}}},
  };
  if (job.status == JobStatus::kFailed || job.status == JobStatus::kCancelled) {
    doc["error"] = job.error;
    doc["error_code"] = job.error_code;
  }
  return doc;
}

std::string new_job_id() {
  // Time-ordered (10 base32 chars of the millisecond clock, sortable) then 80
  // random bits: unguessable, and new rows land at the end of the store's
  // primary-key index instead of on random pages.
  static constexpr char kAlphabet[] = "0123456789abcdefghjkmnpqrstvwxyz";
  const auto ms = static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
          .count());
  // Random bytes are drawn from OpenSSL's CSPRNG a few KiB at a time: one
  // RAND_bytes call per id cost more than the rest of the id.
  struct RandomBuffer {
    std::array<unsigned char, 4096> bytes{};
    size_t used = 4096;
  };
  thread_local RandomBuffer random;
  if (random.used + 16 > random.bytes.size()) {
    // It fails only without an entropy source; guessable ids would be worse than stopping.
    if (RAND_bytes(random.bytes.data(), static_cast<int>(random.bytes.size())) != 1) std::abort();
    random.used = 0;
  }
  std::string id;
  id.reserve(4 + 10 + 16);
  id = "job_";
  for (int shift = 45; shift >= 0; shift -= 5) id += kAlphabet[(ms >> shift) & 31];
  for (size_t i = 0; i < 16; ++i) id += kAlphabet[random.bytes[random.used + i] & 31];
  random.used += 16;
  return id;
}

}  // namespace flux::controlplane::model
