// Error, retry and abort paths of S3Client, against a scripted loopback server.
#include <gtest/gtest.h>

#include <atomic>

#include "shared/core/error.h"
#include "shared/s3/s3_client.h"
#include "support/loopback_http_server.h"
#include "unit/s3/test_support.h"

namespace flux::s3 {
namespace {

using flux::testing::LoopbackHttpServer;
using test_support::TempDir;
using Reply = LoopbackHttpServer::Response;
using Received = LoopbackHttpServer::Request;

std::string error_xml(const std::string& code, const std::string& message = "scripted") {
  return "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>" + code + "</Code><Message>" + message +
         "</Message></Error>";
}

S3Config config_for(const LoopbackHttpServer& server) {
  S3Config config;
  config.endpoint = server.endpoint();
  config.force_path_style = true;
  config.credentials = {"AKID", "SECRET", ""};
  config.retry = {
      .max_attempts = 4, .base_delay = std::chrono::milliseconds(1), .max_delay = std::chrono::milliseconds(5)};
  return config;
}

class S3ClientErrors : public ::testing::Test {
 protected:
  TempDir dir;
  std::filesystem::path small_file() {
    const auto path = dir.path() / "small.bin";
    test_support::write_file(path, "hello");
    return path;
  }
};

TEST_F(S3ClientErrors, ThrottlingIsRetriedThenReportedWithTheS3Code) {
  LoopbackHttpServer server([](const Received&) {
    return Reply{503, error_xml("SlowDown", "Please reduce your rate")};
  });
  S3Client client(config_for(server));
  const absl::Status status = client.put_file("b", "k.mp4", small_file(), {});
  EXPECT_EQ(flux::error_code(status), "s3_error");
  EXPECT_EQ(status.code(), absl::StatusCode::kUnavailable);
  EXPECT_NE(std::string(status.message()).find("SlowDown"), std::string::npos) << status;
  EXPECT_NE(std::string(status.message()).find("Please reduce your rate"), std::string::npos) << status;
  EXPECT_EQ(server.requests().size(), 4u);  // max_attempts
}

TEST_F(S3ClientErrors, ATransientServerErrorIsRetriedToSuccess) {
  std::atomic<int> calls{0};
  LoopbackHttpServer server([&](const Received&) {
    return ++calls < 3 ? Reply{500, error_xml("InternalError")} : Reply{200, "", {{"ETag", "\"x\""}}};
  });
  S3Client client(config_for(server));
  EXPECT_TRUE(client.put_file("b", "k.mp4", small_file(), {}).ok());
  EXPECT_EQ(server.requests().size(), 3u);
  EXPECT_EQ(server.requests().back().body, "hello");
}

TEST_F(S3ClientErrors, Http429IsRetried) {
  std::atomic<int> calls{0};
  LoopbackHttpServer server([&](const Received&) { return ++calls < 2 ? Reply{429, ""} : Reply{204, ""}; });
  S3Client client(config_for(server));
  EXPECT_TRUE(client.delete_object("b", "k").ok());
  EXPECT_EQ(server.requests().size(), 2u);
}

TEST_F(S3ClientErrors, ADroppedConnectionIsRetried) {
  std::atomic<int> calls{0};
  LoopbackHttpServer server([&](const Received&) {
    Reply reply{200, "data"};
    reply.hang_up = ++calls < 3;
    return reply;
  });
  S3Client client(config_for(server));
  EXPECT_TRUE(client.get_to_file("b", "k", dir.path() / "out", 0).ok());
  EXPECT_EQ(test_support::read_file(dir.path() / "out"), "data");
  EXPECT_EQ(server.requests().size(), 3u);
}

TEST_F(S3ClientErrors, ClientErrorsAreNotRetried) {
  LoopbackHttpServer server([](const Received&) { return Reply{400, error_xml("InvalidArgument", "bad header")}; });
  S3Client client(config_for(server));
  const absl::Status status = client.put_file("b", "k", small_file(), {});
  EXPECT_EQ(flux::error_code(status), "s3_error");
  EXPECT_NE(std::string(status.message()).find("InvalidArgument"), std::string::npos);
  EXPECT_EQ(server.requests().size(), 1u);
}

TEST_F(S3ClientErrors, ForbiddenIsAccessDenied) {
  LoopbackHttpServer server([](const Received&) { return Reply{403, error_xml("AccessDenied", "Access Denied")}; });
  S3Client client(config_for(server));
  const absl::Status status = client.put_file("b", "k", small_file(), {});
  EXPECT_EQ(flux::error_code(status), "s3_access_denied");
  EXPECT_EQ(status.code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(server.requests().size(), 1u);
}

TEST_F(S3ClientErrors, MissingObjectIsNotFoundAndLeavesNoFile) {
  LoopbackHttpServer server([](const Received&) {
    return Reply{404, error_xml("NoSuchKey", "The specified key does not exist.")};
  });
  S3Client client(config_for(server));
  const absl::Status status = client.get_to_file("b", "missing.mp4", dir.path() / "dest.mp4", 0);
  EXPECT_EQ(flux::error_code(status), "s3_not_found");
  EXPECT_EQ(status.code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(server.requests().size(), 1u);
  // Neither the destination nor a temporary file remains.
  EXPECT_TRUE(std::filesystem::is_empty(dir.path())) << "left files behind";
  EXPECT_EQ(flux::error_code(client.head("b", "missing.mp4").status()), "s3_not_found");
}

TEST_F(S3ClientErrors, DownloadAboveTheCapIsRefused) {
  LoopbackHttpServer server([](const Received&) { return Reply{200, std::string(5000, 'x')}; });
  S3Client client(config_for(server));
  const absl::Status status = client.get_to_file("b", "big", dir.path() / "dest", 4096);
  EXPECT_EQ(flux::error_code(status), "input_too_large");
  EXPECT_EQ(server.requests().size(), 1u);  // not retried
  EXPECT_TRUE(std::filesystem::is_empty(dir.path()));
  EXPECT_TRUE(client.get_to_file("b", "big", dir.path() / "dest", 5000).ok());
  EXPECT_EQ(std::filesystem::file_size(dir.path() / "dest"), 5000u);
}

TEST_F(S3ClientErrors, CompleteAnsweringErrorWithHttp200AbortsTheUpload) {
  LoopbackHttpServer server([](const Received& r) {
    if (r.method == "POST" && r.path.ends_with("?uploads=")) {
      return Reply{200, "<InitiateMultipartUploadResult><UploadId>up-1</UploadId></InitiateMultipartUploadResult>"};
    }
    if (r.method == "PUT") return Reply{200, "", {{"ETag", "\"p\""}}};
    if (r.method == "POST")
      return Reply{200, error_xml("InvalidPart", "One or more of the specified parts could not be found.")};
    return Reply{204, ""};
  });
  S3Config config = config_for(server);
  config.multipart_threshold = 1024;
  config.part_size = 1024;
  S3Client client(config);
  const auto file = dir.path() / "big.bin";
  test_support::write_file(file, test_support::random_bytes(3000, 1));
  const absl::Status status = client.put_file("b", "out.mp4", file, {});
  EXPECT_EQ(flux::error_code(status), "s3_error");
  EXPECT_NE(std::string(status.message()).find("InvalidPart"), std::string::npos) << status;
  const auto received = server.requests();
  ASSERT_FALSE(received.empty());
  EXPECT_EQ(received.back().method, "DELETE");
  EXPECT_EQ(received.back().path, "/b/out.mp4?uploadId=up-1");
  int parts = 0;
  for (const auto& r : received) parts += r.method == "PUT";
  EXPECT_EQ(parts, 3);
}

TEST_F(S3ClientErrors, AFailedPartAbortsTheUploadWithoutCompleting) {
  LoopbackHttpServer server([](const Received& r) {
    if (r.method == "POST" && r.path.ends_with("?uploads=")) {
      return Reply{200, "<InitiateMultipartUploadResult><UploadId>up-2</UploadId></InitiateMultipartUploadResult>"};
    }
    if (r.method == "PUT" && r.path.find("partNumber=2&") != std::string::npos)
      return Reply{400, error_xml("BadDigest")};
    if (r.method == "PUT") return Reply{200, "", {{"ETag", "\"p\""}}};
    return Reply{204, ""};
  });
  S3Config config = config_for(server);
  config.multipart_threshold = 1024;
  config.part_size = 1024;
  config.parallel_parts = 1;
  S3Client client(config);
  const auto file = dir.path() / "big.bin";
  test_support::write_file(file, test_support::random_bytes(4000, 2));
  const absl::Status status = client.put_file("b", "out.mp4", file, {});
  EXPECT_EQ(flux::error_code(status), "s3_error");
  EXPECT_NE(std::string(status.message()).find("BadDigest"), std::string::npos) << status;
  const auto received = server.requests();
  for (const auto& r : received)
    EXPECT_FALSE(r.method == "POST" && r.path.find("uploadId=") != std::string::npos) << "completed";
  EXPECT_EQ(received.back().method, "DELETE");
  EXPECT_EQ(received.back().path, "/b/out.mp4?uploadId=up-2");
}

TEST_F(S3ClientErrors, CancellationStopsRetryingAndAbortsTheUpload) {
  flux::CancelToken cancel;
  LoopbackHttpServer server([&](const Received& r) {
    if (r.method == "POST" && r.path.ends_with("?uploads=")) {
      return Reply{200, "<InitiateMultipartUploadResult><UploadId>up-3</UploadId></InitiateMultipartUploadResult>"};
    }
    if (r.method == "PUT") {
      cancel.cancel("job cancelled");
      return Reply{503, error_xml("SlowDown")};
    }
    return Reply{204, ""};
  });
  S3Config config = config_for(server);
  config.multipart_threshold = 1024;
  config.part_size = 1024;
  config.parallel_parts = 1;
  config.retry = {
      .max_attempts = 10, .base_delay = std::chrono::milliseconds(5000), .max_delay = std::chrono::milliseconds(5000)};
  S3Client client(config);
  const auto file = dir.path() / "big.bin";
  test_support::write_file(file, test_support::random_bytes(4000, 3));
  const auto start = std::chrono::steady_clock::now();
  const absl::Status status = client.put_file("b", "out.mp4", file, {}, &cancel);
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(3));
  EXPECT_EQ(flux::error_code(status), "cancelled");
  EXPECT_EQ(server.requests().back().method, "DELETE");
}

TEST_F(S3ClientErrors, HeaderInjectionThroughMetadataIsRefused) {
  LoopbackHttpServer server([](const Received&) { return Reply{200, ""}; });
  S3Client client(config_for(server));
  PutOptions options;
  options.metadata = {{"note", "x\r\nx-amz-acl: public-read"}};
  EXPECT_EQ(flux::error_code(client.put_file("b", "k", small_file(), options)), "s3_invalid_request");
  options.metadata = {{"bad name", "x"}};
  EXPECT_EQ(flux::error_code(client.put_file("b", "k", small_file(), options)), "s3_invalid_request");
  EXPECT_TRUE(server.requests().empty());
}

}  // namespace
}  // namespace flux::s3
