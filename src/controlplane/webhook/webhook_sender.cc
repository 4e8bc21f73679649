#include "controlplane/webhook/webhook_sender.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include <algorithm>
#include <array>
#include <charconv>
#include <utility>

#include "absl/status/status.h"
#include "shared/core/error.h"
#include "shared/core/time.h"
#include "shared/http/http_client.h"
#include "shared/log/log.h"

namespace flux::controlplane::webhook {
namespace {

constexpr std::string_view kSignaturePrefix = "sha256=";
constexpr size_t kMaxResponseBytes = size_t{64} * 1024;  // the answer is ignored; only its status matters

std::string to_hex(const unsigned char* bytes, size_t size) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  out.reserve(size * 2);
  for (size_t i = 0; i < size; ++i) {
    out += kDigits[bytes[i] >> 4];
    out += kDigits[bytes[i] & 0x0f];
  }
  return out;
}

// Same id for every try of one delivery, so receivers can drop duplicates
// (a try that timed out may still have arrived).
std::string new_delivery_id() {
  std::array<unsigned char, 16> bytes{};
  if (RAND_bytes(bytes.data(), static_cast<int>(bytes.size())) != 1) {
    std::random_device random;
    for (auto& b : bytes) b = static_cast<unsigned char>(random());
  }
  return "dlv_" + to_hex(bytes.data(), bytes.size());
}

bool worth_retrying_status(long status) { return status == 408 || status == 429 || (status >= 500 && status <= 599); }

bool worth_retrying_error(const absl::Status& status) {
  // Connection refused/reset, DNS, timeouts. Not: forbidden address, bad URL,
  // TLS verification (FAILED_PRECONDITION), oversized answers.
  return status.code() == absl::StatusCode::kUnavailable || status.code() == absl::StatusCode::kDeadlineExceeded;
}

// Retry-After in seconds (the HTTP-date form is ignored: the backoff applies).
std::optional<std::chrono::milliseconds> retry_after(const flux::http::HttpHeaders& headers) {
  const std::string value = flux::http::header_value(headers, "Retry-After");
  int64_t seconds = 0;
  const auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), seconds);
  if (value.empty() || ec != std::errc() || end != value.data() + value.size() || seconds < 0) return std::nullopt;
  return std::chrono::seconds(std::min<int64_t>(seconds, int64_t{24} * 3600));
}

}  // namespace

std::string sign_body(std::string_view body, std::string_view secret) {
  static const unsigned char kEmptyKey = 0;
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int mac_size = 0;
  const void* key = secret.empty() ? static_cast<const void*>(&kEmptyKey) : secret.data();
  if (HMAC(EVP_sha256(), key, static_cast<int>(secret.size()), reinterpret_cast<const unsigned char*>(body.data()),
           body.size(), mac, &mac_size) == nullptr) {
    return "";  // only on allocation failure; an empty signature never verifies
  }
  return std::string(kSignaturePrefix) + to_hex(mac, mac_size);
}

bool verify_signature(std::string_view body, std::string_view secret, std::string_view signature) {
  const std::string expected = sign_body(body, secret);
  return !expected.empty() && expected.size() == signature.size() &&
         CRYPTO_memcmp(expected.data(), signature.data(), expected.size()) == 0;
}

WebhookSender::WebhookSender(WebhookOptions options, WebhookStateCallback on_state)
    : options_(std::move(options)), on_state_(std::move(on_state)) {
  const int threads = std::max(1, options_.threads);
  threads_.reserve(static_cast<size_t>(threads));
  for (int i = 0; i < threads; ++i) threads_.emplace_back([this] { run(); });
}

WebhookSender::~WebhookSender() { stop(); }

void WebhookSender::deliver(const model::JobRecord& job, std::string event) {
  if (job.spec.callback_url.empty()) return;
  Delivery delivery;
  delivery.job_id = job.job_id;
  delivery.url = job.spec.callback_url;
  delivery.event = std::move(event);
  delivery.delivery_id = new_delivery_id();
  delivery.state.state = "pending";
  {
    std::lock_guard lock(mu_);
    if (stopping_) return;
    if (queue_.size() + in_flight_ >= options_.max_pending) {
      delivery.refused = "webhook queue full (" + std::to_string(options_.max_pending) + " deliveries waiting)";
    } else {
      // Serialised once: every try sends the same bytes under the same signature.
      delivery.body = model::to_document(job).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    }
    queue_.emplace(Clock::now(), std::move(delivery));
  }
  wake_.notify_one();
}

size_t WebhookSender::pending() const {
  std::lock_guard lock(mu_);
  return queue_.size() + in_flight_;
}

void WebhookSender::stop() {
  std::vector<std::thread> threads;
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
    queue_.clear();
    threads.swap(threads_);
  }
  stop_token_.cancel("webhook sender stopping");
  wake_.notify_all();
  for (auto& thread : threads) thread.join();
}

void WebhookSender::run() {
  std::mt19937_64 rng(std::random_device{}());
  std::unique_lock lock(mu_);
  while (!stopping_) {
    if (queue_.empty()) {
      wake_.wait(lock);
      continue;
    }
    const auto due = queue_.begin()->first;
    if (due > Clock::now()) {
      wake_.wait_until(lock, due);
      continue;
    }
    Delivery delivery = std::move(queue_.begin()->second);
    queue_.erase(queue_.begin());
    ++in_flight_;
    lock.unlock();

    const TryOutcome outcome = attempt(delivery, rng);
    if (!outcome.abandoned) report(delivery);

    lock.lock();
    --in_flight_;
    if (outcome.retry_in && !stopping_) {
      queue_.emplace(Clock::now() + *outcome.retry_in, std::move(delivery));
      // Another thread may be sleeping until a later due time.
      wake_.notify_one();
    }
  }
}

WebhookSender::TryOutcome WebhookSender::attempt(Delivery& delivery, std::mt19937_64& rng) {
  model::WebhookState& state = delivery.state;
  ++state.attempts;
  const nlohmann::json log_fields_base = {{"job_id", delivery.job_id},
                                          {"event", delivery.event},
                                          {"delivery_id", delivery.delivery_id},
                                          {"callback_url", flux::http::redact_url(delivery.url)},
                                          {"attempt", state.attempts}};
  auto log_fields = [&log_fields_base](const nlohmann::json& extra) {
    nlohmann::json fields = log_fields_base;
    fields.update(extra);
    return fields;
  };
  if (!delivery.refused.empty()) {
    state.state = "failed";
    state.last_status = 0;
    state.last_error = delivery.refused;
    log::warn("webhook not delivered", {{"job_id", delivery.job_id}, {"error", delivery.refused}});
    return {};
  }

  flux::http::HttpRequest request;
  request.method = "POST";
  request.url = delivery.url;
  request.body = delivery.body;
  request.headers = {{"Content-Type", "application/json"},
                     {"User-Agent", "flux-controlplane"},
                     {"X-Flux-Event", delivery.event},
                     {"X-Flux-Delivery", delivery.delivery_id}};
  if (!options_.secret.empty())
    request.headers.emplace_back("X-Flux-Signature", sign_body(delivery.body, options_.secret));

  flux::http::RequestOptions request_options;
  request_options.policy = options_.policy;
  request_options.policy.allowed_schemes = {"https", "http"};
  request_options.policy.local_input_dir.reset();
  request_options.connect_timeout = options_.timeout;
  request_options.total_timeout = options_.timeout;
  request_options.max_response_bytes = kMaxResponseBytes;
  request_options.max_redirects = 0;  // a redirect is an answer, not a delivery
  request_options.test_only_resolve = options_.test_only_resolve;

  const auto response = flux::http::request(request, request_options, &stop_token_);
  if (stop_token_.cancelled()) return TryOutcome{std::nullopt, true};

  bool retryable = false;
  std::optional<std::chrono::milliseconds> server_delay;
  if (!response.ok()) {
    state.last_status = 0;
    state.last_error = std::string(response.status().message());
    retryable = worth_retrying_error(response.status());
  } else if (response->status >= 200 && response->status <= 299) {
    state.state = "delivered";
    state.last_status = static_cast<int>(response->status);
    state.last_error.clear();
    state.delivered_at = flux::now_rfc3339();
    log::info("webhook delivered", log_fields({{"status", response->status}}));
    return {};
  } else {
    state.last_status = static_cast<int>(response->status);
    state.last_error = "the receiver answered HTTP " + std::to_string(response->status);
    retryable = worth_retrying_status(response->status);
    if (response->status == 429 || response->status == 503) server_delay = retry_after(response->headers);
  }

  const int max_attempts = std::max(1, options_.retry.max_attempts);
  if (retryable && state.attempts < max_attempts) {
    state.state = "pending";
    auto delay = retry::backoff_delay(options_.retry, state.attempts - 1, rng);
    if (server_delay) delay = std::max(delay, std::min(*server_delay, options_.retry.max_delay));
    log::warn("webhook try failed, will retry",
              log_fields({{"status", state.last_status}, {"error", state.last_error}, {"retry_in_ms", delay.count()}}));
    return TryOutcome{delay, false};
  }
  state.state = "failed";
  log::warn("webhook delivery failed", log_fields({{"status", state.last_status}, {"error", state.last_error}}));
  return {};
}

void WebhookSender::report(const Delivery& delivery) {
  if (!on_state_) return;
  try {
    on_state_(delivery.job_id, delivery.state);
  } catch (const std::exception& e) {
    log::error("webhook state callback threw", {{"job_id", delivery.job_id}, {"error", e.what()}});
  }
}

}  // namespace flux::controlplane::webhook
