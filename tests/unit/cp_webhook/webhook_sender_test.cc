#include "controlplane/webhook/webhook_sender.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <fstream>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "shared/process/subprocess.h"
#include "support/loopback_http_server.h"

namespace flux::controlplane::webhook {
namespace {

using namespace std::chrono_literals;
using flux::testing::LoopbackHttpServer;
namespace fs = std::filesystem;

constexpr char kSecret[] = "whsec_test_0123456789";

// The HMAC as the openssl command line computes it: an implementation
// independent of sign_body().
std::string openssl_hmac_hex(const std::string& body, const std::string& secret) {
  const fs::path file = fs::temp_directory_path() / ("flux_webhook_body_" + std::to_string(::getpid()));
  std::ofstream(file, std::ios::binary) << body;
  auto result = process::run({"openssl", "dgst", "-sha256", "-hmac", secret, "-r", file.string()}, 10s);
  fs::remove(file);
  if (!result.ok() || !result->status.ok()) return "openssl failed";
  return result->out.substr(0, result->out.find(' '));
}

// Records every on_state call and lets a test wait for the final one.
class StateLog {
 public:
  WebhookStateCallback callback() {
    return [this](const std::string& job_id, const model::WebhookState& state) {
      {
        std::lock_guard lock(mu_);
        job_ids_.push_back(job_id);
        states_.push_back(state);
      }
      cv_.notify_all();
    };
  }
  // Waits until a state other than "pending" arrives; returns every state.
  std::vector<model::WebhookState> wait_final(std::chrono::milliseconds timeout = 10s) {
    std::unique_lock lock(mu_);
    cv_.wait_for(lock, timeout, [this] { return !states_.empty() && states_.back().state != "pending"; });
    return states_;
  }
  std::vector<model::WebhookState> wait_count(size_t count, std::chrono::milliseconds timeout = 10s) {
    std::unique_lock lock(mu_);
    cv_.wait_for(lock, timeout, [&] { return states_.size() >= count; });
    return states_;
  }
  std::vector<model::WebhookState> states() {
    std::lock_guard lock(mu_);
    return states_;
  }
  std::vector<std::string> job_ids() {
    std::lock_guard lock(mu_);
    return job_ids_;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::string> job_ids_;
  std::vector<model::WebhookState> states_;
};

WebhookOptions loopback_options() {
  WebhookOptions options;
  options.secret = kSecret;
  options.retry = retry::RetryPolicy{5, 1ms, 5ms};  // tiny backoff: tests stay fast
  options.policy.allow_private = true;              // the receiver is on 127.0.0.1
  options.timeout = 5s;
  return options;
}

model::JobRecord finished_job(const std::string& callback_url) {
  model::JobRecord job;
  job.job_id = model::new_job_id();
  job.spec.input_url = "https://media.example.org/in.mp4";
  job.spec.preset = "720p_h264";
  job.spec.output = {"s3", "out/a.mp4", "single", {{"title", "Sample"}}};
  job.spec.callback_url = callback_url;
  job.status = model::JobStatus::kCompleted;
  job.phase = "done";
  job.progress = 100;
  job.output_url = "s3://bucket/out/a.mp4";
  job.created_at = "2026-11-30T08:43:25.123Z";
  job.finished_at = "2026-11-30T08:44:00.000Z";
  job.attempts = 1;
  return job;
}

TEST(SignBody, MatchesRfc4231Vectors) {
  EXPECT_EQ(sign_body("what do ya want for nothing?", "Jefe"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
  EXPECT_EQ(sign_body("Hi There", std::string(20, '\x0b')),
            "sha256=b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");
}

TEST(SignBody, AgreesWithTheOpensslCommand) {
  const std::string body = R"({"job_id":"job_x","status":"completed","note":"caf\u00e9 \n"})";
  EXPECT_EQ(sign_body(body, kSecret), "sha256=" + openssl_hmac_hex(body, kSecret));
}

TEST(VerifySignature, AcceptsOnlyTheRightSignature) {
  const std::string body = "{\"a\":1}";
  const std::string signature = sign_body(body, kSecret);
  EXPECT_TRUE(verify_signature(body, kSecret, signature));
  EXPECT_FALSE(verify_signature(body, "other secret", signature));
  EXPECT_FALSE(verify_signature("{\"a\":2}", kSecret, signature));
  EXPECT_FALSE(verify_signature(body, kSecret, signature.substr(0, signature.size() - 1)));
  EXPECT_FALSE(verify_signature(body, kSecret, ""));
}

TEST(WebhookSender, PostsTheSignedJobDocument) {
  LoopbackHttpServer receiver([](const LoopbackHttpServer::Request&) { return LoopbackHttpServer::Response(204); });
  StateLog log;
  WebhookSender sender(loopback_options(), log.callback());
  const model::JobRecord job = finished_job(receiver.url("/hooks/flux?token=abc"));
  sender.deliver(job, "job.completed");

  const auto states = log.wait_final();
  ASSERT_EQ(states.size(), 1u);
  EXPECT_EQ(states[0].state, "delivered");
  EXPECT_EQ(states[0].attempts, 1);
  EXPECT_EQ(states[0].last_status, 204);
  EXPECT_EQ(states[0].last_error, "");
  EXPECT_FALSE(states[0].delivered_at.empty());
  EXPECT_EQ(log.job_ids(), std::vector<std::string>{job.job_id});

  const auto requests = receiver.requests();
  ASSERT_EQ(requests.size(), 1u);
  const auto& request = requests[0];
  EXPECT_EQ(request.method, "POST");
  EXPECT_EQ(request.path, "/hooks/flux?token=abc");
  EXPECT_EQ(request.header("Content-Type"), "application/json");
  EXPECT_EQ(request.header("User-Agent"), "flux-controlplane");
  EXPECT_EQ(request.header("X-Flux-Event"), "job.completed");
  EXPECT_EQ(request.header("X-Flux-Delivery").rfind("dlv_", 0), 0u);
  // What a receiver does: recompute the HMAC of the raw body with the shared secret.
  EXPECT_EQ(request.header("X-Flux-Signature"), "sha256=" + openssl_hmac_hex(request.body, kSecret));
  EXPECT_TRUE(verify_signature(request.body, kSecret, request.header("X-Flux-Signature")));
  EXPECT_EQ(nlohmann::json::parse(request.body), model::to_document(job));
}

TEST(WebhookSender, RetriesServerErrorsAndDeliversOnTheThirdTry) {
  std::atomic<int> calls{0};
  LoopbackHttpServer receiver(
      [&](const LoopbackHttpServer::Request&) { return LoopbackHttpServer::Response(++calls <= 2 ? 500 : 200, "ok"); });
  StateLog log;
  WebhookSender sender(loopback_options(), log.callback());
  model::JobRecord job = finished_job(receiver.url("/hook"));
  job.status = model::JobStatus::kFailed;
  job.error = "input not found";
  job.error_code = "input_not_found";
  sender.deliver(job, "job.failed");

  const auto states = log.wait_final();
  ASSERT_EQ(states.size(), 3u);
  EXPECT_EQ(states[0].state, "pending");
  EXPECT_EQ(states[0].attempts, 1);
  EXPECT_EQ(states[0].last_status, 500);
  EXPECT_EQ(states[1].state, "pending");
  EXPECT_EQ(states[1].attempts, 2);
  EXPECT_EQ(states[2].state, "delivered");
  EXPECT_EQ(states[2].attempts, 3);
  EXPECT_EQ(states[2].last_status, 200);

  const auto requests = receiver.requests();
  ASSERT_EQ(requests.size(), 3u);
  for (const auto& request : requests) {
    // Every try is the same delivery: same id, same bytes, same signature.
    EXPECT_EQ(request.header("X-Flux-Delivery"), requests[0].header("X-Flux-Delivery"));
    EXPECT_EQ(request.body, requests[0].body);
    EXPECT_TRUE(verify_signature(request.body, kSecret, request.header("X-Flux-Signature")));
    EXPECT_EQ(request.header("X-Flux-Event"), "job.failed");
  }
}

TEST(WebhookSender, ClientErrorsAreNotRetried) {
  LoopbackHttpServer receiver(
      [](const LoopbackHttpServer::Request&) { return LoopbackHttpServer::Response(400, "bad"); });
  StateLog log;
  WebhookSender sender(loopback_options(), log.callback());
  sender.deliver(finished_job(receiver.url("/hook")), "job.completed");

  const auto states = log.wait_final();
  ASSERT_EQ(states.size(), 1u);
  EXPECT_EQ(states[0].state, "failed");
  EXPECT_EQ(states[0].attempts, 1);
  EXPECT_EQ(states[0].last_status, 400);
  EXPECT_NE(states[0].last_error.find("400"), std::string::npos);
  EXPECT_EQ(receiver.requests().size(), 1u);
}

TEST(WebhookSender, TooManyRequestsIsRetried) {
  std::atomic<int> calls{0};
  LoopbackHttpServer receiver([&](const LoopbackHttpServer::Request&) {
    // Retry-After is honoured but capped at the backoff's max_delay (5 ms here).
    return ++calls == 1 ? LoopbackHttpServer::Response(429, "", {{"Retry-After", "3600"}})
                        : LoopbackHttpServer::Response(200);
  });
  StateLog log;
  WebhookSender sender(loopback_options(), log.callback());
  const auto start = std::chrono::steady_clock::now();
  sender.deliver(finished_job(receiver.url("/hook")), "job.completed");
  const auto states = log.wait_final();
  ASSERT_EQ(states.size(), 2u);
  EXPECT_EQ(states[0].last_status, 429);
  EXPECT_EQ(states[1].state, "delivered");
  EXPECT_LT(std::chrono::steady_clock::now() - start, 3s);
}

TEST(WebhookSender, GivesUpAfterMaxAttempts) {
  LoopbackHttpServer receiver([](const LoopbackHttpServer::Request&) { return LoopbackHttpServer::Response(503); });
  StateLog log;
  WebhookOptions options = loopback_options();
  options.retry.max_attempts = 3;
  WebhookSender sender(options, log.callback());
  sender.deliver(finished_job(receiver.url("/hook")), "job.completed");
  const auto states = log.wait_final();
  ASSERT_EQ(states.size(), 3u);
  EXPECT_EQ(states.back().state, "failed");
  EXPECT_EQ(states.back().attempts, 3);
  EXPECT_EQ(states.back().last_status, 503);
  EXPECT_EQ(receiver.requests().size(), 3u);
}

TEST(WebhookSender, ConnectionErrorsAreRetriedThenFail) {
  std::string url;
  {
    LoopbackHttpServer gone([](const LoopbackHttpServer::Request&) { return LoopbackHttpServer::Response(200); });
    url = gone.url("/hook");
  }  // nothing listens on that port any more
  StateLog log;
  WebhookOptions options = loopback_options();
  options.retry.max_attempts = 2;
  WebhookSender sender(options, log.callback());
  sender.deliver(finished_job(url), "job.completed");
  const auto states = log.wait_final();
  ASSERT_EQ(states.size(), 2u);
  EXPECT_EQ(states[0].state, "pending");
  EXPECT_EQ(states[1].state, "failed");
  EXPECT_EQ(states[1].last_status, 0);
  EXPECT_FALSE(states[1].last_error.empty());
}

TEST(WebhookSender, ForbiddenAddressesAreNeverContacted) {
  LoopbackHttpServer receiver([](const LoopbackHttpServer::Request&) { return LoopbackHttpServer::Response(200); });
  StateLog log;
  WebhookOptions options = loopback_options();
  options.policy.allow_private = false;
  // A public-looking name that resolves to loopback: refused on the address
  // actually connected to, not only on the text of the URL.
  options.test_only_resolve = {"hooks.example.org:" + std::to_string(receiver.port()) + ":127.0.0.1"};
  WebhookSender sender(options, log.callback());

  sender.deliver(finished_job(receiver.url("/hook")), "job.completed");
  auto states = log.wait_final();
  ASSERT_EQ(states.size(), 1u);
  EXPECT_EQ(states[0].state, "failed");
  EXPECT_EQ(states[0].attempts, 1);
  EXPECT_NE(states[0].last_error.find("address"), std::string::npos) << states[0].last_error;

  StateLog log2;
  WebhookSender sender2(options, log2.callback());
  sender2.deliver(finished_job("http://hooks.example.org:" + std::to_string(receiver.port()) + "/hook"),
                  "job.completed");
  states = log2.wait_final();
  ASSERT_EQ(states.size(), 1u);
  EXPECT_EQ(states[0].state, "failed");
  EXPECT_EQ(states[0].attempts, 1) << "a forbidden address is not worth retrying";
  EXPECT_NE(states[0].last_error.find("127.0.0.1"), std::string::npos) << states[0].last_error;

  EXPECT_EQ(receiver.connections(), 0);
}

TEST(WebhookSender, RedirectsAreNotFollowed) {
  LoopbackHttpServer target([](const LoopbackHttpServer::Request&) { return LoopbackHttpServer::Response(200); });
  LoopbackHttpServer receiver([&](const LoopbackHttpServer::Request&) {
    return LoopbackHttpServer::Response(307, "", {{"Location", target.url("/elsewhere")}});
  });
  StateLog log;
  WebhookSender sender(loopback_options(), log.callback());
  sender.deliver(finished_job(receiver.url("/hook")), "job.completed");
  const auto states = log.wait_final();
  ASSERT_EQ(states.size(), 1u);
  EXPECT_EQ(states[0].state, "failed");
  EXPECT_EQ(states[0].last_status, 307);
  EXPECT_EQ(target.connections(), 0);
}

TEST(WebhookSender, UnsignedWithoutASecret) {
  LoopbackHttpServer receiver([](const LoopbackHttpServer::Request&) { return LoopbackHttpServer::Response(200); });
  StateLog log;
  WebhookOptions options = loopback_options();
  options.secret.clear();
  WebhookSender sender(options, log.callback());
  sender.deliver(finished_job(receiver.url("/hook")), "job.cancelled");
  ASSERT_EQ(log.wait_final().back().state, "delivered");
  ASSERT_EQ(receiver.requests().size(), 1u);
  EXPECT_EQ(receiver.requests()[0].header("X-Flux-Signature"), "");
  EXPECT_EQ(receiver.requests()[0].header("X-Flux-Event"), "job.cancelled");
}

TEST(WebhookSender, JobsWithoutCallbackAreIgnored) {
  StateLog log;
  WebhookSender sender(loopback_options(), log.callback());
  sender.deliver(finished_job(""), "job.completed");
  EXPECT_EQ(sender.pending(), 0u);
  std::this_thread::sleep_for(50ms);
  EXPECT_TRUE(log.states().empty());
}

TEST(WebhookSender, StopAbandonsAStalledDeliveryPromptly) {
  LoopbackHttpServer receiver([](const LoopbackHttpServer::Request&) {
    LoopbackHttpServer::Response response(200, "late");
    response.stall_before_body = 20s;
    response.send_content_length = true;
    return response;
  });
  StateLog log;
  WebhookOptions options = loopback_options();
  options.timeout = 30s;
  auto sender = std::make_unique<WebhookSender>(options, log.callback());
  const auto before_deliver = std::chrono::steady_clock::now();
  sender->deliver(finished_job(receiver.url("/hook")), "job.completed");
  EXPECT_LT(std::chrono::steady_clock::now() - before_deliver, 100ms) << "deliver() must not block";
  for (int i = 0; i < 200 && receiver.requests().empty(); ++i) std::this_thread::sleep_for(10ms);
  ASSERT_EQ(receiver.requests().size(), 1u);

  const auto before_stop = std::chrono::steady_clock::now();
  sender->stop();
  EXPECT_LT(std::chrono::steady_clock::now() - before_stop, 3s);
  EXPECT_TRUE(log.states().empty()) << "an abandoned try is not reported";
  sender->deliver(finished_job(receiver.url("/hook")), "job.completed");  // after stop: ignored
  EXPECT_EQ(sender->pending(), 0u);
  sender.reset();
}

TEST(WebhookSender, FullQueueRefusesNewDeliveries) {
  LoopbackHttpServer receiver([](const LoopbackHttpServer::Request&) {
    LoopbackHttpServer::Response response(200, "ok");  // a body, so the client waits for it
    response.stall_before_body = 300ms;
    return response;
  });
  StateLog log;
  WebhookOptions options = loopback_options();
  options.threads = 1;
  options.max_pending = 1;
  WebhookSender sender(options, log.callback());
  const model::JobRecord first = finished_job(receiver.url("/hook"));
  const model::JobRecord second = finished_job(receiver.url("/hook"));
  sender.deliver(first, "job.completed");
  for (int i = 0; i < 200 && receiver.requests().empty(); ++i) std::this_thread::sleep_for(10ms);
  ASSERT_EQ(receiver.requests().size(), 1u);
  ASSERT_EQ(sender.pending(), 1u);
  sender.deliver(second, "job.completed");  // the only slot is taken by the slow try

  const auto states = log.wait_count(2);
  ASSERT_EQ(states.size(), 2u);
  EXPECT_EQ(log.job_ids(), (std::vector<std::string>{first.job_id, second.job_id}));
  EXPECT_EQ(states[0].state, "delivered");
  EXPECT_EQ(states[1].state, "failed");
  EXPECT_EQ(states[1].last_status, 0);
  EXPECT_NE(states[1].last_error.find("queue full"), std::string::npos);
  EXPECT_EQ(receiver.requests().size(), 1u);
}

}  // namespace
}  // namespace flux::controlplane::webhook
