#pragma once
// Shared by server.cc and sse_stream.cc only: the Asio/Beast side of
// HttpServer. Nothing else includes this (Beast is slow to compile).
#include <utility>  // Boost 1.74 Asio misses it under GCC 12

#include <algorithm>
#include <atomic>
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <thread>
#include <unordered_set>
#include <vector>

#include "controlplane/http/server.h"

namespace flux::controlplane::http {

namespace asio = boost::asio;
namespace beast = boost::beast;
using tcp = asio::ip::tcp;

class Connection;

// Lets threads the server does not own (handlers answering later, SSE
// publishers) post onto a connection's strand, and makes that a no-op once
// the io_context is about to be destroyed.
class PostGate {
 public:
  // Runs fn(connection) on the connection's strand if the server still runs
  // and the connection still exists. Safe from any thread.
  void post(const std::weak_ptr<Connection>& connection, std::function<void(Connection&)> fn);
  // After this returns no post() touches the io_context again.
  void close();

 private:
  std::shared_mutex mutex_;
  bool open_ = true;
};

// One accepted socket. Everything below except the constructor and
// destructor runs on the connection's strand (its socket's executor).
class Connection : public std::enable_shared_from_this<Connection> {
 public:
  enum class Phase { kReading, kHandling, kWriting, kStreaming };

  Connection(tcp::socket socket, HttpServer::Core& core);
  ~Connection();

  // Graceful stop of this connection: reads and streams end now, a running
  // handler may still answer.
  void request_stop();

  // SSE (sse_stream.cc). start_stream takes the connection over: the serving
  // coroutine returns and the stream runs on callbacks until it closes.
  void start_stream(SseStream sse, std::string_view method, std::string_view route,
                    std::chrono::steady_clock::time_point started);
  void pump_stream();   // drain the subscriber and write what can be written now
  void close_stream();  // idempotent

  HttpServer::Core& core;
  const asio::any_io_executor strand;  // the socket's executor: a strand of the server's io_context
  beast::tcp_stream stream;
  beast::flat_buffer buffer;
  // Cancelled to wake the coroutine waiting for a handler: the response is ready, or stop.
  asio::steady_timer wake;
  std::string remote_address;
  Phase phase = Phase::kReading;
  bool stopping = false;
  std::optional<Response> pending_response;  // set by a Responder
  char scratch[512];                         // discarded reads (lingering close, SSE peer watch)
  struct Stream;
  std::unique_ptr<Stream> sse;  // set while streaming

 private:
  void flush_stream();
  void watch_peer();
  void arm_stream_ticker();
  void finish_stream();  // the once-only end of a stream: unsubscribe, counters
};

// The state of an SSE stream (sse_stream.cc).
struct Connection::Stream {
  Stream(SseStream sse_in, const asio::any_io_executor& executor) : sse(std::move(sse_in)), ticker(executor) {}

  SseStream sse;
  std::deque<std::shared_ptr<const std::string>> outbox;  // frames not yet (fully) sent
  size_t offset = 0;                                      // bytes of outbox.front() already sent
  bool waiting_writable = false;
  std::chrono::steady_clock::time_point blocked_since;
  bool close_when_flushed = false;  // nothing more will come
  bool closed = false;
  bool finished = false;  // finish_stream ran
  asio::steady_timer ticker;
  std::vector<events::Event> batch;     // reused across drains
  std::vector<asio::const_buffer> iov;  // reused across sends
};

struct HttpServer::Core {
  Core(ServerOptions options_in, Router router_in, Hooks hooks_in)
      : options(std::move(options_in)), router(std::move(router_in)), hooks(std::move(hooks_in)) {}

  // Registers a new connection unless the server is stopping.
  bool adopt(Connection* connection);
  void forget(Connection* connection);
  void report(std::string_view method, std::string_view route, int status,
              std::chrono::steady_clock::time_point started) const;

  const ServerOptions options;
  const Router router;
  const Hooks hooks;
  const std::shared_ptr<PostGate> gate = std::make_shared<PostGate>();

  std::mutex connections_mutex;
  std::condition_variable connections_changed;
  std::unordered_set<Connection*> connections;  // guarded by connections_mutex
  bool stopping = false;                        // guarded by connections_mutex
  std::atomic<size_t> open_streams{0};

  uint16_t port = 0;
  std::vector<std::thread> threads;
  bool stopped = false;  // stop() has run; only touched by the owner's thread

  // Declared after everything the connections use, so that it is destroyed
  // (with any coroutine still in it) before those.
  asio::io_context io{std::max(1, options.threads)};
  // Keeps the threads running until stop() ends them, even when the listener
  // is closed and no connection is left for a moment.
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>> work;
  std::optional<tcp::acceptor> acceptor;
};

}  // namespace flux::controlplane::http
