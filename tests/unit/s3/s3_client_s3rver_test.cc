// S3Client against a real s3rver on an ephemeral loopback port.
#include <gtest/gtest.h>

#include <thread>

#include "shared/core/error.h"
#include "shared/s3/s3_client.h"
#include "unit/s3/test_support.h"

namespace flux::s3 {
namespace {

namespace fs = std::filesystem;
using test_support::S3rver;
using test_support::TempDir;

constexpr const char* kBucket = "flux-test";

S3Config config_for(const S3rver& server) {
  S3Config config;
  config.endpoint = server.endpoint();
  config.force_path_style = true;
  config.credentials = {S3rver::kAccessKey, S3rver::kSecretKey, ""};
  config.multipart_threshold = 1 << 20;
  config.part_size = 256 << 10;
  config.parallel_parts = 4;
  config.retry = {
      .max_attempts = 3, .base_delay = std::chrono::milliseconds(20), .max_delay = std::chrono::milliseconds(100)};
  return config;
}

class S3ClientWithS3rver : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir();
    server_ = new S3rver(dir_->path() / "data", kBucket);
  }
  static void TearDownTestSuite() {
    delete server_;
    delete dir_;
  }
  TempDir work;
  S3Client client{config_for(*server_)};
  static TempDir* dir_;
  static S3rver* server_;
};
TempDir* S3ClientWithS3rver::dir_ = nullptr;
S3rver* S3ClientWithS3rver::server_ = nullptr;

TEST_F(S3ClientWithS3rver, SmallFileRoundTripsWithTypeAndMetadata) {
  const std::string data = test_support::random_bytes(100'000, 11);
  test_support::write_file(work.path() / "in.mp4", data);
  PutOptions options;
  options.content_type = "video/mp4";
  options.cache_control = "max-age=60";
  options.metadata = {{"job-id", "job-1"}, {"Preset", "720p_h264"}};
  const std::string key = "outputs/job 1/caf\xc3\xa9+x.mp4";
  ASSERT_TRUE(client.put_file(kBucket, key, work.path() / "in.mp4", options).ok());

  const auto info = client.head(kBucket, key);
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->size, data.size());
  EXPECT_EQ(info->content_type, "video/mp4");
  EXPECT_EQ(info->cache_control, "max-age=60");
  EXPECT_EQ(info->metadata.at("job-id"), "job-1");
  EXPECT_EQ(info->metadata.at("preset"), "720p_h264");
  EXPECT_FALSE(info->etag.empty());

  ASSERT_TRUE(client.get_to_file(kBucket, key, work.path() / "back.mp4", 0).ok());
  EXPECT_EQ(test_support::read_file(work.path() / "back.mp4"), data);
}

TEST_F(S3ClientWithS3rver, LargeFileGoesMultipartAndRoundTrips) {
  // 2.3 MiB over 256 KiB parts: 10 parts, the last one short.
  const std::string data = test_support::random_bytes((2 << 20) + 300'000, 12);
  test_support::write_file(work.path() / "big.mp4", data);
  PutOptions options;
  options.content_type = "video/mp4";
  options.metadata = {{"job-id", "job-2"}};
  ASSERT_TRUE(client.put_file(kBucket, "big/out.mp4", work.path() / "big.mp4", options).ok());
  const auto info = client.head(kBucket, "big/out.mp4");
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->size, data.size());
  EXPECT_EQ(info->content_type, "video/mp4");
  EXPECT_EQ(info->metadata.at("job-id"), "job-2");
  ASSERT_TRUE(client.get_to_file(kBucket, "big/out.mp4", work.path() / "back.mp4", 0).ok());
  EXPECT_TRUE(test_support::read_file(work.path() / "back.mp4") == data);
  // s3rver keeps multipart uploads in this folder: it exists, so the upload
  // went multipart, and it is empty, so the upload was completed.
  const fs::path uploads = server_->data_dir() / kBucket / "._S3rver_uploads";
  EXPECT_TRUE(fs::exists(uploads));
  EXPECT_TRUE(fs::is_empty(uploads));
}

TEST_F(S3ClientWithS3rver, MissingObjectIsNotFound) {
  EXPECT_EQ(flux::error_code(client.head(kBucket, "no/such.mp4").status()), "s3_not_found");
  const absl::Status status = client.get_to_file(kBucket, "no/such.mp4", work.path() / "x", 0);
  EXPECT_EQ(flux::error_code(status), "s3_not_found");
  EXPECT_NE(std::string(status.message()).find("NoSuchKey"), std::string::npos) << status;
  EXPECT_FALSE(fs::exists(work.path() / "x"));
}

TEST_F(S3ClientWithS3rver, DownloadCapIsEnforced) {
  test_support::write_file(work.path() / "f", std::string(10'000, 'z'));
  ASSERT_TRUE(client.put_file(kBucket, "capped", work.path() / "f", {}).ok());
  EXPECT_EQ(flux::error_code(client.get_to_file(kBucket, "capped", work.path() / "g", 9'999)), "input_too_large");
  EXPECT_FALSE(fs::exists(work.path() / "g"));
  EXPECT_TRUE(client.get_to_file(kBucket, "capped", work.path() / "g", 10'000).ok());
}

TEST_F(S3ClientWithS3rver, DeleteRemovesTheObject) {
  test_support::write_file(work.path() / "f", "x");
  ASSERT_TRUE(client.put_file(kBucket, "to-delete", work.path() / "f", {}).ok());
  ASSERT_TRUE(client.delete_object(kBucket, "to-delete").ok());
  EXPECT_EQ(flux::error_code(client.head(kBucket, "to-delete").status()), "s3_not_found");
  EXPECT_TRUE(client.delete_object(kBucket, "to-delete").ok());  // idempotent
}

TEST(S3ClientOutage, ServerKilledMidUploadFailsAndLeavesNoObject) {
  TempDir dir;
  S3rver server(dir.path() / "data", kBucket);
  S3Config config = config_for(server);
  config.part_size = 512 << 10;
  config.parallel_parts = 1;
  S3Client client(config);
  const std::string data = test_support::random_bytes(12 << 20, 13);
  test_support::write_file(dir.path() / "big.mp4", data);

  absl::Status status;
  std::thread upload([&] { status = client.put_file(kBucket, "killed.mp4", dir.path() / "big.mp4", {}); });
  ASSERT_TRUE(test_support::wait_for_first_part(server.data_dir(), kBucket, "killed.mp4"));
  server.kill();
  upload.join();
  EXPECT_EQ(flux::error_code(status), "s3_error");
  EXPECT_EQ(status.code(), absl::StatusCode::kUnavailable);

  server.restart();
  EXPECT_EQ(flux::error_code(client.head(kBucket, "killed.mp4").status()), "s3_not_found");
}

TEST(S3ClientOutage, ServerBackWithinTheRetryWindowIsRetriedToSuccess) {
  TempDir dir;
  S3rver server(dir.path() / "data", kBucket);
  S3Config config = config_for(server);
  config.part_size = 512 << 10;
  config.parallel_parts = 1;
  // A retry window of about 4 s (19 jittered waits of up to 0.5 s), well
  // beyond the second s3rver takes to come back.
  config.retry = {
      .max_attempts = 20, .base_delay = std::chrono::milliseconds(100), .max_delay = std::chrono::milliseconds(500)};
  S3Client client(config);
  const std::string data = test_support::random_bytes(12 << 20, 14);
  test_support::write_file(dir.path() / "big.mp4", data);

  absl::Status status;
  std::thread upload([&] { status = client.put_file(kBucket, "survivor.mp4", dir.path() / "big.mp4", {}); });
  ASSERT_TRUE(test_support::wait_for_first_part(server.data_dir(), kBucket, "survivor.mp4"));
  server.kill();
  server.restart();  // same port, same data: the multipart upload is still known
  upload.join();
  ASSERT_TRUE(status.ok()) << status;
  ASSERT_TRUE(client.get_to_file(kBucket, "survivor.mp4", dir.path() / "back.mp4", 0).ok());
  EXPECT_TRUE(test_support::read_file(dir.path() / "back.mp4") == data);
}

}  // namespace
}  // namespace flux::s3
