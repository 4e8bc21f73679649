#include "worker/pipeline/worker_metrics.h"

namespace flux::worker::pipeline {
namespace {
const std::vector<double> kPhaseBuckets = {0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600};
}  // namespace

WorkerMetrics::WorkerMetrics(metrics::Registry& registry)
    : active_jobs(registry.gauge("flux_worker_active_jobs", "Jobs running on this worker now.").with({})),
      jobs_total(registry.counter("flux_worker_jobs_total", "Jobs finished on this worker, by preset and final status.",
                                  {"preset", "status"})),
      phase_duration_seconds(registry.histogram("flux_worker_phase_duration_seconds",
                                                "Time spent per job phase (download, probe, encode, validate, upload).",
                                                kPhaseBuckets, {"phase", "preset"})),
      uploaded_bytes_total(
          registry.counter("flux_worker_uploaded_bytes_total", "Bytes uploaded to output storage.", {"storage"})),
      input_bytes_total(
          registry.counter("flux_worker_input_bytes_total", "Bytes of input media fetched by this worker.").with({})) {}

}  // namespace flux::worker::pipeline
