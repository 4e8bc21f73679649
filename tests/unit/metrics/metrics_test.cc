#include "shared/metrics/metrics.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <thread>

namespace flux::metrics {
namespace {

using ::testing::HasSubstr;

TEST(Metrics, RendersAllThreeKindsExactly) {
  Registry registry;
  auto& jobs = registry.counter("flux_jobs", "Jobs by terminal status.", {"status"});
  jobs.with({"completed"}).inc();
  jobs.with({"completed"}).inc(2);
  jobs.with({"failed"}).inc();
  registry.gauge("flux_active_jobs", "Jobs running now.").with().set(3);
  auto& encode = registry.histogram("flux_encode_duration_seconds", "Encode time.", {1, 5}, {"preset"});
  for (double v : {0.5, 3.0, 10.0}) encode.with({"720p_h264"}).observe(v);

  EXPECT_EQ(registry.render(),
            "# HELP flux_active_jobs Jobs running now.\n"
            "# TYPE flux_active_jobs gauge\n"
            "flux_active_jobs 3\n"
            "# HELP flux_encode_duration_seconds Encode time.\n"
            "# TYPE flux_encode_duration_seconds histogram\n"
            "flux_encode_duration_seconds_bucket{preset=\"720p_h264\",le=\"1\"} 1\n"
            "flux_encode_duration_seconds_bucket{preset=\"720p_h264\",le=\"5\"} 2\n"
            "flux_encode_duration_seconds_bucket{preset=\"720p_h264\",le=\"+Inf\"} 3\n"
            "flux_encode_duration_seconds_sum{preset=\"720p_h264\"} 13.5\n"
            "flux_encode_duration_seconds_count{preset=\"720p_h264\"} 3\n"
            "# HELP flux_jobs_total Jobs by terminal status.\n"
            "# TYPE flux_jobs_total counter\n"
            "flux_jobs_total{status=\"completed\"} 3\n"
            "flux_jobs_total{status=\"failed\"} 1\n");
}

TEST(Metrics, UnlabelledFamiliesStartAtZero) {
  Registry registry;
  registry.counter("flux_uploaded_bytes_total", "Bytes uploaded.");
  registry.histogram("flux_wait_seconds", "Wait.", {0.1});
  EXPECT_EQ(registry.render(),
            "# HELP flux_uploaded_bytes_total Bytes uploaded.\n"
            "# TYPE flux_uploaded_bytes_total counter\n"
            "flux_uploaded_bytes_total 0\n"
            "# HELP flux_wait_seconds Wait.\n"
            "# TYPE flux_wait_seconds histogram\n"
            "flux_wait_seconds_bucket{le=\"0.1\"} 0\n"
            "flux_wait_seconds_bucket{le=\"+Inf\"} 0\n"
            "flux_wait_seconds_sum 0\n"
            "flux_wait_seconds_count 0\n");
}

TEST(Metrics, EscapesLabelValuesAndHelp) {
  Registry registry;
  registry.gauge("flux_g", "Line one\nback\\slash \"quoted\".", {"path"}).with({"a\"b\\c\nd"}).set(1);
  EXPECT_EQ(registry.render(),
            "# HELP flux_g Line one\\nback\\\\slash \"quoted\".\n"
            "# TYPE flux_g gauge\n"
            "flux_g{path=\"a\\\"b\\\\c\\nd\"} 1\n");
}

TEST(Metrics, ValuesAndBucketBoundaries) {
  EXPECT_EQ(format_value(0.25), "0.25");
  EXPECT_EQ(format_value(1e21), "1e+21");
  EXPECT_EQ(format_value(1.0 / 0.0), "+Inf");
  EXPECT_EQ(format_value(-1.0 / 0.0), "-Inf");
  EXPECT_EQ(format_value(0.0 / 0.0), "NaN");

  Histogram h({1, 2});
  h.observe(1);  // le is inclusive
  h.observe(2.0001);
  const auto snap = h.snapshot();
  EXPECT_EQ(snap.cumulative_counts, (std::vector<uint64_t>{1, 1, 2}));
  EXPECT_EQ(snap.count, 2u);
  EXPECT_DOUBLE_EQ(snap.sum, 3.0001);
}

TEST(Metrics, CountersOnlyGoUpAndGaugesBothWays) {
  Registry registry;
  Counter& c = registry.counter("flux_c_total", "c").with();
  c.inc(2);
  c.inc(-1);
  c.inc(0.0 / 0.0);
  EXPECT_EQ(c.value(), 2);
  Gauge& g = registry.gauge("flux_g", "g").with();
  g.inc(5);
  g.dec(2);
  EXPECT_EQ(g.value(), 3);
  g.set(-1.5);
  EXPECT_EQ(g.value(), -1.5);
}

TEST(Metrics, SameRegistrationReturnsTheSameFamily) {
  Registry registry;
  auto& a = registry.counter("flux_x", "x", {"l"});
  auto& b = registry.counter("flux_x_total", "x", {"l"});
  EXPECT_EQ(&a, &b);
  Counter& child = a.with({"v"});
  a.with({"w"});  // creating more children must not move existing ones
  EXPECT_EQ(&child, &b.with({"v"}));
}

TEST(Metrics, ConcurrentUpdatesFromEightThreadsSumCorrectly) {
  Registry registry;
  auto& counter = registry.counter("flux_events", "e", {"kind"});
  auto& gauge = registry.gauge("flux_level", "l");
  auto& histogram = registry.histogram("flux_latency_seconds", "l", {0.5});
  constexpr int kThreads = 8, kPerThread = 20000;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        counter.with({"shared"}).inc();
        counter.with({"thread" + std::to_string(t % 2)}).inc(0.5);
        gauge.with().inc();
        histogram.with().observe(i % 2 == 0 ? 0.25 : 1.0);
        if (i % 5000 == 0) registry.render();  // rendering while writing is safe
      }
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(counter.with({"shared"}).value(), kThreads * kPerThread);
  EXPECT_EQ(counter.with({"thread0"}).value(), kThreads / 2 * kPerThread * 0.5);
  EXPECT_EQ(gauge.with().value(), kThreads * kPerThread);
  const auto snap = histogram.with().snapshot();
  EXPECT_EQ(snap.count, static_cast<uint64_t>(kThreads * kPerThread));
  EXPECT_EQ(snap.cumulative_counts[0], static_cast<uint64_t>(kThreads * kPerThread / 2));
  EXPECT_DOUBLE_EQ(snap.sum, kThreads * kPerThread / 2 * 1.25);
}

TEST(MetricsDeathTest, RegistrationMistakesAbort) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  Registry registry;
  EXPECT_DEATH(registry.gauge("flux-bad", "x"), "invalid metric name");
  EXPECT_DEATH(registry.gauge("9flux", "x"), "invalid metric name");
  EXPECT_DEATH(registry.gauge("flux_g", "x", {"__reserved"}), "invalid label name");
  EXPECT_DEATH(registry.histogram("flux_h", "x", {1}, {"le"}), "le");
  EXPECT_DEATH(registry.histogram("flux_h", "x", {2, 1}), "strictly increasing");
  auto& family = registry.gauge("flux_g", "x", {"a", "b"});
  EXPECT_DEATH(family.with({"only-one"}), "1 label values given for 2");
  EXPECT_DEATH(registry.histogram("flux_g", "x", {1}, {"a", "b"}), "registered twice");
  EXPECT_DEATH(registry.gauge("flux_g", "x", {"a"}), "registered twice");
  EXPECT_EQ(&registry.gauge("flux_g", "x", {"a", "b"}), &family);
}

// Runs `promtool check metrics` on `text`; returns its exit status.
int promtool_check(const std::string& text, std::string* output) {
  const auto dir = std::filesystem::temp_directory_path() / ("flux-metrics-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  const auto input = dir / "metrics.txt", report = dir / "report.txt";
  std::ofstream(input) << text;
  const std::string command =
      "/usr/bin/promtool check metrics < '" + input.string() + "' > '" + report.string() + "' 2>&1";
  const int status = std::system(command.c_str());
  std::ifstream in(report);
  output->assign(std::istreambuf_iterator<char>(in), {});
  std::filesystem::remove_all(dir);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

TEST(Metrics, PromtoolAcceptsTheRendering) {
  if (!std::filesystem::exists("/usr/bin/promtool")) GTEST_SKIP() << "promtool not installed";
  std::string report;
  // The oracle must be able to say no, or its yes means nothing.
  ASSERT_NE(promtool_check("# TYPE flux_jobs counter\nflux_jobs{status=\"x\" 1\n", &report), 0);

  Registry registry;
  registry.counter("flux_jobs", "Jobs by terminal status.", {"status"}).with({"completed"}).inc(4);
  registry.counter("flux_uploaded_bytes", "Bytes uploaded to storage.").with().inc(1 << 20);
  registry.gauge("flux_active_jobs", "Jobs running now.").with().set(2);
  auto& durations = registry.histogram("flux_encode_duration_seconds", "Time spent encoding, by preset.",
                                       exponential_buckets(0.5, 2, 8), {"preset"});
  durations.with({"720p_h264"}).observe(3.2);
  durations.with({"hls \"720p\"\n\\abr"}).observe(42);
  const int status = promtool_check(registry.render(), &report);
  EXPECT_EQ(status, 0) << report << "\n" << registry.render();
}

}  // namespace
}  // namespace flux::metrics
