#include "controlplane/balancer/worker_pool.h"

#include <gtest/gtest.h>

#include <atomic>
#include <future>
#include <thread>

#include "shared/core/error.h"
#include "unit/cp_dispatch/test_worker.h"

namespace flux::controlplane::balancer {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using testing::free_port;

// An in-process WorkerService answering GetStatus as told.
class FakeWorker final : public v1::WorkerService::Service {
 public:
  std::atomic<int> current{0};
  std::atomic<int> max{2};
  std::atomic<bool> draining{false};
  std::atomic<int> delay_ms{0};
  std::atomic<int> status_calls{0};
  std::string id;

  grpc::Status GetStatus(grpc::ServerContext*, const v1::StatusRequest*, v1::WorkerStatus* out) override {
    ++status_calls;
    if (delay_ms > 0) std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms.load()));
    out->set_current_jobs(current);
    out->set_max_concurrent_jobs(max);
    out->set_worker_id(id);
    out->set_version("9.9.9");
    out->set_state(draining ? v1::WORKER_STATE_DRAINING : v1::WORKER_STATE_READY);
    out->add_storage_types("local");
    out->add_presets("480p_h264");
    for (int i = 0; i < current; ++i) out->add_active_job_ids("job_" + std::to_string(i));
    return grpc::Status::OK;
  }
};

class FakeServer {
 public:
  explicit FakeServer(std::string id, uint16_t port = 0) : port_(port == 0 ? free_port() : port) {
    service.id = std::move(id);
    grpc::ServerBuilder builder;
    builder.AddListeningPort(address(), grpc::InsecureServerCredentials());
    builder.RegisterService(&service);
    server_ = builder.BuildAndStart();
  }
  ~FakeServer() { server_->Shutdown(std::chrono::system_clock::now() + 100ms); }
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }
  bool ok() const { return server_ != nullptr; }

  FakeWorker service;

 private:
  uint16_t port_;
  std::unique_ptr<grpc::Server> server_;
};

std::string chosen(WorkerPool& pool, const std::string& avoid = "") {
  auto worker = pool.select("local", "480p_h264", avoid);
  return worker.ok() ? (*worker)->address() : "none";
}

TEST(WorkerPool, RoundRobinOverEveryWorkerWithOneGetStatusEachWhenAllHaveRoom) {
  FakeServer a("a"), b("b"), c("c");
  WorkerPool pool({a.address(), b.address(), c.address()}, 2s);
  EXPECT_EQ(chosen(pool), a.address());
  EXPECT_EQ(chosen(pool), b.address());
  EXPECT_EQ(chosen(pool), c.address());
  EXPECT_EQ(chosen(pool), a.address());
  EXPECT_EQ(pool.stats().get_status_calls, 4u);
  EXPECT_EQ(pool.stats().selections, 4u);
  EXPECT_EQ(a.service.status_calls + b.service.status_calls + c.service.status_calls, 4);
}

TEST(WorkerPool, FullAndDrainingWorkersAreSkipped) {
  FakeServer a("a"), b("b"), c("c");
  a.service.current = 2;  // full
  b.service.draining = true;
  WorkerPool pool({a.address(), b.address(), c.address()}, 2s);
  EXPECT_EQ(chosen(pool), c.address());
  EXPECT_EQ(pool.stats().get_status_calls, 3u);
  c.service.current = 2;
  auto none = pool.select("local", "480p_h264");
  ASSERT_FALSE(none.ok());
  EXPECT_EQ(none.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(error_code(none.status()), "no_worker_available");
  EXPECT_EQ(pool.stats().no_worker, 1u);
}

TEST(WorkerPool, OnlyWorkersServingTheStorageAndPreset) {
  FakeServer a("a");
  WorkerPool pool({a.address()}, 2s);
  EXPECT_FALSE(pool.select("s3", "480p_h264").ok());
  EXPECT_FALSE(pool.select("local", "1080p_h264").ok());
  EXPECT_TRUE(pool.select("local", "480p_h264").ok());
}

TEST(WorkerPool, SilentWorkerIsGivenTheStartupTimeoutThenSkippedAndLaterProbedBriefly) {
  const std::string silent = "127.0.0.1:" + std::to_string(free_port());  // nothing listens
  FakeServer b("b");
  WorkerPool pool({silent, b.address()}, WorkerPoolOptions{.startup_timeout = 600ms, .down_probe = 100ms});
  auto started = Clock::now();
  EXPECT_EQ(chosen(pool), b.address());
  auto took = Clock::now() - started;
  EXPECT_GE(took, 550ms);
  EXPECT_LT(took, 3s);
  EXPECT_EQ(pool.snapshots()[0].state, "down");
  EXPECT_EQ(pool.snapshots()[0].last_seen, "");
  // Round robin starts at the silent one again; it no longer costs the whole timeout.
  started = Clock::now();
  EXPECT_EQ(chosen(pool), b.address());
  EXPECT_LT(Clock::now() - started, 450ms);
}

TEST(WorkerPool, HangingWorkerIsSkippedOnTimeout) {
  FakeServer a("a"), b("b");
  a.service.delay_ms = 800;
  WorkerPool pool({a.address(), b.address()}, 300ms);
  const auto started = Clock::now();
  EXPECT_EQ(chosen(pool), b.address());
  EXPECT_LT(Clock::now() - started, 750ms);
}

TEST(WorkerPool, StartingWorkerIsWaitedForWithinTheStartupTimeout) {
  const uint16_t port = free_port();
  const std::string address = "127.0.0.1:" + std::to_string(port);
  WorkerPool pool({address}, 10s);
  std::unique_ptr<FakeServer> late;
  std::thread platform([&] {
    std::this_thread::sleep_for(700ms);  // the machine boots
    late = std::make_unique<FakeServer>("late", port);
  });
  auto selection = std::async(std::launch::async, [&] { return chosen(pool); });
  bool saw_starting = false;
  while (selection.wait_for(20ms) != std::future_status::ready) {
    if (pool.snapshots()[0].state == "starting") saw_starting = true;
  }
  platform.join();
  ASSERT_TRUE(late->ok());
  EXPECT_EQ(selection.get(), address);
  EXPECT_TRUE(saw_starting);
  EXPECT_EQ(pool.snapshots()[0].state, "up");
}

TEST(WorkerPool, WorkerThatComesBackIsChosenAgain) {
  const uint16_t port = free_port();
  const std::string address = "127.0.0.1:" + std::to_string(port);
  WorkerPool pool({address}, WorkerPoolOptions{.startup_timeout = 300ms, .down_probe = 200ms});
  EXPECT_EQ(chosen(pool), "none");
  FakeServer back("back", port);
  ASSERT_TRUE(back.ok());
  const auto end = Clock::now() + 5s;
  std::string got = "none";
  while (got == "none" && Clock::now() < end) got = chosen(pool);
  EXPECT_EQ(got, address);
}

TEST(WorkerPool, AvoidedWorkerOnlyAsALastResort) {
  FakeServer a("a"), b("b");
  WorkerPool pool({a.address(), b.address()}, 2s);
  EXPECT_EQ(chosen(pool, a.address()), b.address());
  EXPECT_EQ(chosen(pool, a.address()), b.address());
  b.service.current = 2;
  EXPECT_EQ(chosen(pool, a.address()), a.address());
}

TEST(WorkerPool, SnapshotsReportWhatEachWorkerSaid) {
  FakeServer a("worker-a"), b("worker-b");
  a.service.current = 1;
  b.service.draining = true;
  const std::string silent = "127.0.0.1:" + std::to_string(free_port());
  WorkerPool pool({a.address(), b.address(), silent}, 300ms);
  const auto started = Clock::now();
  auto snapshots = pool.refresh(300ms);
  EXPECT_LT(Clock::now() - started, 2s);
  ASSERT_EQ(snapshots.size(), 3u);
  EXPECT_EQ(snapshots[0].address, a.address());
  EXPECT_EQ(snapshots[0].state, "up");
  EXPECT_EQ(snapshots[0].worker_id, "worker-a");
  EXPECT_EQ(snapshots[0].version, "9.9.9");
  EXPECT_EQ(snapshots[0].current_jobs, 1);
  EXPECT_EQ(snapshots[0].max_jobs, 2);
  EXPECT_EQ(snapshots[0].active_job_ids, std::vector<std::string>{"job_0"});
  EXPECT_EQ(snapshots[0].storage_types, std::vector<std::string>{"local"});
  EXPECT_EQ(snapshots[0].presets, std::vector<std::string>{"480p_h264"});
  EXPECT_FALSE(snapshots[0].last_seen.empty());
  EXPECT_EQ(snapshots[1].state, "draining");
  EXPECT_EQ(snapshots[2].state, "down");
  EXPECT_EQ(pool.find(b.address()), pool.workers()[1].get());
  EXPECT_EQ(pool.find("127.0.0.1:1"), nullptr);
}

TEST(WorkerPool, NoWorkersConfigured) {
  WorkerPool pool({}, 1s);
  auto none = pool.select("local", "480p_h264");
  ASSERT_FALSE(none.ok());
  EXPECT_EQ(error_code(none.status()), "no_worker_available");
  EXPECT_TRUE(pool.refresh(100ms).empty());
}

TEST(WorkerPool, RealWorkerIsSelectedAndDescribed) {
  FLUX_REQUIRE_WORKER_BIN();
  testing::TempDir dir;
  testing::TestWorker worker(dir.path(), {.name = "real-w1", .max_jobs = 3});
  ASSERT_TRUE(worker.start().ok()) << worker.log();
  WorkerPool pool({worker.address()}, 5s);
  EXPECT_EQ(chosen(pool), worker.address());
  EXPECT_FALSE(pool.select("s3", "480p_h264").ok()) << "a local-only worker must not take s3 jobs";
  EXPECT_FALSE(pool.select("local", "no_such_preset").ok());
  const WorkerSnapshot s = pool.snapshots()[0];
  EXPECT_EQ(s.state, "up");
  EXPECT_EQ(s.worker_id, "real-w1");
  EXPECT_EQ(s.max_jobs, 3);
  EXPECT_EQ(s.current_jobs, 0);
  EXPECT_EQ(s.storage_types, std::vector<std::string>{"local"});
  EXPECT_NE(std::find(s.presets.begin(), s.presets.end(), "480p_h264"), s.presets.end());
  EXPECT_FALSE(s.version.empty());
}

}  // namespace
}  // namespace flux::controlplane::balancer
