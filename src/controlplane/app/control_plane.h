#pragma once
// Wires the control plane together from its configuration: store,
// dispatcher, worker pool, SSE hub, webhooks, HTTP routes and metrics.
#include <memory>

#include "absl/status/statusor.h"
#include "controlplane/config/cp_config.h"

namespace flux::controlplane::app {

class ControlPlane {
 public:
  // Opens the store, reloads unfinished jobs and starts serving.
  static absl::StatusOr<std::unique_ptr<ControlPlane>> start(config::ControlPlaneConfig config);
  ~ControlPlane();

  uint16_t port() const;
  // Graceful stop (SIGTERM): stop accepting, finish in-flight responses,
  // close SSE streams, leave jobs running on their workers.
  void stop();

  struct Parts;

 private:
  explicit ControlPlane(std::unique_ptr<Parts> parts);
  std::unique_ptr<Parts> parts_;
};

}  // namespace flux::controlplane::app
