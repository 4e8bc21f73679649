#include "controlplane/http/thread_affinity.h"

#include <gtest/gtest.h>
#include <sched.h>
#include <sys/types.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <thread>

#include "controlplane/http/server.h"

namespace flux::controlplane::http {
namespace {

using namespace std::chrono_literals;

cpu_set_t cpu_set_of(std::initializer_list<int> cpus) {
  cpu_set_t set;
  CPU_ZERO(&set);
  for (int cpu : cpus) CPU_SET(cpu, &set);
  return set;
}

TEST(IoThreadCpus, OneThreadPerAllowedCpuInOrderWrappingAround) {
  EXPECT_EQ(io_thread_cpus(cpu_set_of({0, 1}), 2), (std::vector<int>{0, 1}));
  // Only the CPUs the process may use (a cpuset), never others.
  EXPECT_EQ(io_thread_cpus(cpu_set_of({1, 3, 6}), 2), (std::vector<int>{1, 3}));
  EXPECT_EQ(io_thread_cpus(cpu_set_of({1, 3}), 5), (std::vector<int>{1, 3, 1, 3, 1}));
  EXPECT_TRUE(io_thread_cpus(cpu_set_of({}), 2).empty());
}

// The io threads of this process by name ("cp-http-N" → thread id), once all
// `count` of them have named themselves.
std::map<std::string, pid_t> io_threads(size_t count) {
  std::map<std::string, pid_t> found;
  for (auto deadline = std::chrono::steady_clock::now() + 5s; std::chrono::steady_clock::now() < deadline;) {
    found.clear();
    for (const auto& task : std::filesystem::directory_iterator("/proc/self/task")) {
      std::ifstream comm(task.path() / "comm");
      std::string name;
      std::getline(comm, name);
      if (name.rfind("cp-http-", 0) == 0) found[name] = std::stoi(task.path().filename().string());
    }
    if (found.size() == count) return found;
    std::this_thread::sleep_for(10ms);
  }
  return found;
}

std::unique_ptr<HttpServer> start_server(bool pin) {
  ServerOptions options;
  options.bind = "127.0.0.1";
  options.port = 0;
  options.threads = 2;
  options.pin_threads = pin;
  auto server = HttpServer::start(std::move(options), Router{}, Hooks{});
  EXPECT_TRUE(server.ok()) << server.status();
  return server.ok() ? std::move(*server) : nullptr;
}

TEST(HttpServerPinning, PinnedIoThreadsEachRunOnTheirOwnCpu) {
  cpu_set_t allowed;
  ASSERT_EQ(sched_getaffinity(0, sizeof allowed, &allowed), 0);
  const std::vector<int> expected = io_thread_cpus(allowed, 2);
  auto server = start_server(/*pin=*/true);
  ASSERT_NE(server, nullptr);
  const auto threads = io_threads(2);
  ASSERT_EQ(threads.size(), 2u);
  for (int i = 0; i < 2; ++i) {
    const pid_t tid = threads.at("cp-http-" + std::to_string(i));
    cpu_set_t actual;
    ASSERT_EQ(sched_getaffinity(tid, sizeof actual, &actual), 0);
    EXPECT_EQ(CPU_COUNT(&actual), 1) << "cp-http-" << i;
    EXPECT_TRUE(CPU_ISSET(expected[static_cast<size_t>(i)], &actual)) << "cp-http-" << i;
  }
}

TEST(HttpServerPinning, UnpinnedIoThreadsKeepTheProcessCpuSet) {
  cpu_set_t allowed;
  ASSERT_EQ(sched_getaffinity(0, sizeof allowed, &allowed), 0);
  auto server = start_server(/*pin=*/false);
  ASSERT_NE(server, nullptr);
  const auto threads = io_threads(2);
  ASSERT_EQ(threads.size(), 2u);
  for (const auto& [name, tid] : threads) {
    cpu_set_t actual;
    ASSERT_EQ(sched_getaffinity(tid, sizeof actual, &actual), 0);
    EXPECT_TRUE(CPU_EQUAL(&actual, &allowed)) << name;
  }
}

}  // namespace
}  // namespace flux::controlplane::http
