#include "controlplane/events/progress_hub.h"

#include <charconv>

namespace flux::controlplane::events {

// One job: its replay ring and its groups of watchers, under one lock.
class JobChannel {
 public:
  JobChannel(std::atomic<size_t>& subscriber_count, size_t group_size, size_t group_capacity)
      : subscriber_count_(subscriber_count), group_size_(group_size), group_capacity_(group_capacity) {}

  // The last group with room, or a new one.
  std::shared_ptr<SubscriberGroup> group_with_room_locked() {
    for (auto it = groups.rbegin(); it != groups.rend(); ++it) {
      std::lock_guard lock((*it)->mutex_);
      if ((*it)->members_.size() < group_size_) return *it;
    }
    auto group = std::make_shared<SubscriberGroup>(group_capacity_);
    group->slot_ = groups.size();
    group->listed_ = true;
    groups.push_back(group);
    return group;
  }

  // O(1): the last group takes the leaving one's slot. The list may hold the
  // last reference to `group`: it is not touched once the list changed.
  void unlist_locked(SubscriberGroup& group) {
    if (!group.listed_) return;
    group.listed_ = false;
    const size_t slot = group.slot_;
    if (slot + 1 != groups.size()) {
      groups[slot] = std::move(groups.back());
      groups[slot]->slot_ = slot;
    }
    groups.pop_back();
  }

  // The job's watchers get nothing more (they finish once drained).
  void finish_all_locked() {
    for (auto& group : groups) {
      std::lock_guard lock(group->mutex_);
      for (auto& member : group->members_) {
        member->finished_.store(true, std::memory_order_release);
        member->member_ = false;
      }
      subscriber_count_.fetch_sub(group->members_.size(), std::memory_order_relaxed);
      group->members_.clear();
      group->listed_ = false;
    }
    groups.clear();
  }

  std::mutex mutex;
  uint64_t last_id = 0;
  std::deque<Event> ring;
  std::vector<std::shared_ptr<SubscriberGroup>> groups;  // those with members
  std::atomic<size_t>& subscriber_count_;

 private:
  const size_t group_size_;
  const size_t group_capacity_;
};

std::string_view Event::data() const {
  if (!frame) return {};
  const std::string_view text(*frame);
  constexpr std::string_view kData = "\ndata: ";
  const size_t start = text.find(kData);
  if (start == std::string_view::npos || text.size() < start + kData.size() + 2) return {};
  return text.substr(start + kData.size(), text.size() - start - kData.size() - 2);
}

namespace {

std::string dump_one_line(const nlohmann::json& data) {
  // dump() without indentation escapes every newline inside strings, so the
  // result is a single line as SSE requires.
  return data.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

std::string frame_from_dump(uint64_t id, std::string_view json) {
  std::string frame;
  frame.reserve(json.size() + 32);
  frame += "id: ";
  frame += std::to_string(id);
  frame += "\ndata: ";
  frame += json;
  frame += "\n\n";
  return frame;
}

}  // namespace

std::string format_sse_frame(uint64_t id, const nlohmann::json& data) {
  return frame_from_dump(id, dump_one_line(data));
}

std::optional<uint64_t> parse_last_event_id(std::string_view header) {
  if (header.empty() || header.size() > 20) return std::nullopt;
  uint64_t value = 0;
  const auto [end, ec] = std::from_chars(header.data(), header.data() + header.size(), value);
  if (ec != std::errc() || end != header.data() + header.size()) return std::nullopt;
  return value;
}

// ---- SubscriberGroup -------------------------------------------------------

SubscriberGroup::SubscriberGroup(size_t capacity) : capacity_(capacity == 0 ? 1 : capacity) {}

void SubscriberGroup::set_notify(std::function<void()> notify) {
  std::lock_guard lock(mutex_);
  notify_ = notify ? std::make_shared<const std::function<void()>>(std::move(notify)) : nullptr;
}

void SubscriberGroup::attach_locked(const std::shared_ptr<Subscriber>& subscriber) {
  subscriber->slot_ = members_.size();
  subscriber->member_ = true;
  subscriber->claims_ = true;
  members_.push_back(subscriber);
}

void SubscriberGroup::detach_locked(Subscriber& subscriber) {
  if (!subscriber.member_) return;
  const size_t slot = subscriber.slot_;
  if (slot + 1 != members_.size()) {
    members_[slot] = std::move(members_.back());
    members_[slot]->slot_ = slot;
  }
  members_.pop_back();
  subscriber.member_ = false;
}

void SubscriberGroup::release_claim_locked(Subscriber& subscriber) {
  if (!subscriber.claims_) return;
  subscriber.claims_ = false;
  if (!events_.empty() && subscriber.next_id_ <= events_.back().event.id) {
    const size_t first = subscriber.next_id_ > events_.front().event.id
                             ? static_cast<size_t>(subscriber.next_id_ - events_.front().event.id)
                             : 0;
    for (size_t i = first; i < events_.size(); ++i) --events_[i].wanted_by;
  }
  while (!events_.empty() && events_.front().wanted_by == 0) events_.pop_front();
}

void SubscriberGroup::drop_front_locked() {
  // Whoever still wants the oldest event is more than capacity_ behind.
  const uint64_t oldest = events_.front().event.id;
  for (size_t i = 0; i < members_.size();) {
    Subscriber& member = *members_[i];
    if (member.claims_ && member.next_id_ <= oldest) {
      member.overflowed_.store(true, std::memory_order_release);
      member.finished_.store(true, std::memory_order_release);
      release_claim_locked(member);
      detach_locked(member);  // the last one moves into slot i: visit it next
    } else {
      ++i;
    }
  }
  // Only members claim events this new, so nobody wants the oldest now.
  while (!events_.empty() && events_.front().wanted_by == 0) events_.pop_front();
}

// ---- Subscriber -------------------------------------------------------------

bool Subscriber::drain(std::vector<Event>& out) {
  std::lock_guard lock(group_->mutex_);
  if (!backlog_.empty()) {
    for (auto& event : backlog_) out.push_back(std::move(event));
    backlog_.clear();
  }
  auto& events = group_->events_;
  if (claims_ && !events.empty() && next_id_ <= events.back().event.id) {
    if (next_id_ < events.front().event.id) {
      // Never expected (the group keeps what claimers have not taken), but a
      // gap must not pass for a whole stream.
      overflowed_.store(true, std::memory_order_release);
      finished_.store(true, std::memory_order_release);
      return false;
    }
    const size_t first = static_cast<size_t>(next_id_ - events.front().event.id);
    for (size_t i = first; i < events.size(); ++i) {
      out.push_back(events[i].event);
      --events[i].wanted_by;
    }
    next_id_ = events.back().event.id + 1;
    while (!events.empty() && events.front().wanted_by == 0) events.pop_front();
  }
  return !overflowed_.load(std::memory_order_relaxed);
}

// ---- ProgressHub ------------------------------------------------------------

ProgressHub::ProgressHub(size_t replay_buffer, size_t subscriber_buffer, size_t group_size)
    : replay_buffer_(replay_buffer == 0 ? 1 : replay_buffer),
      subscriber_buffer_(subscriber_buffer == 0 ? 1 : subscriber_buffer),
      group_size_(group_size == 0 ? 1 : group_size) {}

ProgressHub::~ProgressHub() {
  // Watchers outliving the hub must not wait for events that will never come.
  std::lock_guard map_lock(map_mutex_);
  for (auto& [job_id, channel] : channels_) {
    std::lock_guard lock(channel->mutex);
    std::vector<std::shared_ptr<const std::function<void()>>> to_notify;
    for (auto& group : channel->groups) {
      std::lock_guard group_lock(group->mutex_);
      if (group->notify_) to_notify.push_back(group->notify_);
    }
    channel->finish_all_locked();
    for (const auto& notify : to_notify) (*notify)();
  }
}

std::shared_ptr<JobChannel> ProgressHub::channel(const std::string& job_id, bool create) const {
  std::lock_guard lock(map_mutex_);
  const auto it = channels_.find(job_id);
  if (it != channels_.end()) return it->second;
  if (!create) return nullptr;
  auto created = std::make_shared<JobChannel>(subscriber_count_, group_size_, subscriber_buffer_);
  channels_.emplace(job_id, created);
  return created;
}

uint64_t ProgressHub::publish(const std::string& job_id, const nlohmann::json& event, bool terminal) {
  // The expensive part, once per event and outside every lock.
  const std::string json = dump_one_line(event);
  const auto job = channel(job_id, /*create=*/true);

  std::lock_guard lock(job->mutex);
  const uint64_t id = ++job->last_id;
  const Event published{id, std::make_shared<const std::string>(frame_from_dump(id, json)), terminal};
  job->ring.push_back(published);
  while (job->ring.size() > replay_buffer_) job->ring.pop_front();

  // Appending under the job lock keeps every group's events in id order even
  // with several publishers of one job.
  for (size_t i = 0; i < job->groups.size();) {
    SubscriberGroup& group = *job->groups[i];
    std::shared_ptr<const std::function<void()>> to_call;
    bool emptied = false;
    {
      std::lock_guard group_lock(group.mutex_);
      // Members are the only claimers of new events (a subscriber stops being
      // one only when it drops its claim, or after the terminal event).
      group.events_.push_back(SubscriberGroup::Entry{published, group.members_.size()});
      if (group.events_.size() > group.capacity_) {
        const size_t before = group.members_.size();
        group.drop_front_locked();
        job->subscriber_count_.fetch_sub(before - group.members_.size(), std::memory_order_relaxed);
      }
      if (terminal) {
        for (auto& member : group.members_) {
          member->finished_.store(true, std::memory_order_release);
          member->member_ = false;  // keeps its claim: it drains the rest
        }
        job->subscriber_count_.fetch_sub(group.members_.size(), std::memory_order_relaxed);
        group.members_.clear();
      }
      emptied = group.members_.empty();
      to_call = group.notify_;
    }
    if (to_call) (*to_call)();
    if (emptied) {
      job->unlist_locked(group);  // the last one moves into slot i: visit it next
    } else {
      ++i;
    }
  }
  return id;
}

std::shared_ptr<Subscriber> ProgressHub::subscribe(const std::string& job_id, const nlohmann::json& current_state,
                                                   bool current_is_terminal, std::optional<uint64_t> last_event_id) {
  auto subscriber = std::make_shared<Subscriber>();
  subscriber->job_id_ = job_id;
  // A finished job the hub knows nothing about (forgotten, or finished before
  // a restart) gets its final state without leaving a channel behind.
  const auto job = channel(job_id, /*create=*/!current_is_terminal);
  if (!job) {
    subscriber->group_ = std::make_shared<SubscriberGroup>(1);
    subscriber->backlog_.push_back(
        Event{0, std::make_shared<const std::string>(format_sse_frame(0, current_state)), /*terminal=*/true});
    subscriber->finished_.store(true, std::memory_order_release);
    return subscriber;
  }
  subscriber->channel_ = job;

  std::lock_guard lock(job->mutex);
  std::vector<Event> backlog;
  bool terminal = false;
  const auto& ring = job->ring;
  const bool replayable = last_event_id.has_value() && !ring.empty() && *last_event_id + 1 >= ring.front().id &&
                          *last_event_id <= ring.back().id;
  if (replayable) {
    for (const Event& event : ring) {
      if (event.id > *last_event_id) backlog.push_back(event);
    }
    terminal = ring.back().terminal;
  } else if (!ring.empty()) {
    // The latest event is the job's state as of now: a publish that raced
    // with the caller's read of current_state is either this event or one
    // still to come, which this subscriber will receive.
    backlog.push_back(ring.back());
    terminal = ring.back().terminal;
  } else {
    backlog.push_back(Event{job->last_id,
                            std::make_shared<const std::string>(format_sse_frame(job->last_id, current_state)),
                            current_is_terminal});
    terminal = current_is_terminal;
  }
  if (terminal) {
    subscriber->group_ = std::make_shared<SubscriberGroup>(1);
    subscriber->backlog_ = std::move(backlog);
    subscriber->finished_.store(true, std::memory_order_release);
    return subscriber;
  }
  subscriber->group_ = job->group_with_room_locked();
  {
    std::lock_guard group_lock(subscriber->group_->mutex_);
    subscriber->backlog_ = std::move(backlog);
    subscriber->next_id_ = job->last_id + 1;
    subscriber->group_->attach_locked(subscriber);
  }
  job->subscriber_count_.fetch_add(1, std::memory_order_relaxed);
  return subscriber;
}

void ProgressHub::unsubscribe(const std::shared_ptr<Subscriber>& subscriber) {
  if (!subscriber) return;
  SubscriberGroup& group = *subscriber->group_;
  const auto job = subscriber->channel_.lock();
  std::unique_lock<std::mutex> job_lock;
  if (job) job_lock = std::unique_lock(job->mutex);
  bool emptied = false;
  {
    std::lock_guard group_lock(group.mutex_);
    if (subscriber->member_) {
      group.detach_locked(*subscriber);
      subscriber_count_.fetch_sub(1, std::memory_order_relaxed);
      emptied = group.members_.empty();
    }
    group.release_claim_locked(*subscriber);
    subscriber->finished_.store(true, std::memory_order_release);
  }
  if (job && emptied) job->unlist_locked(group);
}

void ProgressHub::forget(const std::string& job_id) {
  std::shared_ptr<JobChannel> job;
  {
    std::lock_guard lock(map_mutex_);
    const auto it = channels_.find(job_id);
    if (it == channels_.end()) return;
    job = std::move(it->second);
    channels_.erase(it);
  }
  std::lock_guard lock(job->mutex);
  std::vector<std::shared_ptr<const std::function<void()>>> to_notify;
  for (auto& group : job->groups) {
    std::lock_guard group_lock(group->mutex_);
    if (group->notify_) to_notify.push_back(group->notify_);
  }
  job->finish_all_locked();
  for (const auto& notify : to_notify) (*notify)();
}
bool ProgressHub::is_up_to_date_after_terminal(const std::string& job_id, uint64_t last_event_id) const {
  const auto job = channel(job_id, /*create=*/false);
  if (!job) return false;
  std::lock_guard lock(job->mutex);
  return !job->ring.empty() && job->ring.back().terminal && last_event_id >= job->ring.back().id;
}

uint64_t ProgressHub::last_event_id(const std::string& job_id) const {
  const auto job = channel(job_id, /*create=*/false);
  if (!job) return 0;
  std::lock_guard lock(job->mutex);
  return job->last_id;
}

size_t ProgressHub::job_count() const {
  std::lock_guard lock(map_mutex_);
  return channels_.size();
}

}  // namespace flux::controlplane::events
