#pragma once
// The control plane's HTTP/1.1 server (Boost.Beast on Asio coroutines, a few
// threads for thousands of connections). Keep-alive, request size caps and
// read timeouts so that a slow or silent client cannot hold a connection, SSE
// streams, and a graceful stop.
//
// Answers it produces itself, with the SPEC §3 error body:
//   400 bad_request         malformed request line, header or path
//   404 not_found           no route for the path
//   405 method_not_allowed  the path exists for other methods (with Allow)
//   413 body_too_large      Content-Length or a chunked body over max_body_bytes
//   431 header_too_large    request line + headers over max_header_bytes
//   500 internal            a handler threw or dropped its Responder
// A client that does not complete its header within header_timeout, its body
// within body_timeout, or stays idle between requests longer than
// idle_timeout is disconnected.
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "controlplane/http/router.h"
#include "controlplane/http/types.h"

namespace flux::controlplane::http {

struct ServerOptions {
  std::string bind = "0.0.0.0";
  uint16_t port = 8080;  // 0 picks a free port (see HttpServer::port)
  int threads = 2;
  size_t max_body_bytes = 64 * 1024;
  size_t max_header_bytes = 16 * 1024;
  // A new connection must start its request within header_timeout, and any
  // request's line + headers must be complete within header_timeout.
  std::chrono::milliseconds header_timeout{10'000};
  std::chrono::milliseconds body_timeout{30'000};
  std::chrono::milliseconds idle_timeout{60'000};   // between requests on a kept-alive connection
  std::chrono::milliseconds write_timeout{30'000};  // one response, or one write of an SSE stream
  std::chrono::milliseconds sse_keepalive{15'000};
  std::chrono::milliseconds stop_timeout{10'000};  // how long stop() waits for in-flight responses
  // SO_SNDBUF of SSE connections; 0 keeps the kernel's (auto-tuned) default.
  // A small buffer makes a stalled watcher visible (and dropped) sooner.
  int sse_send_buffer_bytes = 0;
  // Open connections (SSE streams included) at most; one more is answered
  // 503 "too_many_connections" with Retry-After and closed, so a flood of
  // idle sockets cannot use up the file descriptors the others need.
  // 0 = no cap.
  size_t max_connections = 0;
  // Pins io thread i to the i-th CPU the process may run on (see
  // thread_affinity.h). For a machine, or a cpuset, given to the control
  // plane: on CPUs shared with other busy containers it can only hurt.
  bool pin_threads = false;
};

struct Hooks {
  // Runs on an io thread for every routed request (not for 404/405/400), after
  // Request::route and params are set and before the handler. It may set
  // Request::principal, or return a Response (401, 429 ...) to answer instead
  // of the handler. Must not block.
  std::function<std::optional<Response>(Request&)> before_handler;
  // Runs once per response written, including the server's own errors; route
  // is the matched pattern or "unmatched". For an SSE stream: when its headers
  // are written, with status 200.
  std::function<void(std::string_view method, std::string_view route, int status, double seconds)> on_request_done;
};

class HttpServer {
 public:
  // Binds and starts serving on options.threads threads. Errors: invalid_config
  // (bad bind address), http_listen_failed (port in use ...).
  static absl::StatusOr<std::unique_ptr<HttpServer>> start(ServerOptions options, Router router, Hooks hooks = {});

  ~HttpServer();  // stop()
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  uint16_t port() const;
  // Open SSE streams right now. A stream stops counting only after its
  // on_close callback has run.
  size_t open_streams() const;
  // Open connections (SSE streams included).
  size_t open_connections() const;

  // Graceful stop: closes the listener, closes idle connections and SSE
  // streams, lets requests whose handler is running finish and write their
  // response (with "Connection: close"), waits for that up to stop_timeout,
  // then ends whatever is left and joins the threads. Idempotent. Must not be
  // called from a handler. Responders called afterwards are ignored.
  void stop();

  struct Core;  // the Asio side, private to the implementation

 private:
  explicit HttpServer(std::unique_ptr<Core> core);
  std::unique_ptr<Core> core_;
};

}  // namespace flux::controlplane::http
