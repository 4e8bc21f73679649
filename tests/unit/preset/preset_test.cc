#include "worker/preset/preset.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>

#include "shared/core/error.h"

namespace flux::worker::preset {
namespace {

using ::testing::Contains;
using ::testing::HasSubstr;
using ::testing::Not;

// The value following `flag` in args, or "" when absent.
std::string value_of(const std::vector<std::string>& args, std::string_view flag) {
  auto it = std::find(args.begin(), args.end(), flag);
  return it == args.end() || it + 1 == args.end() ? "" : *(it + 1);
}

size_t count_of(const std::vector<std::string>& args, std::string_view value) {
  return static_cast<size_t>(std::count(args.begin(), args.end(), value));
}

bool any_starts_with(const std::vector<std::string>& args, std::string_view prefix) {
  return std::any_of(args.begin(), args.end(), [&](const std::string& a) { return a.rfind(prefix, 0) == 0; });
}

const Preset& builtin(std::string_view name) {
  static const Catalog catalog = Catalog::builtin();
  const Preset* p = catalog.find(name);
  EXPECT_NE(p, nullptr) << name;
  return *p;
}

TEST(Catalog, BuiltinHasTheEightPresetsSortedByName) {
  Catalog c = Catalog::builtin();
  std::vector<std::string> names;
  for (const Preset* p : c.all()) names.push_back(p->name);
  EXPECT_EQ(names, (std::vector<std::string>{"1080p_h264", "480p_h264", "720p_h264", "dash_1080p", "hls_720p",
                                             "hls_720p_abr", "hls_720p_abr_video_only", "hls_720p_video_only"}));
  EXPECT_EQ(c.find("nope"), nullptr);
}

TEST(Catalog, BuiltinFieldsMatchTheSpec) {
  const Preset& p720 = builtin("720p_h264");
  EXPECT_EQ(p720.type, OutputType::kSingle);
  EXPECT_EQ(p720.extension, "mp4");
  EXPECT_EQ(p720.main_file, "output.mp4");
  EXPECT_EQ(p720.variants.size(), 1u);
  EXPECT_EQ(p720.variants[0].height, 720);
  EXPECT_EQ(p720.crf, 23);
  EXPECT_EQ(p720.variants[0].audio_bitrate_kbps, 128);
  EXPECT_EQ(builtin("1080p_h264").variants[0].audio_bitrate_kbps, 192);
  EXPECT_EQ(builtin("480p_h264").x264_preset, "fast");
  EXPECT_EQ(builtin("480p_h264").crf, 24);
  EXPECT_EQ(builtin("hls_720p").main_file, "playlist.m3u8");
  EXPECT_EQ(builtin("hls_720p").extension, "m3u8");
  EXPECT_FALSE(builtin("hls_720p_video_only").audio);
  EXPECT_EQ(builtin("hls_720p_abr").main_file, "master.m3u8");
  EXPECT_EQ(builtin("hls_720p_abr").variants.size(), 3u);
  EXPECT_EQ(builtin("dash_1080p").main_file, "manifest.mpd");
  EXPECT_EQ(builtin("dash_1080p").segment_seconds, 4);
  const Catalog catalog = Catalog::builtin();
  for (const Preset* p : catalog.all()) EXPECT_EQ(p->video_codec, "h264") << p->name;
}

TEST(Args, SingleFileMp4) {
  const Preset& p = builtin("720p_h264");
  auto args = build_output_args(p, "/work/job1/out", true);
  EXPECT_EQ(value_of(args, "-vf"), "scale=-2:720,format=yuv420p");
  EXPECT_EQ(value_of(args, "-pix_fmt"), "yuv420p");
  EXPECT_EQ(value_of(args, "-profile:v"), "high");
  EXPECT_EQ(value_of(args, "-c:v"), "libx264");
  EXPECT_EQ(value_of(args, "-preset"), "medium");
  EXPECT_EQ(value_of(args, "-crf:v"), "23");
  EXPECT_EQ(value_of(args, "-movflags"), "+faststart");
  EXPECT_EQ(value_of(args, "-c:a"), "aac");
  EXPECT_EQ(value_of(args, "-ac"), "2");
  EXPECT_EQ(value_of(args, "-b:a"), "128k");
  EXPECT_THAT(args, Contains("0:a:0"));
  EXPECT_THAT(args, Not(Contains("-an")));
  EXPECT_EQ(args.back(), "/work/job1/out/output.mp4");
  EXPECT_THAT(args, Not(Contains("-force_key_frames")));

  auto silent = build_output_args(p, "/work/job1/out", false);
  EXPECT_THAT(silent, Contains("-an"));
  EXPECT_THAT(silent, Not(Contains("0:a:0")));
  EXPECT_FALSE(any_starts_with(silent, "-c:a"));
  EXPECT_FALSE(any_starts_with(silent, "-b:a"));

  EXPECT_EQ(value_of(build_output_args(builtin("1080p_h264"), "/o", true), "-vf"), "scale=-2:1080,format=yuv420p");
  auto p480 = build_output_args(builtin("480p_h264"), "/o", true);
  EXPECT_EQ(value_of(p480, "-vf"), "scale=-2:480,format=yuv420p");
  EXPECT_EQ(value_of(p480, "-preset"), "fast");
  EXPECT_EQ(value_of(p480, "-crf:v"), "24");
  EXPECT_EQ(value_of(p480, "-b:a"), "96k");
}

TEST(Args, HlsSingleVariant) {
  auto args = build_output_args(builtin("hls_720p"), "/o", true);
  EXPECT_EQ(value_of(args, "-vf"), "scale=-2:720,format=yuv420p");
  EXPECT_EQ(value_of(args, "-pix_fmt"), "yuv420p");
  EXPECT_EQ(value_of(args, "-b:v"), "2500k");
  EXPECT_EQ(value_of(args, "-maxrate:v"), "2675k");
  EXPECT_EQ(value_of(args, "-bufsize:v"), "3750k");
  EXPECT_THAT(args, Not(Contains("-crf:v")));
  EXPECT_EQ(value_of(args, "-force_key_frames"), "expr:gte(t,n_forced*6)");
  EXPECT_EQ(value_of(args, "-f"), "hls");
  EXPECT_EQ(value_of(args, "-hls_time"), "6");
  EXPECT_EQ(value_of(args, "-hls_playlist_type"), "vod");
  EXPECT_EQ(value_of(args, "-hls_segment_filename"), "/o/segment_%03d.ts");
  EXPECT_EQ(value_of(args, "-b:a"), "128k");
  EXPECT_EQ(args.back(), "/o/playlist.m3u8");
  EXPECT_THAT(args, Not(Contains("-movflags")));
  EXPECT_THAT(args, Not(Contains("-var_stream_map")));
}

TEST(Args, HlsVideoOnlyNeverMapsAudio) {
  for (bool input_audio : {true, false}) {
    auto args = build_output_args(builtin("hls_720p_video_only"), "/o", input_audio);
    EXPECT_THAT(args, Contains("-an"));
    EXPECT_THAT(args, Not(Contains("0:a:0")));
    EXPECT_FALSE(any_starts_with(args, "-c:a"));
  }
}

TEST(Args, HlsAbrSplitsIntoThreeVariants) {
  auto args = build_output_args(builtin("hls_720p_abr"), "/o", true);
  EXPECT_EQ(value_of(args, "-filter_complex"),
            "[0:v:0]split=3[s0][s1][s2];[s0]scale=-2:720,format=yuv420p[v0];[s1]scale=-2:480,format=yuv420p[v1];"
            "[s2]scale=-2:360,format=yuv420p[v2]");
  EXPECT_THAT(args, Contains("[v0]"));
  EXPECT_THAT(args, Contains("[v2]"));
  EXPECT_THAT(args, Not(Contains("-vf")));
  EXPECT_EQ(value_of(args, "-b:v:0"), "2800k");
  EXPECT_EQ(value_of(args, "-b:v:1"), "1400k");
  EXPECT_EQ(value_of(args, "-b:v:2"), "800k");
  EXPECT_EQ(value_of(args, "-maxrate:v:2"), "856k");
  EXPECT_EQ(value_of(args, "-pix_fmt"), "yuv420p");
  EXPECT_EQ(count_of(args, "0:a:0"), 3u);
  EXPECT_EQ(value_of(args, "-var_stream_map"), "v:0,a:0 v:1,a:1 v:2,a:2");
  EXPECT_EQ(value_of(args, "-master_pl_name"), "master.m3u8");
  EXPECT_EQ(value_of(args, "-hls_segment_filename"), "/o/stream_%v/segment_%03d.ts");
  EXPECT_EQ(args.back(), "/o/stream_%v/playlist.m3u8");
  EXPECT_EQ(builtin("hls_720p_abr").variant_playlist(1), "stream_1/playlist.m3u8");

  auto silent = build_output_args(builtin("hls_720p_abr"), "/o", false);
  EXPECT_EQ(value_of(silent, "-var_stream_map"), "v:0 v:1 v:2");
  EXPECT_THAT(silent, Not(Contains("0:a:0")));
  EXPECT_THAT(silent, Contains("-an"));

  auto video_only = build_output_args(builtin("hls_720p_abr_video_only"), "/o", true);
  EXPECT_EQ(value_of(video_only, "-var_stream_map"), "v:0 v:1 v:2");
  EXPECT_THAT(video_only, Not(Contains("0:a:0")));
}

TEST(Args, Dash) {
  auto args = build_output_args(builtin("dash_1080p"), "/o", true);
  EXPECT_THAT(value_of(args, "-filter_complex"), HasSubstr("split=2"));
  EXPECT_THAT(value_of(args, "-filter_complex"), HasSubstr("scale=-2:1080,format=yuv420p[v0]"));
  EXPECT_THAT(value_of(args, "-filter_complex"), HasSubstr("scale=-2:720,format=yuv420p[v1]"));
  EXPECT_EQ(value_of(args, "-b:v:0"), "5000k");
  EXPECT_EQ(value_of(args, "-b:v:1"), "2500k");
  EXPECT_EQ(value_of(args, "-f"), "dash");
  EXPECT_EQ(value_of(args, "-seg_duration"), "4");
  EXPECT_EQ(value_of(args, "-use_template"), "1");
  EXPECT_EQ(value_of(args, "-use_timeline"), "1");
  EXPECT_EQ(value_of(args, "-force_key_frames"), "expr:gte(t,n_forced*4)");
  EXPECT_EQ(value_of(args, "-adaptation_sets"), "id=0,streams=v id=1,streams=a");
  EXPECT_EQ(count_of(args, "0:a:0"), 1u);
  EXPECT_EQ(value_of(args, "-c:a"), "aac");
  EXPECT_EQ(args.back(), "/o/manifest.mpd");

  auto silent = build_output_args(builtin("dash_1080p"), "/o", false);
  EXPECT_EQ(value_of(silent, "-adaptation_sets"), "id=0,streams=v");
  EXPECT_THAT(silent, Not(Contains("0:a:0")));
}

// Before the probe has answered (ffmpeg starts beside it): single-file and
// single-variant HLS presets map audio optionally, so their arguments do not
// depend on the input; ABR HLS and DASH name their audio streams and assume
// the input has audio.
TEST(Args, AudioNotYetKnown) {
  for (std::string_view name : {"720p_h264", "1080p_h264", "480p_h264", "hls_720p"}) {
    SCOPED_TRACE(name);
    const Preset& p = builtin(name);
    EXPECT_FALSE(output_args_depend_on_audio(p));
    auto args = build_output_args(p, "/o", std::nullopt);
    EXPECT_THAT(args, Contains("0:a:0?"));
    EXPECT_THAT(args, Not(Contains("0:a:0")));
    EXPECT_THAT(args, Not(Contains("-an")));
    EXPECT_EQ(value_of(args, "-c:a"), "aac");
    // Known either way, the map is the strict one (or none).
    EXPECT_THAT(build_output_args(p, "/o", true), Contains("0:a:0"));
    EXPECT_THAT(build_output_args(p, "/o", false), Not(Contains("0:a:0?")));
  }
  for (std::string_view name : {"hls_720p_video_only", "hls_720p_abr_video_only"}) {
    SCOPED_TRACE(name);
    EXPECT_FALSE(output_args_depend_on_audio(builtin(name)));
    EXPECT_EQ(build_output_args(builtin(name), "/o", std::nullopt), build_output_args(builtin(name), "/o", false));
  }
  for (std::string_view name : {"hls_720p_abr", "dash_1080p"}) {
    SCOPED_TRACE(name);
    EXPECT_TRUE(output_args_depend_on_audio(builtin(name)));
    EXPECT_EQ(build_output_args(builtin(name), "/o", std::nullopt), build_output_args(builtin(name), "/o", true));
  }
}

TEST(Args, EveryBuiltinIsBrowserSafe) {
  const Catalog catalog = Catalog::builtin();
  for (const Preset* p : catalog.all()) {
    for (bool audio : {true, false}) {
      auto args = build_output_args(*p, "/o", audio);
      EXPECT_EQ(value_of(args, "-pix_fmt"), "yuv420p") << p->name;
      EXPECT_EQ(value_of(args, "-profile:v"), "high") << p->name;
      EXPECT_EQ(value_of(args, "-c:v"), "libx264") << p->name;
      EXPECT_THAT(args, Not(Contains("-threads"))) << p->name;
      if (p->main_file != "master.m3u8") {
        EXPECT_EQ(args.back(), main_output_path(*p, "/o").string()) << p->name;
      }
    }
  }
}

class PresetFiles : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() / ("flux-preset-test-" + std::to_string(::getpid()) + "-" +
                                                     ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::filesystem::path write(const std::string& name, const std::string& content) {
    auto path = dir_ / name;
    std::ofstream(path) << content;
    return path;
  }
  // Merges `content` as a YAML file and returns the error message, expecting
  // the presets_file_invalid code.
  std::string yaml_error(const std::string& content) {
    Catalog c = Catalog::builtin();
    absl::Status s = c.merge_file(write("bad.yaml", content));
    EXPECT_FALSE(s.ok());
    EXPECT_EQ(error_code(s), "presets_file_invalid") << s;
    // Nothing of a bad file is applied.
    EXPECT_EQ(c.all().size(), 8u);
    return std::string(s.message());
  }
  std::filesystem::path dir_;
};

TEST_F(PresetFiles, GoodYamlAddsAndOverrides) {
  Catalog c = Catalog::builtin();
  auto s = c.merge_file(write("presets.yaml", R"(
presets:
  - name: 360p_h264
    description: small mp4
    type: single
    x264_preset: veryfast
    crf: 28
    variants:
      - height: 360
        audio_bitrate_kbps: 64
  - name: hls_720p
    type: hls
    segment_seconds: 4
    audio: false
    variants:
      - {height: 720, video_bitrate_kbps: 3000}
      - {height: 360, video_bitrate_kbps: 700}
)"));
  ASSERT_TRUE(s.ok()) << s;
  EXPECT_EQ(c.all().size(), 9u);
  const Preset* small = c.find("360p_h264");
  ASSERT_NE(small, nullptr);
  EXPECT_EQ(small->description, "small mp4");
  EXPECT_EQ(small->x264_preset, "veryfast");
  EXPECT_EQ(small->crf, 28);
  EXPECT_TRUE(small->audio);
  EXPECT_EQ(small->main_file, "output.mp4");
  EXPECT_EQ(small->variants[0].height, 360);
  EXPECT_EQ(small->variants[0].video_bitrate_kbps, 0);
  EXPECT_EQ(small->variants[0].audio_bitrate_kbps, 64);
  const Preset* hls = c.find("hls_720p");
  ASSERT_NE(hls, nullptr);
  EXPECT_EQ(hls->segment_seconds, 4);
  EXPECT_FALSE(hls->audio);
  EXPECT_EQ(hls->variants.size(), 2u);
  EXPECT_EQ(hls->main_file, "master.m3u8");
  auto args = build_output_args(*hls, "/o", true);
  EXPECT_EQ(value_of(args, "-var_stream_map"), "v:0 v:1");
  EXPECT_EQ(value_of(args, "-hls_time"), "4");
}

TEST_F(PresetFiles, GoodJson) {
  Catalog c = Catalog::builtin();
  auto s = c.merge_file(write("presets.json", R"({"presets": [
    {"name": "dash_480p", "type": "dash", "variants": [{"height": 480, "video_bitrate_kbps": 1200, "audio_bitrate_kbps": 96}]}
  ]})"));
  ASSERT_TRUE(s.ok()) << s;
  const Preset* p = c.find("dash_480p");
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(p->type, OutputType::kDash);
  EXPECT_EQ(p->segment_seconds, 4);
  EXPECT_EQ(p->main_file, "manifest.mpd");
  EXPECT_EQ(p->variants[0].video_bitrate_kbps, 1200);
  // JSON content is recognised without the extension too; a bare list is fine.
  ASSERT_TRUE(
      c.merge_file(write("presets.conf", R"([{"name": "x", "type": "single", "variants": [{"height": 240}]}])")).ok());
  EXPECT_NE(c.find("x"), nullptr);
}

TEST_F(PresetFiles, UnknownTypeNamesTheField) {
  std::string m = yaml_error("presets:\n  - {name: weird, type: webm, variants: [{height: 720}]}\n");
  EXPECT_THAT(m, HasSubstr("'weird'"));
  EXPECT_THAT(m, HasSubstr("'type'"));
  EXPECT_THAT(m, HasSubstr("bad.yaml"));
}

TEST_F(PresetFiles, BadNameIsRefused) {
  EXPECT_THAT(yaml_error("presets:\n  - {name: Bad-Name, type: single, variants: [{height: 720}]}\n"),
              HasSubstr("'name'"));
  EXPECT_THAT(yaml_error("presets:\n  - {name: ../../etc, type: single, variants: [{height: 720}]}\n"),
              HasSubstr("'name'"));
  EXPECT_THAT(yaml_error("presets:\n  - {type: single, variants: [{height: 720}]}\n"), HasSubstr("'name'"));
}

TEST_F(PresetFiles, MissingVariantsIsRefused) {
  std::string m = yaml_error("presets:\n  - {name: novar, type: single}\n");
  EXPECT_THAT(m, HasSubstr("'novar'"));
  EXPECT_THAT(m, HasSubstr("'variants'"));
  EXPECT_THAT(yaml_error("presets:\n  - {name: novar, type: hls, variants: []}\n"), HasSubstr("'variants'"));
}

TEST_F(PresetFiles, OddOrOutOfRangeHeightIsRefused) {
  std::string m = yaml_error("presets:\n  - {name: odd, type: single, variants: [{height: 721}]}\n");
  EXPECT_THAT(m, HasSubstr("'odd'"));
  EXPECT_THAT(m, HasSubstr("variants[0].height"));
  EXPECT_THAT(m, HasSubstr("even"));
  EXPECT_THAT(yaml_error("presets:\n  - {name: huge, type: single, variants: [{height: 8640}]}\n"),
              HasSubstr("variants[0].height"));
  EXPECT_THAT(yaml_error("presets:\n  - {name: tiny, type: single, variants: [{height: 100}]}\n"),
              HasSubstr("variants[0].height"));
  EXPECT_THAT(yaml_error("presets:\n  - {name: txt, type: single, variants: [{height: '720'}]}\n"),
              HasSubstr("variants[0].height"));
}

TEST_F(PresetFiles, OtherBadFieldsAreRefused) {
  EXPECT_THAT(yaml_error("presets:\n  - {name: a, type: hls, segment_seconds: 0, variants: [{height: 720}]}\n"),
              HasSubstr("'segment_seconds'"));
  EXPECT_THAT(yaml_error("presets:\n  - {name: a, type: single, crf: 60, variants: [{height: 720}]}\n"),
              HasSubstr("'crf'"));
  EXPECT_THAT(yaml_error("presets:\n  - {name: a, type: single, x264_preset: '-vf x', variants: [{height: 720}]}\n"),
              HasSubstr("'x264_preset'"));
  EXPECT_THAT(yaml_error("presets:\n  - {name: a, type: single, variants: [{height: 720, video_bitrate_kbps: 5}]}\n"),
              HasSubstr("video_bitrate_kbps"));
  EXPECT_THAT(
      yaml_error("presets:\n  - {name: a, type: single, variants: [{height: 720, audio_bitrate_kbps: 5000}]}\n"),
      HasSubstr("audio_bitrate_kbps"));
  EXPECT_THAT(yaml_error("presets:\n  - {name: a, type: single, video_codec: vp9, variants: [{height: 720}]}\n"),
              HasSubstr("'video_codec'"));
  EXPECT_THAT(yaml_error("presets:\n  - {name: a, type: single, variants: [{height: 720}, {height: 480}]}\n"),
              HasSubstr("'variants'"));
  EXPECT_THAT(yaml_error("presets:\n  - {name: a, type: hls, variants: [{height: 480}, {height: 720}]}\n"),
              HasSubstr("variants[1].height"));
  // Raw ffmpeg arguments have no place in a preset.
  EXPECT_THAT(yaml_error("presets:\n  - {name: a, type: single, ffmpeg_args: '-i /etc/passwd', variants: "
                         "[{height: 720}]}\n"),
              HasSubstr("'ffmpeg_args'"));
  EXPECT_THAT(yaml_error("presets:\n  - {name: a, type: single, variants: [{height: 720}]}\n"
                         "  - {name: a, type: single, variants: [{height: 480}]}\n"),
              HasSubstr("defined twice"));
  EXPECT_THAT(yaml_error("other: 1\n"), HasSubstr("'other'"));
}

TEST_F(PresetFiles, NotYamlIsRefused) {
  EXPECT_THAT(yaml_error("presets: [ {name: a, type: single\n  ::: }}}\n"), HasSubstr("not valid YAML"));
  EXPECT_THAT(yaml_error("just a sentence\n"), HasSubstr("list"));
  Catalog c = Catalog::builtin();
  absl::Status s = c.merge_file(write("bad.json", "{\"presets\": [ {\"name\": "));
  EXPECT_EQ(error_code(s), "presets_file_invalid");
  EXPECT_THAT(std::string(s.message()), HasSubstr("not valid JSON"));
  absl::Status missing = c.merge_file(dir_ / "absent.yaml");
  EXPECT_EQ(error_code(missing), "presets_file_invalid");
}

TEST(OutputType, RoundTrips) {
  for (OutputType t : {OutputType::kSingle, OutputType::kHls, OutputType::kDash}) {
    auto parsed = parse_output_type(to_string(t));
    ASSERT_TRUE(parsed.ok());
    EXPECT_EQ(*parsed, t);
  }
  EXPECT_FALSE(parse_output_type("mp4").ok());
}

}  // namespace
}  // namespace flux::worker::preset
