#include "worker/validator/hls_playlist.h"

#include <gtest/gtest.h>

#include <string>

#include "shared/core/error.h"

namespace flux::worker::validator {
namespace {

std::string message(const absl::Status& status) { return std::string(status.message()); }

constexpr char kMedia[] =
    "#EXTM3U\n"
    "#EXT-X-VERSION:3\n"
    "#EXT-X-TARGETDURATION:6\n"
    "#EXT-X-MEDIA-SEQUENCE:0\n"
    "#EXT-X-PLAYLIST-TYPE:VOD\n"
    "#EXTINF:6.000000,\n"
    "segment_000.ts\n"
    "#EXTINF:6.4,\n"
    "segment_001.ts\n"
    "#EXTINF:1.5,\n"
    "segment_002.ts\n"
    "#EXT-X-ENDLIST\n";

TEST(HlsPlaylist, ParsesMediaPlaylist) {
  auto playlist = parse_hls_playlist(kMedia);
  ASSERT_TRUE(playlist.ok()) << playlist.status();
  EXPECT_FALSE(playlist->is_master);
  EXPECT_EQ(playlist->version, 3);
  EXPECT_EQ(playlist->target_duration, 6);
  EXPECT_TRUE(playlist->endlist);
  EXPECT_EQ(playlist->playlist_type, "VOD");
  ASSERT_EQ(playlist->segments.size(), 3u);
  EXPECT_EQ(playlist->segments[1].uri, "segment_001.ts");
  EXPECT_DOUBLE_EQ(playlist->segments[1].duration, 6.4);
  EXPECT_DOUBLE_EQ(playlist->duration_seconds(), 13.9);
}

TEST(HlsPlaylist, AcceptsCrlfAndFmp4InitSection) {
  auto playlist = parse_hls_playlist(
      "#EXTM3U\r\n#EXT-X-TARGETDURATION:4\r\n#EXT-X-MAP:URI=\"init.mp4\"\r\n#EXTINF:4.0,\r\nseg_0.m4s\r\n"
      "#EXTINF:4.0,\r\nseg_1.m4s\r\n#EXT-X-ENDLIST\r\n");
  ASSERT_TRUE(playlist.ok()) << playlist.status();
  ASSERT_EQ(playlist->init_uris.size(), 1u);
  EXPECT_EQ(playlist->init_uris[0], "init.mp4");
  ASSERT_EQ(playlist->segments.size(), 2u);
  EXPECT_EQ(playlist->segments[1].uri, "seg_1.m4s");
}

TEST(HlsPlaylist, RefusesMissingExtm3u) {
  auto playlist = parse_hls_playlist("#EXT-X-TARGETDURATION:6\n#EXTINF:6,\na.ts\n");
  ASSERT_FALSE(playlist.ok());
  EXPECT_EQ(error_code(playlist.status()), "manifest_invalid");
  EXPECT_EQ(message(playlist.status()), "line 1: playlist does not start with #EXTM3U");
  EXPECT_FALSE(parse_hls_playlist("").ok());
}

TEST(HlsPlaylist, RefusesMissingTargetDuration) {
  auto playlist = parse_hls_playlist("#EXTM3U\n#EXTINF:6,\na.ts\n#EXT-X-ENDLIST\n");
  ASSERT_FALSE(playlist.ok());
  EXPECT_EQ(error_code(playlist.status()), "manifest_invalid");
  EXPECT_NE(message(playlist.status()).find("#EXT-X-TARGETDURATION"), std::string::npos);
}

TEST(HlsPlaylist, RefusesExtinfWithoutUri) {
  auto at_end = parse_hls_playlist("#EXTM3U\n#EXT-X-TARGETDURATION:6\n#EXTINF:6,\na.ts\n#EXTINF:6,\n");
  ASSERT_FALSE(at_end.ok());
  EXPECT_EQ(message(at_end.status()), "line 5: #EXTINF is not followed by a URI");

  auto twice = parse_hls_playlist("#EXTM3U\n#EXT-X-TARGETDURATION:6\n#EXTINF:6,\n#EXTINF:6,\nb.ts\n");
  ASSERT_FALSE(twice.ok());
  EXPECT_EQ(message(twice.status()), "line 3: #EXTINF is not followed by a URI");

  auto before_end = parse_hls_playlist("#EXTM3U\n#EXT-X-TARGETDURATION:6\n#EXTINF:6,\n#EXT-X-ENDLIST\n");
  ASSERT_FALSE(before_end.ok());
  EXPECT_EQ(message(before_end.status()), "line 3: #EXTINF is not followed by a URI");
}

TEST(HlsPlaylist, RefusesUriWithoutExtinf) {
  auto playlist = parse_hls_playlist("#EXTM3U\n#EXT-X-TARGETDURATION:6\nlost.ts\n");
  ASSERT_FALSE(playlist.ok());
  EXPECT_NE(message(playlist.status()).find("line 3: URI 'lost.ts'"), std::string::npos) << playlist.status();
}

TEST(HlsPlaylist, RefusesSegmentLongerThanTarget) {
  // 6.4 rounds to 6: fine (see ParsesMediaPlaylist); 6.6 rounds to 7: not.
  auto playlist = parse_hls_playlist("#EXTM3U\n#EXT-X-TARGETDURATION:6\n#EXTINF:6.6,\na.ts\n");
  ASSERT_FALSE(playlist.ok());
  EXPECT_EQ(message(playlist.status()), "line 3: segment duration 6.6 exceeds #EXT-X-TARGETDURATION 6");
}

TEST(HlsPlaylist, RefusesBadNumbers) {
  EXPECT_FALSE(parse_hls_playlist("#EXTM3U\n#EXT-X-TARGETDURATION:six\n#EXTINF:6,\na.ts\n").ok());
  EXPECT_FALSE(parse_hls_playlist("#EXTM3U\n#EXT-X-TARGETDURATION:6\n#EXTINF:abc,\na.ts\n").ok());
  EXPECT_FALSE(parse_hls_playlist("#EXTM3U\n#EXT-X-TARGETDURATION:6\n#EXTINF:-1,\na.ts\n").ok());
}

constexpr char kMaster[] =
    "#EXTM3U\n"
    "#EXT-X-VERSION:3\n"
    "#EXT-X-STREAM-INF:BANDWIDTH=2800000,RESOLUTION=1280x720,CODECS=\"avc1.64001f,mp4a.40.2\"\n"
    "stream_0/playlist.m3u8\n"
    "\n"
    "#EXT-X-STREAM-INF:CODECS=\"avc1.4d401e,mp4a.40.2\",RESOLUTION=854x480,BANDWIDTH=1400000\n"
    "stream_1/playlist.m3u8\n";

TEST(HlsPlaylist, ParsesMasterWithQuotedCommaCodecs) {
  auto playlist = parse_hls_playlist(kMaster);
  ASSERT_TRUE(playlist.ok()) << playlist.status();
  EXPECT_TRUE(playlist->is_master);
  ASSERT_EQ(playlist->variants.size(), 2u);
  EXPECT_EQ(playlist->variants[0].uri, "stream_0/playlist.m3u8");
  EXPECT_EQ(playlist->variants[0].bandwidth, 2800000u);
  EXPECT_EQ(playlist->variants[0].width, 1280);
  EXPECT_EQ(playlist->variants[0].height, 720);
  EXPECT_EQ(playlist->variants[0].codecs, "avc1.64001f,mp4a.40.2");
  // The quoted comma must not end the list: RESOLUTION and BANDWIDTH follow it.
  EXPECT_EQ(playlist->variants[1].codecs, "avc1.4d401e,mp4a.40.2");
  EXPECT_EQ(playlist->variants[1].height, 480);
  EXPECT_EQ(playlist->variants[1].bandwidth, 1400000u);
}

TEST(HlsPlaylist, RefusesMasterVariantWithoutResolutionOrBandwidth) {
  auto no_resolution = parse_hls_playlist("#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=800000,CODECS=\"avc1,mp4a\"\nv.m3u8\n");
  ASSERT_FALSE(no_resolution.ok());
  EXPECT_EQ(error_code(no_resolution.status()), "manifest_invalid");
  EXPECT_EQ(message(no_resolution.status()), "line 2: #EXT-X-STREAM-INF without RESOLUTION");

  auto no_bandwidth = parse_hls_playlist("#EXTM3U\n#EXT-X-STREAM-INF:RESOLUTION=640x360\nv.m3u8\n");
  ASSERT_FALSE(no_bandwidth.ok());
  EXPECT_EQ(message(no_bandwidth.status()), "line 2: #EXT-X-STREAM-INF without BANDWIDTH");

  auto bad_resolution = parse_hls_playlist("#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1,RESOLUTION=640\nv.m3u8\n");
  EXPECT_FALSE(bad_resolution.ok());
}

TEST(HlsPlaylist, RefusesStreamInfWithoutUri) {
  auto playlist = parse_hls_playlist(
      "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1,RESOLUTION=2x2\n#EXT-X-STREAM-INF:BANDWIDTH=1,RESOLUTION=2x2\nb.m3u8\n");
  ASSERT_FALSE(playlist.ok());
  EXPECT_EQ(message(playlist.status()), "line 2: #EXT-X-STREAM-INF is not followed by a URI");
  EXPECT_FALSE(parse_hls_playlist("#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1,RESOLUTION=2x2\n").ok());
}

TEST(HlsPlaylist, RefusesMixedMasterAndMedia) {
  auto playlist = parse_hls_playlist(
      "#EXTM3U\n#EXT-X-TARGETDURATION:6\n#EXT-X-STREAM-INF:BANDWIDTH=1,RESOLUTION=2x2\nb.m3u8\n#EXTINF:6,\na.ts\n");
  EXPECT_FALSE(playlist.ok());
}

TEST(HlsPlaylist, CollectsRenditionUris) {
  auto playlist = parse_hls_playlist(
      "#EXTM3U\n"
      "#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"aud\",NAME=\"en, main\",URI=\"audio/playlist.m3u8\"\n"
      "#EXT-X-STREAM-INF:BANDWIDTH=1,RESOLUTION=2x2,AUDIO=\"aud\"\nv.m3u8\n");
  ASSERT_TRUE(playlist.ok()) << playlist.status();
  ASSERT_EQ(playlist->rendition_uris.size(), 1u);
  EXPECT_EQ(playlist->rendition_uris[0], "audio/playlist.m3u8");
}

TEST(HlsAttributes, ParsesQuotedAndPlainValues) {
  auto attributes = parse_hls_attributes("BANDWIDTH=5,CODECS=\"a,b,c\",NAME=\"x=y\",RESOLUTION=2x2");
  ASSERT_TRUE(attributes.ok()) << attributes.status();
  EXPECT_EQ(attributes->size(), 4u);
  EXPECT_EQ(attributes->at("CODECS"), "a,b,c");
  EXPECT_EQ(attributes->at("NAME"), "x=y");
  EXPECT_EQ(attributes->at("RESOLUTION"), "2x2");
}

TEST(HlsAttributes, RefusesMalformedLists) {
  EXPECT_FALSE(parse_hls_attributes("CODECS=\"unterminated").ok());
  EXPECT_FALSE(parse_hls_attributes("BANDWIDTH").ok());
  EXPECT_FALSE(parse_hls_attributes("A=1,A=2").ok());
  EXPECT_FALSE(parse_hls_attributes("CODECS=\"a\"junk").ok());
  EXPECT_FALSE(parse_hls_attributes("lower=1").ok());
}

// Found by fuzz/hls_playlist_fuzzer (corpus: fuzz/corpus/hls_playlist/attribute_blank_before_quote.m3u8):
// a blank before the opening quote made the quotes part of a plain value, so
// URI= "init.mp4" named a file with quotes in it and CODECS= "a,b" was cut at
// the comma.
TEST(HlsAttributes, BlanksAroundAQuotedValueAreNotPartOfIt) {
  auto attributes = parse_hls_attributes("URI= \"init.mp4\" ,CODECS=\t\"a,b\",NAME=\" x \"");
  ASSERT_TRUE(attributes.ok()) << attributes.status();
  EXPECT_EQ(attributes->at("URI"), "init.mp4");
  EXPECT_EQ(attributes->at("CODECS"), "a,b");
  EXPECT_EQ(attributes->at("NAME"), " x ");
}

TEST(HlsAttributes, RefusesAStrayQuoteInAPlainValue) {
  EXPECT_FALSE(parse_hls_attributes("BANDWIDTH=12\"34").ok());
  EXPECT_FALSE(parse_hls_attributes("URI=a\"").ok());
  EXPECT_FALSE(parse_hls_attributes("URI=\"a\"\"b\"").ok());
}

}  // namespace
}  // namespace flux::worker::validator
