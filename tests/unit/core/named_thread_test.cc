#include "shared/core/named_thread.h"

#include <gtest/gtest.h>
#include <pthread.h>

#include <string>

namespace flux {
namespace {

std::string name_seen_inside(std::string name) {
  std::string seen;
  std::thread thread = start_named_thread(std::move(name), [&seen] {
    char buffer[64] = {};
    if (pthread_getname_np(pthread_self(), buffer, sizeof buffer) == 0) seen = buffer;
  });
  thread.join();
  return seen;
}

TEST(NamedThread, RunsTheFunctionUnderItsName) { EXPECT_EQ(name_seen_inside("cp-dispatch"), "cp-dispatch"); }

TEST(NamedThread, LongNamesAreCutToWhatTheKernelKeeps) {
  EXPECT_EQ(name_seen_inside("cp-housekeeping-and-more"), "cp-housekeeping");
}

}  // namespace
}  // namespace flux
