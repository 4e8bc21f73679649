#include "controlplane/balancer/selection.h"

#include <algorithm>

namespace flux::controlplane::balancer {
namespace {

template <class List>
bool serves(const List& offered, const std::string& wanted) {
  if (wanted.empty() || offered.empty()) return true;
  return std::find(offered.begin(), offered.end(), wanted) != offered.end();
}

}  // namespace

bool has_room(const v1::WorkerStatus& status, const JobNeeds& needs) {
  if (status.state() == v1::WORKER_STATE_DRAINING) return false;
  if (status.current_jobs() >= status.max_concurrent_jobs()) return false;
  return serves(status.storage_types(), needs.storage) && serves(status.presets(), needs.preset);
}

std::optional<size_t> select_index(size_t count, int last, const JobNeeds& needs, const AskWorker& ask, int avoid) {
  if (count == 0) return std::nullopt;
  const size_t start = last < 0 ? 0 : (static_cast<size_t>(last) + 1) % count;
  std::optional<size_t> fallback;
  for (size_t step = 0; step < count; ++step) {
    const size_t index = (start + step) % count;
    const std::optional<v1::WorkerStatus> status = ask(index);
    if (!status || !has_room(*status, needs)) continue;
    if (static_cast<int>(index) == avoid) {
      fallback = index;
      continue;
    }
    return index;
  }
  return fallback;
}

}  // namespace flux::controlplane::balancer
