#pragma once
// The worker's Prometheus series (SPEC §7), registered once at start.
#include "shared/metrics/metrics.h"

namespace flux::worker::pipeline {

struct WorkerMetrics {
  explicit WorkerMetrics(metrics::Registry& registry);
  metrics::Gauge& active_jobs;
  metrics::Family<metrics::Counter>& jobs_total;                // {preset, status}
  metrics::Family<metrics::Histogram>& phase_duration_seconds;  // {phase, preset}
  metrics::Family<metrics::Counter>& uploaded_bytes_total;      // {storage}
  metrics::Counter& input_bytes_total;
};

}  // namespace flux::worker::pipeline
