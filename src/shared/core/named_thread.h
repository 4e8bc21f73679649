#pragma once
// Threads with a name, so that `top -H`, perf and the benchmarks' per-thread
// CPU figures tell them apart.
#include <pthread.h>

#include <algorithm>
#include <string>
#include <thread>
#include <utility>

namespace flux {

// The kernel keeps the first 15 characters of a thread's name.
inline constexpr size_t kMaxThreadNameLength = 15;

// Starts std::thread(fn) named `name` (cut to kMaxThreadNameLength).
template <class Fn>
std::thread start_named_thread(std::string name, Fn&& fn) {
  name.resize(std::min(name.size(), kMaxThreadNameLength));
  return std::thread([name = std::move(name), fn = std::forward<Fn>(fn)]() mutable {
    pthread_setname_np(pthread_self(), name.c_str());
    fn();
  });
}

}  // namespace flux
