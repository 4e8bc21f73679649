// Accepting, reading requests, dispatching to handlers, writing responses.
// One of the two translation units with Asio and Beast (with sse_stream.cc).
#include "controlplane/http/server_internal.h"

#include <sched.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/http.hpp>

#include "controlplane/http/thread_affinity.h"
#include "shared/core/error.h"
#include "shared/core/named_thread.h"
#include "shared/log/log.h"

namespace flux::controlplane::http {
namespace {

namespace bhttp = beast::http;
using Clock = std::chrono::steady_clock;
using Phase = Connection::Phase;

constexpr size_t kReadChunk = 8192;
constexpr size_t kMaxUnparsedBytes = 64 * 1024;
// After refusing a request whose body is still arriving, keep reading (and
// discarding) a little so that closing does not reset the connection before
// the client has read the answer.
constexpr size_t kLingerBytes = size_t{1} << 20;
constexpr auto kLingerTime = std::chrono::seconds(1);
constexpr std::string_view kContinue = "HTTP/1.1 100 Continue\r\n\r\n";
constexpr std::string_view kUnmatched = "unmatched";

auto redirect(beast::error_code& ec) { return asio::redirect_error(asio::use_awaitable, ec); }

beast::string_view bsv(std::string_view text) { return {text.data(), text.size()}; }
std::string_view ssv(beast::string_view text) { return {text.data(), text.size()}; }

std::string lower(std::string_view text) {
  std::string result(text);
  for (char& c : result) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return result;
}

bool iequals(std::string_view a, std::string_view b) { return lower(a) == lower(b); }

bool safe_header(std::string_view name, std::string_view value) {
  const auto bad = [](char c) { return c == '\r' || c == '\n' || c == '\0'; };
  return !name.empty() && std::none_of(name.begin(), name.end(), bad) &&
         std::none_of(value.begin(), value.end(), bad) && name.find(':') == std::string_view::npos;
}

// The answer to a failed read, or nullopt when the connection just ends
// (timeout, client gone, server stopping).
std::optional<Response> read_error_response(const beast::error_code& ec) {
  if (ec == bhttp::error::header_limit) {
    return error_response(431, "header_too_large", "the request line and headers are too large");
  }
  if (ec == bhttp::error::body_limit) return error_response(413, "body_too_large", "the request body is too large");
  if (ec.category() == bhttp::make_error_code(bhttp::error::bad_target).category() &&
      ec != bhttp::error::end_of_stream && ec != bhttp::error::partial_message) {
    return error_response(400, "bad_request", "malformed HTTP request");
  }
  return std::nullopt;
}

thread_local const void* tl_inline_slot = nullptr;

// Where a handler's answer goes. Shared by every copy of the Responder; an
// answer given on the io thread during the handler call is taken directly,
// any other is posted to the connection's strand.
class ResponseSlot {
 public:
  ResponseSlot(std::shared_ptr<PostGate> gate, std::weak_ptr<Connection> connection)
      : gate_(std::move(gate)), connection_(std::move(connection)) {}
  ~ResponseSlot() { answer(error_response(500, "internal", "the request was dropped without a response")); }
  ResponseSlot(const ResponseSlot&) = delete;
  ResponseSlot& operator=(const ResponseSlot&) = delete;

  void answer(Response response) {
    if (answered_.exchange(true, std::memory_order_acq_rel)) return;
    if (tl_inline_slot == this) {
      inline_response_ = std::move(response);
      return;
    }
    gate_->post(connection_, [response = std::move(response)](Connection& connection) mutable {
      connection.pending_response = std::move(response);
      connection.wake.cancel();
    });
  }

  std::optional<Response> take_inline_response() { return std::move(inline_response_); }

 private:
  std::shared_ptr<PostGate> gate_;
  std::weak_ptr<Connection> connection_;
  std::atomic<bool> answered_{false};
  std::optional<Response> inline_response_;
};

asio::awaitable<Response> run_handler(std::shared_ptr<Connection> connection, const Handler& handler,
                                      const Request& request) {
  Connection& c = *connection;
  c.phase = Phase::kHandling;
  c.pending_response.reset();
  auto slot = std::make_shared<ResponseSlot>(c.core.gate, connection);
  tl_inline_slot = slot.get();
  try {
    handler(request, [slot](Response response) { slot->answer(std::move(response)); });
  } catch (const std::exception& e) {
    log::error("http handler threw", {{"route", request.route}, {"error", e.what()}});
    slot->answer(error_response(500, "internal", "internal error"));
  } catch (...) {
    log::error("http handler threw", {{"route", request.route}});
    slot->answer(error_response(500, "internal", "internal error"));
  }
  if (slot.use_count() == 1)
    slot->answer(error_response(500, "internal", "the request was dropped without a response"));
  tl_inline_slot = nullptr;
  if (auto response = slot->take_inline_response()) co_return std::move(*response);
  slot.reset();

  // Answered later, from another thread: the Responder posts the response
  // here and cancels the timer. A stop request also wakes us, but an
  // in-flight request still gets its answer.
  while (!c.pending_response) {
    c.wake.expires_at(asio::steady_timer::time_point::max());
    beast::error_code ec;
    co_await c.wake.async_wait(redirect(ec));
  }
  Response response = std::move(*c.pending_response);
  c.pending_response.reset();
  co_return response;
}

// head_only: the answer to a HEAD request, whose headers (Content-Length
// included) are those of the GET answer, without the body.
asio::awaitable<beast::error_code> write_response(Connection& c, Response response, unsigned version, bool keep_alive,
                                                  bool head_only = false) {
  c.phase = Phase::kWriting;
  int status = response.status;
  if (status < 100 || status > 999) status = 500;
  bhttp::response<bhttp::string_body> message;
  message.result(static_cast<unsigned>(status));
  message.version(version);
  message.set(bhttp::field::server, "flux-controlplane");
  for (const auto& [name, value] : response.headers) {
    if (safe_header(name, value)) message.insert(bsv(name), bsv(value));
  }
  const bool bodiless = status < 200 || status == 204 || status == 304;
  if (!bodiless) {
    if (safe_header("content-type", response.content_type)) {
      message.set(bhttp::field::content_type, bsv(response.content_type));
    }
    message.body() = std::move(response.body);
  }
  message.keep_alive(keep_alive);
  message.prepare_payload();
  c.stream.expires_after(c.core.options.write_timeout);
  beast::error_code ec;
  if (head_only) {
    bhttp::response_serializer<bhttp::string_body> serializer(message);
    co_await bhttp::async_write_header(c.stream, serializer, redirect(ec));
  } else {
    co_await bhttp::async_write(c.stream, message, redirect(ec));
  }
  co_return ec;
}

asio::awaitable<void> close_connection(Connection& c, bool linger) {
  beast::error_code ec;
  c.stream.socket().shutdown(tcp::socket::shutdown_send, ec);
  if (linger && !c.stopping) {
    c.phase = Phase::kReading;
    c.stream.expires_after(kLingerTime);
    size_t discarded = 0;
    while (discarded < kLingerBytes) {
      const size_t n = co_await c.stream.async_read_some(asio::buffer(c.scratch), redirect(ec));
      if (ec) break;
      discarded += n;
    }
  }
  c.stream.close();
}

// Reads until c.buffer holds a whole request head (up to the blank line), or
// answers header_limit once max_bytes arrived without one. Beast 1.74 checks
// its header_limit against what is left unparsed of each read, not against
// the head as a whole: many small fields sent over several reads would pass
// any limit and pile up in memory until the header timeout. Given the whole
// head at once, its own check is exact.
asio::awaitable<beast::error_code> read_request_head(Connection& c, size_t max_bytes) {
  constexpr std::string_view kEnd = "\r\n\r\n";
  size_t searched = 0;  // bytes already known not to hold the end (but for its last 3)
  for (;;) {
    const auto data = c.buffer.data();
    const std::string_view text(static_cast<const char*>(data.data()), data.size());
    const size_t from = searched > kEnd.size() - 1 ? searched - (kEnd.size() - 1) : 0;
    const size_t end = text.find(kEnd, from);
    if (end != std::string_view::npos) {
      co_return end + kEnd.size() > max_bytes ? beast::error_code(bhttp::error::header_limit) : beast::error_code{};
    }
    if (text.size() >= max_bytes) co_return beast::error_code(bhttp::error::header_limit);
    searched = text.size();
    beast::error_code ec;
    const size_t n = co_await c.stream.async_read_some(c.buffer.prepare(std::min(kReadChunk, max_bytes - text.size())),
                                                       redirect(ec));
    if (ec) co_return ec;
    c.buffer.commit(n);
  }
}

Request make_request(bhttp::request<bhttp::string_body>&& message, const std::string& remote_address) {
  Request request;
  request.method = std::string(ssv(message.method_string()));
  request.target = std::string(ssv(message.target()));
  request.remote_address = remote_address;
  for (const auto& field : message) {
    const std::string_view value = ssv(field.value());
    auto [it, inserted] = request.headers.try_emplace(lower(ssv(field.name_string())), value);
    if (!inserted) {
      it->second += ", ";
      it->second += value;
    }
  }
  request.body = std::move(message.body());
  const size_t question = request.target.find('?');
  request.path = request.target.substr(0, question);
  return request;
}

asio::awaitable<void> serve(std::shared_ptr<Connection> connection) {
  Connection& c = *connection;
  HttpServer::Core& core = c.core;
  const ServerOptions& options = core.options;
  bool first_request = true;
  bool linger = false;
  // What the parser has not consumed yet: a head being read, a partial chunk
  // line. Without a cap, a chunk extension that never ends grows it forever.
  c.buffer.max_size(options.max_header_bytes + kMaxUnparsedBytes);

  while (!c.stopping) {
    beast::error_code ec;
    c.phase = Phase::kReading;
    // A new connection has header_timeout to send its request; a kept-alive
    // one may idle for idle_timeout first.
    if (c.buffer.size() == 0) {
      c.stream.expires_after(first_request ? options.header_timeout : options.idle_timeout);
      const size_t n = co_await c.stream.async_read_some(c.buffer.prepare(kReadChunk), redirect(ec));
      if (ec) break;
      c.buffer.commit(n);
    }
    first_request = false;

    bhttp::request_parser<bhttp::string_body> parser;
    parser.header_limit(static_cast<std::uint32_t>(std::min<size_t>(options.max_header_bytes, UINT32_MAX)));
    // Beast refuses a Content-Length over the limit while reading the header,
    // and a chunked body as soon as it grows past it.
    parser.body_limit(options.max_body_bytes);
    c.stream.expires_after(options.header_timeout);
    ec = co_await read_request_head(c, options.max_header_bytes);
    if (!ec) co_await bhttp::async_read_header(c.stream, c.buffer, parser, redirect(ec));
    // A Transfer-Encoding whose last coding is not chunked leaves the body's
    // length unknowable: Beast would read no body and take what follows for
    // the next request, which a proxy in front may frame differently
    // (request smuggling). RFC 9112 6.1: answer 400 and close.
    if (!ec && parser.get().find(bhttp::field::transfer_encoding) != parser.get().end() && !parser.chunked()) {
      ec = bhttp::error::bad_transfer_encoding;
    }
    const auto started = Clock::now();
    if (!ec && !parser.is_done()) {
      const auto& header = parser.get();
      if (iequals(ssv(header[bhttp::field::expect]), "100-continue")) {
        c.stream.expires_after(options.write_timeout);
        co_await asio::async_write(c.stream, asio::buffer(kContinue.data(), kContinue.size()), redirect(ec));
        if (ec) break;
      }
      c.stream.expires_after(options.body_timeout);
      // body_limit counts the body's data only: chunk extensions are parsed
      // besides it, so chunks that each carry a long extension and hardly
      // any data would be read for the whole body timeout. Everything parsed
      // for the body is capped. (Trailers wait whole in the buffer, capped
      // by its max_size.)
      const size_t max_body_wire_bytes = 2 * options.max_body_bytes + options.max_header_bytes + kReadChunk;
      size_t parsed = 0;
      while (!ec && !parser.is_done()) {
        parsed += co_await bhttp::async_read_some(c.stream, c.buffer, parser, redirect(ec));
        if (!ec && parsed > max_body_wire_bytes) ec = bhttp::error::body_limit;
      }
    }
    if (ec) {
      if (auto refusal = read_error_response(ec)) {
        const int status = refusal->status;
        co_await write_response(c, std::move(*refusal), 11, /*keep_alive=*/false);
        core.report("", kUnmatched, status, started);
        linger = true;
      }
      break;
    }

    const unsigned version = parser.get().version();
    bool keep_alive = parser.get().keep_alive();
    Request request = make_request(parser.release(), c.remote_address);
    std::string_view route = kUnmatched;
    std::optional<Response> response;

    const auto match = core.router.match(request.method, request.path);
    auto query = parse_query(request.target.size() > request.path.size()
                                 ? std::string_view(request.target).substr(request.path.size() + 1)
                                 : std::string_view());
    if (match.kind == Router::Match::Kind::kBadPath || !query) {
      response = error_response(400, "bad_request", "malformed request target");
    } else if (match.kind == Router::Match::Kind::kNotFound) {
      response = error_response(404, "not_found", "no such resource");
    } else if (match.kind == Router::Match::Kind::kMethodNotAllowed) {
      response = error_response(405, "method_not_allowed", "method " + request.method + " is not allowed here");
      response->headers.emplace_back("Allow", match.allow);
    } else {
      const Router::Route& matched = *match.route;
      route = matched.pattern;
      request.route = matched.pattern;
      request.params = match.params;
      request.query = std::move(*query);
      if (core.hooks.before_handler) {
        try {
          response = core.hooks.before_handler(request);
        } catch (const std::exception& e) {
          log::error("http before_handler threw", {{"route", request.route}, {"error", e.what()}});
          response = error_response(500, "internal", "internal error");
        } catch (...) {
          log::error("http before_handler threw", {{"route", request.route}});
          response = error_response(500, "internal", "internal error");
        }
      }
      if (!response && matched.sse_handler) {
        std::variant<Response, SseStream> outcome = error_response(500, "internal", "internal error");
        try {
          outcome = matched.sse_handler(request);
        } catch (const std::exception& e) {
          log::error("http sse handler threw", {{"route", request.route}, {"error", e.what()}});
        } catch (...) {
          log::error("http sse handler threw", {{"route", request.route}});
        }
        if (auto* stream = std::get_if<SseStream>(&outcome)) {
          if (stream->subscriber) {
            // The stream runs on callbacks from here and closes the connection itself.
            connection->start_stream(std::move(*stream), request.method, route, started);
            co_return;
          }
          if (stream->on_close) stream->on_close();
          outcome = error_response(500, "internal", "internal error");
        }
        response = std::move(std::get<Response>(outcome));
      }
      if (!response) response = co_await run_handler(connection, matched.handler, request);
    }

    // A stop requested while the handler ran: answer, then close.
    keep_alive = keep_alive && !c.stopping;
    const int status = response->status;
    ec = co_await write_response(c, std::move(*response), version, keep_alive, request.method == "HEAD");
    core.report(request.method, route, status, started);
    if (ec || !keep_alive) break;
  }
  co_await close_connection(c, linger);
}

// One connection too many: a fixed 503 in a single non-blocking send (a
// fresh socket's buffer takes it whole; nothing is read and nothing waits),
// then close. Clients that honour Retry-After come back when there is room.
void refuse_connection(tcp::socket& socket) {
  static const std::string kAnswer = [] {
    const std::string body = error_response(503, "too_many_connections", "too many open connections, retry later").body;
    return "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nRetry-After: 1\r\n"
           "Connection: close\r\nContent-Length: " +
           std::to_string(body.size()) + "\r\n\r\n" + body;
  }();
  beast::error_code ec;
  socket.non_blocking(true, ec);
  if (!ec) socket.send(asio::buffer(kAnswer), 0, ec);
  socket.shutdown(tcp::socket::shutdown_send, ec);
  socket.close(ec);
}

asio::awaitable<void> accept_connections(HttpServer::Core& core) {
  asio::steady_timer backoff(co_await asio::this_coro::executor);
  for (;;) {
    beast::error_code ec;
    const asio::any_io_executor strand = asio::make_strand(core.io);
    tcp::socket socket = co_await core.acceptor->async_accept(strand, redirect(ec));
    if (ec == asio::error::operation_aborted || !core.acceptor->is_open()) co_return;
    if (ec) {
      // Out of file descriptors and the like: back off instead of spinning.
      backoff.expires_after(std::chrono::milliseconds(50));
      co_await backoff.async_wait(redirect(ec));
      continue;
    }
    socket.set_option(tcp::no_delay(true), ec);
    auto connection = std::make_shared<Connection>(std::move(socket), core);
    switch (core.adopt(connection.get())) {
      case HttpServer::Core::Adopt::kAdopted:
        asio::co_spawn(connection->strand, serve(connection), asio::detached);
        break;
      case HttpServer::Core::Adopt::kFull:
        refuse_connection(connection->stream.socket());
        break;
      case HttpServer::Core::Adopt::kStopping:
        break;  // the socket closes here
    }
  }
}

}  // namespace

// ---- PostGate, Connection, Core ----------------------------------------------

void PostGate::post(const std::weak_ptr<Connection>& connection, std::function<void(Connection&)> fn) {
  std::shared_lock lock(mutex_);
  if (!open_) return;
  auto target = connection.lock();
  if (!target) return;
  const asio::any_io_executor strand = target->strand;
  asio::post(strand, [target = std::move(target), fn = std::move(fn)] { fn(*target); });
}

void PostGate::close() {
  std::unique_lock lock(mutex_);
  open_ = false;
}

Connection::Connection(tcp::socket socket, HttpServer::Core& core_in)
    : core(core_in), strand(socket.get_executor()), stream(std::move(socket)), wake(strand) {
  beast::error_code ec;
  const auto endpoint = stream.socket().remote_endpoint(ec);
  if (!ec) remote_address = endpoint.address().to_string();
}

Connection::~Connection() {
  finish_stream();  // a stream abandoned with the io_context still unsubscribes
  core.forget(this);
}

void Connection::request_stop() {
  stopping = true;
  if (sse) return close_stream();
  // Reads (idle or half-sent requests) and streams end now; a handler that is
  // running still gets to answer.
  if (phase == Phase::kReading) stream.cancel();
  wake.cancel();
}

HttpServer::Core::Adopt HttpServer::Core::adopt(Connection* connection) {
  std::lock_guard lock(connections_mutex);
  if (stopping) return Adopt::kStopping;
  if (options.max_connections > 0 && connections.size() >= options.max_connections) return Adopt::kFull;
  connections.insert(connection);
  return Adopt::kAdopted;
}

void HttpServer::Core::forget(Connection* connection) {
  std::lock_guard lock(connections_mutex);
  if (connections.erase(connection) > 0) connections_changed.notify_all();
}

void HttpServer::Core::report(std::string_view method, std::string_view route, int status,
                              std::chrono::steady_clock::time_point started) const {
  if (!hooks.on_request_done) return;
  try {
    hooks.on_request_done(method, route, status, std::chrono::duration<double>(Clock::now() - started).count());
  } catch (...) {
    // A metrics hook must not take a connection down.
  }
}

// ---- HttpServer ----------------------------------------------------------------

HttpServer::HttpServer(std::unique_ptr<Core> core) : core_(std::move(core)) {}

HttpServer::~HttpServer() { stop(); }

absl::StatusOr<std::unique_ptr<HttpServer>> HttpServer::start(ServerOptions options, Router router, Hooks hooks) {
  auto core = std::make_unique<Core>(std::move(options), std::move(router), std::move(hooks));
  const ServerOptions& opts = core->options;
  beast::error_code ec;
  const auto address = asio::ip::make_address(opts.bind, ec);
  if (ec) return invalid_argument("invalid_config", "HTTP bind address \"" + opts.bind + "\" is not an IP address");
  const tcp::endpoint endpoint(address, opts.port);
  const std::string where = opts.bind + ":" + std::to_string(opts.port);
  const auto failed = [&](std::string_view step) {
    return unavailable("http_listen_failed", std::string(step) + " " + where + ": " + ec.message());
  };
  core->acceptor.emplace(asio::make_strand(core->io));
  tcp::acceptor& acceptor = *core->acceptor;
  if (acceptor.open(endpoint.protocol(), ec); ec) return failed("opening");
  if (acceptor.set_option(asio::socket_base::reuse_address(true), ec); ec) return failed("configuring");
  if (acceptor.bind(endpoint, ec); ec) return failed("binding");
  if (acceptor.listen(asio::socket_base::max_listen_connections, ec); ec) return failed("listening on");
  core->port = acceptor.local_endpoint(ec).port();
  if (ec) return failed("reading the address of");

  core->work.emplace(core->io.get_executor());
  asio::co_spawn(acceptor.get_executor(), accept_connections(*core), asio::detached);
  Core* raw = core.get();
  const int threads = std::max(1, opts.threads);
  std::vector<int> cpus;
  if (opts.pin_threads) {
    cpu_set_t allowed;
    CPU_ZERO(&allowed);
    if (sched_getaffinity(0, sizeof allowed, &allowed) == 0) cpus = io_thread_cpus(allowed, threads);
    if (cpus.empty()) {
      log::warn("HTTP_PIN_THREADS: the process's CPU set is unknown; io threads stay unpinned");
    } else {
      log::info("io threads pinned", {{"cpus", cpus}});
    }
  }
  for (int i = 0; i < threads; ++i) {
    const int cpu = cpus.empty() ? -1 : cpus[static_cast<size_t>(i)];
    std::string name = "cp-http-" + std::to_string(i);
    raw->threads.push_back(start_named_thread(name, [raw] {
      for (;;) {
        try {
          raw->io.run();
          return;
        } catch (const std::exception& e) {
          log::error("http io thread caught an exception", {{"error", e.what()}});
        }
      }
    }));
    // Pinned from here, so that every io thread is pinned once start() returns.
    if (cpu >= 0) {
      if (auto pinned = pin_thread(raw->threads.back(), cpu); !pinned.ok()) {
        log::warn("io thread left unpinned", {{"thread", name}, {"error", std::string(pinned.message())}});
      }
    }
  }
  return std::unique_ptr<HttpServer>(new HttpServer(std::move(core)));
}

uint16_t HttpServer::port() const { return core_->port; }

size_t HttpServer::open_streams() const { return core_->open_streams.load(std::memory_order_acquire); }

size_t HttpServer::open_connections() const {
  std::lock_guard lock(core_->connections_mutex);
  return core_->connections.size();
}

void HttpServer::stop() {
  Core& core = *core_;
  if (core.stopped) return;
  core.stopped = true;

  std::vector<std::shared_ptr<Connection>> live;
  {
    std::lock_guard lock(core.connections_mutex);
    core.stopping = true;  // no connection is adopted from now on
    for (Connection* connection : core.connections) {
      if (auto alive = connection->weak_from_this().lock()) live.push_back(std::move(alive));
    }
  }
  asio::post(core.acceptor->get_executor(), [&core] {
    beast::error_code ignored;
    core.acceptor->close(ignored);
  });
  for (auto& connection : live) {
    asio::post(connection->strand, [connection] { connection->request_stop(); });
  }
  live.clear();
  {
    std::unique_lock lock(core.connections_mutex);
    core.connections_changed.wait_for(lock, core.options.stop_timeout, [&] { return core.connections.empty(); });
  }
  // Whatever is left (a handler that never answered) is abandoned.
  core.work.reset();
  core.io.stop();
  for (auto& thread : core.threads) thread.join();
  core.threads.clear();
  core.gate->close();
}

}  // namespace flux::controlplane::http
