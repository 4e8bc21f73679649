#pragma once
// Webhook delivery (SPEC §4): on a terminal status the job document is POSTed
// to the job's callback_url, signed with WEBHOOK_SECRET, retried with
// exponential backoff and jitter, and every try reported so that the delivery
// state can be kept on the job.
//
// Request: POST <callback_url>
//   Content-Type: application/json
//   User-Agent: flux-controlplane
//   X-Flux-Event: job.completed | job.failed | job.cancelled
//   X-Flux-Delivery: <random id, the same for every try of one delivery>
//   X-Flux-Signature: sha256=<lowercase hex HMAC-SHA256 of the body>  (omitted without a secret)
//   body: model::to_document(job), compact JSON
//
// Outcome of one try: 2xx → delivered. 408, 429, 5xx, connection errors and
// timeouts → tried again (429/503 honour Retry-After, capped at the backoff's
// max_delay). Any other status, a redirect (never followed), or an address the
// policy forbids (checked on the address actually connected to) → failed at
// once.
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "controlplane/model/job.h"
#include "shared/core/cancel_token.h"
#include "shared/http/url_policy.h"
#include "shared/retry/retry.h"

namespace flux::controlplane::webhook {

// "sha256=" + lowercase hex HMAC-SHA256 of `body` keyed with `secret`.
std::string sign_body(std::string_view body, std::string_view secret);

// True when `signature` (an X-Flux-Signature value) is the signature of
// `body` under `secret`; compared in constant time. For receivers and tests.
bool verify_signature(std::string_view body, std::string_view secret, std::string_view signature);

struct WebhookOptions {
  std::string secret;  // WEBHOOK_SECRET; "" = unsigned deliveries
  // max_attempts counts every try, the first included; the delay before try
  // n+1 is uniform in [0, min(max_delay, base_delay * 2^(n-1))].
  retry::RetryPolicy retry{5, std::chrono::milliseconds(1000), std::chrono::milliseconds(30000)};
  // Address rules for callback URLs (only http/https are ever used).
  flux::http::UrlPolicy policy;
  std::chrono::milliseconds timeout{std::chrono::seconds(10)};  // one try, connect included
  int threads = 2;                                              // concurrent tries
  size_t max_pending = 10000;                                   // deliveries waiting; beyond, new ones fail at once
  std::vector<std::string> test_only_resolve;                   // passed to http::request; never from configuration
};

// Called after every try, from a delivery thread (never from deliver()),
// never concurrently for one delivery. state is "pending" while tries remain,
// then "delivered" or "failed".
using WebhookStateCallback = std::function<void(const std::string& job_id, const model::WebhookState& state)>;

class WebhookSender {
 public:
  WebhookSender(WebhookOptions options, WebhookStateCallback on_state);
  ~WebhookSender();  // stop()
  WebhookSender(const WebhookSender&) = delete;
  WebhookSender& operator=(const WebhookSender&) = delete;

  // Queues a delivery of `job`'s document (as it is now) to its callback_url
  // and returns at once. No-op when the job has no callback_url or after stop().
  // `event` is "job.completed", "job.failed" or "job.cancelled".
  void deliver(const model::JobRecord& job, std::string event);

  // Deliveries queued or in flight.
  size_t pending() const;

  // Abandons queued deliveries, cancels tries in flight and joins the threads;
  // returns within about a second. Abandoned deliveries get no further
  // callback: their last recorded state (pending) says they are unfinished.
  void stop();

 private:
  struct Delivery {
    std::string job_id;
    std::string url;
    std::string event;
    std::string delivery_id;
    std::string body;
    std::string refused;  // non-empty: fail at once with this error (queue full)
    model::WebhookState state;
  };
  using Clock = std::chrono::steady_clock;

  void run();
  struct TryOutcome {
    std::optional<std::chrono::milliseconds> retry_in;  // set: try again after this delay
    bool abandoned = false;                             // stop() interrupted the try
  };
  TryOutcome attempt(Delivery& delivery, std::mt19937_64& rng);
  void report(const Delivery& delivery);

  const WebhookOptions options_;
  const WebhookStateCallback on_state_;
  mutable std::mutex mu_;
  std::condition_variable wake_;
  std::multimap<Clock::time_point, Delivery> queue_;  // by due time
  size_t in_flight_ = 0;
  bool stopping_ = false;
  CancelToken stop_token_;
  std::vector<std::thread> threads_;
};

}  // namespace flux::controlplane::webhook
