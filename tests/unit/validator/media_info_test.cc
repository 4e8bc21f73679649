#include "worker/validator/media_info.h"

#include <gtest/gtest.h>

#include <fstream>

#include "shared/core/error.h"
#include "unit/validator/media_fixture.h"

namespace flux::worker::validator {
namespace {

using testing::TempDir;

class MediaInfoTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir();
    ASSERT_TRUE(testing::make_mp4(dir_->path() / "av", 2, true).ok());
    ASSERT_TRUE(testing::make_hls(dir_->path() / "hls", 2).ok());
  }
  static void TearDownTestSuite() {
    delete dir_;
    dir_ = nullptr;
  }
  static const std::filesystem::path& dir() { return dir_->path(); }

 private:
  static TempDir* dir_;
};
TempDir* MediaInfoTest::dir_ = nullptr;

TEST_F(MediaInfoTest, ParsesRealFfprobeOutput) {
  std::filesystem::path file = dir() / "av/output.mp4";
  auto run =
      process::run({"ffprobe", "-v", "error", "-print_format", "json", "-show_format", "-show_streams", file.string()},
                   std::chrono::seconds(30));
  ASSERT_TRUE(run.ok()) << run.status();
  ASSERT_TRUE(run->status.ok()) << run->err;

  auto info = parse_ffprobe_json(run->out);
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_NEAR(info->duration_seconds, 2.0, 0.1);
  EXPECT_NE(info->format_name.find("mp4"), std::string::npos);
  EXPECT_TRUE(info->has_video);
  EXPECT_EQ(info->video_codec, "h264");
  EXPECT_EQ(info->width, 320);
  EXPECT_EQ(info->height, 240);
  EXPECT_DOUBLE_EQ(info->fps, 25.0);
  EXPECT_EQ(info->pixel_format, "yuv420p");
  EXPECT_TRUE(info->has_audio);
  EXPECT_EQ(info->audio_codec, "aac");
  EXPECT_EQ(info->audio_channels, 1);
  EXPECT_EQ(info->audio_sample_rate, 48000);
  EXPECT_EQ(info->size_bytes, std::filesystem::file_size(file));
  EXPECT_EQ(info->video_heights, std::vector<int>{240});
}

TEST_F(MediaInfoTest, ProbeMediaRunsFfprobe) {
  auto info = probe_media(dir() / "av/output.mp4", ProbeOptions{});
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->height, 240);
  EXPECT_TRUE(info->has_audio);
}

TEST_F(MediaInfoTest, ProbeFailsOnNonMediaWithFfprobesReason) {
  std::filesystem::path junk = dir() / "junk.mp4";
  std::ofstream(junk) << "this is not a video\n";
  auto info = probe_media(junk, ProbeOptions{});
  ASSERT_FALSE(info.ok());
  EXPECT_EQ(error_code(info.status()), "probe_failed");
  EXPECT_EQ(std::string(info.status().message()), "ffprobe failed on junk.mp4 (exit code 1): moov atom not found");
}

TEST_F(MediaInfoTest, FormatWhitelistRefusesPlaylists) {
  // The same playlist probes fine without a whitelist and is refused with one
  // that lists media containers only: what keeps a crafted input from making
  // ffprobe follow references.
  ASSERT_TRUE(probe_media(dir() / "hls/playlist.m3u8", ProbeOptions{}).ok());
  ProbeOptions options;
  options.format_whitelist = "mov,mp4,m4a,3gp,3g2,mj2,matroska,webm,mpegts";
  auto info = probe_media(dir() / "hls/playlist.m3u8", options);
  ASSERT_FALSE(info.ok());
  EXPECT_EQ(error_code(info.status()), "probe_failed");
}

TEST_F(MediaInfoTest, MissingFfprobeIsASpawnError) {
  ProbeOptions options;
  options.ffprobe_path = "/nonexistent/ffprobe";
  auto info = probe_media(dir() / "av/output.mp4", options);
  ASSERT_FALSE(info.ok());
  EXPECT_NE(error_code(info.status()), "probe_failed");
}

TEST(ParseFfprobeJson, RefusesWhatIsNotFfprobeOutput) {
  for (const char* bad : {"", "not json", "[]", "{}", R"({"format": 3})", "{\"format\": {"}) {
    auto info = parse_ffprobe_json(bad);
    ASSERT_FALSE(info.ok()) << bad;
    EXPECT_EQ(error_code(info.status()), "probe_failed") << bad;
  }
}

TEST(ParseFfprobeJson, PicksTallestVideoAndSkipsCoverArt) {
  auto info = parse_ffprobe_json(R"({
    "streams": [
      {"codec_type": "video", "codec_name": "mjpeg", "width": 1000, "height": 1000, "disposition": {"attached_pic": 1}},
      {"codec_type": "video", "codec_name": "h264", "width": 640, "height": 360, "avg_frame_rate": "0/0",
       "r_frame_rate": "30000/1001", "duration": "9.5"},
      {"codec_type": "video", "codec_name": "h264", "width": "1280", "height": 720, "avg_frame_rate": "25/1"},
      {"codec_type": "audio", "codec_name": "opus", "channels": 2, "sample_rate": "48000"},
      {"codec_type": "audio", "codec_name": "aac", "channels": 6},
      "garbage", {"codec_type": 5}
    ],
    "format": {"format_name": "matroska,webm", "size": 12345}
  })");
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->height, 720);
  EXPECT_EQ(info->width, 1280);
  EXPECT_DOUBLE_EQ(info->fps, 25);
  EXPECT_EQ(info->video_heights, (std::vector<int>{360, 720}));
  EXPECT_EQ(info->video_widths, (std::vector<int>{640, 1280}));
  EXPECT_EQ(info->audio_codec, "opus");
  EXPECT_EQ(info->audio_channels, 2);
  EXPECT_EQ(info->size_bytes, 12345u);
  // No format duration: the longest stream's.
  EXPECT_DOUBLE_EQ(info->duration_seconds, 9.5);
}

TEST(ParseFfprobeJson, IgnoresOutOfRangeNumbers) {
  auto info = parse_ffprobe_json(
      R"({"streams": [{"codec_type": "video", "width": -5, "height": 1e300, "avg_frame_rate": "1/0"}],
          "format": {"duration": "nan", "size": "-1"}})");
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->width, 0);
  EXPECT_EQ(info->height, 0);
  EXPECT_EQ(info->fps, 0);
  EXPECT_EQ(info->duration_seconds, 0);
  EXPECT_EQ(info->size_bytes, 0u);
}

TEST(CheckInputLimits, RefusesEnormousPicturesAndDurations) {
  MediaInfo info;
  info.duration_seconds = 7200;
  info.video_widths = {640, 15000};
  info.video_heights = {360, 15000};
  // 15000 x 15000 in a second stream: every stream counts, not only the tallest.
  absl::Status big = check_input_limits(info, 8192 * 4320, 86400);
  EXPECT_EQ(error_code(big), "input_too_large");
  EXPECT_EQ(big.message(), "input video is 15000x15000 = 225000000 pixels, above MAX_INPUT_PIXELS=35389440");
  EXPECT_TRUE(check_input_limits(info, 225000000, 86400).ok());
  EXPECT_TRUE(check_input_limits(info, 0, 0).ok());  // 0 = off

  info.duration_seconds = 5e6;
  absl::Status long_input = check_input_limits(info, 0, 86400);
  EXPECT_EQ(error_code(long_input), "input_too_long");
  EXPECT_EQ(long_input.message(), "input lasts 5000000 s, above MAX_INPUT_DURATION=86400 s");
  EXPECT_TRUE(check_input_limits(info, 0, 5e6).ok());
}

}  // namespace
}  // namespace flux::worker::validator
