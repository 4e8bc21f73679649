#include "worker/validator/dash_manifest.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "shared/core/error.h"

namespace flux::worker::validator {
namespace {

using Files = std::vector<std::string>;

std::string message(const absl::Status& status) { return std::string(status.message()); }

// What ffmpeg's dash muxer writes (trimmed), with a timeline that repeats.
constexpr char kTimelineManifest[] = R"(<?xml version="1.0" encoding="utf-8"?>
<MPD xmlns="urn:mpeg:dash:schema:mpd:2011" profiles="urn:mpeg:dash:profile:isoff-live:2011" type="static"
     mediaPresentationDuration="PT1M2.5S" minBufferTime="PT2.0S">
  <Period id="0" start="PT0.0S">
    <AdaptationSet id="0" contentType="video" mimeType="video/mp4">
      <Representation id="0" codecs="avc1.64001f" bandwidth="2500000" width="1280" height="720">
        <SegmentTemplate timescale="12800" initialization="init-stream$RepresentationID$.m4s"
                         media="chunk-stream$RepresentationID$-$Number%05d$.m4s" startNumber="1">
          <SegmentTimeline>
            <S t="0" d="51200" r="2" />
            <S d="25600" />
          </SegmentTimeline>
        </SegmentTemplate>
      </Representation>
    </AdaptationSet>
    <AdaptationSet id="1" contentType="audio">
      <SegmentTemplate timescale="48000" media="audio_$Time$.m4s" initialization="audio_init.m4s"/>
      <Representation id="a1" mimeType="audio/mp4" codecs="mp4a.40.2" bandwidth="128000">
        <SegmentTemplate>
          <SegmentTimeline><S t="1024" d="96000" r="1"/><S t="300000" d="100"/></SegmentTimeline>
        </SegmentTemplate>
      </Representation>
    </AdaptationSet>
  </Period>
</MPD>)";

TEST(DashManifest, ExpandsSegmentTemplateWithTimelineRepeats) {
  auto manifest = parse_dash_manifest(kTimelineManifest);
  ASSERT_TRUE(manifest.ok()) << manifest.status();
  EXPECT_DOUBLE_EQ(manifest->duration_seconds, 62.5);
  ASSERT_EQ(manifest->representations.size(), 2u);

  const DashRepresentation& video = manifest->representations[0];
  EXPECT_EQ(video.id, "0");
  EXPECT_EQ(video.mime_type, "video/mp4");  // inherited from the AdaptationSet
  EXPECT_EQ(video.codecs, "avc1.64001f");
  EXPECT_EQ(video.width, 1280);
  EXPECT_EQ(video.height, 720);
  EXPECT_EQ(video.bandwidth, 2500000u);
  // r="2" means three segments, then one more: $Number%05d$ zero-padded to 5.
  EXPECT_EQ(video.files, (Files{"init-stream0.m4s", "chunk-stream0-00001.m4s", "chunk-stream0-00002.m4s",
                                "chunk-stream0-00003.m4s", "chunk-stream0-00004.m4s"}));

  // Attributes inherited from the AdaptationSet's template; $Time$ follows t/d.
  const DashRepresentation& audio = manifest->representations[1];
  EXPECT_EQ(audio.mime_type, "audio/mp4");
  EXPECT_EQ(audio.files, (Files{"audio_init.m4s", "audio_1024.m4s", "audio_97024.m4s", "audio_300000.m4s"}));
}

TEST(DashManifest, ExpandsRepeatUntilPeriodEnd) {
  auto manifest = parse_dash_manifest(R"(<MPD mediaPresentationDuration="PT10S"><Period>
    <AdaptationSet><Representation id="v" bandwidth="1">
      <SegmentTemplate timescale="1000" media="s$Number%03d$.m4s" startNumber="0">
        <SegmentTimeline><S t="0" d="4000" r="-1"/></SegmentTimeline>
      </SegmentTemplate></Representation></AdaptationSet></Period></MPD>)");
  ASSERT_TRUE(manifest.ok()) << manifest.status();
  EXPECT_EQ(manifest->representations[0].files, (Files{"s000.m4s", "s001.m4s", "s002.m4s"}));
}

TEST(DashManifest, CountsSegmentsFromTemplateDuration) {
  auto manifest = parse_dash_manifest(R"(<MPD mediaPresentationDuration="PT0H0M9.5S"><Period>
    <AdaptationSet><Representation id="v" bandwidth="300000">
      <SegmentTemplate timescale="1000" duration="4000" initialization="$RepresentationID$/init.mp4"
                       media="$RepresentationID$/$Bandwidth$_$Number$.m4s"/>
    </Representation></AdaptationSet></Period></MPD>)");
  ASSERT_TRUE(manifest.ok()) << manifest.status();
  EXPECT_EQ(manifest->representations[0].files,
            (Files{"v/init.mp4", "v/300000_1.m4s", "v/300000_2.m4s", "v/300000_3.m4s"}));
}

TEST(DashManifest, ResolvesBaseUrlsAndSegmentLists) {
  auto manifest = parse_dash_manifest(R"(<MPD mediaPresentationDuration="PT4S"><BaseURL>media/</BaseURL><Period>
    <AdaptationSet>
      <Representation id="list" bandwidth="1"><BaseURL>list/</BaseURL>
        <SegmentList><Initialization sourceURL="init.mp4"/><SegmentURL media="a.m4s"/><SegmentURL media="b.m4s"/>
        </SegmentList></Representation>
      <Representation id="single" bandwidth="1"><BaseURL>whole.mp4</BaseURL><SegmentBase indexRange="0-100"/>
      </Representation>
    </AdaptationSet></Period></MPD>)");
  ASSERT_TRUE(manifest.ok()) << manifest.status();
  ASSERT_EQ(manifest->representations.size(), 2u);
  EXPECT_EQ(manifest->representations[0].files, (Files{"media/list/init.mp4", "media/list/a.m4s", "media/list/b.m4s"}));
  EXPECT_EQ(manifest->representations[1].files, (Files{"media/whole.mp4"}));
}

TEST(DashManifest, RefusesBrokenXml) {
  auto manifest = parse_dash_manifest("<MPD><Period><AdaptationSet></Period></MPD>");
  ASSERT_FALSE(manifest.ok());
  EXPECT_EQ(error_code(manifest.status()), "manifest_invalid");
  EXPECT_NE(message(manifest.status()).find("not well-formed XML"), std::string::npos) << manifest.status();
  EXPECT_FALSE(parse_dash_manifest("").ok());
  EXPECT_FALSE(parse_dash_manifest("<html/>").ok());
}

TEST(DashManifest, RefusesBadTemplatesAndTimelines) {
  auto wrap = [](const std::string& representation) {
    return "<MPD mediaPresentationDuration=\"PT4S\"><Period><AdaptationSet>" + representation +
           "</AdaptationSet></Period></MPD>";
  };
  // Unknown identifier, unterminated $, missing d, bad number, missing id.
  for (
      const char* bad : {
          R"(<Representation id="v"><SegmentTemplate duration="1" media="$Foo$.m4s"/></Representation>)",
          R"(<Representation id="v"><SegmentTemplate duration="1" media="$Number.m4s"/></Representation>)",
          R"(<Representation id="v"><SegmentTemplate media="$Number$"><SegmentTimeline><S t="0"/></SegmentTimeline></SegmentTemplate></Representation>)",
          R"(<Representation id="v"><SegmentTemplate duration="x" media="$Number$"/></Representation>)",
          R"(<Representation><SegmentTemplate duration="1" media="$Number$"/></Representation>)",
          R"(<Representation id="v"><SegmentTemplate duration="1" media="$Number%5s$"/></Representation>)",
      }) {
    auto manifest = parse_dash_manifest(wrap(bad));
    ASSERT_FALSE(manifest.ok()) << bad;
    EXPECT_EQ(error_code(manifest.status()), "manifest_invalid") << bad;
    EXPECT_TRUE(message(manifest.status()).starts_with("line 1: ")) << manifest.status();
  }
}

TEST(DashManifest, RefusesAbsurdSegmentCounts) {
  auto manifest = parse_dash_manifest(R"(<MPD><Period duration="PT1S"><AdaptationSet><Representation id="v">
    <SegmentTemplate media="$Number$"><SegmentTimeline><S d="1" r="999999999999"/></SegmentTimeline>
    </SegmentTemplate></Representation></AdaptationSet></Period></MPD>)");
  ASSERT_FALSE(manifest.ok());
  EXPECT_NE(message(manifest.status()).find("more than 500000 segments"), std::string::npos);
}

// Found by the invariants of fuzz/dash_manifest_fuzzer ("every representation
// has a file, no file name is empty"; corpus: fuzz/corpus/dash_manifest/
// short_period_one_segment.mpd and empty_media_template.mpd).
TEST(DashManifest, APeriodShorterThanASegmentStillHasIt) {
  auto manifest = parse_dash_manifest(R"(<MPD mediaPresentationDuration="PT0.0000000001S"><Period>
    <AdaptationSet><Representation id="v" bandwidth="1">
      <SegmentTemplate media="$Number$.m4s" duration="1"/></Representation></AdaptationSet></Period></MPD>)");
  ASSERT_TRUE(manifest.ok()) << manifest.status();
  EXPECT_EQ(manifest->representations[0].files, (Files{"1.m4s"}));
}

TEST(DashManifest, RefusesFileNamesThatNameADirectory) {
  for (
      const char* representation : {
          R"(<Representation id="v"><SegmentTemplate duration="1" media=""/></Representation>)",
          R"(<Representation id="v"><BaseURL>d/</BaseURL><SegmentTemplate duration="1" media=""/></Representation>)",
          R"(<Representation id="v"><SegmentTemplate duration="1" media="$Number$" initialization=""/></Representation>)",
          R"(<Representation id="v"><SegmentList><Initialization sourceURL=""/><SegmentURL media="a"/></SegmentList></Representation>)",
      }) {
    auto manifest = parse_dash_manifest(std::string("<MPD mediaPresentationDuration=\"PT4S\"><Period><AdaptationSet>") +
                                        representation + "</AdaptationSet></Period></MPD>");
    ASSERT_FALSE(manifest.ok()) << representation;
    EXPECT_EQ(error_code(manifest.status()), "manifest_invalid");
    EXPECT_NE(message(manifest.status()).find("names a directory, not a file"), std::string::npos) << manifest.status();
  }
}

TEST(Iso8601Duration, ParsesDashDurations) {
  EXPECT_DOUBLE_EQ(*parse_iso8601_duration("PT3.0S"), 3.0);
  EXPECT_DOUBLE_EQ(*parse_iso8601_duration("PT1H2M3.5S"), 3723.5);
  EXPECT_DOUBLE_EQ(*parse_iso8601_duration("P1DT2H"), 93600);
  EXPECT_DOUBLE_EQ(*parse_iso8601_duration("P0Y0M0DT0H0M10.000S"), 10);
  for (const char* bad : {"", "P", "PT", "3S", "PT3", "PT-3S", "PTS", "PT3S4M", "PT1.5.5S", "P1H"}) {
    EXPECT_FALSE(parse_iso8601_duration(bad).has_value()) << bad;
  }
}

}  // namespace
}  // namespace flux::worker::validator
