#include "worker/input/input_fetcher.h"

#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <thread>

#include "shared/core/error.h"
#include "support/loopback_http_server.h"

namespace flux::worker::input {
namespace {

namespace fs = std::filesystem;
using flux::testing::LoopbackHttpServer;
using Response = LoopbackHttpServer::Response;
using namespace std::chrono_literals;

std::string read_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}
void write_file(const fs::path& p, const std::string& content) { std::ofstream(p, std::ios::binary) << content; }

class InputFetcherTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char pattern[] = "/tmp/flux-input-test-XXXXXX";
    ASSERT_NE(mkdtemp(pattern), nullptr);
    root_ = pattern;
    inputs_ = root_ / "inputs";
    work_ = root_ / "work" / "job-1";
    fs::create_directories(inputs_);
    options_.policy.local_input_dir = inputs_;
    // Loopback stays forbidden except the test server's own address.
    options_.policy.test_only_allowed_addresses = {"127.0.0.1"};
    options_.retry.base_delay = 5ms;
    options_.retry.max_delay = 20ms;
  }
  void TearDown() override { fs::remove_all(root_); }

  std::string file_url(const fs::path& p) const { return "file://" + p.string(); }
  bool work_is_empty() const { return !fs::exists(work_) || fs::is_empty(work_); }

  fs::path root_, inputs_, work_;
  FetchOptions options_;
  flux::CancelToken cancel_;
};

TEST_F(InputFetcherTest, CopiesALocalFileInsideTheDirectory) {
  const std::string content(100000, 'v');
  write_file(inputs_ / "Clip.MP4", content);
  InputFetcher fetcher(options_, nullptr);
  auto path = fetcher.fetch(file_url(inputs_ / "Clip.MP4"), work_, cancel_);
  ASSERT_TRUE(path.ok()) << path.status();
  EXPECT_EQ(*path, work_ / "input.mp4");
  EXPECT_EQ(read_file(*path), content);
  EXPECT_EQ(read_file(inputs_ / "Clip.MP4"), content);  // the original is untouched
  EXPECT_EQ(std::distance(fs::directory_iterator(work_), fs::directory_iterator()), 1);
}

TEST_F(InputFetcherTest, RefusesLocalFilesOutsideTheDirectory) {
  write_file(root_ / "secret.mp4", "secret");
  fs::create_symlink(root_ / "secret.mp4", inputs_ / "link.mp4");
  InputFetcher fetcher(options_, nullptr);
  EXPECT_EQ(flux::error_code(fetcher.fetch(file_url(root_ / "secret.mp4"), work_, cancel_).status()),
            "url_path_forbidden");
  EXPECT_EQ(flux::error_code(fetcher.fetch(file_url(inputs_) + "/../secret.mp4", work_, cancel_).status()),
            "url_path_forbidden");
  EXPECT_EQ(flux::error_code(fetcher.fetch(file_url(inputs_ / "link.mp4"), work_, cancel_).status()),
            "url_path_forbidden");
  EXPECT_EQ(flux::error_code(fetcher.fetch(file_url(inputs_ / "missing.mp4"), work_, cancel_).status()),
            "input_not_found");
  ASSERT_EQ(mkfifo((inputs_ / "pipe.mp4").c_str(), 0600), 0);
  EXPECT_EQ(flux::error_code(fetcher.fetch(file_url(inputs_ / "pipe.mp4"), work_, cancel_).status()),
            "url_path_forbidden");
  EXPECT_TRUE(work_is_empty());

  FetchOptions no_dir = options_;
  no_dir.policy.local_input_dir.reset();
  write_file(inputs_ / "ok.mp4", "data");
  EXPECT_EQ(
      flux::error_code(InputFetcher(no_dir, nullptr).fetch(file_url(inputs_ / "ok.mp4"), work_, cancel_).status()),
      "url_scheme_forbidden");
}

TEST_F(InputFetcherTest, EmptyAndOversizedInputsAreRefused) {
  write_file(inputs_ / "empty.mp4", "");
  write_file(inputs_ / "big.mp4", std::string(5000, 'b'));
  options_.max_bytes = 4096;
  InputFetcher fetcher(options_, nullptr);
  auto empty = fetcher.fetch(file_url(inputs_ / "empty.mp4"), work_, cancel_);
  EXPECT_EQ(flux::error_code(empty.status()), "input_empty") << empty.status();
  auto big = fetcher.fetch(file_url(inputs_ / "big.mp4"), work_, cancel_);
  EXPECT_EQ(flux::error_code(big.status()), "input_too_large") << big.status();
  EXPECT_TRUE(work_is_empty());

  LoopbackHttpServer server([](const auto&) { return Response{200, ""}; });
  EXPECT_EQ(flux::error_code(fetcher.fetch(server.url("/empty.mp4"), work_, cancel_).status()), "input_empty");
  EXPECT_TRUE(work_is_empty());
}

TEST_F(InputFetcherTest, RetriesTransientHttpFailures) {
  std::atomic<int> calls{0};
  LoopbackHttpServer server([&](const auto&) { return ++calls <= 2 ? Response{503, "busy"} : Response{200, "video"}; });
  InputFetcher fetcher(options_, nullptr);
  auto path = fetcher.fetch(server.url("/v/clip.mov?sig=abc"), work_, cancel_);
  ASSERT_TRUE(path.ok()) << path.status();
  EXPECT_EQ(*path, work_ / "input.mov");
  EXPECT_EQ(read_file(*path), "video");
  EXPECT_EQ(calls.load(), 3);
  EXPECT_EQ(std::distance(fs::directory_iterator(work_), fs::directory_iterator()), 1);
}

TEST_F(InputFetcherTest, GivesUpAfterMaxAttempts) {
  std::atomic<int> calls{0};
  LoopbackHttpServer server([&](const auto&) {
    ++calls;
    return Response{502, "bad gateway"};
  });
  options_.retry.max_attempts = 3;
  auto result = InputFetcher(options_, nullptr).fetch(server.url("/clip.mp4"), work_, cancel_);
  EXPECT_EQ(flux::error_code(result.status()), "input_download_failed") << result.status();
  EXPECT_EQ(calls.load(), 3);
  EXPECT_TRUE(work_is_empty());
}

TEST_F(InputFetcherTest, DoesNotRetryPermanentFailures) {
  std::atomic<int> calls{0};
  LoopbackHttpServer server([&](const LoopbackHttpServer::Request& r) {
    ++calls;
    if (r.path == "/missing.mp4") return Response{404, "no"};
    if (r.path == "/denied.mp4") return Response{403, "no"};
    return Response{200, std::string(10000, 'x')};
  });
  options_.max_bytes = 1000;
  InputFetcher fetcher(options_, nullptr);
  EXPECT_EQ(flux::error_code(fetcher.fetch(server.url("/missing.mp4"), work_, cancel_).status()), "input_not_found");
  EXPECT_EQ(flux::error_code(fetcher.fetch(server.url("/denied.mp4"), work_, cancel_).status()),
            "input_download_failed");
  EXPECT_EQ(flux::error_code(fetcher.fetch(server.url("/big.mp4"), work_, cancel_).status()), "input_too_large");
  EXPECT_EQ(calls.load(), 3);  // one request each
  EXPECT_TRUE(work_is_empty());
}

TEST_F(InputFetcherTest, ForbiddenAddressesNeverContacted) {
  LoopbackHttpServer server([](const auto&) { return Response{200, "secret"}; });
  options_.policy.test_only_allowed_addresses.clear();
  InputFetcher fetcher(options_, nullptr);
  EXPECT_EQ(flux::error_code(fetcher.fetch(server.url("/a.mp4"), work_, cancel_).status()), "url_address_forbidden");
  const std::string metadata = "http://169.254.169.254/latest/meta-data/iam/security-credentials/";
  EXPECT_EQ(flux::error_code(fetcher.fetch(metadata, work_, cancel_).status()), "url_address_forbidden");
  EXPECT_EQ(server.connections(), 0);
}

TEST_F(InputFetcherTest, OtherSchemesAndUnconfiguredS3AreRefused) {
  InputFetcher fetcher(options_, nullptr);
  for (const char* url : {"concat:/etc/passwd|/etc/hosts", "data:video/mp4;base64,AAAA", "ftp://example.com/a.mp4",
                          "gopher://example.com/", "/etc/passwd", "pipe:0"}) {
    EXPECT_EQ(flux::error_code(fetcher.fetch(url, work_, cancel_).status()), "url_scheme_forbidden") << url;
  }
  EXPECT_EQ(flux::error_code(fetcher.fetch("s3://bucket/key.mp4", work_, cancel_).status()), "s3_not_configured");
  EXPECT_TRUE(work_is_empty());
}

TEST_F(InputFetcherTest, CancelledBeforeOrDuringRetries) {
  LoopbackHttpServer server([](const auto&) { return Response{503, "busy"}; });
  options_.retry.max_attempts = 50;
  options_.retry.base_delay = 200ms;
  options_.retry.max_delay = 200ms;
  InputFetcher fetcher(options_, nullptr);
  flux::CancelToken cancelled;
  cancelled.cancel();
  EXPECT_EQ(flux::error_code(fetcher.fetch(server.url("/a.mp4"), work_, cancelled).status()), "cancelled");
  EXPECT_EQ(server.connections(), 0);

  std::thread canceller([this] {
    std::this_thread::sleep_for(300ms);
    cancel_.cancel();
  });
  const auto start = std::chrono::steady_clock::now();
  auto result = fetcher.fetch(server.url("/a.mp4"), work_, cancel_);
  canceller.join();
  EXPECT_EQ(flux::error_code(result.status()), "cancelled") << result.status();
  EXPECT_LT(std::chrono::steady_clock::now() - start, 2s);
  EXPECT_TRUE(work_is_empty());
}

TEST(InputFileName, KeepsOnlyShortAlphanumericExtensions) {
  EXPECT_EQ(input_file_name("/a/b/clip.mp4"), "input.mp4");
  EXPECT_EQ(input_file_name("/a/b/CLIP.MKV"), "input.mkv");
  EXPECT_EQ(input_file_name("/a/b.d/clip"), "input");
  EXPECT_EQ(input_file_name("/clip.m3u8"), "input.m3u8");
  EXPECT_EQ(input_file_name("/clip.mp4%2F..%2Fx"), "input");
  EXPECT_EQ(input_file_name("/clip.verylongext"), "input");
  EXPECT_EQ(input_file_name("/clip."), "input");
  EXPECT_EQ(input_file_name(""), "input");
}

}  // namespace
}  // namespace flux::worker::input
