#include "controlplane/app/control_plane.h"

#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include <cmath>
#include <deque>
#include <set>
#include <thread>

#include "absl/strings/numbers.h"
#include "controlplane/api/openapi.h"
#include "controlplane/api/validation.h"
#include "controlplane/app/blocking_pool.h"
#include "controlplane/app/status_response.h"
#include "controlplane/auth/api_keys.h"
#include "controlplane/auth/rate_limiter.h"
#include "controlplane/balancer/worker_pool.h"
#include "controlplane/dispatch/dispatcher.h"
#include "controlplane/events/progress_hub.h"
#include "controlplane/http/router.h"
#include "controlplane/http/server.h"
#include "controlplane/model/job.h"
#include "controlplane/store/sqlite_job_store.h"
#include "controlplane/webhook/webhook_sender.h"
#include "flux_version.h"
#include "shared/core/error.h"
#include "shared/core/time.h"
#include "shared/log/log.h"
#include "shared/metrics/metrics.h"
#include "worker/preset/preset.h"

namespace flux::controlplane::app {
namespace {

using http::error_response;
using http::json_response;
using http::Request;
using http::Responder;
using http::Response;
using SteadyClock = std::chrono::steady_clock;

// Finished jobs' replay rings are kept this long for late watchers.
constexpr std::chrono::minutes kReplayRetention{10};
// ... and at most this many (~2 KiB each): under a sustained 1,000 jobs/s the
// ten minutes alone would hold 600,000 rings. A late watcher of a job whose
// ring is gone still gets its final state from the store.
constexpr size_t kReplayRetainedJobs = 10000;
constexpr int kBlockingThreads = 64;
constexpr size_t kMaxIdempotencyKey = 200;

// Routes anyone may call: liveness, readiness, the API description.
constexpr std::string_view kStreamRoute = "/api/v1/jobs/{id}/stream";
const std::set<std::string, std::less<>> kOpenRoutes = {"/health", "/ready", "/openapi.json", "/docs"};

// Built member by member: from an initializer list of pairs, nlohmann first
// makes a two-element array per member, which takes over twice as long. One
// of these is built for every event of every job.
nlohmann::json event_json(const model::JobRecord& job) {
  nlohmann::json e = nlohmann::json::object();
  e["job_id"] = job.job_id;
  e["status"] = model::to_string(job.status);
  e["phase"] = job.phase;
  e["progress"] = job.progress;
  e["message"] = job.message;
  e["timestamp"] = now_rfc3339();
  e["attempts"] = job.attempts;
  if (!job.worker_id.empty()) e["worker_id"] = job.worker_id;
  if (job.phase == "encoding") {
    e["fps"] = job.fps;
    e["speed"] = job.speed;
    if (job.eta_seconds >= 0) e["eta_seconds"] = job.eta_seconds;
  }
  if (!job.output_url.empty()) e["output_url"] = job.output_url;
  if (job.status == model::JobStatus::kFailed || job.status == model::JobStatus::kCancelled) {
    e["error"] = job.error;
    e["error_code"] = job.error_code;
  }
  if (job.status == model::JobStatus::kCompleted && !job.result.empty()) e["result"] = job.result;
  return e;
}

// {"job_id", "status": "accepted", "stream_url", "job_url"}. Written without
// a json object: job ids are plain ASCII ("job_" + base32), nothing to escape.
Response accepted_response(const std::string& job_id) {
  Response r;
  r.status = 202;
  r.body.reserve(160 + 3 * job_id.size());
  r.body += R"({"job_id":")";
  r.body += job_id;
  r.body += R"(","job_url":"/api/v1/jobs/)";
  r.body += job_id;
  r.body += R"(","status":"accepted","stream_url":"/api/v1/jobs/)";
  r.body += job_id;
  r.body += R"(/stream"})";
  return r;
}

// glibc gives freed memory back to the kernel as soon as the top of a
// thread's heap holds more than 128 KiB free, and takes it again with page
// faults on the next allocation. Submissions allocate and free a batch's
// worth every few milliseconds (the store writer most of all), so under load
// that cycle (madvise, TLB shootdowns on every core, page faults) took about
// a tenth of the control plane's CPU (perf, bench/submissions.py). Keeping up
// to 8 MiB free per heap stops it. Setting a threshold turns glibc's adaptive
// mmap threshold off, so blocks up to 4 MiB (list pages, /metrics) are set to
// come from the heaps as that adaptation would have arranged, not from mmap.
void keep_freed_memory_for_reuse() {
#if defined(__GLIBC__)
  mallopt(M_MMAP_THRESHOLD, 4 << 20);
  mallopt(M_TRIM_THRESHOLD, 8 << 20);
#endif
}

}  // namespace

struct ControlPlane::Parts {
  config::ControlPlaneConfig config;
  metrics::Registry registry;
  worker::preset::Catalog catalog = worker::preset::Catalog::builtin();
  std::map<std::string, api::PresetSummary, std::less<>> presets;
  auth::ApiKeys api_keys;
  std::optional<auth::ApiKeys> metrics_token;
  std::unique_ptr<auth::RateLimiter> limiter;
  std::unique_ptr<store::JobStore> store;
  std::unique_ptr<balancer::WorkerPool> pool;
  events::ProgressHub hub;
  std::unique_ptr<webhook::WebhookSender> webhooks;
  std::unique_ptr<dispatch::Dispatcher> dispatcher;
  std::unique_ptr<BlockingPool> blocking;
  std::unique_ptr<http::HttpServer> server;

  // Metrics (SPEC §7).
  metrics::Family<metrics::Counter>* http_requests = nullptr;
  metrics::Family<metrics::Histogram>* http_duration = nullptr;
  metrics::Family<metrics::Counter>* jobs_finished = nullptr;
  metrics::Histogram* job_duration = nullptr;
  metrics::Gauge* queued = nullptr;
  metrics::Gauge* running = nullptr;
  metrics::Gauge* sse_open = nullptr;
  metrics::Family<metrics::Gauge>* worker_up = nullptr;
  metrics::Family<metrics::Counter>* dispatches = nullptr;
  dispatch::DispatchStats last_dispatch_stats;
  std::mutex metrics_mu;

  // Housekeeping: replay rings of finished jobs are dropped after a while.
  std::mutex finished_mu;
  std::deque<std::pair<SteadyClock::time_point, std::string>> finished;
  std::atomic<bool> stopping{false};
  std::thread housekeeping;

  api::ValidationContext validation_context() const;
  void on_job_change(const model::JobRecord& job, bool status_changed);
  void register_metrics();
  void refresh_gauges();
  http::Router routes();
  std::optional<Response> authorize(Request& request);
};

api::ValidationContext ControlPlane::Parts::validation_context() const {
  api::ValidationContext ctx;
  ctx.find_preset = [this](std::string_view name) -> const api::PresetSummary* {
    auto it = presets.find(name);
    return it == presets.end() ? nullptr : &it->second;
  };
  std::set<std::string> storage;
  for (const auto& worker : pool->snapshots()) storage.insert(worker.storage_types.begin(), worker.storage_types.end());
  // No worker has answered yet (scale-to-zero: all may be stopped): accept
  // both and let the dispatcher match the job to a worker that serves it.
  if (storage.empty()) storage = {"local", "s3"};
  ctx.served_storage.assign(storage.begin(), storage.end());
  ctx.input_policy.allowed_schemes = config.input_schemes;
  ctx.input_policy.allow_private = config.allow_private_inputs;
  ctx.input_policy.local_input_dir = config.local_input_dir;
  ctx.callback_policy.allowed_schemes = {"https", "http"};
  ctx.callback_policy.allow_private = config.allow_private_inputs;
  return ctx;
}

void ControlPlane::Parts::on_job_change(const model::JobRecord& job, bool status_changed) {
  const bool terminal = model::is_terminal(job.status);
  hub.publish(job.job_id, event_json(job), terminal);
  if (!status_changed) return;
  if (job.status == model::JobStatus::kQueued && job.attempts == 0 && job.sequence <= 1) {
    // A new job: its one line says what was asked.
    nlohmann::json fields = nlohmann::json::object();
    fields["job_id"] = job.job_id;
    fields["status"] = "queued";
    fields["preset"] = job.spec.preset;
    fields["priority"] = job.spec.priority;
    log::info("job accepted", fields);
  } else {
    log::info("job status", {{"job_id", job.job_id},
                             {"status", model::to_string(job.status)},
                             {"worker_id", job.worker_id},
                             {"attempts", job.attempts},
                             {"error_code", job.error_code}});
  }
  if (!terminal) return;
  jobs_finished->with({std::string(model::to_string(job.status))}).inc();
  const auto now_ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
          .count();
  job_duration->observe(static_cast<double>(now_ms - job.created_ms) / 1000.0);
  {
    std::lock_guard lock(finished_mu);
    finished.emplace_back(SteadyClock::now(), job.job_id);
  }
  if (!job.spec.callback_url.empty() && webhooks) {
    webhooks->deliver(job, "job." + std::string(model::to_string(job.status)));
  }
}

void ControlPlane::Parts::register_metrics() {
  http_requests = &registry.counter("flux_http_requests_total", "HTTP requests by route, method and status code.",
                                    {"route", "method", "code"});
  http_duration =
      &registry.histogram("flux_http_request_duration_seconds", "HTTP request latency.",
                          {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5}, {"route", "method"});
  jobs_finished = &registry.counter("flux_jobs_finished_total", "Jobs that reached a terminal status.", {"status"});
  job_duration = &registry
                      .histogram("flux_job_duration_seconds", "Time from submission to terminal status.",
                                 {1, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200})
                      .with({});
  queued = &registry.gauge("flux_jobs_queued", "Jobs waiting for a worker.").with({});
  running = &registry.gauge("flux_jobs_running", "Jobs handed to a worker and not finished.").with({});
  sse_open = &registry.gauge("flux_sse_connections", "Open progress streams (SSE).").with({});
  worker_up = &registry.gauge("flux_worker_up", "1 when the worker answered its last status request.", {"worker"});
  dispatches = &registry.counter("flux_dispatches_total",
                                 "Dispatch outcomes (dispatched, refused, requeued, "
                                 "reattached, timed_out).",
                                 {"result"});
}

void ControlPlane::Parts::refresh_gauges() {
  queued->set(static_cast<double>(dispatcher->queued()));
  running->set(static_cast<double>(dispatcher->running()));
  sse_open->set(server ? static_cast<double>(server->open_streams()) : 0);
  for (const auto& worker : pool->snapshots()) {
    worker_up->with({worker.address}).set(worker.state == "up" || worker.state == "draining" ? 1 : 0);
  }
  std::lock_guard lock(metrics_mu);
  const dispatch::DispatchStats now = dispatcher->stats();
  auto add = [this](const char* result, uint64_t current, uint64_t previous) {
    if (current > previous) dispatches->with({result}).inc(static_cast<double>(current - previous));
  };
  add("dispatched", now.dispatched, last_dispatch_stats.dispatched);
  add("refused", now.refused, last_dispatch_stats.refused);
  add("requeued", now.requeued, last_dispatch_stats.requeued);
  add("reattached", now.reattached, last_dispatch_stats.reattached);
  add("timed_out", now.timed_out, last_dispatch_stats.timed_out);
  last_dispatch_stats = now;
}

std::optional<Response> ControlPlane::Parts::authorize(Request& request) {
  if (kOpenRoutes.count(request.route) != 0) return std::nullopt;
  const std::string* authorization = request.header("authorization");
  if (request.route == "/metrics") {
    if (!metrics_token || (authorization != nullptr && metrics_token->authenticate(*authorization))) {
      return std::nullopt;
    }
    Response r = error_response(401, "unauthorized", "a valid METRICS_TOKEN bearer token is required");
    r.headers.emplace_back("WWW-Authenticate", "Bearer");
    return r;
  }
  if (!api_keys.empty()) {
    std::optional<std::string> key_id;
    if (authorization != nullptr) {
      key_id = api_keys.authenticate(*authorization);
    } else if (request.route == kStreamRoute) {
      // A browser's EventSource cannot send headers: the progress stream (and
      // only it, a read-only route) also takes the key as ?access_token=.
      if (const std::string* token = request.query_param("access_token")) {
        key_id = api_keys.authenticate("Bearer " + *token);
      }
    }
    if (!key_id) {
      Response r = error_response(401, "unauthorized", "missing or invalid API key (Authorization: Bearer <key>)");
      r.headers.emplace_back("WWW-Authenticate", "Bearer");
      return r;
    }
    request.principal = *key_id;
  }
  if (limiter && limiter->enabled()) {
    const std::string bucket = request.principal.empty() ? "ip:" + request.remote_address : request.principal;
    const auto decision = limiter->take(bucket);
    if (!decision.allowed) {
      const int seconds = std::max(1, static_cast<int>(std::ceil(decision.retry_after_seconds)));
      return with_retry_after(error_response(429, "rate_limited", "rate limit exceeded"), seconds);
    }
  }
  return std::nullopt;
}

http::Router ControlPlane::Parts::routes() {
  http::Router router;
  Parts* self = this;

  router.add("POST", "/api/v1/jobs", [self](const Request& request, Responder respond) {
    std::string idempotency_key;
    if (const std::string* key = request.header("idempotency-key")) {
      if (key->empty() || key->size() > kMaxIdempotencyKey) {
        respond(error_response(400, "idempotency_key_invalid", "Idempotency-Key must be 1..200 characters"));
        return;
      }
      idempotency_key = *key;
    }
    // Validation may resolve host names and the store waits for its group
    // commit: both block, so they run off the io threads.
    self->blocking->post(
        [self, body = request.body, principal = request.principal, idempotency_key, respond = std::move(respond)]() {
          if (self->pool->size() == 0) {
            respond(with_retry_after(
                error_response(503, "no_worker_configured", "no worker is configured (WORKER_NODES)"), 30));
            return;
          }
          auto parsed = api::parse_job_request(body, self->validation_context());
          if (auto* error = std::get_if<api::ApiError>(&parsed)) {
            Response r = json_response(error->http_status, api::error_body(*error));
            if (error->http_status == 503) r.headers.emplace_back("Retry-After", "5");
            respond(std::move(r));
            return;
          }
          model::JobRecord job;
          job.job_id = model::new_job_id();
          job.spec = std::get<model::JobSpec>(std::move(parsed));
          const auto now = std::chrono::system_clock::now();
          job.created_at = format_rfc3339(now);
          job.created_ms = std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count();
          job.message = "queued";
          job.idempotency_key = idempotency_key;
          job.api_key_id = principal;
          auto created = self->dispatcher->submit(std::move(job));
          if (!created.ok()) {
            respond(status_response(created.status()));
            return;
          }
          // The acceptance is logged once, by on_job_change.
          respond(accepted_response(created->job.job_id));
        });
  });

  router.add("GET", "/api/v1/jobs/{id}", [self](const Request& request, Responder respond) {
    self->blocking->post([self, id = request.params.at("id"), respond = std::move(respond)]() {
      auto job = self->store->get(id);
      respond(job.ok() ? json_response(200, model::to_document(*job)) : status_response(job.status()));
    });
  });

  router.add("GET", "/api/v1/jobs", [self](const Request& request, Responder respond) {
    std::map<std::string, std::string> query(request.query.begin(), request.query.end());
    auto params = api::parse_list_query(query);
    if (auto* error = std::get_if<api::ApiError>(&params)) {
      respond(json_response(error->http_status, api::error_body(*error)));
      return;
    }
    self->blocking->post([self, params = std::get<api::ListParams>(params), respond = std::move(respond)]() {
      store::ListQuery q;
      q.status = params.status;
      q.limit = params.limit;
      q.cursor = params.cursor;
      auto page = self->store->list(q);
      if (!page.ok()) {
        respond(status_response(page.status()));
        return;
      }
      nlohmann::json jobs = nlohmann::json::array();
      for (const auto& job : page->jobs) jobs.push_back(model::to_document(job));
      respond(json_response(
          200, {{"jobs", jobs},
                {"next_cursor", page->next_cursor.empty() ? nlohmann::json() : nlohmann::json(page->next_cursor)}}));
    });
  });

  router.add("POST", "/api/v1/jobs/{id}/cancel", [self](const Request& request, Responder respond) {
    self->blocking->post([self, id = request.params.at("id"), respond = std::move(respond)]() {
      auto job = self->dispatcher->cancel(id);
      respond(job.ok() ? json_response(200, model::to_document(*job)) : status_response(job.status()));
    });
  });

  router.add_sse(
      "GET", std::string(kStreamRoute), [self](const Request& request) -> std::variant<Response, http::SseStream> {
        const std::string& id = request.params.at("id");
        auto job = self->store->get(id);
        if (!job.ok()) return status_response(job.status());
        std::optional<uint64_t> last_event_id;
        if (const std::string* last = request.header("last-event-id")) {
          uint64_t value = 0;
          if (absl::SimpleAtoi(*last, &value)) last_event_id = value;
        }
        // A client that already saw the end: 204 stops EventSource reconnecting.
        if (last_event_id && self->hub.is_up_to_date_after_terminal(id, *last_event_id)) {
          Response done;
          done.status = 204;
          done.content_type.clear();
          return done;
        }
        auto subscriber = self->hub.subscribe(id, event_json(*job), model::is_terminal(job->status), last_event_id);
        events::ProgressHub* hub = &self->hub;
        return http::SseStream{subscriber, [hub, subscriber] { hub->unsubscribe(subscriber); }};
      });

  router.add("GET", "/api/v1/workers/status", [self](const Request&, Responder respond) {
    self->blocking->post([self, respond = std::move(respond)]() {
      nlohmann::json workers = nlohmann::json::array();
      for (const auto& w : self->pool->refresh(std::chrono::milliseconds(3000))) {
        workers.push_back({{"address", w.address},
                           {"worker_id", w.worker_id.empty() ? nlohmann::json() : nlohmann::json(w.worker_id)},
                           {"state", w.state},
                           {"current_jobs", w.current_jobs},
                           {"max_jobs", w.max_jobs},
                           {"active_job_ids", w.active_job_ids},
                           {"storage_types", w.storage_types},
                           {"version", w.version.empty() ? nlohmann::json() : nlohmann::json(w.version)},
                           {"last_seen", w.last_seen.empty() ? nlohmann::json() : nlohmann::json(w.last_seen)}});
      }
      respond(json_response(200, {{"workers", workers}}));
    });
  });

  router.add("GET", "/api/v1/presets", [self](const Request&, Responder respond) {
    nlohmann::json presets = nlohmann::json::array();
    for (const auto* p : self->catalog.all()) {
      presets.push_back({{"name", p->name},
                         {"description", p->description},
                         {"output_type", worker::preset::to_string(p->type)},
                         {"extension", p->extension}});
    }
    respond(json_response(200, {{"presets", presets}}));
  });

  router.add("GET", "/health", [](const Request&, Responder respond) {
    respond(json_response(200, {{"status", "ok"}}));
  });

  router.add("GET", "/ready", [self](const Request&, Responder respond) {
    self->blocking->post([self, respond = std::move(respond)]() {
      const bool store_ok = self->store->count(model::JobStatus::kQueued).ok();
      const bool workers_ok = self->pool->size() > 0;
      const bool ready = store_ok && workers_ok && !self->stopping;
      respond(
          json_response(ready ? 200 : 503, {{"status", ready ? "ready" : "not_ready"},
                                            {"checks", {{"store", store_ok}, {"workers_configured", workers_ok}}}}));
    });
  });

  router.add("GET", "/metrics", [self](const Request&, Responder respond) {
    self->refresh_gauges();
    Response r;
    r.content_type = "text/plain; version=0.0.4; charset=utf-8";
    r.body = self->registry.render();
    respond(std::move(r));
  });

  router.add("GET", "/openapi.json", [](const Request&, Responder respond) {
    Response r;
    r.body = api::openapi_document();
    respond(std::move(r));
  });

  router.add("GET", "/docs", [](const Request&, Responder respond) {
    Response r;
    r.content_type = "text/html; charset=utf-8";
    r.body = api::docs_page();
    respond(std::move(r));
  });
  return router;
}

absl::StatusOr<std::unique_ptr<ControlPlane>> ControlPlane::start(config::ControlPlaneConfig config) {
  keep_freed_memory_for_reuse();
  auto parts = std::make_unique<Parts>();
  parts->config = std::move(config);
  const config::ControlPlaneConfig& c = parts->config;
  parts->register_metrics();

  if (c.presets_file) {
    if (auto s = parts->catalog.merge_file(*c.presets_file); !s.ok()) {
      return annotate(s, "PRESETS_FILE " + c.presets_file->string());
    }
  }
  for (const auto* p : parts->catalog.all()) {
    parts->presets[p->name] =
        api::PresetSummary{p->name, p->description, std::string(worker::preset::to_string(p->type)), p->extension};
  }
  parts->api_keys = auth::ApiKeys::from(c.api_keys);
  if (!c.metrics_token.empty()) parts->metrics_token = auth::ApiKeys::from({c.metrics_token});
  parts->limiter = std::make_unique<auth::RateLimiter>(c.rate_limit_rps, c.rate_limit_burst);

  auto store = store::open_sqlite_store(c.database_path);
  if (!store.ok()) return annotate(store.status(), "DATABASE_PATH " + c.database_path.string());
  parts->store = std::move(*store);
  parts->pool = std::make_unique<balancer::WorkerPool>(c.worker_nodes, c.worker_startup_timeout);

  Parts* raw = parts.get();
  webhook::WebhookOptions hooks;
  hooks.secret = c.webhook_secret;
  hooks.policy.allowed_schemes = {"https", "http"};
  hooks.policy.allow_private = c.allow_private_inputs;
  parts->webhooks = std::make_unique<webhook::WebhookSender>(
      hooks, [raw](const std::string& job_id, const model::WebhookState& state) {
        auto job = raw->store->get(job_id);
        if (!job.ok()) return;
        job->webhook = state;
        if (auto s = raw->store->update(*job); !s.ok()) {
          log::warn("cannot record webhook state", {{"job_id", job_id}, {"error", std::string(s.message())}});
        }
      });

  dispatch::DispatchOptions options;
  options.queue_limit = c.queue_limit;
  options.max_attempts = c.max_attempts;
  options.job_timeout = c.job_timeout;
  parts->dispatcher = std::make_unique<dispatch::Dispatcher>(
      *parts->store, *parts->pool, options,
      [raw](const model::JobRecord& job, bool status_changed) { raw->on_job_change(job, status_changed); });
  parts->blocking = std::make_unique<BlockingPool>(kBlockingThreads);
  if (auto s = parts->dispatcher->start(); !s.ok()) return annotate(s, "loading unfinished jobs");
  // Webhooks of jobs that ended before a crash or stop and were never delivered.
  if (auto undelivered = parts->store->load_undelivered_webhooks(); undelivered.ok()) {
    for (const auto& job : *undelivered) {
      parts->webhooks->deliver(job, "job." + std::string(model::to_string(job.status)));
    }
    if (!undelivered->empty()) log::info("redelivering webhooks", {{"count", undelivered->size()}});
  } else {
    log::error("cannot load undelivered webhooks", {{"error", std::string(undelivered.status().message())}});
  }

  http::ServerOptions server_options;
  server_options.bind = c.bind_address;
  server_options.port = c.port;
  server_options.threads = c.http_threads;
  server_options.pin_threads = c.http_pin_threads;
  server_options.max_connections = c.http_max_connections;
  server_options.sse_keepalive = c.sse_keepalive;
  http::Hooks server_hooks;
  server_hooks.before_handler = [raw](Request& request) { return raw->authorize(request); };
  server_hooks.on_request_done = [raw](std::string_view method, std::string_view route, int status, double seconds) {
    raw->http_requests->with({std::string(route), std::string(method), std::to_string(status)}).inc();
    raw->http_duration->with({std::string(route), std::string(method)}).observe(seconds);
  };
  auto server = http::HttpServer::start(server_options, parts->routes(), server_hooks);
  if (!server.ok()) return annotate(server.status(), "PORT " + std::to_string(c.port));
  parts->server = std::move(*server);

  parts->housekeeping = std::thread([raw] {
    while (!raw->stopping) {
      std::this_thread::sleep_for(std::chrono::milliseconds(500));
      std::vector<std::string> expired;
      {
        std::lock_guard lock(raw->finished_mu);
        const auto cutoff = SteadyClock::now() - kReplayRetention;
        while (!raw->finished.empty() &&
               (raw->finished.front().first < cutoff || raw->finished.size() > kReplayRetainedJobs)) {
          expired.push_back(raw->finished.front().second);
          raw->finished.pop_front();
        }
      }
      for (const auto& id : expired) raw->hub.forget(id);
    }
  });

  if (c.api_keys.empty()) log::warn("no API key configured: the API is open (ENV=development)");
  log::info("control plane listening", {{"port", parts->server->port()},
                                        {"workers", c.worker_nodes},
                                        {"database_path", c.database_path.string()},
                                        {"queue_limit", c.queue_limit},
                                        {"version", FLUX_VERSION}});
  return std::unique_ptr<ControlPlane>(new ControlPlane(std::move(parts)));
}

ControlPlane::ControlPlane(std::unique_ptr<Parts> parts) : parts_(std::move(parts)) {}

ControlPlane::~ControlPlane() { stop(); }

uint16_t ControlPlane::port() const { return parts_->server->port(); }

void ControlPlane::stop() {
  if (parts_->stopping.exchange(true)) return;
  log::info("control plane stopping");
  parts_->server->stop();
  parts_->dispatcher->stop();  // leaves jobs running on their workers
  if (parts_->webhooks) parts_->webhooks->stop();
  parts_->blocking->stop();
  if (parts_->housekeeping.joinable()) parts_->housekeeping.join();
  if (auto s = parts_->store->flush(); !s.ok()) {
    log::error("cannot flush the store", {{"error", std::string(s.message())}});
  }
  log::info("control plane stopped");
}

}  // namespace flux::controlplane::app
