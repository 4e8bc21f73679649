// The S3 uploader against a real s3rver on an ephemeral loopback port.
#include <gtest/gtest.h>

#include <thread>

#include "shared/core/error.h"
#include "unit/s3/test_support.h"
#include "worker/uploader/uploader.h"

namespace flux::worker::uploader {
namespace {

namespace fs = std::filesystem;
using test_support::S3rver;
using test_support::TempDir;
using test_support::write_file;

constexpr const char* kBucket = "flux-out";

s3::S3Config config_for(const S3rver& server) {
  s3::S3Config config;
  config.endpoint = server.endpoint();
  config.force_path_style = true;
  config.credentials = {S3rver::kAccessKey, S3rver::kSecretKey, ""};
  config.multipart_threshold = 1 << 20;
  config.part_size = 256 << 10;
  config.retry = {
      .max_attempts = 3, .base_delay = std::chrono::milliseconds(20), .max_delay = std::chrono::milliseconds(100)};
  return config;
}

class S3UploaderTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir();
    server_ = new S3rver(dir_->path() / "data", kBucket);
  }
  static void TearDownTestSuite() {
    delete server_;
    delete dir_;
  }

  TempDir tmp;
  fs::path source = tmp.path() / "job-output";
  std::shared_ptr<s3::S3Client> client = std::make_shared<s3::S3Client>(config_for(*server_));
  std::unique_ptr<Uploader> uploader = make_s3_uploader(client, kBucket, 3);
  flux::CancelToken cancel;

  std::string fetch(const std::string& key) {
    const fs::path dest = tmp.path() / "fetched";
    const absl::Status s = client->get_to_file(kBucket, key, dest, 0);
    EXPECT_TRUE(s.ok()) << key << ": " << s;
    return test_support::read_file(dest);
  }
  bool exists(const std::string& key) { return client->head(kBucket, key).ok(); }

  static TempDir* dir_;
  static S3rver* server_;
};
TempDir* S3UploaderTest::dir_ = nullptr;
S3rver* S3UploaderTest::server_ = nullptr;

TEST_F(S3UploaderTest, SingleFileWithTypeAndMetadata) {
  EXPECT_EQ(uploader->storage_type(), "s3");
  const std::string data = test_support::random_bytes(3 << 20, 21);  // multipart
  write_file(source / "out.mp4", data);
  UploadRequest r;
  r.job_id = "job-1";
  r.source_dir = source;
  r.files = {"out.mp4"};
  r.destination = "videos/job-1.mp4";
  r.main_file = "out.mp4";
  r.metadata = {{"job-id", "job-1"}, {"preset", "720p_h264"}};
  const auto result = uploader->upload(r, cancel);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->output_url, server_->endpoint() + "/" + kBucket + "/videos/job-1.mp4");
  EXPECT_EQ(result->total_bytes, data.size());
  const auto info = client->head(kBucket, "videos/job-1.mp4");
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->content_type, "video/mp4");
  EXPECT_EQ(info->metadata.at("job-id"), "job-1");
  EXPECT_EQ(info->metadata.at("preset"), "720p_h264");
  EXPECT_TRUE(fetch("videos/job-1.mp4") == data);
}

TEST_F(S3UploaderTest, HlsTreeWithTypesAndCaching) {
  std::vector<fs::path> files;
  for (const char* f : {"master.m3u8", "720p/playlist.m3u8", "720p/seg_000.ts", "720p/seg_001.ts", "480p/playlist.m3u8",
                        "480p/seg_000.ts", "480p/seg_001.ts"}) {
    write_file(source / f, std::string("bytes of ") + f);
    files.emplace_back(f);
  }
  UploadRequest r;
  r.job_id = "job-hls";
  r.source_dir = source;
  r.files = files;
  r.destination = "hls/job-hls";
  r.is_directory = true;
  r.main_file = "master.m3u8";
  r.metadata = {{"job-id", "job-hls"}};
  const auto result = uploader->upload(r, cancel);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->output_url, server_->endpoint() + "/" + kBucket + "/hls/job-hls/master.m3u8");
  EXPECT_EQ(result->files.size(), 7u);
  for (const auto& f : files) {
    const std::string key = "hls/job-hls/" + f.generic_string();
    EXPECT_EQ(fetch(key), "bytes of " + f.generic_string());
    const auto info = client->head(kBucket, key);
    ASSERT_TRUE(info.ok()) << key;
    if (f.extension() == ".m3u8") {
      EXPECT_EQ(info->content_type, "application/vnd.apple.mpegurl") << key;
      EXPECT_EQ(info->cache_control, "no-cache") << key;
    } else {
      EXPECT_EQ(info->content_type, "video/mp2t") << key;
      EXPECT_EQ(info->cache_control, "max-age=31536000, immutable") << key;
    }
    EXPECT_EQ(info->metadata.at("job-id"), "job-hls");
  }
}

TEST_F(S3UploaderTest, AFailedFileRemovesTheJobsOtherObjects) {
  write_file(source / "manifest.mpd", "<MPD/>");
  write_file(source / "init.m4s", "init");
  write_file(source / "chunk-1.m4s", "c1");
  write_file(source / "blocked/chunk-2.m4s", "c2");
  // s3rver stores objects as files: a plain file where it needs the folder
  // "blocked" makes that one object fail (HTTP 500, retried, then given up).
  write_file(server_->data_dir() / kBucket / "dash/job-dash/blocked", "in the way");
  UploadRequest r;
  r.job_id = "job-dash";
  r.source_dir = source;
  r.files = {"manifest.mpd", "init.m4s", "chunk-1.m4s", "blocked/chunk-2.m4s"};
  r.destination = "dash/job-dash";
  r.is_directory = true;
  r.main_file = "manifest.mpd";
  auto one_at_a_time = make_s3_uploader(client, kBucket, 1);
  const auto result = one_at_a_time->upload(r, cancel);
  EXPECT_EQ(flux::error_code(result.status()), "upload_failed") << result.status();
  EXPECT_NE(std::string(result.status().message()).find("dash/job-dash/blocked/chunk-2.m4s"), std::string::npos)
      << result.status();
  // The store is up (so the checks below mean something) and holds none of the job's objects.
  write_file(tmp.path() / "probe", "p");
  ASSERT_TRUE(client->put_file(kBucket, "dash/probe", tmp.path() / "probe", {}).ok());
  EXPECT_TRUE(exists("dash/probe"));
  EXPECT_FALSE(exists("dash/job-dash/init.m4s"));
  EXPECT_FALSE(exists("dash/job-dash/chunk-1.m4s"));
  EXPECT_FALSE(exists("dash/job-dash/manifest.mpd"));
}

TEST_F(S3UploaderTest, CancelledUploadLeavesNothing) {
  write_file(source / "a.ts", "a");
  write_file(source / "index.m3u8", "#EXTM3U");
  UploadRequest r;
  r.source_dir = source;
  r.files = {"a.ts", "index.m3u8"};
  r.destination = "cancelled";
  r.is_directory = true;
  r.main_file = "index.m3u8";
  cancel.cancel("job cancelled");
  const auto result = uploader->upload(r, cancel);
  EXPECT_EQ(flux::error_code(result.status()), "cancelled");
  EXPECT_FALSE(exists("cancelled/a.ts"));
  EXPECT_FALSE(exists("cancelled/index.m3u8"));
}

TEST_F(S3UploaderTest, CancelledMidUploadLeavesNothing) {
  write_file(source / "seg_000.ts", "first");
  write_file(source / "seg_001.ts", test_support::random_bytes(8 << 20, 23));  // multipart, 32 parts
  write_file(source / "index.m3u8", "#EXTM3U");
  UploadRequest r;
  r.source_dir = source;
  r.files = {"seg_000.ts", "seg_001.ts", "index.m3u8"};
  r.destination = "cancelled-mid";
  r.is_directory = true;
  r.main_file = "index.m3u8";
  s3::S3Config config = config_for(*server_);
  config.parallel_parts = 1;
  auto slow = make_s3_uploader(std::make_shared<s3::S3Client>(config), kBucket, 1);
  absl::StatusOr<UploadResult> result = absl::UnknownError("not run");
  std::thread upload([&] { result = slow->upload(r, cancel); });
  const bool started = test_support::wait_for_first_part(server_->data_dir(), kBucket, "cancelled-mid/seg_001.ts");
  cancel.cancel("job cancelled");
  upload.join();
  ASSERT_TRUE(started) << result.status();
  EXPECT_EQ(flux::error_code(result.status()), "cancelled") << result.status();
  EXPECT_FALSE(exists("cancelled-mid/seg_000.ts"));  // was complete: deleted again
  EXPECT_FALSE(exists("cancelled-mid/seg_001.ts"));
  EXPECT_FALSE(exists("cancelled-mid/index.m3u8"));
}

TEST_F(S3UploaderTest, RefusesAnUnsafeDestinationBeforeUploading) {
  write_file(source / "out.mp4", "v");
  UploadRequest r;
  r.source_dir = source;
  r.files = {"out.mp4"};
  r.destination = "../escape.mp4";
  EXPECT_EQ(flux::error_code(uploader->upload(r, cancel).status()), "output_path_invalid");
}

TEST(S3UploaderOutage, StorageKilledMidUploadFailsWithUploadFailedAndNoObject) {
  TempDir tmp;
  S3rver server(tmp.path() / "data", kBucket);
  s3::S3Config config = config_for(server);
  config.part_size = 512 << 10;
  config.parallel_parts = 1;
  auto client = std::make_shared<s3::S3Client>(config);
  auto uploader = make_s3_uploader(client, kBucket);
  const fs::path source = tmp.path() / "job";
  write_file(source / "seg_000.ts", "first segment");
  write_file(source / "seg_001.ts", test_support::random_bytes(12 << 20, 22));  // multipart, killed midway
  write_file(source / "index.m3u8", "#EXTM3U");
  UploadRequest r;
  r.job_id = "job-killed";
  r.source_dir = source;
  r.files = {"seg_000.ts", "seg_001.ts", "index.m3u8"};
  r.destination = "killed";
  r.is_directory = true;
  r.main_file = "index.m3u8";
  flux::CancelToken cancel;

  absl::StatusOr<UploadResult> result = absl::UnknownError("not run");
  std::thread upload([&] { result = uploader->upload(r, cancel); });
  ASSERT_TRUE(test_support::wait_for_first_part(server.data_dir(), kBucket, "killed/seg_001.ts"));
  server.kill();
  upload.join();
  EXPECT_EQ(flux::error_code(result.status()), "upload_failed") << result.status();
  EXPECT_EQ(result.status().code(), absl::StatusCode::kUnavailable);

  // Back up on the same data: the output never became visible.
  server.restart();
  EXPECT_FALSE(client->head(kBucket, "killed/index.m3u8").ok());
  EXPECT_FALSE(client->head(kBucket, "killed/seg_001.ts").ok());
}

}  // namespace
}  // namespace flux::worker::uploader
