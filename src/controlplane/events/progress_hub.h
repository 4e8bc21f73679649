#pragma once
// Fan-out of job progress events to SSE watchers (SPEC §3.3).
//
// Each published event is formatted once into its SSE frame
// ("id: N\ndata: <one-line JSON>\n\n") and that one immutable string is shared
// by every watcher. A job's watchers are kept in groups (SubscriberGroup) of
// up to group_size: publishing appends the event to each group and wakes each
// group once, so its cost grows with the number of groups, not of watchers;
// a group's consumer (the SSE streams of one strand) then takes the event
// for each member. A group keeps an event until every member has taken it,
// and at most subscriber_buffer events: a member further behind is dropped
// (overflowed), and the publisher never waits for anybody.
//
// Locking: a map lock held only to find a job's channel, then one lock per job
// (publish, subscribe, unsubscribe of that job) and one per group (its events
// and its members' positions). Jobs never contend with each other.
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
class Subscriber;

// Watchers of one job whose events are taken together: one wake-up per event
// for the whole group. Thread-safe.
class SubscriberGroup {
 public:
  explicit SubscriberGroup(size_t capacity);
  SubscriberGroup(const SubscriberGroup&) = delete;
  SubscriberGroup& operator=(const SubscriberGroup&) = delete;

  // `notify` is called when a member may have something new to drain: for
  // every event published to the job, when a member overflows, and when the
  // job is forgotten. It runs on the publisher's thread (with the job locked)
  // and must be cheap and never block (post to an executor, and coalesce: it
  // comes once per event, not once per member). Set it before draining; the
  // owner drains once after setting it, since events may already be waiting.
  // An empty function stops notifications.
  void set_notify(std::function<void()> notify);

 private:
  friend class ProgressHub;
  friend class JobChannel;
  friend class Subscriber;

  struct Entry {
    Event event;
    size_t wanted_by;  // claiming subscribers that have not taken it yet
  };

  // All below: with mutex_ held.
  void attach_locked(const std::shared_ptr<Subscriber>& subscriber);
  void detach_locked(Subscriber& subscriber);  // O(1); keeps its claim
  void release_claim_locked(Subscriber& subscriber);
  void drop_front_locked();

  const size_t capacity_;
  mutable std::mutex mutex_;
  // Contiguous ids: every event of the job since the oldest one a claiming
  // subscriber has not taken yet.
  std::deque<Entry> events_;
  // Members that receive the job's next events (the channel lists the group
  // while this is not empty).
  std::vector<std::shared_ptr<Subscriber>> members_;
  std::shared_ptr<const std::function<void()>> notify_;
  size_t slot_ = 0;      // index in the channel's list of groups; guarded by the job lock
  bool listed_ = false;  // in the channel's list; guarded by the job lock
};

// One watcher (an SSE client). Thread-safe; its events come from its group.
class Subscriber {
 public:
  Subscriber() = default;
  Subscriber(const Subscriber&) = delete;
  Subscriber& operator=(const Subscriber&) = delete;

  // Appends the events not taken yet to `out` (in id order). Returns false
  // once the subscriber was dropped for overflowing: the events handed out
  // are still contiguous, but later ones are missing for good.
  bool drain(std::vector<Event>& out);

  bool overflowed() const { return overflowed_.load(std::memory_order_acquire); }

  // True once no event will ever be added: the terminal event was published
  // (it may not be drained yet), the subscriber overflowed, left, or the job
  // was forgotten. A stream ends when this is true and a drain returned
  // nothing more.
  bool finished() const { return finished_.load(std::memory_order_acquire); }

  const std::string& job_id() const { return job_id_; }

  // Never null. Watchers of one job share it (up to the hub's group_size);
  // one that was finished on subscribing has a group of its own.
  const std::shared_ptr<SubscriberGroup>& group() const { return group_; }

 private:
  friend class ProgressHub;
  friend class JobChannel;
  friend class SubscriberGroup;

  // What a drain reads comes first (one cache line).
  std::shared_ptr<SubscriberGroup> group_;
  std::atomic<bool> overflowed_{false};
  std::atomic<bool> finished_{false};
  // Guarded by the group's mutex.
  bool claims_ = false;         // counted in wanted_by of the group's events from next_id_
  bool member_ = false;         // in the group's members_
  uint64_t next_id_ = 0;        // the next live event it takes from the group
  std::vector<Event> backlog_;  // what subscribe() gave it (state or replay)
  size_t slot_ = 0;             // index in members_

  std::string job_id_;
  std::weak_ptr<JobChannel> channel_;
};

class ProgressHub {
 public:
  // replay_buffer: events kept per job for Last-Event-ID; subscriber_buffer:
  // events a watcher may fall behind before it is dropped; group_size:
  // watchers per SubscriberGroup.
  explicit ProgressHub(size_t replay_buffer = 256, size_t subscriber_buffer = 1024, size_t group_size = 128);
  ~ProgressHub();
  ProgressHub(const ProgressHub&) = delete;
  ProgressHub& operator=(const ProgressHub&) = delete;

  // Assigns the job's next id (1, 2, ...), keeps the event in the job's replay
  // ring and hands it to every group of watchers (a watcher more than
  // subscriber_buffer events behind is dropped). After a terminal event the
  // job's watchers are detached (they finish once drained). `event` should hold the job's full state
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

  // Detaches a watcher (its client went away): it gets nothing more, and
  // its group no longer keeps events for it. Idempotent.
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
  const size_t group_size_;
  mutable std::mutex map_mutex_;
  mutable std::unordered_map<std::string, std::shared_ptr<JobChannel>> channels_;
  mutable std::atomic<size_t> subscriber_count_{0};  // mutable: channels created from const lookups share it
};

}  // namespace flux::controlplane::events
