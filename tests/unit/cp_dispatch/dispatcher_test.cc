// The dispatcher against real flux-worker processes and the real SQLite store.
#include "controlplane/dispatch/dispatcher.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <fstream>
#include <future>
#include <map>
#include <set>

#include "controlplane/store/sqlite_job_store.h"
#include "shared/core/error.h"
#include "unit/cp_dispatch/test_worker.h"

namespace flux::controlplane::dispatch {
namespace {

using namespace std::chrono_literals;
namespace v1 = ::worker::v1;
using model::JobRecord;
using model::JobStatus;
using testing::TempDir;
using testing::TestWorker;
using Clock = std::chrono::steady_clock;
namespace fs = std::filesystem;

// Input clips (each made on first use) and the test preset, shared by the
// whole binary.
class Inputs {
 public:
  static Inputs& get() {
    static Inputs inputs;
    return inputs;
  }
  const fs::path& dir() const { return dir_; }
  // The file:// URL of a clip, made first when it is one of the clips below.
  std::string url(const std::string& name) {
    std::lock_guard lock(mu_);
    const fs::path path = dir_ / name;
    const bool known = name == kShortClip || name == kMediumClip || name == kLongClip;
    if (known && !fs::exists(path)) {
      const int seconds = name == kShortClip ? 1 : name == kMediumClip ? 6 : 30;
      if (auto made = testing::make_clip(path, seconds); !made.ok()) ADD_FAILURE() << made;
    }
    return "file://" + path.string();
  }
  fs::path presets_file() const { return tmp_.path() / "presets.yaml"; }

  // 1 s: a job of about a second.
  static constexpr char kShortClip[] = "short.mp4";
  // 6 s with the slow preset: a few seconds of work, long enough to act on
  // the running job and short enough to wait for its end.
  static constexpr char kMediumClip[] = "medium.mp4";
  // 30 s with the slow preset: runs far longer than any test waits; for jobs
  // that are cancelled, timed out or left hanging.
  static constexpr char kLongClip[] = "long.mp4";

 private:
  Inputs() : dir_(tmp_.path() / "inputs") {
    fs::create_directories(dir_);
    std::ofstream(presets_file()) << testing::kTestPresets;
  }
  TempDir tmp_;
  fs::path dir_;
  std::mutex mu_;
};

const char* const kShort = Inputs::kShortClip;
const char* const kMedium = Inputs::kMediumClip;
const char* const kLong = Inputs::kLongClip;
const char* const kFastPreset = "480p_h264";
const char* const kSlowPreset = "test_slow_240p";

// Every on_change call, in order.
class Recorder {
 public:
  ChangeCallback callback() {
    return [this](const JobRecord& job, bool status_changed) {
      std::lock_guard lock(mu_);
      changes_.push_back({job, status_changed});
      cv_.notify_all();
    };
  }
  std::vector<std::pair<JobRecord, bool>> of(const std::string& job_id) const {
    std::lock_guard lock(mu_);
    std::vector<std::pair<JobRecord, bool>> out;
    for (const auto& change : changes_) {
      if (change.first.job_id == job_id) out.push_back(change);
    }
    return out;
  }
  bool wait_for(const std::string& job_id, const std::function<bool(const JobRecord&)>& predicate,
                std::chrono::milliseconds timeout) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, timeout, [&] {
      return std::any_of(changes_.begin(), changes_.end(),
                         [&](const auto& c) { return c.first.job_id == job_id && predicate(c.first); });
    });
  }
  // Job ids in the order they were first handed to a worker.
  std::vector<std::string> dispatch_order() const {
    std::lock_guard lock(mu_);
    std::vector<std::string> order;
    for (const auto& [job, changed] : changes_) {
      if (!job.worker_address.empty() && std::find(order.begin(), order.end(), job.job_id) == order.end()) {
        order.push_back(job.job_id);
      }
    }
    return order;
  }

 private:
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::pair<JobRecord, bool>> changes_;
};

bool is_encoding(const JobRecord& job) { return job.status == JobStatus::kProcessing && job.phase == "encoding"; }

// The store, pool, dispatcher and workers of one test.
class DispatcherFixture : public ::testing::Test {
 protected:
  void SetUp() override { open_store(); }

  void TearDown() override {
    dispatcher.reset();
    pool.reset();
    store.reset();
    for (auto& worker : workers) worker->stop();
  }

  void open_store() {
    auto opened = store::open_sqlite_store(dir.path() / "flux.db");
    ASSERT_TRUE(opened.ok()) << opened.status();
    store = *std::move(opened);
  }

  // Starts `count` workers together and waits for all of them.
  void add_workers(int count, int max_jobs) {
    std::vector<TestWorker*> started;
    for (int i = 0; i < count; ++i) {
      testing::TestWorkerOptions options;
      options.name = "w" + std::to_string(workers.size() + 1);
      options.max_jobs = max_jobs;
      options.input_dir = Inputs::get().dir();
      options.presets_file = Inputs::get().presets_file();
      workers.push_back(std::make_unique<TestWorker>(dir.path(), options));
      ASSERT_TRUE(workers.back()->spawn().ok());
      started.push_back(workers.back().get());
    }
    for (TestWorker* worker : started) ASSERT_TRUE(worker->wait_ready().ok()) << worker->log();
  }

  std::vector<std::string> addresses() const {
    std::vector<std::string> out = extra_addresses;
    for (const auto& worker : workers) out.push_back(worker->address());
    return out;
  }

  DispatchOptions fast_options() const {
    DispatchOptions options;
    options.retry_delay = 200ms;
    options.retry_backoff = 300ms;
    options.reattach_timeout = 1s;
    options.cancel_grace = 8s;
    options.rpc_timeout = 2s;
    return options;
  }

  void make_dispatcher(DispatchOptions options) {
    if (!pool) {
      pool = std::make_unique<balancer::WorkerPool>(
          addresses(), balancer::WorkerPoolOptions{.startup_timeout = 1s, .down_probe = 200ms});
    }
    dispatcher = std::make_unique<Dispatcher>(*store, *pool, options, recorder.callback());
  }

  JobRecord job(const std::string& clip, const std::string& preset, int priority = 0) {
    JobRecord job;
    job.spec.input_url = Inputs::get().url(clip);
    job.spec.preset = preset;
    job.spec.output.storage = "local";
    job.spec.output.path = "out/" + std::to_string(++job_counter) + ".mp4";
    job.spec.output.type = "single";
    job.spec.priority = priority;
    return job;
  }

  std::string submit(JobRecord record) {
    auto created = dispatcher->submit(std::move(record));
    EXPECT_TRUE(created.ok()) << created.status();
    return created.ok() ? created->job.job_id : "";
  }

  // Polls the store until the job is finished.
  JobRecord wait_terminal(const std::string& job_id, std::chrono::milliseconds timeout = 30s) {
    const auto end = Clock::now() + timeout;
    JobRecord last;
    while (Clock::now() < end) {
      auto stored = store->get(job_id);
      if (stored.ok()) {
        last = *stored;
        if (model::is_terminal(last.status)) return last;
      }
      std::this_thread::sleep_for(50ms);
    }
    ADD_FAILURE() << "job " << job_id << " not finished after " << timeout.count() << " ms; last status "
                  << model::to_string(last.status) << " / " << last.message;
    return last;
  }

  int accepted_anywhere(const std::string& job_id) const {
    int count = 0;
    for (const auto& worker : workers) count += worker->count_log("job accepted", job_id);
    return count;
  }

  TempDir dir;
  std::vector<std::unique_ptr<TestWorker>> workers;
  std::unique_ptr<store::JobStore> store;
  std::unique_ptr<balancer::WorkerPool> pool;
  Recorder recorder;
  std::unique_ptr<Dispatcher> dispatcher;
  std::vector<std::string> extra_addresses;  // in-process scripted workers
  int job_counter = 0;
};

// Tests with real workers.
class DispatcherTest : public DispatcherFixture {
 protected:
  void SetUp() override {
    FLUX_REQUIRE_WORKER_BIN();
    DispatcherFixture::SetUp();
  }
};

// Tests of the queue alone: the only worker configured never answers.
class DispatcherQueueTest : public DispatcherFixture {
 protected:
  void SetUp() override {
    DispatcherFixture::SetUp();
    extra_addresses = {"127.0.0.1:" + std::to_string(testing::free_port())};
  }
};

TEST_F(DispatcherTest, JobCompletesThroughTheDispatcher) {
  add_workers(2, 2);
  make_dispatcher(fast_options());
  ASSERT_TRUE(dispatcher->start().ok());
  const std::string id = submit(job(kShort, kFastPreset));
  auto stored = store->get(id);
  ASSERT_TRUE(stored.ok()) << "submit() returned before the job was stored";

  const JobRecord done = wait_terminal(id);
  ASSERT_EQ(done.status, JobStatus::kCompleted) << done.error_code << ": " << done.error;
  EXPECT_EQ(done.attempts, 1);
  EXPECT_EQ(done.phase, "done");
  EXPECT_DOUBLE_EQ(done.progress, 100);
  EXPECT_TRUE(done.worker_id == "w1" || done.worker_id == "w2") << done.worker_id;
  EXPECT_FALSE(done.started_at.empty());
  EXPECT_FALSE(done.finished_at.empty());
  EXPECT_TRUE(done.error_code.empty());
  ASSERT_EQ(done.output_url.rfind("file://", 0), 0u) << done.output_url;
  EXPECT_TRUE(fs::exists(done.output_url.substr(7))) << done.output_url;
  // VALIDATION_LEVEL=minimal: the worker reports files and sizes, not codecs.
  EXPECT_EQ(done.result.value("file_count", 0), 1) << done.result.dump();
  EXPECT_GT(done.result.value("size_bytes", 0), 0);
  EXPECT_EQ(done.result["files"][0].value("key", ""), done.spec.output.path);
  EXPECT_GT(done.phase_durations.value("encode", -1.0), 0.0) << done.phase_durations.dump();

  // Every change was reported, statuses in lifecycle order, sequence growing.
  const auto changes = recorder.of(id);
  ASSERT_FALSE(changes.empty());
  std::vector<JobStatus> statuses;
  uint64_t sequence = 0;
  for (const auto& [record, status_changed] : changes) {
    EXPECT_GT(record.sequence, sequence);
    sequence = record.sequence;
    if (status_changed) statuses.push_back(record.status);
  }
  EXPECT_EQ(statuses, (std::vector<JobStatus>{JobStatus::kQueued, JobStatus::kProcessing, JobStatus::kUploading,
                                              JobStatus::kCompleted}));
  EXPECT_EQ(changes.back().first.status, JobStatus::kCompleted);
  EXPECT_EQ(accepted_anywhere(id), 1);

  // A finished job cannot be cancelled.
  auto cancelled = dispatcher->cancel(id);
  ASSERT_FALSE(cancelled.ok());
  EXPECT_EQ(cancelled.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(error_code(cancelled.status()), "job_finished");
  EXPECT_EQ(error_code(dispatcher->cancel("job_unknown").status()), "job_not_found");
}

TEST_F(DispatcherTest, MoreJobsThanCapacityAllCompleteWithinEachWorkersLimit) {
  add_workers(2, 1);
  make_dispatcher(fast_options());
  ASSERT_TRUE(dispatcher->start().ok());
  // Watch the workers' own counts while the queue drains.
  std::atomic<bool> watching{true};
  std::map<std::string, int> peak;
  int peak_total = 0;
  std::thread watcher([&] {
    while (watching) {
      int total = 0;
      for (const auto& worker : pool->workers()) {
        auto status = worker->get_status(500ms, false);
        if (!status.ok()) continue;
        peak[worker->address()] = std::max(peak[worker->address()], status->current_jobs());
        total += status->current_jobs();
      }
      peak_total = std::max(peak_total, total);
      std::this_thread::sleep_for(20ms);
    }
  });
  std::vector<std::string> ids;
  for (int i = 0; i < 6; ++i) ids.push_back(submit(job(kShort, kFastPreset)));
  for (const auto& id : ids) {
    const JobRecord done = wait_terminal(id, 60s);
    EXPECT_EQ(done.status, JobStatus::kCompleted) << id << " " << done.error_code << ": " << done.error;
    EXPECT_EQ(done.attempts, 1) << id;
    EXPECT_EQ(accepted_anywhere(id), 1) << id;
  }
  watching = false;
  watcher.join();
  for (const auto& [address, most] : peak) EXPECT_LE(most, 1) << address;
  EXPECT_EQ(peak_total, 2) << "both workers should have been busy at once";
  EXPECT_EQ(dispatcher->queued(), 0u);
  EXPECT_EQ(dispatcher->running(), 0u);
}

TEST_F(DispatcherTest, HigherPriorityFirstAndFifoWithinAPriority) {
  add_workers(1, 1);
  make_dispatcher(fast_options());
  // Queued before dispatching starts, so the whole queue competes at once.
  const std::string low = submit(job(kShort, kFastPreset, -3));
  const std::string first_five = submit(job(kShort, kFastPreset, 5));
  const std::string zero = submit(job(kShort, kFastPreset, 0));
  const std::string second_five = submit(job(kShort, kFastPreset, 5));
  EXPECT_EQ(dispatcher->queued(), 4u);
  ASSERT_TRUE(dispatcher->start().ok());
  for (const auto& id : {low, first_five, zero, second_five}) {
    EXPECT_EQ(wait_terminal(id, 60s).status, JobStatus::kCompleted) << id;
  }
  EXPECT_EQ(recorder.dispatch_order(), (std::vector<std::string>{first_five, second_five, zero, low}));
}

TEST_F(DispatcherTest, CancelQueuedAndRunningJobs) {
  add_workers(1, 1);
  make_dispatcher(fast_options());
  ASSERT_TRUE(dispatcher->start().ok());
  const std::string running = submit(job(kLong, kSlowPreset));
  ASSERT_TRUE(recorder.wait_for(running, is_encoding, 20s));
  const std::string queued = submit(job(kShort, kFastPreset));
  EXPECT_EQ(dispatcher->queued(), 1u);

  // Queued: cancelled at once, durably, and idempotently.
  auto cancelled = dispatcher->cancel(queued);
  ASSERT_TRUE(cancelled.ok()) << cancelled.status();
  EXPECT_EQ(cancelled->status, JobStatus::kCancelled);
  auto stored = store->get(queued);
  ASSERT_TRUE(stored.ok());
  EXPECT_EQ(stored->status, JobStatus::kCancelled);
  EXPECT_EQ(stored->error_code, "cancelled");
  auto again = dispatcher->cancel(queued);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->status, JobStatus::kCancelled);

  // Running: the cancel reaches the worker, which stops the job and says so.
  const auto asked = Clock::now();
  ASSERT_TRUE(dispatcher->cancel(running).ok());
  const JobRecord done = wait_terminal(running, 20s);
  EXPECT_EQ(done.status, JobStatus::kCancelled);
  EXPECT_EQ(done.error_code, "cancelled");
  EXPECT_LT(Clock::now() - asked, 7s) << "the worker should confirm well before the grace period";
  EXPECT_EQ(workers[0]->count_log("cancel requested", running), 1);
  auto status = pool->workers()[0]->get_status(2s);
  ASSERT_TRUE(status.ok());
  EXPECT_EQ(status->current_jobs(), 0);

  // The cancelled queued job never reached the worker.
  EXPECT_EQ(workers[0]->count_log("job accepted", queued), 0);
  EXPECT_TRUE(dispatcher->cancel(running).ok()) << "cancelling a cancelled job is idempotent";
}

TEST_F(DispatcherTest, CancelOnAHungWorkerEndsAfterTheGraceAndStillReachesTheWorker) {
  add_workers(1, 1);
  DispatchOptions options = fast_options();
  options.cancel_grace = 1s;
  options.rpc_timeout = 500ms;
  make_dispatcher(options);
  ASSERT_TRUE(dispatcher->start().ok());
  const std::string id = submit(job(kLong, kSlowPreset));
  ASSERT_TRUE(recorder.wait_for(id, is_encoding, 20s));
  workers[0]->freeze();
  ASSERT_TRUE(dispatcher->cancel(id).ok());
  const JobRecord done = wait_terminal(id, 10s);
  EXPECT_EQ(done.status, JobStatus::kCancelled);
  EXPECT_EQ(done.error_code, "cancelled");
  // Once the worker answers again, the job is stopped there too.
  workers[0]->thaw();
  int current = -1;
  for (int i = 0; i < 100 && current != 0; ++i) {
    auto status = pool->workers()[0]->get_status(1s);
    current = status.ok() ? status->current_jobs() : -1;
    if (current != 0) std::this_thread::sleep_for(100ms);
  }
  EXPECT_EQ(current, 0) << "the abandoned job still runs on the worker";
  EXPECT_GE(workers[0]->count_log("cancel requested", id), 1);
  // ... and its final state is collected, so the worker does not hold it.
  bool held = true;
  for (int i = 0; i < 50 && held; ++i) {
    auto status = pool->workers()[0]->get_status(1s);
    held = !status.ok() || status->held_job_ids_size() > 0;
    if (held) std::this_thread::sleep_for(100ms);
  }
  EXPECT_FALSE(held) << "the abandoned job's result is still held on the worker";
}

TEST_F(DispatcherTest, AJobNoWorkerCanTakeDoesNotBlockTheQueue) {
  add_workers(1, 1);
  make_dispatcher(fast_options());
  JobRecord s3 = job(kShort, kFastPreset, 10);
  s3.spec.output.storage = "s3";  // no worker here serves s3
  const std::string stuck = submit(s3);
  const std::string local = submit(job(kShort, kFastPreset, 0));
  ASSERT_TRUE(dispatcher->start().ok());
  EXPECT_EQ(wait_terminal(local).status, JobStatus::kCompleted);
  auto waiting = store->get(stuck);
  ASSERT_TRUE(waiting.ok());
  EXPECT_EQ(waiting->status, JobStatus::kQueued);
  EXPECT_EQ(dispatcher->queued(), 1u);
}

TEST_F(DispatcherTest, AJobTheWorkerAlreadyHasIsFollowedNotRunAgain) {
  add_workers(1, 2);
  make_dispatcher(fast_options());
  ASSERT_TRUE(dispatcher->start().ok());
  // The worker got the job before (say, from a control plane that crashed
  // before recording it) and runs it detached.
  JobRecord record = job(kShort, kFastPreset);
  record.job_id = model::new_job_id();
  {
    grpc::ClientContext context;
    ::worker::v1::JobRequest request;
    request.set_job_id(record.job_id);
    request.set_input_url(record.spec.input_url);
    request.set_preset(record.spec.preset);
    request.mutable_output()->set_storage("local");
    request.mutable_output()->set_path(record.spec.output.path);
    auto reader = pool->workers()[0]->stub().SubmitJob(&context, request);
    ::worker::v1::JobProgress first;
    ASSERT_TRUE(reader->Read(&first));
    context.TryCancel();
    reader->Finish();
  }
  const std::string id = submit(record);
  const JobRecord done = wait_terminal(id);
  ASSERT_EQ(done.status, JobStatus::kCompleted) << done.error_code << ": " << done.error;
  EXPECT_EQ(workers[0]->count_log("job accepted", id), 1);
  EXPECT_GE(workers[0]->count_log("progress stream attached", id), 1);
}

TEST_F(DispatcherTest, WorkerKilledMidJobTheJobCompletesOnTheOtherWorker) {
  add_workers(2, 1);
  make_dispatcher(fast_options());
  ASSERT_TRUE(dispatcher->start().ok());
  const std::string id = submit(job(kMedium, kSlowPreset));
  ASSERT_TRUE(recorder.wait_for(id, is_encoding, 20s));
  auto current = store->get(id);
  ASSERT_TRUE(current.ok());
  const std::string first_address = current->worker_address;
  TestWorker* first = workers[0]->address() == first_address ? workers[0].get() : workers[1].get();
  TestWorker* second = first == workers[0].get() ? workers[1].get() : workers[0].get();
  first->kill();

  const JobRecord done = wait_terminal(id, 40s);
  ASSERT_EQ(done.status, JobStatus::kCompleted) << done.error_code << ": " << done.error;
  EXPECT_EQ(done.attempts, 2);
  EXPECT_EQ(done.worker_address, second->address());
  EXPECT_EQ(second->count_log("job accepted", id), 1);
  EXPECT_EQ(dispatcher->stats().requeued, 1u);
}

TEST_F(DispatcherTest, NewDispatcherReattachesToARunningJobWithoutEncodingItAgain) {
  add_workers(1, 1);
  make_dispatcher(fast_options());
  ASSERT_TRUE(dispatcher->start().ok());
  const std::string id = submit(job(kMedium, kSlowPreset));
  ASSERT_TRUE(recorder.wait_for(id, is_encoding, 20s));
  // The control plane goes away (its streams close; the worker keeps the job)
  // and comes back with a fresh store handle on the same database.
  dispatcher.reset();
  store.reset();
  open_store();
  auto reloaded = store->get(id);
  ASSERT_TRUE(reloaded.ok());
  EXPECT_FALSE(model::is_terminal(reloaded->status));
  EXPECT_EQ(reloaded->worker_address, workers[0]->address());

  make_dispatcher(fast_options());
  ASSERT_TRUE(dispatcher->start().ok());
  EXPECT_EQ(dispatcher->running(), 1u);
  const JobRecord done = wait_terminal(id, 30s);
  ASSERT_EQ(done.status, JobStatus::kCompleted) << done.error_code << ": " << done.error;
  EXPECT_EQ(done.attempts, 1);
  EXPECT_EQ(workers[0]->count_log("job accepted", id), 1) << "the worker must not encode the job twice";
  EXPECT_GE(workers[0]->count_log("progress stream attached", id), 1);
  EXPECT_GE(dispatcher->stats().reattached, 1u);
}

TEST_F(DispatcherTest, ResultOfAJobThatEndedWhileDetachedIsCollected) {
  add_workers(1, 1);
  make_dispatcher(fast_options());
  ASSERT_TRUE(dispatcher->start().ok());
  const std::string id = submit(job(kShort, kFastPreset));
  ASSERT_TRUE(recorder.wait_for(
      id, [](const JobRecord& j) { return j.status == JobStatus::kProcessing; }, 20s));
  dispatcher.reset();
  // Wait until the worker holds the final state for a control plane to collect.
  bool held = false;
  for (int i = 0; i < 200 && !held; ++i) {
    auto status = pool->workers()[0]->get_status(1s);
    held = status.ok() && std::count(status->held_job_ids().begin(), status->held_job_ids().end(), id) == 1;
    if (!held) std::this_thread::sleep_for(50ms);
  }
  ASSERT_TRUE(held) << "the job never ended on the worker";
  auto stored = store->get(id);
  ASSERT_TRUE(stored.ok());
  EXPECT_EQ(stored->status, JobStatus::kProcessing);

  make_dispatcher(fast_options());
  ASSERT_TRUE(dispatcher->start().ok());
  const JobRecord done = wait_terminal(id);
  ASSERT_EQ(done.status, JobStatus::kCompleted);
  EXPECT_EQ(done.attempts, 1);
  EXPECT_FALSE(done.output_url.empty());
  EXPECT_EQ(workers[0]->count_log("job accepted", id), 1);
}

TEST_F(DispatcherTest, JobUnknownToItsRestartedWorkerIsRequeued) {
  add_workers(1, 1);
  make_dispatcher(fast_options());
  ASSERT_TRUE(dispatcher->start().ok());
  const std::string id = submit(job(kShort, kFastPreset));
  ASSERT_TRUE(recorder.wait_for(
      id, [](const JobRecord& j) { return j.status == JobStatus::kProcessing; }, 20s));
  dispatcher.reset();
  // The worker crashes and a new one (knowing nothing) takes its address.
  const uint16_t port = workers[0]->port();
  workers[0]->kill();
  testing::TestWorkerOptions options;
  options.name = "w1-again";
  options.port = port;
  options.max_jobs = 1;
  options.input_dir = Inputs::get().dir();
  workers.push_back(std::make_unique<TestWorker>(dir.path(), options));
  ASSERT_TRUE(workers.back()->start().ok()) << workers.back()->log();

  make_dispatcher(fast_options());
  ASSERT_TRUE(dispatcher->start().ok());
  const JobRecord done = wait_terminal(id);
  ASSERT_EQ(done.status, JobStatus::kCompleted) << done.error_code << ": " << done.error;
  EXPECT_EQ(done.attempts, 2);
  EXPECT_EQ(workers.back()->count_log("job accepted", id), 1);
}

TEST_F(DispatcherTest, JobTimeoutCancelsOnTheWorkerAndFails) {
  add_workers(1, 1);
  DispatchOptions options = fast_options();
  options.job_timeout = 1500ms;
  make_dispatcher(options);
  ASSERT_TRUE(dispatcher->start().ok());
  const std::string id = submit(job(kLong, kSlowPreset));
  const JobRecord done = wait_terminal(id, 20s);
  EXPECT_EQ(done.status, JobStatus::kFailed);
  EXPECT_EQ(done.error_code, "timeout");
  EXPECT_EQ(done.attempts, 1) << "a timeout is not retried";
  auto status = pool->workers()[0]->get_status(2s);
  ASSERT_TRUE(status.ok());
  EXPECT_EQ(status->current_jobs(), 0) << "the job must be stopped on the worker too";
}

TEST_F(DispatcherTest, DeterministicFailureIsNotRetried) {
  add_workers(2, 1);
  make_dispatcher(fast_options());
  ASSERT_TRUE(dispatcher->start().ok());
  JobRecord missing = job(kShort, kFastPreset);
  missing.spec.input_url = Inputs::get().url("missing.mp4");
  const std::string id = submit(missing);
  const JobRecord done = wait_terminal(id);
  EXPECT_EQ(done.status, JobStatus::kFailed);
  EXPECT_EQ(done.error_code, "input_not_found") << done.error;
  EXPECT_FALSE(done.error.empty());
  EXPECT_EQ(done.attempts, 1);
  EXPECT_EQ(accepted_anywhere(id), 1);
}

TEST_F(DispatcherQueueTest, QueueLimitRefusesBeyondItAndStoresNothing) {
  DispatchOptions options = fast_options();
  options.queue_limit = 2;
  make_dispatcher(options);
  ASSERT_TRUE(dispatcher->start().ok());
  const std::string a = submit(job(kShort, kFastPreset));
  submit(job(kShort, kFastPreset));
  auto refused = dispatcher->submit(job(kShort, kFastPreset));
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(error_code(refused.status()), "queue_full");
  EXPECT_EQ(*store->count(JobStatus::kQueued), 2);
  // Room again once one leaves the queue.
  ASSERT_TRUE(dispatcher->cancel(a).ok());
  EXPECT_TRUE(dispatcher->submit(job(kShort, kFastPreset)).ok());
  EXPECT_EQ(dispatcher->queued(), 2u);
}

TEST_F(DispatcherQueueTest, IdempotencyKeyQueuesTheJobOnce) {
  make_dispatcher(fast_options());
  JobRecord first = job(kShort, kFastPreset);
  first.api_key_id = "key1";
  first.idempotency_key = "abc";
  auto a = dispatcher->submit(first);
  auto b = dispatcher->submit(first);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_TRUE(a->created);
  EXPECT_FALSE(b->created);
  EXPECT_EQ(a->job.job_id, b->job.job_id);
  EXPECT_EQ(dispatcher->queued(), 1u);
}

TEST_F(DispatcherTest, QueueLimitZeroRefusesAtOnceWhenNoWorkerIsFree) {
  add_workers(1, 1);
  DispatchOptions options = fast_options();
  options.queue_limit = 0;
  make_dispatcher(options);
  ASSERT_TRUE(dispatcher->start().ok());
  const std::string busy = submit(job(kLong, kSlowPreset));
  ASSERT_TRUE(recorder.wait_for(busy, is_encoding, 20s));
  auto refused = dispatcher->submit(job(kShort, kFastPreset));
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(error_code(refused.status()), "no_worker_available");
  auto page = store->list({});
  ASSERT_TRUE(page.ok());
  EXPECT_EQ(page->jobs.size(), 1u) << "a refused job must not be stored";

  ASSERT_TRUE(dispatcher->cancel(busy).ok());
  EXPECT_EQ(wait_terminal(busy, 20s).status, JobStatus::kCancelled);
  const std::string accepted = submit(job(kShort, kFastPreset));
  EXPECT_EQ(wait_terminal(accepted).status, JobStatus::kCompleted);
}

TEST_F(DispatcherQueueTest, QueueLimitZeroRefusesWhenTheOnlyWorkerDoesNotAnswer) {
  DispatchOptions options = fast_options();
  options.queue_limit = 0;
  make_dispatcher(options);
  ASSERT_TRUE(dispatcher->start().ok());
  auto refused = dispatcher->submit(job(kShort, kFastPreset));
  EXPECT_EQ(error_code(refused.status()), "no_worker_available");
  EXPECT_EQ(store->list({})->jobs.size(), 0u);
}

TEST_F(DispatcherQueueTest, NoWorkerConfiguredRefusesEveryJob) {
  extra_addresses.clear();
  make_dispatcher(fast_options());
  ASSERT_TRUE(dispatcher->start().ok());
  auto refused = dispatcher->submit(job(kShort, kFastPreset));
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(error_code(refused.status()), "no_worker_configured");
}

// ---- a job between the store and the queue ------------------------------------

// The SQLite store with a gate: the next create(), or the next update() that
// records a cancel, waits until release(), so that a test can act while a job
// is stored but not queued, or out of the queue but not yet stored cancelled.
class GatedStore final : public store::JobStore {
 public:
  enum class Gate { kNone, kCreate, kCancelUpdate };
  explicit GatedStore(std::unique_ptr<store::JobStore> inner) : inner_(std::move(inner)) {}

  void arm(Gate gate) {
    std::lock_guard lock(mu_);
    armed_ = gate;
  }
  bool wait_held(std::chrono::milliseconds timeout) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, timeout, [this] { return held_; });
  }
  void release() {
    std::lock_guard lock(mu_);
    released_ = true;
    cv_.notify_all();
  }

  absl::StatusOr<store::CreateResult> create(const JobRecord& job) override {
    pass(Gate::kCreate);
    return inner_->create(job);
  }
  absl::StatusOr<JobRecord> get(const std::string& job_id) override { return inner_->get(job_id); }
  absl::Status update(const JobRecord& job) override {
    if (job.status == JobStatus::kCancelled) pass(Gate::kCancelUpdate);
    return inner_->update(job);
  }
  void checkpoint_progress(const std::string& job_id, double progress, const std::string& phase,
                           const std::string& message, uint64_t sequence) override {
    inner_->checkpoint_progress(job_id, progress, phase, message, sequence);
  }
  absl::StatusOr<store::ListPage> list(const store::ListQuery& query) override { return inner_->list(query); }
  absl::StatusOr<std::vector<JobRecord>> load_unfinished() override { return inner_->load_unfinished(); }
  absl::StatusOr<std::vector<JobRecord>> load_undelivered_webhooks() override {
    return inner_->load_undelivered_webhooks();
  }
  absl::StatusOr<int64_t> count(JobStatus status) override { return inner_->count(status); }
  absl::Status flush() override { return inner_->flush(); }
  store::StoreStats stats() override { return inner_->stats(); }

 private:
  void pass(Gate gate) {
    std::unique_lock lock(mu_);
    if (armed_ != gate) return;
    armed_ = Gate::kNone;
    held_ = true;
    cv_.notify_all();
    cv_.wait(lock, [this] { return released_; });
  }

  std::unique_ptr<store::JobStore> inner_;
  std::mutex mu_;
  std::condition_variable cv_;
  Gate armed_ = Gate::kNone;
  bool held_ = false;
  bool released_ = false;
};

class DispatcherTransitTest : public DispatcherQueueTest {
 protected:
  void SetUp() override {
    DispatcherQueueTest::SetUp();
    auto gated = std::make_unique<GatedStore>(std::move(store));
    gate = gated.get();
    store = std::move(gated);
    make_dispatcher(fast_options());
    ASSERT_TRUE(dispatcher->start().ok());
  }
  void TearDown() override {
    gate->release();  // never leave a caller blocked, whatever failed
    DispatcherQueueTest::TearDown();
  }

  // Polls until `pending` has an answer or the dispatcher counted a cancel that waits.
  void wait_answered_or_waiting(std::future<absl::StatusOr<JobRecord>>& pending, uint64_t waits) {
    const auto end = Clock::now() + 10s;
    while (pending.wait_for(10ms) != std::future_status::ready && dispatcher->stats().cancel_waits < waits &&
           Clock::now() < end) {
    }
  }

  GatedStore* gate = nullptr;
};

// Found by bench/chaos/load.py: two cancels of one queued job at once; the
// second found the job neither queued nor running while the first was storing
// the cancel, looked in the store, saw "queued" and answered
// UNAVAILABLE "dispatcher_not_started" (a 500 to the client).
TEST_F(DispatcherTransitTest, ConcurrentCancelsOfAQueuedJobBothAnswerCancelled) {
  const std::string id = submit(job(kShort, kFastPreset));
  gate->arm(GatedStore::Gate::kCancelUpdate);
  auto first = std::async(std::launch::async, [&] { return dispatcher->cancel(id); });
  ASSERT_TRUE(gate->wait_held(10s)) << "the first cancel never stored anything";
  auto second = std::async(std::launch::async, [&] { return dispatcher->cancel(id); });
  wait_answered_or_waiting(second, 1);
  gate->release();
  const auto a = first.get();
  const auto b = second.get();
  ASSERT_TRUE(a.ok()) << a.status();
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ(a->status, JobStatus::kCancelled);
  EXPECT_EQ(b->status, JobStatus::kCancelled);
  EXPECT_EQ(store->get(id)->status, JobStatus::kCancelled);
  EXPECT_EQ(dispatcher->queued(), 0u);
}

// The same window at submission: the job is stored (and visible to a list or
// a retried Idempotency-Key submission) before it is queued.
TEST_F(DispatcherTransitTest, CancelOfAJobStillBeingSubmittedCancelsIt) {
  JobRecord record = job(kShort, kFastPreset);
  record.job_id = model::new_job_id();
  const std::string id = record.job_id;
  gate->arm(GatedStore::Gate::kCreate);
  auto submitted = std::async(std::launch::async, [&] { return dispatcher->submit(record); });
  ASSERT_TRUE(gate->wait_held(10s)) << "submit never stored the job";
  auto cancelled = std::async(std::launch::async, [&] { return dispatcher->cancel(id); });
  wait_answered_or_waiting(cancelled, 1);
  gate->release();
  const auto created = submitted.get();
  ASSERT_TRUE(created.ok()) << created.status();
  const auto answer = cancelled.get();
  ASSERT_TRUE(answer.ok()) << answer.status();
  EXPECT_EQ(answer->status, JobStatus::kCancelled);
  EXPECT_EQ(store->get(id)->status, JobStatus::kCancelled);
  EXPECT_EQ(dispatcher->queued(), 0u);
}

// ---- scripted in-process workers: refusals and failures on demand ------------

// Answers GetStatus with room and plays one scripted outcome per SubmitJob.
class ScriptedWorker final : public v1::WorkerService::Service {
 public:
  // kFailRetryable: worker_shutdown (the worker's own state); kFailUpload:
  // upload_failed (the object store, which every worker shares).
  enum class Outcome { kComplete, kRefuseFull, kFailRetryable, kFailUpload, kRefuseRequest };
  explicit ScriptedWorker(std::vector<Outcome> script) : script_(std::move(script)) {
    grpc::ServerBuilder builder;
    builder.AddListeningPort(address_, grpc::InsecureServerCredentials());
    builder.RegisterService(this);
    server_ = builder.BuildAndStart();
  }
  ~ScriptedWorker() override { server_->Shutdown(std::chrono::system_clock::now() + 100ms); }
  const std::string& address() const { return address_; }
  int submits() const { return submits_; }
  std::vector<Clock::time_point> submit_times() const {
    std::lock_guard lock(mu_);
    return submit_times_;
  }

  grpc::Status GetStatus(grpc::ServerContext*, const v1::StatusRequest*, v1::WorkerStatus* out) override {
    out->set_current_jobs(0);
    out->set_max_concurrent_jobs(1);
    out->set_worker_id("scripted");
    out->set_state(v1::WORKER_STATE_READY);
    return grpc::Status::OK;
  }

  grpc::Status SubmitJob(grpc::ServerContext* context, const v1::JobRequest* request,
                         grpc::ServerWriter<v1::JobProgress>* writer) override {
    const size_t n = submits_++;
    {
      std::lock_guard lock(mu_);
      submit_times_.push_back(Clock::now());
    }
    const Outcome outcome = n < script_.size() ? script_[n] : Outcome::kComplete;
    if (outcome == Outcome::kRefuseFull) return {grpc::StatusCode::RESOURCE_EXHAUSTED, "worker is at capacity"};
    if (outcome == Outcome::kRefuseRequest) {
      context->AddTrailingMetadata("flux-error-code", "preset_unknown");
      return {grpc::StatusCode::INVALID_ARGUMENT, "unknown preset"};
    }
    uint64_t sequence = 0;
    auto send = [&](v1::JobStatus status, v1::JobPhase phase, float progress) {
      v1::JobProgress event;
      event.set_job_id(request->job_id());
      event.set_status(status);
      event.set_phase(phase);
      event.set_progress(progress);
      event.set_sequence(++sequence);
      return event;
    };
    writer->Write(send(v1::JOB_STATUS_QUEUED, v1::JOB_PHASE_QUEUED, 0));
    writer->Write(send(v1::JOB_STATUS_PROCESSING, v1::JOB_PHASE_ENCODING, 50));
    if (outcome == Outcome::kFailRetryable || outcome == Outcome::kFailUpload) {
      auto failed = send(v1::JOB_STATUS_FAILED, v1::JOB_PHASE_DONE, 50);
      const bool upload = outcome == Outcome::kFailUpload;
      failed.set_error_code(upload ? "upload_failed" : "worker_shutdown");
      failed.set_error(upload ? "put s3://bucket/key: Couldn't connect to server" : "worker stopped");
      writer->Write(failed);
      return grpc::Status::OK;
    }
    auto completed = send(v1::JOB_STATUS_COMPLETED, v1::JOB_PHASE_DONE, 100);
    completed.set_output_url("file:///out/" + request->output().path());
    completed.mutable_result()->set_file_count(1);
    writer->Write(completed);
    return grpc::Status::OK;
  }

 private:
  std::vector<Outcome> script_;
  std::string address_ = "127.0.0.1:" + std::to_string(testing::free_port());
  std::unique_ptr<grpc::Server> server_;
  std::atomic<int> submits_{0};
  mutable std::mutex mu_;
  std::vector<Clock::time_point> submit_times_;
};

using Outcome = ScriptedWorker::Outcome;
using DispatcherScriptedTest = DispatcherFixture;

TEST_F(DispatcherScriptedTest, RefusedForRoomGoesBackToTheQueueWithoutCountingAnAttempt) {
  ScriptedWorker worker({Outcome::kRefuseFull, Outcome::kComplete});
  extra_addresses = {worker.address()};
  make_dispatcher(fast_options());
  ASSERT_TRUE(dispatcher->start().ok());
  const JobRecord done = wait_terminal(submit(job(kShort, kFastPreset)), 10s);
  EXPECT_EQ(done.status, JobStatus::kCompleted);
  EXPECT_EQ(done.attempts, 1);
  EXPECT_EQ(worker.submits(), 2);
  EXPECT_EQ(dispatcher->stats().refused, 1u);
}

TEST_F(DispatcherScriptedTest, RetryableFailureRunsAgainPreferringAnotherWorker) {
  ScriptedWorker failing({Outcome::kFailRetryable});
  ScriptedWorker healthy({Outcome::kComplete});
  extra_addresses = {failing.address(), healthy.address()};
  make_dispatcher(fast_options());
  ASSERT_TRUE(dispatcher->start().ok());
  const JobRecord done = wait_terminal(submit(job(kShort, kFastPreset)), 10s);
  EXPECT_EQ(done.status, JobStatus::kCompleted);
  EXPECT_EQ(done.attempts, 2);
  EXPECT_EQ(done.worker_address, healthy.address());
  EXPECT_EQ(failing.submits(), 1);
}

// Found by bench/chaos/soak.py: with s3rver refusing connections for 10 s,
// jobs failed "upload_failed" went straight back to a worker, failed again,
// and used up their 3 attempts within 7 s; a 20 s outage failed them for good.
TEST_F(DispatcherScriptedTest, FailureOfTheSharedStoreWaitsLongerBeforeEachAttempt) {
  ScriptedWorker worker({Outcome::kFailUpload, Outcome::kFailUpload, Outcome::kComplete});
  extra_addresses = {worker.address()};
  DispatchOptions options = fast_options();
  options.retry_backoff = 300ms;
  make_dispatcher(options);
  ASSERT_TRUE(dispatcher->start().ok());
  const JobRecord done = wait_terminal(submit(job(kShort, kFastPreset)), 20s);
  EXPECT_EQ(done.status, JobStatus::kCompleted);
  EXPECT_EQ(done.attempts, 3);
  const auto times = worker.submit_times();
  ASSERT_EQ(times.size(), 3u);
  EXPECT_GE(times[1] - times[0], 300ms) << "the 2nd attempt did not wait for the backoff";
  EXPECT_GE(times[2] - times[1], 600ms) << "the backoff did not double";
}

TEST_F(DispatcherScriptedTest, JobOfAWorkerThatStopsGoesToAnotherWorkerWithoutBackoff) {
  ScriptedWorker stopping({Outcome::kFailRetryable});
  ScriptedWorker healthy({Outcome::kComplete});
  extra_addresses = {stopping.address(), healthy.address()};
  DispatchOptions options = fast_options();
  options.retry_backoff = 60s;  // a backoff would outlast the wait below
  make_dispatcher(options);
  ASSERT_TRUE(dispatcher->start().ok());
  const JobRecord done = wait_terminal(submit(job(kShort, kFastPreset)), 20s);
  EXPECT_EQ(done.status, JobStatus::kCompleted);
  EXPECT_EQ(done.attempts, 2);
}

TEST_F(DispatcherScriptedTest, GivesUpAfterMaxAttempts) {
  ScriptedWorker worker({Outcome::kFailRetryable, Outcome::kFailRetryable, Outcome::kFailRetryable});
  extra_addresses = {worker.address()};
  DispatchOptions options = fast_options();
  options.max_attempts = 2;
  make_dispatcher(options);
  ASSERT_TRUE(dispatcher->start().ok());
  const JobRecord done = wait_terminal(submit(job(kShort, kFastPreset)), 10s);
  EXPECT_EQ(done.status, JobStatus::kFailed);
  EXPECT_EQ(done.error_code, "max_attempts_exceeded");
  EXPECT_NE(done.error.find("worker_shutdown"), std::string::npos) << done.error;
  EXPECT_EQ(done.attempts, 2);
  EXPECT_EQ(worker.submits(), 2);
}

TEST_F(DispatcherScriptedTest, RequestTheWorkerRefusesFailsWithItsCode) {
  ScriptedWorker worker({Outcome::kRefuseRequest});
  extra_addresses = {worker.address()};
  make_dispatcher(fast_options());
  ASSERT_TRUE(dispatcher->start().ok());
  const JobRecord done = wait_terminal(submit(job(kShort, kFastPreset)), 10s);
  EXPECT_EQ(done.status, JobStatus::kFailed);
  EXPECT_EQ(done.error_code, "preset_unknown");
  EXPECT_EQ(worker.submits(), 1);
}

}  // namespace
}  // namespace flux::controlplane::dispatch
