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
#include <boost/asio/strand.hpp>
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
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "controlplane/http/server.h"

namespace flux::controlplane::http {

namespace asio = boost::asio;
namespace beast = boost::beast;
using tcp = asio::ip::tcp;

class Connection;
struct SseGroups;

// Lets threads the server does not own (handlers answering later, SSE
// publishers) post onto a connection's strand, and makes that a no-op once
// the io_context is about to be destroyed.
class PostGate {
 public:
  // Runs fn(connection) on the connection's strand if the server still runs
  // and the connection still exists. Safe from any thread.
  void post(const std::weak_ptr<Connection>& connection, std::function<void(Connection&)> fn);
  // Runs fn on executor if the server still runs. Safe from any thread.
  template <class Executor, class Fn>
  void post_on(const Executor& executor, Fn&& fn) {
    std::shared_lock lock(mutex_);
    if (open_) asio::post(executor, std::forward<Fn>(fn));
  }
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
  void end_stream();    // close_stream once all is sent (deferred to the end of a walk)

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
  void begin_stream();  // on the stream's group strand, once
  void send_batch(std::vector<events::Event>& batch);
  void flush_stream();
  void wait_writable();
  void watch_peer();
  void arm_stream_ticker();
  void finish_stream();  // the once-only end of a stream: unsubscribe, counters
};

// The SSE streams of one events::SubscriberGroup (sse_stream.cc). Every
// callback of a member stream runs on the group's strand, and a new event
// costs one post per group, whose walk then writes to each member in turn,
// instead of one post per stream. Groups are small, so the io threads share
// a job's fan-out.
struct SseGroup {
  SseGroup(asio::io_context& io, std::shared_ptr<events::SubscriberGroup> source_in)
      : strand(asio::make_strand(io)), source(std::move(source_in)) {}

  struct Member {
    std::shared_ptr<Connection> connection;
    Connection::Stream* stream;  // connection->sse, read without touching the connection
  };

  const asio::strand<asio::io_context::executor_type> strand;
  const std::shared_ptr<events::SubscriberGroup> source;
  std::atomic<bool> walk_posted{false};
  std::vector<Member> members;  // on strand; closed ones are pruned by the walk that follows
  size_t joined = 0;            // streams not yet finished; guarded by SseGroups::mutex
};

// The groups with a stream not yet finished, by their source.
struct SseGroups {
  std::mutex mutex;
  std::unordered_map<const events::SubscriberGroup*, std::shared_ptr<SseGroup>> by_source;
};

// The state of an SSE stream (sse_stream.cc). After start_stream, touched
// only on group->strand. What every walk reads comes first (one cache line).
struct Connection::Stream {
  Stream(SseStream sse_in, std::shared_ptr<SseGroups> groups_in, std::shared_ptr<SseGroup> group_in)
      : sse(std::move(sse_in)), groups(std::move(groups_in)), group(std::move(group_in)), ticker(group->strand) {}

  SseStream sse;
  int fd = -1;  // the socket's, for sendmsg() without Asio's layers
  bool closed = false;
  bool waiting_writable = false;
  bool close_when_flushed = false;                        // nothing more will come
  size_t offset = 0;                                      // bytes of outbox.front() already sent
  std::deque<std::shared_ptr<const std::string>> outbox;  // frames not yet (fully) sent
  bool finished = false;                                  // finish_stream ran
  std::chrono::steady_clock::time_point blocked_since;
  const std::shared_ptr<SseGroups> groups;  // kept: a stream may finish while the server is being destroyed
  const std::shared_ptr<SseGroup> group;
  asio::steady_timer ticker;
};

struct HttpServer::Core {
  Core(ServerOptions options_in, Router router_in, Hooks hooks_in)
      : options(std::move(options_in)), router(std::move(router_in)), hooks(std::move(hooks_in)) {}

  // Registers a new connection unless the server is stopping.
  enum class Adopt { kAdopted, kStopping, kFull };
  Adopt adopt(Connection* connection);
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
  // Destroyed before io: a group's strand must not outlive it (streams keep
  // their own reference until they finish, which they do while io shuts down).
  const std::shared_ptr<SseGroups> sse_groups = std::make_shared<SseGroups>();
};

}  // namespace flux::controlplane::http
