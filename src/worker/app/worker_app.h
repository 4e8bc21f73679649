#pragma once
// Wires a worker together from its configuration and runs it until it stops
// itself (idle), or a drain requested by a signal completes.
#include <atomic>
#include <memory>

#include "absl/status/statusor.h"
#include "worker/config/worker_config.h"

namespace flux::worker::app {

class WorkerApp {
 public:
  // Builds every part; a bad presets file, an unusable WORK_DIR or a port in
  // use is an error here, before anything is served.
  static absl::StatusOr<std::unique_ptr<WorkerApp>> create(config::WorkerConfig config);
  ~WorkerApp();

  // Serves until auto-stop, idle timeout or a completed drain. Returns the
  // process exit code.
  int run();
  // Asks for a graceful stop (SIGTERM): refuse new jobs, let running ones
  // finish until DRAIN_TIMEOUT, then cancel them. Async-signal-unsafe; call
  // it from a normal thread.
  void request_drain();
  uint16_t grpc_port() const;

  struct Parts;

 private:
  explicit WorkerApp(std::unique_ptr<Parts> parts);
  std::unique_ptr<Parts> parts_;
};

}  // namespace flux::worker::app
