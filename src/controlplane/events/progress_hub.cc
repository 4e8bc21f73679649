#include "controlplane/events/progress_hub.h"

#include <charconv>

namespace flux::controlplane::events {

// One job: its replay ring and its watchers, under one lock.
class JobChannel {
 public:
  explicit JobChannel(std::atomic<size_t>& subscriber_count) : subscriber_count_(subscriber_count) {}

  void attach_locked(const std::shared_ptr<Subscriber>& subscriber) {
    subscriber->slot_ = subscribers.size();
    subscriber->attached_ = true;
    subscribers.push_back(subscriber);
    subscriber_count_.fetch_add(1, std::memory_order_relaxed);
  }

  // O(1): the last watcher takes the leaving one's slot.
  void detach_locked(Subscriber& subscriber) {
    if (!subscriber.attached_) return;
    const size_t slot = subscriber.slot_;
    if (slot + 1 != subscribers.size()) {
      subscribers[slot] = std::move(subscribers.back());
      subscribers[slot]->slot_ = slot;
    }
    subscribers.pop_back();
    subscriber.attached_ = false;
    subscriber_count_.fetch_sub(1, std::memory_order_relaxed);
  }

  void detach_all_locked() {
    for (auto& subscriber : subscribers) subscriber->attached_ = false;
    subscriber_count_.fetch_sub(subscribers.size(), std::memory_order_relaxed);
    subscribers.clear();
  }

  std::mutex mutex;
  uint64_t last_id = 0;
  std::deque<Event> ring;
  std::vector<std::shared_ptr<Subscriber>> subscribers;

 private:
  std::atomic<size_t>& subscriber_count_;
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

// ---- Subscriber -------------------------------------------------------------

Subscriber::Subscriber(size_t capacity) : capacity_(capacity == 0 ? 1 : capacity) {}

bool Subscriber::drain(std::vector<Event>& out) {
  std::lock_guard lock(mutex_);
  for (auto& event : buffer_) out.push_back(std::move(event));
  buffer_.clear();
  return !overflowed_.load(std::memory_order_relaxed);
}

void Subscriber::set_notify(std::function<void()> notify) {
  std::lock_guard lock(mutex_);
  notify_ = notify ? std::make_shared<const std::function<void()>>(std::move(notify)) : nullptr;
}

Subscriber::Push Subscriber::push(const Event& event) {
  std::shared_ptr<const std::function<void()>> to_call;
  Push result = Push::kAdded;
  {
    std::lock_guard lock(mutex_);
    if (finished_.load(std::memory_order_relaxed)) return Push::kAdded;
    if (buffer_.size() >= capacity_) {
      overflowed_.store(true, std::memory_order_release);
      finished_.store(true, std::memory_order_release);
      result = Push::kOverflowed;
      to_call = notify_;
    } else {
      // Only the first event after a drain needs a wake-up; the consumer
      // takes everything that piled up meanwhile in one drain.
      if (buffer_.empty()) to_call = notify_;
      buffer_.push_back(event);
      if (event.terminal) finished_.store(true, std::memory_order_release);
    }
  }
  if (to_call) (*to_call)();
  return result;
}

void Subscriber::close() {
  std::shared_ptr<const std::function<void()>> to_call;
  {
    std::lock_guard lock(mutex_);
    if (finished_.load(std::memory_order_relaxed)) return;
    finished_.store(true, std::memory_order_release);
    to_call = notify_;
  }
  if (to_call) (*to_call)();
}

// ---- ProgressHub ------------------------------------------------------------

ProgressHub::ProgressHub(size_t replay_buffer, size_t subscriber_buffer)
    : replay_buffer_(replay_buffer == 0 ? 1 : replay_buffer),
      subscriber_buffer_(subscriber_buffer == 0 ? 1 : subscriber_buffer) {}

ProgressHub::~ProgressHub() {
  // Watchers outliving the hub must not wait for events that will never come.
  std::lock_guard map_lock(map_mutex_);
  for (auto& [job_id, channel] : channels_) {
    std::lock_guard lock(channel->mutex);
    for (auto& subscriber : channel->subscribers) subscriber->close();
    channel->detach_all_locked();
  }
}

std::shared_ptr<JobChannel> ProgressHub::channel(const std::string& job_id, bool create) const {
  std::lock_guard lock(map_mutex_);
  const auto it = channels_.find(job_id);
  if (it != channels_.end()) return it->second;
  if (!create) return nullptr;
  auto created = std::make_shared<JobChannel>(subscriber_count_);
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

  // Pushing under the job lock keeps every watcher's events in id order even
  // with several publishers of one job.
  for (size_t i = 0; i < job->subscribers.size();) {
    Subscriber& subscriber = *job->subscribers[i];
    if (subscriber.push(published) == Subscriber::Push::kOverflowed) {
      job->detach_locked(subscriber);  // the last one moves into slot i: visit it next
    } else {
      ++i;
    }
  }
  if (terminal) job->detach_all_locked();  // each one finishes once drained
  return id;
}

std::shared_ptr<Subscriber> ProgressHub::subscribe(const std::string& job_id, const nlohmann::json& current_state,
                                                   bool current_is_terminal, std::optional<uint64_t> last_event_id) {
  auto subscriber = std::make_shared<Subscriber>(subscriber_buffer_);
  subscriber->job_id_ = job_id;
  // A finished job the hub knows nothing about (forgotten, or finished before
  // a restart) gets its final state without leaving a channel behind.
  const auto job = channel(job_id, /*create=*/!current_is_terminal);
  if (!job) {
    subscriber->buffer_.push_back(
        Event{0, std::make_shared<const std::string>(format_sse_frame(0, current_state)), /*terminal=*/true});
    subscriber->finished_.store(true, std::memory_order_release);
    return subscriber;
  }
  subscriber->channel_ = job;

  std::lock_guard lock(job->mutex);
  bool terminal = false;
  {
    std::lock_guard buffer_lock(subscriber->mutex_);
    auto& buffer = subscriber->buffer_;
    const auto& ring = job->ring;
    const bool replayable = last_event_id.has_value() && !ring.empty() && *last_event_id + 1 >= ring.front().id &&
                            *last_event_id <= ring.back().id;
    if (replayable) {
      for (const Event& event : ring) {
        if (event.id > *last_event_id) buffer.push_back(event);
      }
      terminal = ring.back().terminal;
    } else if (!ring.empty()) {
      // The latest event is the job's state as of now: a publish that raced
      // with the caller's read of current_state is either this event or one
      // still to come, which this subscriber will receive.
      buffer.push_back(ring.back());
      terminal = ring.back().terminal;
    } else {
      buffer.push_back(Event{job->last_id,
                             std::make_shared<const std::string>(format_sse_frame(job->last_id, current_state)),
                             current_is_terminal});
      terminal = current_is_terminal;
    }
    if (terminal) subscriber->finished_.store(true, std::memory_order_release);
  }
  if (!terminal) job->attach_locked(subscriber);
  return subscriber;
}

void ProgressHub::unsubscribe(const std::shared_ptr<Subscriber>& subscriber) {
  if (!subscriber) return;
  if (const auto job = subscriber->channel_.lock()) {
    std::lock_guard lock(job->mutex);
    job->detach_locked(*subscriber);
  }
  subscriber->close();
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
  for (auto& subscriber : job->subscribers) subscriber->close();
  job->detach_all_locked();
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
