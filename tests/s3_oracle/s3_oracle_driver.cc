// Drives flux::s3::S3Client through every request kind the worker makes, for
// tests/s3_oracle/test_s3_signing.py, which captures the requests and checks
// their signatures with botocore.
//
//   s3_oracle_driver <endpoint> <bucket> <work_dir> <presign_epoch_seconds>
//
// Credentials come from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY /
// AWS_SESSION_TOKEN. Prints one JSON object per presigned URL on stdout and
// exits non-zero when an operation does not end as the capture server scripts it.
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <string>

#include "shared/core/error.h"
#include "shared/s3/s3_client.h"

namespace {

namespace fs = std::filesystem;
using flux::s3::S3Client;
using flux::s3::S3Config;

// The keys exercise URI encoding: spaces, '+', '=', non-ASCII, '~', a "." segment.
const std::string kSmallKey = "small/hello world+=x~y/./caf\xc3\xa9 (1).txt";
const std::string kMultipartKey = "multi/out.mp4";
const std::string kFailingKey = "fail-complete/out.mp4";  // the server answers 200 + <Error> to its Complete

void write_file(const fs::path& path, size_t size, char seed) {
  std::ofstream out(path, std::ios::binary);
  for (size_t i = 0; i < size; ++i) out.put(static_cast<char>(seed + i * 31 % 251));
}

std::string json_escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '"' || c == '\\') out.push_back('\\');
    out.push_back(c);
  }
  return out;
}

int failures = 0;

void expect(bool ok, const std::string& what, const absl::Status& status) {
  if (ok) return;
  ++failures;
  std::cerr << "FAILED " << what << ": " << status << " (code " << flux::error_code(status) << ")\n";
}

void print_presign(const std::string& label, const S3Client& client, const std::string& bucket, const std::string& key,
                   std::chrono::seconds expires, std::chrono::system_clock::time_point now) {
  std::cout << "{\"label\": \"" << label << "\", \"region\": \"" << client.config().region
            << "\", \"expires\": " << expires.count() << ", \"object_url\": \""
            << json_escape(client.object_url(bucket, key)) << "\", \"url\": \""
            << json_escape(client.presign_get(bucket, key, expires, now)) << "\"}" << std::endl;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 5) {
    std::cerr << "usage: s3_oracle_driver <endpoint> <bucket> <work_dir> <presign_epoch_seconds>\n";
    return 2;
  }
  const std::string endpoint = argv[1];
  const std::string bucket = argv[2];
  const fs::path work = argv[3];
  const auto now = std::chrono::system_clock::time_point(std::chrono::seconds(std::stoll(argv[4])));

  S3Config config;
  config.endpoint = endpoint;
  config.force_path_style = true;
  config.region = "eu-west-3";
  config.credentials = flux::s3::Credentials::from_env();
  config.multipart_threshold = 100 << 10;
  config.part_size = 64 << 10;  // 3 parts for 150 KiB
  config.parallel_parts = 2;
  config.retry = {
      .max_attempts = 2, .base_delay = std::chrono::milliseconds(1), .max_delay = std::chrono::milliseconds(5)};
  S3Client client(config);

  write_file(work / "small.txt", 1000, 'a');
  write_file(work / "large.bin", 150 << 10, 'b');

  flux::s3::PutOptions small_options;
  small_options.content_type = "text/plain; charset=utf-8";
  small_options.cache_control = "no-cache";
  small_options.metadata = {{"job-id", "job-42"}, {"Preset", "720p   h264 "}};
  absl::Status s = client.put_file(bucket, kSmallKey, work / "small.txt", small_options);
  expect(s.ok(), "put small", s);

  flux::s3::PutOptions video_options;
  video_options.content_type = "video/mp4";
  video_options.cache_control = "max-age=31536000, immutable";
  video_options.metadata = {{"job-id", "job-42"}};
  s = client.put_file(bucket, kMultipartKey, work / "large.bin", video_options);
  expect(s.ok(), "put multipart", s);

  s = client.put_file(bucket, kFailingKey, work / "large.bin", video_options);
  expect(!s.ok() && flux::error_code(s) == "s3_error", "put multipart with failing complete", s);

  s = client.get_to_file(bucket, kSmallKey, work / "got.txt", 0);
  expect(s.ok(), "get", s);

  absl::StatusOr<flux::s3::ObjectInfo> info = client.head(bucket, kSmallKey);
  expect(info.ok(), "head", info.status());

  s = client.delete_object(bucket, kSmallKey);
  expect(s.ok(), "delete", s);

  print_presign("endpoint-path-style", client, bucket, kSmallKey, std::chrono::seconds(900), now);
  S3Config aws;
  aws.region = "us-west-2";
  aws.credentials = config.credentials;
  S3Client aws_client(aws);
  print_presign("aws-virtual-hosted", aws_client, "flux-outputs", "jobs/a b/master.m3u8", std::chrono::seconds(3600),
                now);
  print_presign("aws-dotted-bucket", aws_client, "my.bucket", kSmallKey, std::chrono::seconds(604800), now);
  return failures == 0 ? 0 : 1;
}
