#pragma once
// Fan-out of job progress events to SSE watchers (SPEC §3.3).
//
// Each published event is formatted once into its SSE frame
// ("id: N\ndata: <one-line JSON>\n\n") and that one immutable string is shared
// by every watcher, so publishing costs one JSON dump plus a pointer push per
// watcher. Watchers have bounded buffers: one that falls behind is marked
// overflowed and detached, and the publisher never waits for anybody.
//
// Locking: a map lock held only to find a job's channel, then one lock per job
// (publish, subscribe, unsubscribe of that job) and one per watcher (its
// buffer). Jobs never contend with each other.
#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include <nlohmann/json.hpp>

namespace flux::controlplane::events {

struct Event {
  uint64_t id = 0;
  // The complete SSE frame, shared by every watcher of the event.
  std::shared_ptr<const std::string> frame;
  bool terminal = false;

  // The JSON of the `data:` line.
  std::string_view data() const;
};

// "id: <id>\ndata: <json dumped on one line>\n\n". Invalid UTF-8 in strings is
// replaced rather than thrown on.
std::string format_sse_frame(uint64_t id, const nlohmann::json& data);

// A Last-Event-ID header value: decimal digits only, else nullopt.
std::optional<uint64_t> parse_last_event_id(std::string_view header);

class JobChannel;

// One watcher (an SSE client). Thread-safe.
class Subscriber {
 public:
  explicit Subscriber(size_t capacity);
  Subscriber(const Subscriber&) = delete;
  Subscriber& operator=(const Subscriber&) = delete;

  // Appends the buffered events to `out` (in id order) and empties the buffer.
  // Returns false once the subscriber was dropped for overflowing: the events
  // handed out are still contiguous, but later ones are missing for good.
  bool drain(std::vector<Event>& out);

  // `notify` is called when the buffer goes from empty to non-empty, when the
  // subscriber overflows, and when it is closed by ProgressHub::forget. It runs
  // on the publisher's thread and must be cheap and never block (post to an
  // executor). Set it before the first drain(); the owner drains once after
  // setting it, since events may already be waiting. An empty function stops
  // notifications.
  void set_notify(std::function<void()> notify);

  bool overflowed() const { return overflowed_.load(std::memory_order_acquire); }

  // True once no event will ever be added: the terminal event was pushed (it
  // may still be in the buffer), the subscriber overflowed, or the job was
  // forgotten. A stream ends when this is true and the buffer is drained.
  bool finished() const { return finished_.load(std::memory_order_acquire); }

  const std::string& job_id() const { return job_id_; }

 private:
  friend class ProgressHub;
  friend class JobChannel;

  enum class Push { kAdded, kOverflowed };
  // Called with the job's channel lock held.
  Push push(const Event& event);
  // Marks the subscriber finished without a terminal event.
  void close();
  void notify();

  const size_t capacity_;
  std::string job_id_;
  std::weak_ptr<JobChannel> channel_;
  size_t slot_ = 0;        // index in the channel's list; guarded by the channel lock
  bool attached_ = false;  // in the channel's list; guarded by the channel lock

  mutable std::mutex mutex_;
  std::deque<Event> buffer_;
  std::shared_ptr<const std::function<void()>> notify_;
  std::atomic<bool> overflowed_{false};
  std::atomic<bool> finished_{false};
};

class ProgressHub {
 public:
  // replay_buffer: events kept per job for Last-Event-ID; subscriber_buffer:
  // events a watcher may fall behind before it is dropped.
  explicit ProgressHub(size_t replay_buffer = 256, size_t subscriber_buffer = 1024);
  ~ProgressHub();
  ProgressHub(const ProgressHub&) = delete;
  ProgressHub& operator=(const ProgressHub&) = delete;

  // Assigns the job's next id (1, 2, ...), keeps the event in the job's replay
  // ring and hands it to every watcher; a watcher whose buffer is full is
  // dropped instead. After a terminal event the job's watchers are detached
  // (they finish once drained). `event` should hold the job's full state
  // (SPEC §3.3), since a new watcher starts from the latest one. Never blocks
  // on a watcher.
  uint64_t publish(const std::string& job_id, const nlohmann::json& event, bool terminal);

  // A new watcher of job_id. It first gets:
  //  - with last_event_id, when the replay ring still holds every event after
  //    it: exactly those missed events (none if it is up to date);
  //  - otherwise the job's current state as one event: the latest published
  //    event when there is one (it is never older than what a caller could
  //    have read before calling), else `current_state` with id 0.
  // then every event published later. If the job is terminal (the latest event
  // or, without events, current_is_terminal), the subscriber is finished: its
  // stream sends what it got and closes. A finished job whose client is up to
  // date (Last-Event-ID >= the terminal event's id) gets no event at all;
  // answer such a request with 204 so an EventSource stops reconnecting
  // (see is_up_to_date_after_terminal).
  std::shared_ptr<Subscriber> subscribe(const std::string& job_id, const nlohmann::json& current_state,
                                        bool current_is_terminal, std::optional<uint64_t> last_event_id);

  // Detaches a watcher (its client went away). Idempotent.
  void unsubscribe(const std::shared_ptr<Subscriber>& subscriber);

  // Drops the job's replay ring (call a while after its terminal event).
  // Watchers still attached are finished and notified.
  void forget(const std::string& job_id);

  // True when the job's terminal event has been published, is still in the
  // ring, and last_event_id is at or after it.
  bool is_up_to_date_after_terminal(const std::string& job_id, uint64_t last_event_id) const;

  // The id of the job's latest event, 0 when none is known.
  uint64_t last_event_id(const std::string& job_id) const;

  // Watchers attached across all jobs.
  size_t subscriber_count() const { return subscriber_count_.load(std::memory_order_relaxed); }
  // Jobs with a channel (a ring or watchers).
  size_t job_count() const;

 private:
  std::shared_ptr<JobChannel> channel(const std::string& job_id, bool create) const;

  const size_t replay_buffer_;
  const size_t subscriber_buffer_;
  mutable std::mutex map_mutex_;
  mutable std::unordered_map<std::string, std::shared_ptr<JobChannel>> channels_;
  mutable std::atomic<size_t> subscriber_count_{0};  // mutable: channels created from const lookups share it
};

}  // namespace flux::controlplane::events
