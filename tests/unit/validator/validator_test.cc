#include "worker/validator/validator.h"

#include <gtest/gtest.h>

#include <fstream>
#include <regex>

#include "shared/core/error.h"
#include "unit/validator/media_fixture.h"

namespace flux::worker::validator {
namespace {

namespace fs = std::filesystem;
using testing::TempDir;

std::string message(const absl::Status& status) { return std::string(status.message()); }

std::string read(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}
void write(const fs::path& path, const std::string& text) { std::ofstream(path, std::ios::binary) << text; }

// Outputs made once (ffmpeg is the slow part); each test validates a copy it may break.
class ValidatorTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    media_ = new TempDir();
    const fs::path& root = media_->path();
    ASSERT_TRUE(testing::make_mp4(root / "av", 2, true).ok());
    ASSERT_TRUE(testing::make_mp4(root / "silent", 2, false).ok());
    ASSERT_TRUE(testing::make_hls(root / "hls", 3).ok());
    ASSERT_TRUE(testing::make_hls_abr(root / "abr", 3).ok());
    ASSERT_TRUE(testing::make_dash(root / "dash", 3).ok());
  }
  static void TearDownTestSuite() {
    delete media_;
    media_ = nullptr;
  }

  // A private copy of one of the generated outputs.
  fs::path output(const std::string& name) {
    fs::path dir = work_.path() / name;
    fs::copy(media_->path() / name, dir, fs::copy_options::recursive);
    return dir;
  }

  static ValidationRequest single(const fs::path& dir) {
    ValidationRequest request;
    request.kind = OutputKind::kSingle;
    request.output_dir = dir;
    request.main_file = "output.mp4";
    request.expected_heights = {240};
    request.expect_audio = true;
    request.expected_duration_seconds = 2;
    return request;
  }
  static ValidationRequest hls(const fs::path& dir, const std::string& main, std::vector<int> heights) {
    ValidationRequest request;
    request.kind = OutputKind::kHls;
    request.output_dir = dir;
    request.main_file = main;
    request.expected_heights = std::move(heights);
    request.expect_audio = true;
    request.expected_duration_seconds = 3;
    return request;
  }
  static ValidationRequest dash(const fs::path& dir) {
    ValidationRequest request;
    request.kind = OutputKind::kDash;
    request.output_dir = dir;
    request.main_file = "manifest.mpd";
    request.expected_heights = {240, 120};
    request.expect_audio = true;
    request.expected_duration_seconds = 3;
    return request;
  }

  // Validates and expects a validation failure whose message contains `expected`.
  void expect_failure(const ValidationRequest& request, const std::string& expected) {
    auto result = validate_output(request, cancel_);
    ASSERT_FALSE(result.ok()) << "expected a failure containing: " << expected;
    EXPECT_EQ(error_code(result.status()), "validation_failed") << result.status();
    EXPECT_NE(message(result.status()).find(expected), std::string::npos) << result.status();
  }

  CancelToken cancel_;
  TempDir work_;

 private:
  static TempDir* media_;
};
TempDir* ValidatorTest::media_ = nullptr;

// ---- single file -----------------------------------------------------------

TEST_F(ValidatorTest, GoodMp4PassesAndListsItsFile) {
  fs::path dir = output("av");
  auto result = validate_output(single(dir), cancel_);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->media.video_codec, "h264");
  EXPECT_EQ(result->media.height, 240);
  EXPECT_TRUE(result->media.has_audio);
  ASSERT_EQ(result->files.size(), 1u);
  EXPECT_EQ(result->files[0].relative, "output.mp4");
  EXPECT_EQ(result->files[0].size_bytes, fs::file_size(dir / "output.mp4"));
  EXPECT_EQ(result->total_bytes, fs::file_size(dir / "output.mp4"));
}

TEST_F(ValidatorTest, WrongHeightFails) {
  ValidationRequest request = single(output("av"));
  request.expected_heights = {720};
  expect_failure(request, "expected height 720, got 240");
}

TEST_F(ValidatorTest, WrongCodecFails) {
  ValidationRequest request = single(output("av"));
  request.expected_video_codec = "hevc";
  expect_failure(request, "expected video codec hevc, got h264");
}

TEST_F(ValidatorTest, MissingAudioFailsAndUnexpectedAudioFails) {
  expect_failure(single(output("silent")), "expected an audio stream, found none");
  ValidationRequest request = single(output("av"));
  request.expect_audio = false;
  expect_failure(request, "expected no audio stream, found aac");
}

TEST_F(ValidatorTest, DurationOutsideToleranceFails) {
  fs::path dir = output("av");
  ValidationRequest request = single(dir);
  request.expected_duration_seconds = 3.9;  // within max(2 s, 2 %)
  EXPECT_TRUE(validate_output(request, cancel_).ok());
  request.expected_duration_seconds = 4.5;
  expect_failure(request, "duration of output.mp4 is 2.00 s, expected 4.50 s (tolerance 2.00 s)");
  request.expected_duration_seconds = 200;  // 2 % of 200 s = 4 s
  expect_failure(request, "tolerance 4.00 s");
}

TEST_F(ValidatorTest, MissingOrEmptyOutputFails) {
  fs::path dir = output("av");
  fs::rename(dir / "output.mp4", dir / "other.mp4");
  expect_failure(single(dir), "output file output.mp4 is missing");
  write(dir / "output.mp4", "");
  expect_failure(single(dir), "output file output.mp4 is empty");
}

TEST_F(ValidatorTest, StrictDecodeCatchesTruncatedFileThatStandardPasses) {
  fs::path dir = output("av");
  std::string bytes = read(dir / "output.mp4");
  write(dir / "output.mp4", bytes.substr(0, bytes.size() * 6 / 10));
  ValidationRequest request = single(dir);
  // The index (moov) is intact, so ffprobe still sees a 2 s h264+aac file.
  EXPECT_TRUE(validate_output(request, cancel_).ok());
  request.level = Level::kStrict;
  expect_failure(request, "full decode of output.mp4 failed");
}

TEST_F(ValidatorTest, StrictPassesGoodOutputs) {
  ValidationRequest request = single(output("av"));
  request.level = Level::kStrict;
  auto result = validate_output(request, cancel_);
  EXPECT_TRUE(result.ok()) << result.status();
}

TEST_F(ValidatorTest, MinimalDoesNotRunFfprobeButStandardDoes) {
  ValidationRequest request = single(output("av"));
  request.ffprobe_path = "/nonexistent/ffprobe";
  request.expected_heights = {1080};  // not checked at minimal
  request.level = Level::kMinimal;
  auto result = validate_output(request, cancel_);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->files.size(), 1u);
  // A missing tool is not the output's fault: no "validation_failed".
  request.level = Level::kStandard;
  auto standard = validate_output(request, cancel_);
  ASSERT_FALSE(standard.ok());
  EXPECT_NE(error_code(standard.status()), "validation_failed") << standard.status();
}

TEST_F(ValidatorTest, CancelledValidationStops) {
  CancelToken cancel;
  cancel.cancel("job_cancelled");
  auto result = validate_output(single(output("av")), cancel);
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(error_code(result.status()), "job_cancelled");
}

// ---- output directory hygiene ---------------------------------------------

TEST_F(ValidatorTest, SymlinkInOutputFails) {
  fs::path dir = output("av");
  fs::create_symlink("/etc/passwd", dir / "passwd");
  expect_failure(single(dir), "output contains a symlink: passwd");
}

TEST_F(ValidatorTest, SymlinkedDirectoryInOutputFails) {
  fs::path dir = output("av");
  fs::create_directory_symlink("/etc", dir / "etc");
  expect_failure(single(dir), "output contains a symlink: etc");
}

TEST_F(ValidatorTest, ListsEveryRegularFileSorted) {
  fs::path dir = output("av");
  fs::create_directories(dir / "b/c");
  write(dir / "b/c/z.txt", "z");
  write(dir / "a.txt", "aa");
  auto result = validate_output(single(dir), cancel_);
  ASSERT_TRUE(result.ok()) << result.status();
  ASSERT_EQ(result->files.size(), 3u);
  EXPECT_EQ(result->files[0].relative, "a.txt");
  EXPECT_EQ(result->files[1].relative, "b/c/z.txt");
  EXPECT_EQ(result->files[2].relative, "output.mp4");
  EXPECT_EQ(result->total_bytes, 3 + fs::file_size(dir / "output.mp4"));
}

TEST_F(ValidatorTest, MainFileOutsideOutputDirIsRefused) {
  ValidationRequest request = single(output("av"));
  request.main_file = "../av/output.mp4";
  auto result = validate_output(request, cancel_);
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(error_code(result.status()), "validation_request_invalid");
}

// ---- HLS -------------------------------------------------------------------

TEST_F(ValidatorTest, HlsPassesAndListsPlaylistAndSegments) {
  fs::path dir = output("hls");
  auto result = validate_output(hls(dir, "playlist.m3u8", {240}), cancel_);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->media.height, 240);
  ASSERT_EQ(result->files.size(), 4u);
  EXPECT_EQ(result->files[0].relative, "playlist.m3u8");
  EXPECT_EQ(result->files[1].relative, "segment_000.ts");
  EXPECT_EQ(result->files[3].relative, "segment_002.ts");
}

TEST_F(ValidatorTest, HlsMissingSegmentFailsEvenAtMinimal) {
  fs::path dir = output("hls");
  fs::remove(dir / "segment_001.ts");
  ValidationRequest request = hls(dir, "playlist.m3u8", {240});
  request.level = Level::kMinimal;
  expect_failure(request, "segment segment_001.ts listed in playlist.m3u8 is missing");
}

TEST_F(ValidatorTest, HlsBrokenPlaylistFails) {
  fs::path dir = output("hls");
  std::string text = read(dir / "playlist.m3u8");
  write(dir / "playlist.m3u8", std::regex_replace(text, std::regex("#EXT-X-TARGETDURATION:[0-9]+\n"), ""));
  expect_failure(hls(dir, "playlist.m3u8", {240}), "playlist.m3u8: media playlist has no #EXT-X-TARGETDURATION");
}

TEST_F(ValidatorTest, HlsReferenceOutsideOutputFails) {
  fs::path dir = output("hls");
  std::string text = read(dir / "playlist.m3u8");
  write(dir / "playlist.m3u8", std::regex_replace(text, std::regex("segment_001.ts"), "../hls/segment_001.ts"));
  expect_failure(hls(dir, "playlist.m3u8", {240}), "points outside the output directory");
  write(dir / "playlist.m3u8", std::regex_replace(text, std::regex("segment_001.ts"), "file:///etc/passwd"));
  expect_failure(hls(dir, "playlist.m3u8", {240}), "is not a plain relative path");
}

TEST_F(ValidatorTest, HlsAbrPassesWithEveryVariant) {
  fs::path dir = output("abr");
  ValidationRequest request = hls(dir, "master.m3u8", {240, 120});
  request.level = Level::kStrict;
  auto result = validate_output(request, cancel_);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->media.height, 240);  // the highest variant
  EXPECT_EQ(result->files.front().relative, "master.m3u8");
  EXPECT_EQ(result->files.size(), 1u + 2 * (1 + 3));  // master + 2 × (playlist + 3 segments)
}

TEST_F(ValidatorTest, HlsAbrMissingVariantHeightFails) {
  expect_failure(hls(output("abr"), "master.m3u8", {240, 144}),
                 "expected a rendition of height 144 in master.m3u8, got heights 240, 120");
}

TEST_F(ValidatorTest, HlsAbrMissingSegmentOfOneVariantFails) {
  fs::path dir = output("abr");
  fs::remove(dir / "stream_1/segment_002.ts");
  expect_failure(hls(dir, "master.m3u8", {240, 120}),
                 "segment segment_002.ts listed in stream_1/playlist.m3u8 is missing");
}

TEST_F(ValidatorTest, HlsAbrMissingVariantPlaylistFails) {
  fs::path dir = output("abr");
  fs::remove(dir / "stream_0/playlist.m3u8");
  expect_failure(hls(dir, "master.m3u8", {240, 120}),
                 "variant playlist stream_0/playlist.m3u8 listed in master.m3u8 is missing");
}

TEST_F(ValidatorTest, HlsAbrMasterWithoutResolutionFails) {
  fs::path dir = output("abr");
  std::string text = read(dir / "master.m3u8");
  write(dir / "master.m3u8", std::regex_replace(text, std::regex(",RESOLUTION=160x120"), ""));
  expect_failure(hls(dir, "master.m3u8", {240, 120}), "#EXT-X-STREAM-INF without RESOLUTION");
}

TEST_F(ValidatorTest, HlsAbrMasterLyingAboutResolutionFails) {
  fs::path dir = output("abr");
  std::string text = read(dir / "master.m3u8");
  write(dir / "master.m3u8", std::regex_replace(text, std::regex("RESOLUTION=160x120"), "RESOLUTION=640x480"));
  expect_failure(hls(dir, "master.m3u8", {240, 120}),
                 "master.m3u8 declares RESOLUTION=640x480 for stream_1/playlist.m3u8, but it is 160x120");
}

// ---- DASH ------------------------------------------------------------------

TEST_F(ValidatorTest, DashPassesWithEveryRepresentation) {
  fs::path dir = output("dash");
  ValidationRequest request = dash(dir);
  request.level = Level::kStrict;
  auto result = validate_output(request, cancel_);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->media.height, 240);
  EXPECT_EQ(result->media.video_heights, (std::vector<int>{240, 120}));
  EXPECT_TRUE(result->media.has_audio);
  size_t on_disk = std::distance(fs::directory_iterator(dir), fs::directory_iterator());
  EXPECT_EQ(result->files.size(), on_disk);
  EXPECT_TRUE(std::is_sorted(result->files.begin(), result->files.end(),
                             [](const auto& a, const auto& b) { return a.relative < b.relative; }));
}

TEST_F(ValidatorTest, DashMissingSegmentFails) {
  fs::path dir = output("dash");
  fs::remove(dir / "chunk-stream1-00002.m4s");
  expect_failure(dash(dir), "segment chunk-stream1-00002.m4s of representation 1 listed in manifest.mpd is missing");
}

TEST_F(ValidatorTest, DashWrongHeightOrBrokenManifestFails) {
  fs::path dir = output("dash");
  ValidationRequest request = dash(dir);
  request.expected_heights = {240, 180};
  expect_failure(request, "expected a rendition of height 180 in manifest.mpd, got heights 240, 120");

  std::string text = read(dir / "manifest.mpd");
  write(dir / "manifest.mpd", text.substr(0, text.size() / 2));
  expect_failure(dash(dir), "manifest.mpd: manifest is not well-formed XML");
}

TEST(ValidationLevel, ParsesNames) {
  EXPECT_EQ(*parse_level("minimal"), Level::kMinimal);
  EXPECT_EQ(*parse_level("standard"), Level::kStandard);
  EXPECT_EQ(*parse_level("STRICT"), Level::kStrict);
  auto bad = parse_level("paranoid");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(error_code(bad.status()), "validation_level_invalid");
  EXPECT_EQ(level_name(Level::kStrict), "strict");
}

}  // namespace
}  // namespace flux::worker::validator
