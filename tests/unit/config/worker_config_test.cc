#include "worker/config/worker_config.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "shared/core/error.h"

namespace flux::worker::config {
namespace {

using std::chrono::milliseconds;
using ::testing::HasSubstr;
using ::testing::StartsWith;

using Vars = std::map<std::string, std::string>;

absl::StatusOr<WorkerConfig> load(Vars vars) { return load_worker_config(flux::config::Env(std::move(vars))); }

TEST(WorkerConfigLimits, Defaults) {
  auto c = load({});
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->ffmpeg_max_wall, milliseconds(21600 * 1000));
  EXPECT_EQ(c->max_output_bytes, 53687091200ull);
  EXPECT_EQ(c->ffmpeg_cpu_seconds, 0u);
  EXPECT_EQ(c->ffmpeg_memory_mb, 0u);
  EXPECT_EQ(c->ffmpeg_nice, 10);
  EXPECT_EQ(c->max_input_pixels, 35389440u);
  EXPECT_EQ(c->max_input_duration, milliseconds(86400 * 1000));
}

TEST(WorkerConfigLimits, ParsesEveryVariable) {
  auto c = load({{"FFMPEG_MAX_SECONDS", "90"},
                 {"MAX_OUTPUT_BYTES", "2GiB"},
                 {"FFMPEG_CPU_SECONDS", "600"},
                 {"FFMPEG_MEMORY_MB", "2048"},
                 {"FFMPEG_NICE", "19"},
                 {"MAX_INPUT_PIXELS", "8294400"},
                 {"MAX_INPUT_DURATION", "2h"}});
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->ffmpeg_max_wall, milliseconds(90000));
  EXPECT_EQ(c->max_output_bytes, 2ull << 30);
  EXPECT_EQ(c->ffmpeg_cpu_seconds, 600u);
  EXPECT_EQ(c->ffmpeg_memory_mb, 2048u);
  EXPECT_EQ(c->ffmpeg_nice, 19);
  EXPECT_EQ(c->max_input_pixels, 8294400u);
  EXPECT_EQ(c->max_input_duration, milliseconds(7200 * 1000));
}

TEST(WorkerConfigLimits, ZeroTurnsEachOff) {
  auto c = load({{"FFMPEG_MAX_SECONDS", "0"},
                 {"MAX_OUTPUT_BYTES", "0"},
                 {"FFMPEG_NICE", "0"},
                 {"MAX_INPUT_PIXELS", "0"},
                 {"MAX_INPUT_DURATION", "0"}});
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->ffmpeg_max_wall.count(), 0);
  EXPECT_EQ(c->max_output_bytes, 0u);
  EXPECT_EQ(c->ffmpeg_nice, 0);
  EXPECT_EQ(c->max_input_pixels, 0u);
  EXPECT_EQ(c->max_input_duration.count(), 0);
}

TEST(WorkerConfigLimits, MalformedValueIsAStartUpErrorNamingIt) {
  const std::vector<std::pair<std::string, std::string>> bad = {
      {"FFMPEG_MAX_SECONDS", "-1"},  {"FFMPEG_MAX_SECONDS", "soon"}, {"MAX_OUTPUT_BYTES", "lots"},
      {"MAX_OUTPUT_BYTES", "-5"},    {"FFMPEG_CPU_SECONDS", "1.5"},  {"FFMPEG_CPU_SECONDS", "-1"},
      {"FFMPEG_MEMORY_MB", "512MB"}, {"FFMPEG_NICE", "20"},          {"FFMPEG_NICE", "-1"},
      {"FFMPEG_NICE", "high"},       {"MAX_INPUT_PIXELS", "8K"},     {"MAX_INPUT_PIXELS", "-1"},
      {"MAX_INPUT_DURATION", "1d"},  {"MAX_INPUT_DURATION", "-60"},
  };
  for (const auto& [name, value] : bad) {
    SCOPED_TRACE(name + "=" + value);
    auto c = load({{name, value}});
    ASSERT_FALSE(c.ok());
    EXPECT_EQ(error_code(c.status()), "invalid_config");
    EXPECT_THAT(std::string(c.status().message()), StartsWith(name + ": "));
    EXPECT_THAT(std::string(c.status().message()), HasSubstr("\"" + value + "\""));
  }
}

}  // namespace
}  // namespace flux::worker::config
