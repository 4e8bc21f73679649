#pragma once
// A scripted JobService for the watch loop and command tests.
#include <deque>
#include <string>
#include <vector>

#include "cli/job_service.h"
#include "shared/core/error.h"

namespace flux::cli::testing {

inline std::string event_json(const std::string& status, const std::string& phase, double progress,
                              const std::string& extra = "") {
  return R"({"job_id":"job_1","status":")" + status + R"(","phase":")" + phase + R"(","progress":)" +
         std::to_string(progress) + extra + "}";
}

class FakeJobService : public JobService {
 public:
  struct Connection {
    std::vector<SseEvent> events;
    absl::StatusOr<StreamEnd> end = StreamEnd::kClosed;
  };

  // Scripted answers, consumed in order.
  std::deque<Connection> connections;
  std::deque<absl::StatusOr<nlohmann::json>> documents;  // get_job
  absl::StatusOr<nlohmann::json> submit_answer = nlohmann::json{{"job_id", "job_1"}, {"status", "accepted"}};
  absl::StatusOr<nlohmann::json> list_answer = nlohmann::json{{"jobs", nlohmann::json::array()}};
  absl::StatusOr<nlohmann::json> cancel_answer = nlohmann::json::object();
  absl::StatusOr<nlohmann::json> workers_answer = nlohmann::json{{"workers", nlohmann::json::array()}};
  absl::StatusOr<nlohmann::json> presets_answer = nlohmann::json{{"presets", nlohmann::json::array()}};

  // What was asked.
  std::vector<std::string> last_event_ids;  // per stream connection
  std::vector<nlohmann::json> submitted;
  std::vector<std::string> idempotency_keys;
  int get_calls = 0;
  int workers_calls = 0;

  static SseEvent event(const std::string& id, const std::string& data) {
    SseEvent e;
    e.id = id;
    e.data = data;
    return e;
  }

  absl::StatusOr<nlohmann::json> submit(const nlohmann::json& request, const std::string& key) override {
    submitted.push_back(request);
    idempotency_keys.push_back(key);
    return submit_answer;
  }
  absl::StatusOr<nlohmann::json> get_job(const std::string&) override {
    ++get_calls;
    if (documents.empty()) return not_found("job_not_found", "no such job");
    auto d = documents.front();
    documents.pop_front();
    return d;
  }
  absl::StatusOr<nlohmann::json> list_jobs(const ListQuery&) override { return list_answer; }
  absl::StatusOr<nlohmann::json> cancel_job(const std::string&) override { return cancel_answer; }
  absl::StatusOr<nlohmann::json> workers() override {
    ++workers_calls;
    return workers_answer;
  }
  absl::StatusOr<nlohmann::json> presets() override { return presets_answer; }

  absl::StatusOr<StreamEnd> stream_job(const std::string&, const std::string& last_event_id,
                                       const std::function<bool(const SseEvent&)>& on_event) override {
    last_event_ids.push_back(last_event_id);
    if (connections.empty()) return unavailable("connection_failed", "no more scripted connections");
    Connection c = connections.front();
    connections.pop_front();
    for (const auto& e : c.events) {
      if (!on_event(e)) return StreamEnd::kStopped;
    }
    return c.end;
  }
};

}  // namespace flux::cli::testing
