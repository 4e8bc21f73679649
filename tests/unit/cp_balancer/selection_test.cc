#include "controlplane/balancer/selection.h"

#include <gtest/gtest.h>

#include <vector>

namespace flux::controlplane::balancer {
namespace {

v1::WorkerStatus status(int current, int max) {
  v1::WorkerStatus s;
  s.set_current_jobs(current);
  s.set_max_concurrent_jobs(max);
  s.set_state(v1::WORKER_STATE_READY);
  s.add_storage_types("local");
  s.add_storage_types("s3");
  s.add_presets("720p_h264");
  s.add_presets("480p_h264");
  return s;
}

// Fake answers, recording the order in which workers were asked.
struct FakeFleet {
  std::vector<std::optional<v1::WorkerStatus>> answers;
  std::vector<size_t> asked{};
  AskWorker ask() {
    return [this](size_t i) {
      asked.push_back(i);
      return answers[i];
    };
  }
};

const JobNeeds kAny{"local", "720p_h264"};

TEST(SelectIndex, StartsAfterTheWorkerChosenLastAndStopsAtTheFirstWithRoom) {
  FakeFleet fleet{{status(0, 2), status(0, 2), status(0, 2)}};
  EXPECT_EQ(select_index(3, -1, kAny, fleet.ask()), 0u);
  EXPECT_EQ(select_index(3, 0, kAny, fleet.ask()), 1u);
  EXPECT_EQ(select_index(3, 1, kAny, fleet.ask()), 2u);
  EXPECT_EQ(select_index(3, 2, kAny, fleet.ask()), 0u);  // wraps around
  // One GetStatus per selection: the first asked had room.
  EXPECT_EQ(fleet.asked, (std::vector<size_t>{0, 1, 2, 0}));
}

TEST(SelectIndex, SkipsFullWorkersInRoundRobinOrder) {
  FakeFleet fleet{{status(2, 2), status(1, 1), status(3, 2), status(1, 2)}};
  EXPECT_EQ(select_index(4, 0, kAny, fleet.ask()), 3u);
  EXPECT_EQ(fleet.asked, (std::vector<size_t>{1, 2, 3}));
}

TEST(SelectIndex, SkipsWorkersThatDoNotAnswer) {
  FakeFleet fleet{{std::nullopt, std::nullopt, status(0, 1)}};
  EXPECT_EQ(select_index(3, -1, kAny, fleet.ask()), 2u);
  EXPECT_EQ(fleet.asked, (std::vector<size_t>{0, 1, 2}));
}

TEST(SelectIndex, NoneWhenAllAreFullOrSilentAfterAskingEachOnce) {
  FakeFleet fleet{{status(2, 2), std::nullopt, status(1, 1)}};
  EXPECT_EQ(select_index(3, 1, kAny, fleet.ask()), std::nullopt);
  EXPECT_EQ(fleet.asked, (std::vector<size_t>{2, 0, 1}));
  EXPECT_EQ(select_index(0, -1, kAny, fleet.ask()), std::nullopt);
}

TEST(SelectIndex, OnlyWorkersServingTheStorageTypeAndPreset) {
  v1::WorkerStatus local_only = status(0, 2);
  local_only.clear_storage_types();
  local_only.add_storage_types("local");
  v1::WorkerStatus no_720 = status(0, 2);
  no_720.clear_presets();
  no_720.add_presets("480p_h264");
  FakeFleet fleet{{local_only, no_720, status(0, 2)}};
  EXPECT_EQ(select_index(3, -1, {"s3", "720p_h264"}, fleet.ask()), 2u);
  EXPECT_EQ(select_index(3, -1, {"local", "720p_h264"}, fleet.ask()), 0u);
  EXPECT_EQ(select_index(3, 0, {"s3", "480p_h264"}, fleet.ask()), 1u);
  EXPECT_EQ(select_index(3, -1, {"s3", "1080p_h264"}, fleet.ask()), std::nullopt);
}

TEST(SelectIndex, DrainingWorkersTakeNothing) {
  v1::WorkerStatus draining = status(0, 2);
  draining.set_state(v1::WORKER_STATE_DRAINING);
  FakeFleet fleet{{draining, status(0, 2)}};
  EXPECT_EQ(select_index(2, -1, kAny, fleet.ask()), 1u);
}

TEST(SelectIndex, AnOriginalWorkerWithoutTheAdditionsServesEverything) {
  v1::WorkerStatus original;  // fields 1..5 only: no state, storage types or presets
  original.set_current_jobs(0);
  original.set_max_concurrent_jobs(1);
  FakeFleet fleet{{original}};
  EXPECT_EQ(select_index(1, -1, {"s3", "anything"}, fleet.ask()), 0u);
}

TEST(SelectIndex, AvoidedWorkerOnlyWhenNoOtherHasRoom) {
  FakeFleet fleet{{status(0, 2), status(0, 2), status(2, 2)}};
  EXPECT_EQ(select_index(3, -1, kAny, fleet.ask(), /*avoid=*/0), 1u);
  fleet.answers[1] = status(2, 2);
  fleet.asked.clear();
  EXPECT_EQ(select_index(3, -1, kAny, fleet.ask(), /*avoid=*/0), 0u);
  EXPECT_EQ(fleet.asked, (std::vector<size_t>{0, 1, 2}));
  fleet.answers[0] = status(2, 2);
  EXPECT_EQ(select_index(3, -1, kAny, fleet.ask(), /*avoid=*/0), std::nullopt);
}

TEST(HasRoom, CountsAgainstMaxConcurrentJobs) {
  EXPECT_TRUE(has_room(status(1, 2), kAny));
  EXPECT_FALSE(has_room(status(2, 2), kAny));
  EXPECT_FALSE(has_room(status(0, 0), kAny));
}

}  // namespace
}  // namespace flux::controlplane::balancer
