// selection_cost: the control plane's worker selection (balancer::WorkerPool,
// the original round-robin GetStatus walk) against live workers, for
// bench/selection_cost.py.
//
// Runs `--rounds` selections over `--workers` (in that order) and counts, with
// WorkerPool::stats(), how many GetStatus calls each one made and how long it
// took; every selection must pick `--expect`. Baselines, same run, same
// channels: one GetStatus round trip to the `--expect` worker, and the same
// selection over a pool of that worker alone (one call, the best case).
// Prints one line "RESULT <json>".
//
// Usage: selection_cost --workers a:1,b:2,... --expect b:2 [--rounds 200] [--storage local] [--preset 480p_h264]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "controlplane/balancer/worker_pool.h"

namespace {

using Clock = std::chrono::steady_clock;
using flux::controlplane::balancer::WorkerPool;

double ms_since(Clock::time_point start) {
  return std::chrono::duration<double, std::milli>(Clock::now() - start).count();
}

double percentile(std::vector<double> v, double p) {
  if (v.empty()) return -1;
  std::sort(v.begin(), v.end());
  size_t k = static_cast<size_t>(p / 100.0 * static_cast<double>(v.size()) + 0.5);
  k = std::clamp<size_t>(k, 1, v.size()) - 1;
  return v[k];
}

std::vector<std::string> split(const std::string& csv) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= csv.size()) {
    const size_t comma = csv.find(',', start);
    const size_t end = comma == std::string::npos ? csv.size() : comma;
    if (end > start) out.push_back(csv.substr(start, end - start));
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return out;
}

struct Run {
  std::vector<double> ms;
  std::vector<double> calls;
  int wrong = 0;
  int failed = 0;
};

Run select_rounds(WorkerPool& pool, int rounds, const std::string& expect, const std::string& storage,
                  const std::string& preset) {
  Run run;
  for (int i = 0; i < rounds; ++i) {
    const uint64_t before = pool.stats().get_status_calls;
    const auto start = Clock::now();
    auto chosen = pool.select(storage, preset);
    run.ms.push_back(ms_since(start));
    run.calls.push_back(static_cast<double>(pool.stats().get_status_calls - before));
    if (!chosen.ok()) {
      ++run.failed;
    } else if ((*chosen)->address() != expect) {
      ++run.wrong;
    }
  }
  return run;
}

std::string run_json(const Run& r) {
  double total_calls = 0;
  for (double c : r.calls) total_calls += c;
  char out[512];
  std::snprintf(out, sizeof out,
                "{\"selections\":%zu,\"calls_mean\":%.3f,\"calls_min\":%.0f,\"calls_max\":%.0f,"
                "\"p50_ms\":%.4f,\"p99_ms\":%.4f,\"max_ms\":%.4f,\"wrong\":%d,\"failed\":%d}",
                r.ms.size(), r.calls.empty() ? 0 : total_calls / static_cast<double>(r.calls.size()),
                r.calls.empty() ? 0 : *std::min_element(r.calls.begin(), r.calls.end()),
                r.calls.empty() ? 0 : *std::max_element(r.calls.begin(), r.calls.end()), percentile(r.ms, 50),
                percentile(r.ms, 99), r.ms.empty() ? 0 : *std::max_element(r.ms.begin(), r.ms.end()), r.wrong,
                r.failed);
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> workers;
  std::string expect, storage = "local", preset = "480p_h264";
  int rounds = 200;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string key = argv[i];
    const std::string value = argv[i + 1];
    if (key == "--workers")
      workers = split(value);
    else if (key == "--expect")
      expect = value;
    else if (key == "--rounds")
      rounds = std::atoi(value.c_str());
    else if (key == "--storage")
      storage = value;
    else if (key == "--preset")
      preset = value;
  }
  if (workers.empty() || expect.empty() || rounds <= 0) {
    std::fprintf(stderr, "usage: selection_cost --workers a:1,b:2,... --expect b:2 [--rounds N]\n");
    return 2;
  }
  const std::chrono::milliseconds startup_timeout(5000);

  WorkerPool pool(workers, startup_timeout);
  pool.refresh(std::chrono::milliseconds(5000));    // connects every channel
  select_rounds(pool, 5, expect, storage, preset);  // warm-up
  const Run full = select_rounds(pool, rounds, expect, storage, preset);

  WorkerPool single({expect}, startup_timeout);
  single.refresh(std::chrono::milliseconds(5000));
  select_rounds(single, 5, expect, storage, preset);
  const Run alone = select_rounds(single, rounds, expect, storage, preset);

  auto* client = pool.find(expect);
  std::vector<double> rtt;
  for (int i = 0; i < rounds; ++i) {
    const auto start = Clock::now();
    auto status = client->get_status(startup_timeout, true);
    rtt.push_back(ms_since(start));
    if (!status.ok()) {
      std::fprintf(stderr, "GetStatus failed: %s\n", std::string(status.status().message()).c_str());
      return 1;
    }
  }
  const auto stats = pool.stats();
  std::printf(
      "RESULT {\"workers\":%zu,\"full\":%s,\"alone\":%s,\"get_status_p50_ms\":%.4f,\"get_status_p99_ms\":%.4f,"
      "\"pool_selections\":%llu,\"pool_get_status_calls\":%llu}\n",
      workers.size(), run_json(full).c_str(), run_json(alone).c_str(), percentile(rtt, 50), percentile(rtt, 99),
      static_cast<unsigned long long>(stats.selections), static_cast<unsigned long long>(stats.get_status_calls));
  return 0;
}
