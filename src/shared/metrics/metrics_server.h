#pragma once
// The worker's and control plane's scrape endpoint: a tiny HTTP/1.1 server on
// its own thread serving
//   GET /metrics  200, the registry in text format 0.0.4
//   GET /health   200 "ok", or 503 when `healthy` returns false
// 404 for any other path, 405 for any other method.
//
// Idle or slow clients cannot hold it up: connections are served concurrently,
// each read has a deadline, requests are capped in size, and the number of open
// connections is bounded.
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "shared/metrics/metrics.h"

namespace flux::metrics {

class MetricsServer {
 public:
  // Listens on bind_address:port (port 0 picks a free one; see port()). The
  // registry must outlive the server. `healthy` is called on the server's
  // thread for each /health request; empty means always healthy.
  static absl::StatusOr<std::unique_ptr<MetricsServer>> start(const std::string& bind_address, uint16_t port,
                                                              const Registry& registry,
                                                              std::function<bool()> healthy = {});

  ~MetricsServer();  // stops
  MetricsServer(const MetricsServer&) = delete;
  MetricsServer& operator=(const MetricsServer&) = delete;

  // The port actually listened on.
  uint16_t port() const;

  // Closes the listener and every connection and joins the thread. Idempotent.
  void stop();

 private:
  struct Impl;
  explicit MetricsServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace flux::metrics
