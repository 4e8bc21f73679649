#include <gtest/gtest.h>

#include "shared/core/error.h"
#include "worker/uploader/uploader.h"

namespace flux::worker::uploader {
namespace {

TEST(CheckDestination, AcceptsPlainRelativeKeys) {
  for (const char* ok :
       {"out.mp4", "jobs/2024/job 1/master.m3u8", "a/./b.mp4", "dir/", "caf\xc3\xa9.mp4", "..a/b..", "a/...b"}) {
    EXPECT_TRUE(check_destination(ok).ok()) << ok;
  }
}

TEST(CheckDestination, RefusesEachUnsafeForm) {
  const std::string too_long(1025, 'a');
  for (const std::string& bad :
       {std::string(""), std::string("/abs/out.mp4"), std::string("../x"), std::string("a/../../x"),
        std::string("a/.."), std::string(".."), std::string("a\\b.mp4"), std::string("a\nb"), std::string("a\rb"),
        std::string("a\0b", 3), std::string("a\x7f"), too_long}) {
    const absl::Status status = check_destination(bad);
    EXPECT_EQ(flux::error_code(status), "output_path_invalid") << "accepted: " << bad;
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  }
  EXPECT_TRUE(check_destination(std::string(1024, 'a')).ok());
}

TEST(ContentType, ByExtensionCaseInsensitive) {
  EXPECT_EQ(content_type_for("hls/master.m3u8"), "application/vnd.apple.mpegurl");
  EXPECT_EQ(content_type_for("seg_001.ts"), "video/mp2t");
  EXPECT_EQ(content_type_for("OUT.MP4"), "video/mp4");
  EXPECT_EQ(content_type_for("manifest.mpd"), "application/dash+xml");
  EXPECT_EQ(content_type_for("chunk-stream0-00001.m4s"), "video/iso.segment");
  EXPECT_EQ(content_type_for("noext"), "application/octet-stream");
  EXPECT_EQ(content_type_for("dir.m3u8/file"), "application/octet-stream");
}

TEST(CacheControl, PlaylistsAreNotCachedSegmentsAreImmutable) {
  EXPECT_EQ(cache_control_for("a/playlist.m3u8"), "no-cache");
  EXPECT_EQ(cache_control_for("manifest.mpd"), "no-cache");
  EXPECT_EQ(cache_control_for("seg_003.ts"), "max-age=31536000, immutable");
  EXPECT_EQ(cache_control_for("chunk.m4s"), "max-age=31536000, immutable");
  EXPECT_EQ(cache_control_for("out.mp4"), "");
}

}  // namespace
}  // namespace flux::worker::uploader
