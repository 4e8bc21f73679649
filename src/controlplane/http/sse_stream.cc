// SSE streaming (SPEC §3.3). One of the two translation units with Asio and
// Beast (with server.cc).
//
// Built for many watchers of one job: per event and watcher, the hot path is
// one post onto the connection's strand, one drain of the subscriber and one
// non-blocking send() of the shared frame. No timer is touched per event: a
// single ticker per stream sends keep-alive comments and cuts a write that
// has been stuck for write_timeout. While the socket is full the subscriber
// is not drained, so its bounded buffer fills and the hub drops it.
#include "controlplane/http/server_internal.h"

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

}  // namespace

void Connection::start_stream(SseStream sse_in, std::string_view method, std::string_view route,
                              std::chrono::steady_clock::time_point started) {
  phase = Phase::kStreaming;
  sse = std::make_unique<Stream>(std::move(sse_in), strand);
  core.open_streams.fetch_add(1, std::memory_order_relaxed);
  buffer.clear();
  buffer.shrink_to_fit();  // an idle stream should not keep the request buffer

  beast::error_code ec;
  tcp::socket& socket = stream.socket();
  socket.non_blocking(true, ec);
  if (core.options.sse_send_buffer_bytes > 0) {
    socket.set_option(asio::socket_base::send_buffer_size(core.options.sse_send_buffer_bytes), ec);
  }
  sse->outbox.push_back(stream_head());
  sse->sse.subscriber->set_notify([gate = core.gate, weak = weak_from_this()] {
    gate->post(weak, [](Connection& connection) { connection.pump_stream(); });
  });
  core.report(method, route, 200, started);
  watch_peer();
  arm_stream_ticker();
  pump_stream();  // the head and whatever the subscriber already holds
  if (stopping) close_stream();
}

void Connection::pump_stream() {
  while (sse && !sse->closed && !sse->waiting_writable) {
    Stream& s = *sse;
    events::Subscriber& subscriber = *s.sse.subscriber;
    if (subscriber.overflowed()) return close_stream();  // dropped for falling behind
    if (s.outbox.empty()) {
      if (s.close_when_flushed) return close_stream();
      // Once finished, this drain gets everything there will ever be.
      const bool finished = subscriber.finished();
      s.batch.clear();
      if (!subscriber.drain(s.batch)) return close_stream();
      for (auto& event : s.batch) {
        s.outbox.push_back(std::move(event.frame));
        s.close_when_flushed = s.close_when_flushed || event.terminal;
      }
      s.close_when_flushed = s.close_when_flushed || finished;
      if (s.outbox.empty()) {
        if (s.close_when_flushed) close_stream();
        return;  // until the next notification
      }
    }
    flush_stream();
  }
}

void Connection::flush_stream() {
  Stream& s = *sse;
  s.iov.clear();
  for (size_t i = 0; i < s.outbox.size() && s.iov.size() < kMaxFramesPerSend; ++i) {
    const std::string& frame = *s.outbox[i];
    const size_t skip = i == 0 ? s.offset : 0;
    s.iov.emplace_back(frame.data() + skip, frame.size() - skip);
  }
  beast::error_code ec;
  size_t sent = stream.socket().write_some(s.iov, ec);
  if (ec == asio::error::would_block || ec == asio::error::try_again) {
    // The client's window is full: wait for room, and leave new events in the
    // subscriber's bounded buffer meanwhile.
    s.waiting_writable = true;
    s.blocked_since = Clock::now();
    stream.socket().async_wait(tcp::socket::wait_write, [self = shared_from_this()](const beast::error_code& wait_ec) {
      if (!self->sse || self->sse->closed) return;
      self->sse->waiting_writable = false;
      if (wait_ec) return self->close_stream();
      self->pump_stream();
    });
    return;
  }
  if (ec) return close_stream();
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

void Connection::watch_peer() {
  // An SSE client has nothing to send; reading anyway tells at once when it
  // goes away, rather than at the next write.
  stream.socket().async_read_some(asio::buffer(scratch),
                                  [self = shared_from_this()](const beast::error_code& ec, size_t) {
                                    if (!self->sse || self->sse->closed) return;
                                    if (ec) return self->close_stream();
                                    self->watch_peer();
                                  });
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
  if (!sse || sse->closed) return;
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
  sse->sse.subscriber->set_notify({});
  core.open_streams.fetch_sub(1, std::memory_order_relaxed);
  if (sse->sse.on_close) {
    try {
      sse->sse.on_close();
    } catch (...) {
      // The stream is gone either way.
    }
  }
}

}  // namespace flux::controlplane::http
