#include "controlplane/http/thread_affinity.h"

#include <pthread.h>

#include <algorithm>
#include <string>
#include <system_error>

#include "shared/core/error.h"

namespace flux::controlplane::http {

std::vector<int> io_thread_cpus(const cpu_set_t& allowed, int threads) {
  std::vector<int> cpus;
  for (int cpu = 0; cpu < CPU_SETSIZE; ++cpu) {
    if (CPU_ISSET(cpu, &allowed)) cpus.push_back(cpu);
  }
  if (cpus.empty()) return {};
  std::vector<int> chosen;
  chosen.reserve(static_cast<size_t>(std::max(0, threads)));
  for (int i = 0; i < threads; ++i) chosen.push_back(cpus[static_cast<size_t>(i) % cpus.size()]);
  return chosen;
}

absl::Status pin_thread(std::thread& thread, int cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  const int rc = pthread_setaffinity_np(thread.native_handle(), sizeof set, &set);
  if (rc != 0) {
    return unavailable("pin_failed", "pinning an io thread to CPU " + std::to_string(cpu) + ": " +
                                         std::error_code(rc, std::generic_category()).message());
  }
  return absl::OkStatus();
}

}  // namespace flux::controlplane::http
