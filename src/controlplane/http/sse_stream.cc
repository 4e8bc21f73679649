// SSE streaming (SPEC §3.3). One of the two translation units with Asio and
// Beast (with server.cc).
//
// Built for many watchers of one job. Streams are served in the hub's groups
// of watchers (SseGroup, one strand each): a new event costs one post per
// group, not per stream, and the group's walk does, per member, one drain
// of its subscriber and one non-blocking send() of the shared frame. The
// groups of a job are spread over the io threads. No timer is touched per
// event: a single ticker per stream sends keep-alive comments and cuts a
// write that has been stuck for write_timeout. While a socket is full its
// subscriber is not drained and the walk skips it at no cost to the others;
// once it is subscriber_buffer events behind the hub drops it, and the next
// walk closes the stream.
#include "controlplane/http/server_internal.h"

#include <sys/socket.h>
#include <sys/uio.h>

#include <boost/asio/bind_executor.hpp>
#include <cerrno>

namespace flux::controlplane::http {
namespace {

using Clock = std::chrono::steady_clock;

const std::shared_ptr<const std::string>& stream_head() {
  static const auto head = std::make_shared<const std::string>(
      "HTTP/1.1 200 OK\r\n"
      "Content-Type: text/event-stream\r\n"
      "Cache-Control: no-cache\r\n"
      "X-Accel-Buffering: no\r\n"
      "Connection: close\r\n"
      "\r\n");
  return head;
}

const std::shared_ptr<const std::string>& keep_alive_comment() {
  static const auto comment = std::make_shared<const std::string>(": keep-alive\n\n");
  return comment;
}

// Bounds one send() call's iovec.
constexpr size_t kMaxFramesPerSend = 64;

// What one sendmsg() did: bytes taken, or the socket is full, or it failed.
struct SendResult {
  size_t sent = 0;
  bool full = false;
  bool failed = false;
};

// One non-blocking sendmsg() of frames[0..count) (at most kMaxFramesPerSend),
// skipping the first `offset` bytes of the first.
template <class FrameAt>
SendResult send_frames(int fd, size_t count, size_t offset, FrameAt frame_at) {
  iovec iov[kMaxFramesPerSend];
  const size_t n = std::min(count, kMaxFramesPerSend);
  for (size_t i = 0; i < n; ++i) {
    const std::string& frame = frame_at(i);
    const size_t skip = i == 0 ? offset : 0;
    iov[i].iov_base = const_cast<char*>(frame.data() + skip);
    iov[i].iov_len = frame.size() - skip;
  }
  msghdr message{};
  message.msg_iov = iov;
  message.msg_iovlen = n;
  for (;;) {
    // One frame (the usual case) spares the kernel the iovec import.
    const ssize_t sent = n == 1 ? ::send(fd, iov[0].iov_base, iov[0].iov_len, MSG_NOSIGNAL | MSG_DONTWAIT)
                                : ::sendmsg(fd, &message, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (sent >= 0) return SendResult{static_cast<size_t>(sent), false, false};
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) return SendResult{0, true, false};
    return SendResult{0, false, true};
  }
}

// Drain target reused by every stream walked on this thread.
std::vector<events::Event>& scratch_batch() {
  thread_local std::vector<events::Event> batch;
  return batch;
}

// Set while a walk writes to its members: streams that are done (terminal
// event sent) are closed in a handler queued behind the walks of the other
// groups, so that closing (FIN, unsubscribe), which costs about as much as a
// write, does not delay the terminal event for the rest of the watchers.
thread_local std::vector<std::shared_ptr<Connection>>* tl_walk_ending = nullptr;

void walk(SseGroup& group);

// Safe from any thread (the hub's publisher included): at most one walk is
// waiting per group, however many events arrive meanwhile.
void schedule_walk(PostGate& gate, const std::shared_ptr<SseGroup>& group) {
  if (group->walk_posted.exchange(true, std::memory_order_acq_rel)) return;
  gate.post_on(group->strand, [group] { walk(*group); });
}

std::shared_ptr<SseGroup> join_group(HttpServer::Core& core, const events::Subscriber& subscriber) {
  SseGroups& groups = *core.sse_groups;
  std::lock_guard lock(groups.mutex);
  std::shared_ptr<SseGroup>& group = groups.by_source[subscriber.group().get()];
  if (!group) {
    group = std::make_shared<SseGroup>(core.io, subscriber.group());
    group->source->set_notify([gate = core.gate, weak = std::weak_ptr<SseGroup>(group)] {
      if (auto alive = weak.lock()) schedule_walk(*gate, alive);
    });
  }
  ++group->joined;
  return group;
}

void leave_group(SseGroups& groups, const std::shared_ptr<SseGroup>& group) {
  std::lock_guard lock(groups.mutex);
  if (--group->joined > 0) return;
  const auto it = groups.by_source.find(group->source.get());
  if (it == groups.by_source.end() || it->second != group) return;
  groups.by_source.erase(it);
  group->source->set_notify({});
}

// On the group's strand: gives every member the chance to drain and send.
// Members that closed are pruned here and only here, so that nothing below
// (a member closing) changes the list while it is walked; a closing stream
// schedules a walk, so none stays long.
void walk(SseGroup& group) {
  // Cleared before draining: news arriving after a member's drain schedules
  // the next walk.
  group.walk_posted.store(false, std::memory_order_release);
  auto& members = group.members;
  std::vector<std::shared_ptr<Connection>> ending;
  tl_walk_ending = &ending;
  for (size_t i = 0; i < members.size(); ++i) {
    // The next members' state is cold: fetch it while this one's send runs.
    if (i + 2 < members.size()) __builtin_prefetch(members[i + 2].stream);
    if (i + 1 < members.size()) __builtin_prefetch(members[i + 1].stream->sse.subscriber.get());
    if (!members[i].stream->closed) members[i].connection->pump_stream();
  }
  tl_walk_ending = nullptr;
  if (!ending.empty()) {
    asio::post(group.strand, [ending = std::move(ending)] {
      for (const auto& connection : ending) connection->close_stream();  // each schedules the pruning walk
    });
  }
  for (size_t i = 0; i < members.size();) {
    if (members[i].stream->closed) {
      members[i] = std::move(members.back());
      members.pop_back();
    } else {
      ++i;
    }
  }
}

}  // namespace

void Connection::start_stream(SseStream sse_in, std::string_view method, std::string_view route,
                              std::chrono::steady_clock::time_point started) {
  phase = Phase::kStreaming;
  auto group = join_group(core, *sse_in.subscriber);
  sse = std::make_unique<Stream>(std::move(sse_in), core.sse_groups, std::move(group));
  core.open_streams.fetch_add(1, std::memory_order_relaxed);
  buffer.clear();
  buffer.shrink_to_fit();  // an idle stream should not keep the request buffer

  beast::error_code ec;
  tcp::socket& socket = stream.socket();
  socket.non_blocking(true, ec);
  sse->fd = socket.native_handle();
  if (core.options.sse_send_buffer_bytes > 0) {
    socket.set_option(asio::socket_base::send_buffer_size(core.options.sse_send_buffer_bytes), ec);
  }
  sse->outbox.push_back(stream_head());
  core.report(method, route, 200, started);
  // From here on the stream lives on its group's strand.
  asio::post(sse->group->strand, [self = shared_from_this()] { self->begin_stream(); });
  if (stopping) close_stream();  // runs after begin_stream
}

void Connection::begin_stream() {
  Stream& s = *sse;
  if (s.closed) return;
  s.group->members.push_back(SseGroup::Member{shared_from_this(), &s});
  watch_peer();
  arm_stream_ticker();
  pump_stream();  // the head and whatever the subscriber already holds
}

void Connection::pump_stream() {
  Stream& s = *sse;
  events::Subscriber& subscriber = *s.sse.subscriber;
  while (!s.closed) {
    if (subscriber.overflowed()) return close_stream();  // dropped for falling behind
    if (s.waiting_writable) return;
    if (!s.outbox.empty()) {
      flush_stream();
      continue;
    }
    if (s.close_when_flushed) return end_stream();
    // Once finished, this drain gets everything there will ever be.
    const bool finished = subscriber.finished();
    std::vector<events::Event>& batch = scratch_batch();
    batch.clear();
    if (!subscriber.drain(batch)) return close_stream();
    for (const auto& event : batch) s.close_when_flushed = s.close_when_flushed || event.terminal;
    s.close_when_flushed = s.close_when_flushed || finished;
    if (batch.empty()) {
      if (s.close_when_flushed) end_stream();
      return;  // until the next walk
    }
    send_batch(batch);
  }
}

void Connection::end_stream() {
  if (tl_walk_ending != nullptr) return tl_walk_ending->push_back(shared_from_this());
  close_stream();
}

// The usual case, a stream that is up to date: the new frames go straight
// from the drain to the socket, and only what it does not take is queued.
void Connection::send_batch(std::vector<events::Event>& batch) {
  Stream& s = *sse;
  const SendResult result =
      send_frames(s.fd, batch.size(), 0, [&](size_t i) -> const std::string& { return *batch[i].frame; });
  if (result.failed) return close_stream();
  size_t sent = result.sent;
  for (auto& event : batch) {
    const size_t size = event.frame->size();
    if (sent >= size) {
      sent -= size;
      continue;
    }
    if (s.outbox.empty()) s.offset = sent;
    sent = 0;
    s.outbox.push_back(std::move(event.frame));
  }
  batch.clear();
  if (result.full) wait_writable();
}

void Connection::flush_stream() {
  Stream& s = *sse;
  const SendResult result =
      send_frames(s.fd, s.outbox.size(), s.offset, [&](size_t i) -> const std::string& { return *s.outbox[i]; });
  if (result.failed) return close_stream();
  if (result.full) return wait_writable();
  size_t sent = result.sent;
  while (sent > 0) {
    const size_t left = s.outbox.front()->size() - s.offset;
    if (sent >= left) {
      sent -= left;
      s.outbox.pop_front();
      s.offset = 0;
    } else {
      s.offset += sent;
      sent = 0;
    }
  }
}

void Connection::wait_writable() {
  // The client's window is full: wait for room. Meanwhile new events wait in
  // the hub, up to its per-watcher bound.
  Stream& s = *sse;
  s.waiting_writable = true;
  s.blocked_since = Clock::now();
  stream.socket().async_wait(
      tcp::socket::wait_write,
      asio::bind_executor(s.group->strand, [self = shared_from_this()](const beast::error_code& wait_ec) {
        if (self->sse->closed) return;
        self->sse->waiting_writable = false;
        if (wait_ec) return self->close_stream();
        self->pump_stream();
      }));
}

void Connection::watch_peer() {
  // An SSE client has nothing to send; reading anyway tells at once when it
  // goes away, rather than at the next write.
  stream.socket().async_read_some(
      asio::buffer(scratch),
      asio::bind_executor(sse->group->strand, [self = shared_from_this()](const beast::error_code& ec, size_t) {
        if (self->sse->closed) return;
        if (ec) return self->close_stream();
        self->watch_peer();
      }));
}

void Connection::arm_stream_ticker() {
  sse->ticker.expires_after(core.options.sse_keepalive);
  sse->ticker.async_wait([self = shared_from_this()](const beast::error_code& ec) {
    if (ec || !self->sse || self->sse->closed) return;
    Stream& s = *self->sse;
    if (s.waiting_writable) {
      if (Clock::now() - s.blocked_since >= self->core.options.write_timeout) return self->close_stream();
    } else {
      s.outbox.push_back(keep_alive_comment());
      self->pump_stream();
      if (!self->sse || self->sse->closed) return;
    }
    self->arm_stream_ticker();
  });
}

void Connection::close_stream() {
  if (!sse) return;
  if (!sse->group->strand.running_in_this_thread()) {
    // request_stop, on the connection's own strand.
    asio::post(sse->group->strand, [self = shared_from_this()] { self->close_stream(); });
    return;
  }
  if (sse->closed) return;
  sse->closed = true;
  beast::error_code ec;
  sse->ticker.cancel();
  tcp::socket& socket = stream.socket();
  // Everything written so far is in the kernel and still gets delivered.
  socket.shutdown(tcp::socket::shutdown_send, ec);
  socket.close(ec);
  finish_stream();
}

void Connection::finish_stream() {
  if (!sse || sse->finished) return;
  sse->finished = true;
  if (sse->sse.on_close) {
    try {
      sse->sse.on_close();
    } catch (...) {
      // The stream is gone either way.
    }
  }
  // After on_close: once open_streams() no longer counts a stream, its
  // on_close has run.
  core.open_streams.fetch_sub(1, std::memory_order_release);
  leave_group(*sse->groups, sse->group);
  // The next walk prunes this member (a no-op once the server has stopped).
  schedule_walk(*core.gate, sse->group);
}

}  // namespace flux::controlplane::http
