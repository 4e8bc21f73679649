// The only translation unit with Asio and Beast in this module: they are slow to compile.
#include <utility>  // Boost 1.74 Asio misses it under GCC 12

#include "shared/metrics/metrics_server.h"

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http.hpp>
#include <chrono>
#include <optional>
#include <thread>
#include <unordered_set>

#include "shared/core/error.h"

namespace flux::metrics {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

// Prometheus scrapes every few seconds over a kept-alive connection; a client
// silent for longer than this is gone or hostile.
constexpr auto kReadTimeout = std::chrono::seconds(30);
constexpr auto kWriteTimeout = std::chrono::seconds(30);
// A scrape request is a few hundred bytes; nothing legitimate sends more.
constexpr size_t kMaxRequestBytes = size_t{8} * 1024;
constexpr size_t kMaxConnections = 64;

class Session;

struct Shared {
  const Registry& registry;
  std::function<bool()> healthy;
  std::unordered_set<Session*> sessions;  // only touched on the server thread
};

http::response<http::string_body> respond(const http::request<http::string_body>& request, Shared& shared) {
  http::response<http::string_body> response;
  response.version(request.version());
  response.keep_alive(request.keep_alive());
  response.set(http::field::server, "flux-metrics");
  const auto reply = [&](http::status status, std::string_view content_type, std::string body) {
    response.result(status);
    response.set(http::field::content_type, beast::string_view(content_type.data(), content_type.size()));
    response.body() = std::move(body);
  };

  std::string_view target(request.target().data(), request.target().size());
  target = target.substr(0, target.find('?'));
  if (request.method() != http::verb::get) {
    reply(http::status::method_not_allowed, "text/plain; charset=utf-8", "method not allowed\n");
    response.set(http::field::allow, "GET");
  } else if (target == "/metrics") {
    reply(http::status::ok, "text/plain; version=0.0.4; charset=utf-8", shared.registry.render());
  } else if (target == "/health") {
    bool healthy = true;
    try {
      healthy = !shared.healthy || shared.healthy();
    } catch (...) {
      healthy = false;  // a probe that throws is not a healthy one
    }
    if (healthy) {
      reply(http::status::ok, "text/plain; charset=utf-8", "ok");
    } else {
      reply(http::status::service_unavailable, "text/plain; charset=utf-8", "unhealthy");
    }
  } else {
    reply(http::status::not_found, "text/plain; charset=utf-8", "not found\n");
  }
  response.prepare_payload();
  return response;
}

class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(tcp::socket socket, std::shared_ptr<Shared> shared)
      : stream_(std::move(socket)), buffer_(kMaxRequestBytes), shared_(std::move(shared)) {
    shared_->sessions.insert(this);
  }
  ~Session() { shared_->sessions.erase(this); }

  void read_request() {
    parser_.emplace();
    parser_->header_limit(kMaxRequestBytes);
    parser_->body_limit(kMaxRequestBytes);
    stream_.expires_after(kReadTimeout);
    http::async_read(stream_, buffer_, *parser_,
                     [self = shared_from_this()](beast::error_code ec, size_t) { self->on_read(ec); });
  }

  // Closes the socket and cancels its deadline; a pending read or write then
  // completes with an error and the session is freed.
  void close() {
    beast::error_code ignored;
    stream_.socket().shutdown(tcp::socket::shutdown_send, ignored);
    stream_.close();
  }

 private:
  void on_read(beast::error_code ec) {
    // Timeouts, resets, oversize requests and EOF all end the connection.
    if (ec) return close();
    response_ = respond(parser_->get(), *shared_);
    stream_.expires_after(kWriteTimeout);
    http::async_write(stream_, response_,
                      [self = shared_from_this()](beast::error_code ec, size_t) { self->on_write(ec); });
  }

  void on_write(beast::error_code ec) {
    if (ec || !response_.keep_alive()) return close();
    read_request();
  }

  beast::tcp_stream stream_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  http::response<http::string_body> response_;
  std::shared_ptr<Shared> shared_;
};

}  // namespace

struct MetricsServer::Impl {
  Impl(const Registry& registry, std::function<bool()> healthy)
      : shared(std::make_shared<Shared>(Shared{registry, std::move(healthy), {}})) {}

  void accept() {
    acceptor.async_accept([this](beast::error_code ec, tcp::socket socket) {
      if (ec == asio::error::operation_aborted) return;
      if (ec) {
        // Out of file descriptors and the like: back off instead of spinning.
        retry_timer.expires_after(std::chrono::milliseconds(100));
        retry_timer.async_wait([this](beast::error_code wait_ec) {
          if (!wait_ec) accept();
        });
        return;
      }
      if (shared->sessions.size() < kMaxConnections) {
        std::make_shared<Session>(std::move(socket), shared)->read_request();
      }  // else the socket closes as it goes out of scope
      accept();
    });
  }

  // Declared first so that it is destroyed last.
  asio::io_context io;
  tcp::acceptor acceptor{io};
  asio::steady_timer retry_timer{io};
  std::shared_ptr<Shared> shared;
  uint16_t port = 0;
  std::thread thread;
};

MetricsServer::MetricsServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

MetricsServer::~MetricsServer() { stop(); }

absl::StatusOr<std::unique_ptr<MetricsServer>> MetricsServer::start(const std::string& bind_address, uint16_t port,
                                                                    const Registry& registry,
                                                                    std::function<bool()> healthy) {
  auto impl = std::make_unique<Impl>(registry, std::move(healthy));
  beast::error_code ec;
  const auto address = asio::ip::make_address(bind_address, ec);
  if (ec)
    return invalid_argument("invalid_config", "metrics bind address \"" + bind_address + "\" is not an IP address");
  const tcp::endpoint endpoint(address, port);
  const std::string where = bind_address + ":" + std::to_string(port);
  const auto failed = [&](std::string_view step) {
    return unavailable("metrics_listen_failed", std::string(step) + " " + where + ": " + ec.message());
  };
  if (impl->acceptor.open(endpoint.protocol(), ec); ec) return failed("opening");
  if (impl->acceptor.set_option(asio::socket_base::reuse_address(true), ec); ec) return failed("configuring");
  if (impl->acceptor.bind(endpoint, ec); ec) return failed("binding");
  if (impl->acceptor.listen(asio::socket_base::max_listen_connections, ec); ec) return failed("listening on");
  impl->port = impl->acceptor.local_endpoint(ec).port();
  if (ec) return failed("reading the address of");

  impl->accept();
  Impl* raw = impl.get();
  raw->thread = std::thread([raw] { raw->io.run(); });
  return std::unique_ptr<MetricsServer>(new MetricsServer(std::move(impl)));
}

uint16_t MetricsServer::port() const { return impl_->port; }

void MetricsServer::stop() {
  if (!impl_->thread.joinable()) return;
  // Closing the listener and every connection makes each pending operation
  // complete at once with an error (an idle client's read does not wait for
  // its deadline), after which run() has no work left and returns.
  Impl* impl = impl_.get();
  asio::post(impl->io, [impl] {
    beast::error_code ignored;
    impl->acceptor.close(ignored);
    impl->retry_timer.cancel();
    // close() does not free a session at once (its handler still holds it), so
    // the set is not modified while iterating; copy anyway to stay obviously safe.
    const std::vector<Session*> open(impl->shared->sessions.begin(), impl->shared->sessions.end());
    for (Session* session : open) session->close();
  });
  impl->thread.join();
}

}  // namespace flux::metrics
