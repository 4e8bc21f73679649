#pragma once
// A cancellation flag shared between whoever asks for a stop (a CancelJob RPC,
// a timeout, SIGTERM) and the code doing the work, which polls it or waits on it.
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>

namespace flux {

class CancelToken {
 public:
  // Requests cancellation; the first reason given is kept.
  void cancel(std::string reason = "cancelled") {
    {
      std::lock_guard lock(mu_);
      if (cancelled_.load()) return;
      reason_ = std::move(reason);
      cancelled_.store(true);
    }
    cv_.notify_all();
  }
  bool cancelled() const { return cancelled_.load(); }
  std::string reason() const {
    std::lock_guard lock(mu_);
    return reason_;
  }
  // Sleeps up to `d`; returns true early if cancelled.
  template <class Rep, class Period>
  bool wait_for(std::chrono::duration<Rep, Period> d) const {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, d, [this] { return cancelled_.load(); });
  }

 private:
  mutable std::mutex mu_;
  mutable std::condition_variable cv_;
  std::atomic<bool> cancelled_{false};
  std::string reason_;
};

using CancelTokenPtr = std::shared_ptr<CancelToken>;

}  // namespace flux
