#include "worker/encoder/encoder.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>
#include <tuple>

#include "shared/core/error.h"
#include "shared/process/subprocess.h"

namespace flux::worker::encoder {
namespace {

using namespace std::chrono_literals;
using ::testing::Contains;
using ::testing::HasSubstr;
using ::testing::Not;
namespace fs = std::filesystem;

// Clips made with lavfi sources on first use (ctest runs each test in its
// own process, so only what a test needs is generated), removed at exit.
class Clips : public ::testing::Environment {
 public:
  static inline fs::path dir = fs::temp_directory_path() / ("flux-encoder-test-" + std::to_string(::getpid()));

  // 1 s 320x240 10 fps, h264 + aac.
  static fs::path av() {
    return once("av.mp4", {"-f", "lavfi", "-i", "testsrc2=size=320x240:rate=10", "-f", "lavfi", "-i",
                           "sine=frequency=440:sample_rate=48000", "-t", "1", "-c:v", "libx264", "-preset", "ultrafast",
                           "-pix_fmt", "yuv420p", "-c:a", "aac"});
  }
  // 1 s 320x240, no audio.
  static fs::path video_only() {
    return once("video_only.mp4", {"-f", "lavfi", "-i", "testsrc2=size=320x240:rate=10", "-t", "1", "-c:v", "libx264",
                                   "-preset", "ultrafast", "-pix_fmt", "yuv420p"});
  }
  // 1 s 1279x719 yuv420p10le (ffv1 keeps the odd size).
  static fs::path odd_10bit() {
    return once("odd_10bit.mkv", {"-f", "lavfi", "-i", "testsrc=size=1279x719:rate=10", "-t", "1", "-pix_fmt",
                                  "yuv420p10le", "-c:v", "ffv1"});
  }
  // 60 s 320x240 mpeg4: cheap to make, slow to encode at 1080p.
  static fs::path long_clip() {
    return once("long.avi",
                {"-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25", "-t", "60", "-c:v", "mpeg4", "-q:v", "10"});
  }

  void TearDown() override { fs::remove_all(dir); }

  static void make(std::vector<std::string> args) {
    args.insert(args.begin(), {"ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", "-y"});
    auto result = process::run(args, 60s);
    ASSERT_TRUE(result.ok()) << result.status();
    ASSERT_TRUE(result->status.ok()) << result->err;
  }

 private:
  static fs::path once(const std::string& name, std::vector<std::string> args) {
    fs::path path = dir / name;
    if (!fs::exists(path)) {
      fs::create_directories(dir);
      args.push_back(path.string());
      make(args);
    }
    return path;
  }
};
const auto* const kClips = ::testing::AddGlobalTestEnvironment(new Clips);

struct StreamInfo {
  std::string type, codec, pix_fmt;
  int width = 0, height = 0;
};

std::vector<StreamInfo> probe(const fs::path& file) {
  auto result = process::run({"ffprobe", "-v", "error", "-show_entries",
                              "stream=codec_type,codec_name,width,height,pix_fmt", "-of", "json", file.string()},
                             30s);
  EXPECT_TRUE(result.ok()) << result.status();
  if (!result.ok()) return {};
  EXPECT_TRUE(result->status.ok()) << file << ": " << result->err;
  std::vector<StreamInfo> streams;
  auto doc = nlohmann::json::parse(result->out, nullptr, false);
  for (const auto& s : doc.value("streams", nlohmann::json::array())) {
    streams.push_back({s.value("codec_type", ""), s.value("codec_name", ""), s.value("pix_fmt", ""),
                       s.value("width", 0), s.value("height", 0)});
  }
  return streams;
}

std::vector<const StreamInfo*> of_type(const std::vector<StreamInfo>& streams, std::string_view type) {
  std::vector<const StreamInfo*> out;
  for (const auto& s : streams) {
    if (s.type == type) out.push_back(&s);
  }
  return out;
}

// Expects one h264 yuv420p video stream of `height` (even width) and
// audio present or not.
void expect_media(const fs::path& file, int height, bool audio) {
  SCOPED_TRACE(file.string());
  ASSERT_TRUE(fs::exists(file));
  auto streams = probe(file);
  auto video = of_type(streams, "video");
  ASSERT_EQ(video.size(), 1u);
  EXPECT_EQ(video[0]->codec, "h264");
  EXPECT_EQ(video[0]->pix_fmt, "yuv420p");
  EXPECT_EQ(video[0]->height, height);
  EXPECT_EQ(video[0]->width % 2, 0);
  auto audio_streams = of_type(streams, "audio");
  EXPECT_EQ(audio_streams.size(), audio ? 1u : 0u);
  if (audio && !audio_streams.empty()) {
    EXPECT_EQ(audio_streams[0]->codec, "aac");
  }
}

std::string read_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

class Encode : public ::testing::Test {
 protected:
  void SetUp() override {
    out_ = Clips::dir / ("out-" + std::string(::testing::UnitTest::GetInstance()->current_test_info()->name()));
    fs::remove_all(out_);
  }
  EncodeRequest request(std::string_view preset_name, const fs::path& input, bool has_audio, double duration = 1) {
    preset_ = catalog_.find(preset_name);
    EXPECT_NE(preset_, nullptr) << preset_name;
    EncodeRequest r;
    r.job_id = "job-test";
    r.preset = preset_;
    r.input = input;
    r.output_dir = out_;
    r.input_has_audio = has_audio;
    r.input_duration_seconds = duration;
    return r;
  }
  absl::Status encode(const EncodeRequest& r, std::vector<Progress>* seen = nullptr,
                      std::vector<std::string>* tail = nullptr) {
    CancelToken token;
    return run_encode(
        r,
        [seen](const Progress& p) {
          if (seen) seen->push_back(p);
        },
        token, tail);
  }
  // True when some file under out_ contains `needle`.
  bool output_contains(std::string_view needle) {
    if (!fs::exists(out_)) return false;
    for (const auto& entry : fs::recursive_directory_iterator(out_)) {
      if (entry.is_regular_file() && read_file(entry.path()).find(needle) != std::string::npos) return true;
    }
    return false;
  }

  preset::Catalog catalog_ = preset::Catalog::builtin();
  const preset::Preset* preset_ = nullptr;
  fs::path out_;
};

TEST(ProgressParser, ParsesRealFfmpegProgressOutput) {
  fs::create_directories(Clips::dir);
  const fs::path file = Clips::dir / "progress.txt";
  // -readrate keeps ffmpeg busy for ~1.3 s so that several blocks come out,
  // including some after the first second (ffmpeg reports fps=0 before).
  Clips::make({"-readrate", "3", "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25", "-t", "4", "-stats_period",
               "0.1", "-progress", file.string(), "-c:v", "libx264", "-preset", "ultrafast", "-f", "null", "-"});
  std::istringstream lines(read_file(file));
  ProgressParser parser(4.0);
  std::vector<Progress> snapshots;
  for (std::string line; std::getline(lines, line);) {
    if (auto snapshot = parser.feed_line(line)) snapshots.push_back(*snapshot);
  }
  ASSERT_GE(snapshots.size(), 4u);
  for (size_t i = 1; i < snapshots.size(); ++i) {
    EXPECT_GE(snapshots[i].percent, snapshots[i - 1].percent);
    EXPECT_GE(snapshots[i].out_time_us, snapshots[i - 1].out_time_us);
  }
  for (size_t i = 0; i + 1 < snapshots.size(); ++i) {
    EXPECT_FALSE(snapshots[i].ended);
    EXPECT_LT(snapshots[i].percent, 100);
  }
  const Progress& last = snapshots.back();
  EXPECT_TRUE(last.ended);
  EXPECT_DOUBLE_EQ(last.percent, 100);
  EXPECT_EQ(last.out_time_us, 4000000);
  EXPECT_GT(last.fps, 0);
  EXPECT_GT(last.speed, 0);
  // A block in the middle: part done, speed known, ETA from remaining / speed.
  const Progress& mid = snapshots[snapshots.size() / 2];
  EXPECT_GT(mid.percent, 5);
  EXPECT_LT(mid.percent, 100);
  EXPECT_GT(mid.speed, 0);
  EXPECT_NEAR(mid.eta_seconds, (4.0 - mid.out_time_us / 1e6) / mid.speed, 1e-6);
}

TEST(ProgressParser, HandlesNotAvailableAndUnknownDuration) {
  ProgressParser parser(10);
  EXPECT_FALSE(parser.feed_line("frame=1").has_value());
  parser.feed_line("fps=N/A");
  parser.feed_line("out_time_us=N/A");
  parser.feed_line("speed=N/A");
  auto first = parser.feed_line("progress=continue");
  ASSERT_TRUE(first.has_value());
  EXPECT_EQ(first->percent, 0);
  EXPECT_EQ(first->eta_seconds, -1);
  parser.feed_line("out_time_us=5000000");
  parser.feed_line("speed= 2.5x");
  auto second = parser.feed_line("progress=continue");
  EXPECT_DOUBLE_EQ(second->percent, 50);
  EXPECT_DOUBLE_EQ(second->eta_seconds, 2);
  parser.feed_line("out_time_us=-9223372036854775807");  // ffmpeg's "no timestamp"
  parser.feed_line("speed=N/A");
  auto third = parser.feed_line("progress=continue");
  EXPECT_DOUBLE_EQ(third->percent, 50);
  EXPECT_DOUBLE_EQ(third->speed, 2.5);

  ProgressParser unknown(0);
  unknown.feed_line("out_time_us=5000000");
  EXPECT_EQ(unknown.feed_line("progress=continue")->percent, 0);
  auto end = unknown.feed_line("progress=end");
  EXPECT_TRUE(end->ended);
  EXPECT_EQ(end->percent, 100);
}

TEST(Argv, HasTheSafetyOptionsBeforeTheInput) {
  auto catalog = preset::Catalog::builtin();
  EncodeRequest r;
  r.preset = catalog.find("720p_h264");
  r.input = "/jobs/j1/in:put.mp4";
  r.output_dir = "/jobs/j1/out";
  r.input_has_audio = true;
  auto argv = build_ffmpeg_argv(r);
  auto at = [&](std::string_view flag) { return std::find(argv.begin(), argv.end(), flag) - argv.begin(); };
  EXPECT_EQ(argv[0], "ffmpeg");
  for (std::string_view flag : {"-hide_banner", "-nostdin", "-y", "-nostats"}) EXPECT_THAT(argv, Contains(flag));
  EXPECT_EQ(argv[at("-progress") + 1], "pipe:3");
  EXPECT_EQ(argv[at("-stats_period") + 1], "0.250");
  EXPECT_EQ(argv[at("-protocol_whitelist") + 1], "file");
  EXPECT_EQ(argv[at("-format_whitelist") + 1], kInputFormatWhitelist);
  EXPECT_EQ(argv[at("-i") + 1], "file:/jobs/j1/in:put.mp4");
  EXPECT_LT(at("-protocol_whitelist"), at("-i"));
  EXPECT_LT(at("-format_whitelist"), at("-i"));
  EXPECT_EQ(argv.back(), "/jobs/j1/out/output.mp4");
  for (std::string_view banned : {"hls", "concat", "dash", "sdp", "rtp", "image2", "lavfi", "tee"}) {
    std::string list = std::string(",") + kInputFormatWhitelist + ",";
    EXPECT_EQ(list.find("," + std::string(banned) + ","), std::string::npos) << banned;
  }
}

TEST(Argv, MaxPixelsGoesBeforeTheInputOnlyWhenSet) {
  auto catalog = preset::Catalog::builtin();
  EncodeRequest r;
  r.preset = catalog.find("480p_h264");
  r.input = "/jobs/j1/in.mp4";
  r.output_dir = "/jobs/j1/out";
  EXPECT_THAT(build_ffmpeg_argv(r), Not(Contains("-max_pixels")));
  r.limits.max_frame_pixels = 1920 * 1080;
  auto argv = build_ffmpeg_argv(r);
  auto at = [&](std::string_view flag) { return std::find(argv.begin(), argv.end(), flag) - argv.begin(); };
  ASSERT_LT(at("-max_pixels"), at("-i"));
  EXPECT_EQ(argv[at("-max_pixels") + 1], "2073600");
  r.limits.max_frame_pixels = 1ull << 40;  // beyond ffmpeg's int option: capped, not wrapped
  argv = build_ffmpeg_argv(r);
  EXPECT_EQ(argv[at("-max_pixels") + 1], "2147483647");
}

TEST_F(Encode, FrameLargerThanMaxPixelsFailsAsInputTooLarge) {
  auto r = request("480p_h264", Clips::av(), true);
  r.limits.max_frame_pixels = 100 * 100;  // the clip's frames are larger
  auto s = encode(r, nullptr);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(error_code(s), "input_too_large") << s;
  EXPECT_THAT(std::string(s.message()), HasSubstr("MAX_INPUT_PIXELS=10000"));
}

TEST_F(Encode, EverySingleFilePreset) {
  for (auto [name, height] : {std::pair{"720p_h264", 720}, {"1080p_h264", 1080}, {"480p_h264", 480}}) {
    SCOPED_TRACE(name);
    fs::remove_all(out_);
    std::vector<Progress> seen;
    auto s = encode(request(name, Clips::av(), true), &seen);
    ASSERT_TRUE(s.ok()) << s;
    expect_media(out_ / "output.mp4", height, true);
    ASSERT_FALSE(seen.empty());
    EXPECT_TRUE(seen.back().ended);
    EXPECT_EQ(seen.back().percent, 100);
  }
}

TEST_F(Encode, HlsSingleVariantWithAndWithoutAudio) {
  ASSERT_TRUE(encode(request("hls_720p", Clips::av(), true)).ok());
  std::string playlist = read_file(out_ / "playlist.m3u8");
  EXPECT_THAT(playlist, HasSubstr("#EXT-X-PLAYLIST-TYPE:VOD"));
  EXPECT_THAT(playlist, HasSubstr("segment_000.ts"));
  expect_media(out_ / "segment_000.ts", 720, true);

  fs::remove_all(out_);
  ASSERT_TRUE(encode(request("hls_720p_video_only", Clips::av(), true)).ok());
  expect_media(out_ / "segment_000.ts", 720, false);
}

TEST_F(Encode, HlsAbrMakesAMasterAndThreeVariants) {
  ASSERT_TRUE(encode(request("hls_720p_abr", Clips::av(), true)).ok());
  std::string master = read_file(out_ / "master.m3u8");
  const int heights[] = {720, 480, 360};
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_THAT(master, HasSubstr(preset_->variant_playlist(i)));
    EXPECT_TRUE(fs::exists(out_ / preset_->variant_playlist(i)));
    expect_media(out_ / ("stream_" + std::to_string(i)) / "segment_000.ts", heights[i], true);
  }
  EXPECT_THAT(master, HasSubstr("RESOLUTION=960x720"));

  fs::remove_all(out_);
  ASSERT_TRUE(encode(request("hls_720p_abr_video_only", Clips::av(), true)).ok());
  for (size_t i = 0; i < 3; ++i) {
    expect_media(out_ / ("stream_" + std::to_string(i)) / "segment_000.ts", heights[i], false);
  }
}

TEST_F(Encode, DashHasTwoVideoRepresentationsAndAudio) {
  ASSERT_TRUE(encode(request("dash_1080p", Clips::av(), true)).ok());
  ASSERT_TRUE(fs::exists(out_ / "manifest.mpd"));
  std::string manifest = read_file(out_ / "manifest.mpd");
  EXPECT_THAT(manifest, HasSubstr("height=\"1080\""));
  EXPECT_THAT(manifest, HasSubstr("height=\"720\""));
  EXPECT_THAT(manifest, HasSubstr("mp4a"));
  auto streams = probe(out_ / "manifest.mpd");
  auto video = of_type(streams, "video");
  ASSERT_EQ(video.size(), 2u);
  EXPECT_EQ(video[0]->pix_fmt, "yuv420p");
  EXPECT_EQ(of_type(streams, "audio").size(), 1u);
}

TEST_F(Encode, InputWithoutAudioWorksWithAudioPresets) {
  ASSERT_TRUE(encode(request("480p_h264", Clips::video_only(), false)).ok());
  expect_media(out_ / "output.mp4", 480, false);
  fs::remove_all(out_);
  ASSERT_TRUE(encode(request("hls_720p_abr", Clips::video_only(), false)).ok());
  EXPECT_TRUE(fs::exists(out_ / "master.m3u8"));
  expect_media(out_ / "stream_2" / "segment_000.ts", 360, false);
}

TEST_F(Encode, OddSized10BitInputBecomesEven8Bit) {
  ASSERT_TRUE(encode(request("720p_h264", Clips::odd_10bit(), false)).ok());
  auto streams = probe(out_ / "output.mp4");
  auto video = of_type(streams, "video");
  ASSERT_EQ(video.size(), 1u);
  EXPECT_EQ(video[0]->pix_fmt, "yuv420p");
  EXPECT_EQ(video[0]->height, 720);
  EXPECT_EQ(video[0]->width, 1280);
}

TEST_F(Encode, CancelStopsFfmpegQuickly) {
  EncodeRequest r = request("1080p_h264", Clips::long_clip(), false, 60);
  r.progress_interval = 100ms;
  CancelToken token;
  std::vector<Progress> seen;
  auto started = std::chrono::steady_clock::now();
  std::chrono::steady_clock::time_point cancelled_at;
  absl::Status s = run_encode(
      r,
      [&](const Progress& p) {
        seen.push_back(p);
        if (!token.cancelled()) {
          cancelled_at = std::chrono::steady_clock::now();
          token.cancel("cancelled");
        }
      },
      token);
  auto returned_at = std::chrono::steady_clock::now();
  EXPECT_EQ(error_code(s), "cancelled") << s;
  EXPECT_EQ(s.code(), absl::StatusCode::kCancelled);
  ASSERT_FALSE(seen.empty());
  EXPECT_LT(seen.back().percent, 100);
  EXPECT_FALSE(seen.back().ended);
  EXPECT_LT(returned_at - cancelled_at, 4s);
  EXPECT_LT(returned_at - started, 20s);
  // No process still running with this job's output dir in its command line.
  for (const auto& entry : fs::directory_iterator("/proc")) {
    std::string pid = entry.path().filename().string();
    if (pid.find_first_not_of("0123456789") != std::string::npos) continue;
    std::string cmdline = read_file(entry.path() / "cmdline");
    if (cmdline.find(out_.string()) == std::string::npos) continue;
    std::string stat = read_file(entry.path() / "stat");
    size_t paren = stat.rfind(')');
    bool zombie = paren != std::string::npos && stat.size() > paren + 2 && stat[paren + 2] == 'Z';
    EXPECT_TRUE(zombie) << "ffmpeg " << pid << " still running";
  }
}

TEST_F(Encode, ProgressIsRateLimited) {
  EncodeRequest r = request("480p_h264", Clips::long_clip(), false, 60);
  r.progress_interval = 300ms;
  CancelToken token;
  std::vector<std::chrono::steady_clock::time_point> times;
  std::thread stopper([&token] {
    std::this_thread::sleep_for(1500ms);
    token.cancel("timeout");
  });
  absl::Status s = run_encode(
      r, [&](const Progress&) { times.push_back(std::chrono::steady_clock::now()); }, token);
  stopper.join();
  EXPECT_EQ(error_code(s), "timeout");
  ASSERT_GE(times.size(), 2u);
  for (size_t i = 1; i < times.size(); ++i) EXPECT_GE(times[i] - times[i - 1], 290ms);
}

TEST_F(Encode, HlsPlaylistDisguisedAsMp4IsRefused) {
  fs::create_directories(Clips::dir);
  const fs::path evil = Clips::dir / "evil.mp4";
  std::ofstream(evil) << "#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXT-X-MEDIA-SEQUENCE:0\n#EXTINF:10.0,\n"
                         "file:///etc/passwd\n#EXTINF:10.0,\n/etc/passwd\n#EXT-X-ENDLIST\n";
  std::vector<std::string> tail;
  absl::Status s = encode(request("720p_h264", evil, false), nullptr, &tail);
  EXPECT_FALSE(s.ok());
  EXPECT_EQ(error_code(s), "encode_failed") << s;
  // Refused by the format whitelist, not by luck of some other check.
  EXPECT_THAT(std::string(s.message()), HasSubstr("[hls] Format not on whitelist")) << s;
  EXPECT_FALSE(output_contains("root:"));
  EXPECT_FALSE(fs::exists(out_ / "output.mp4") && fs::file_size(out_ / "output.mp4") > 0);

  const fs::path concat = Clips::dir / "concat.mp4";
  std::ofstream(concat) << "ffconcat version 1.0\nfile '/etc/passwd'\n";
  s = encode(request("720p_h264", concat, false), nullptr, &tail);
  EXPECT_EQ(error_code(s), "encode_failed") << s;
  EXPECT_THAT(std::string(s.message()), HasSubstr("[concat] Format not on whitelist")) << s;
  EXPECT_FALSE(output_contains("root:"));
}

TEST_F(Encode, GarbageInputFailsWithASummaryAndTail) {
  fs::create_directories(Clips::dir);
  const fs::path garbage = Clips::dir / "garbage.mp4";
  {
    std::ofstream out(garbage, std::ios::binary);
    for (int i = 0; i < 100000; ++i) out.put(static_cast<char>((i * 7919) % 251));
  }
  std::vector<std::string> tail;
  absl::Status s = encode(request("720p_h264", garbage, true), nullptr, &tail);
  EXPECT_EQ(error_code(s), "encode_failed") << s;
  EXPECT_THAT(std::string(s.message()), HasSubstr("ffmpeg failed"));
  EXPECT_THAT(std::string(s.message()), HasSubstr("input"));
  // The summary does not leak the worker's paths.
  EXPECT_THAT(std::string(s.message()), Not(HasSubstr(Clips::dir.string())));
  EXPECT_FALSE(tail.empty());
  EXPECT_LE(tail.size(), 50u);
  EXPECT_THAT(std::string(s.message()), HasSubstr("moov atom not found")) << s;
}

// ---- limits ---------------------------------------------------------------

process::ExitStatus exited(int code, double cpu = 0) { return {code, 0, cpu}; }
process::ExitStatus killed(int signal, double cpu = 0) { return {-1, signal, cpu}; }

TEST(LimitBreach, NothingWhenNoLimitIsSet) {
  EncodeLimits none;
  for (const auto& status : {exited(0), exited(1), killed(SIGXFSZ), killed(SIGXCPU), killed(SIGSEGV)}) {
    EXPECT_FALSE(limit_breach(none, status, 1ull << 40, {"Cannot allocate memory"}).has_value()) << status.describe();
  }
}

TEST(LimitBreach, OutputTooLarge) {
  EncodeLimits limits;
  limits.max_output_bytes = 50000;
  for (const auto& [status, bytes, line] : std::vector<std::tuple<process::ExitStatus, uint64_t, std::string>>{
           {killed(SIGXFSZ), 50000, ""},                                        // RLIMIT_FSIZE's signal
           {exited(1), 49000, "av_interleaved_write_frame(): File too large"},  // EFBIG, signal ignored
           {exited(0), 50001, ""},  // a directory total over the cap, even after a clean exit
       }) {
    auto breach = limit_breach(limits, status, bytes, {line});
    ASSERT_TRUE(breach.has_value()) << status.describe();
    EXPECT_EQ(error_code(*breach), "output_too_large");
    EXPECT_THAT(std::string(breach->message()), HasSubstr("MAX_OUTPUT_BYTES=50000"));
  }
  EXPECT_FALSE(limit_breach(limits, exited(0), 50000, {}).has_value());
  EXPECT_FALSE(limit_breach(limits, exited(1), 100, {"moov atom not found"}).has_value());
}

TEST(LimitBreach, CpuLimitExceeded) {
  EncodeLimits limits;
  limits.cpu_seconds = 2;
  // ffmpeg catches SIGXCPU and exits 255; or it is killed a second later.
  for (const auto& status : {exited(255, 1.9), killed(SIGKILL, 3.0), killed(SIGXCPU, 2.0)}) {
    auto breach = limit_breach(limits, status, 0, {});
    ASSERT_TRUE(breach.has_value()) << status.describe();
    EXPECT_EQ(error_code(*breach), "cpu_limit_exceeded");
    EXPECT_THAT(std::string(breach->message()), HasSubstr("FFMPEG_CPU_SECONDS=2"));
  }
  // A failure well inside the allowance is not the limit's doing.
  EXPECT_FALSE(limit_breach(limits, exited(1, 0.3), 0, {}).has_value());
  EXPECT_FALSE(limit_breach(limits, exited(0, 2.5), 0, {}).has_value());
}

TEST(LimitBreach, MemoryLimitUnlessTheInputIsBlamed) {
  EncodeLimits limits;
  limits.address_space_bytes = 64ull << 20;
  for (const auto& [status, line] : std::vector<std::pair<process::ExitStatus, std::string>>{
           {exited(127),
            "ffmpeg: error while loading shared libraries: libx.so: failed to map segment from shared "
            "object"},
           {exited(1), "Failed to inject frame into filter network: Cannot allocate memory"},
           {exited(1), "x264 [error]: malloc of size 8841280 failed"},
           {killed(SIGSEGV), ""},
           {killed(SIGABRT), "terminate called after throwing an instance of 'std::bad_alloc'"},
           // What x264 says when it cannot start its threads.
           {exited(1), "Error initializing output stream 0:0 -- Error while opening encoder for output stream #0:0"},
       }) {
    auto breach = limit_breach(limits, status, 0, {"some earlier line", line});
    ASSERT_TRUE(breach.has_value()) << status.describe() << " " << line;
    EXPECT_EQ(error_code(*breach), "memory_limit_exceeded");
    EXPECT_THAT(std::string(breach->message()), HasSubstr("FFMPEG_MEMORY_MB=64"));
  }
  // A broken input is not put down to the limit.
  EXPECT_FALSE(limit_breach(limits, exited(1), 0, {"input: Invalid data found when processing input"}).has_value());
  EXPECT_FALSE(limit_breach(limits, exited(1), 0, {"[h264] error while decoding MB 3 4"}).has_value());
  EXPECT_FALSE(limit_breach(limits, exited(0), 0, {"Cannot allocate memory"}).has_value());
}

TEST(DirectoryBytes, SumsRegularFilesBelow) {
  const fs::path dir = Clips::dir / "bytes";
  fs::remove_all(dir);
  EXPECT_EQ(directory_bytes(dir), 0u);
  fs::create_directories(dir / "stream_0");
  std::ofstream(dir / "a") << std::string(1000, 'a');
  std::ofstream(dir / "stream_0" / "b") << std::string(234, 'b');
  EXPECT_EQ(directory_bytes(dir), 1234u);
}

TEST_F(Encode, WallTimeLimitStopsFfmpeg) {
  EncodeRequest r = request("1080p_h264", Clips::long_clip(), false, 60);
  r.limits.max_wall = 1s;
  auto started = std::chrono::steady_clock::now();
  absl::Status s = encode(r);
  EXPECT_EQ(error_code(s), "time_limit_exceeded") << s;
  EXPECT_THAT(std::string(s.message()), HasSubstr("FFMPEG_MAX_SECONDS=1 "));
  EXPECT_LT(std::chrono::steady_clock::now() - started, 20s);
}

TEST_F(Encode, OutputLimitStopsFfmpeg) {
  EncodeRequest r = request("480p_h264", Clips::long_clip(), false, 60);
  r.limits.max_output_bytes = 30000;
  absl::Status s = encode(r);
  EXPECT_EQ(error_code(s), "output_too_large") << s;
  EXPECT_THAT(std::string(s.message()), HasSubstr("MAX_OUTPUT_BYTES=30000"));
  EXPECT_LE(fs::file_size(out_ / "output.mp4"), 30000u);
}

TEST_F(Encode, MemoryLimitTooSmallForFfmpegIsReportedAsSuch) {
  EncodeRequest r = request("480p_h264", Clips::av(), true);
  r.limits.address_space_bytes = 32ull << 20;  // not even enough to load ffmpeg's libraries
  absl::Status s = encode(r);
  EXPECT_EQ(error_code(s), "memory_limit_exceeded") << s;
  EXPECT_THAT(std::string(s.message()), HasSubstr("FFMPEG_MEMORY_MB=32"));
}

// The probe answers while ffmpeg runs: percent and ETA wait for its
// duration, and its refusal stops ffmpeg with the refusal's code.
TEST_F(Encode, LateDurationAndStop) {
  EncodeRequest r = request("480p_h264", Clips::long_clip(), false, 0);
  r.progress_interval = 100ms;
  std::atomic<double> duration{0};
  CancelToken stop;
  r.duration_source = [&duration] { return duration.load(); };
  r.stop = &stop;
  CancelToken cancel;
  std::vector<Progress> seen;
  std::chrono::steady_clock::time_point stopped_at;
  absl::Status s = run_encode(
      r,
      [&](const Progress& p) {
        seen.push_back(p);
        if (seen.size() == 2) duration = 60;
        if (p.percent > 0 && !stop.cancelled()) {
          stopped_at = std::chrono::steady_clock::now();
          stop.cancel("input_too_large");
        }
      },
      cancel);
  EXPECT_EQ(error_code(s), "input_too_large") << s;
  EXPECT_LT(std::chrono::steady_clock::now() - stopped_at, 2s);
  ASSERT_GE(seen.size(), 3u);
  EXPECT_EQ(seen[0].percent, 0);
  EXPECT_EQ(seen[0].eta_seconds, -1);
  EXPECT_GT(seen.back().percent, 0);
}

TEST_F(Encode, MissingFfmpegIsSpawnFailed) {
  EncodeRequest r = request("720p_h264", Clips::av(), true);
  r.ffmpeg_path = "/nonexistent/ffmpeg";
  EXPECT_EQ(error_code(encode(r)), "spawn_failed");
}

TEST_F(Encode, RefusesBadRequests) {
  EncodeRequest r = request("720p_h264", Clips::av(), true);
  r.preset = nullptr;
  EXPECT_EQ(error_code(encode(r)), "invalid_request");
  r = request("720p_h264", Clips::av(), true);
  r.output_dir = Clips::dir / "out%d";
  EXPECT_EQ(error_code(encode(r)), "invalid_request");
}

}  // namespace
}  // namespace flux::worker::encoder
