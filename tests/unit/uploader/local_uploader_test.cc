#include <gtest/gtest.h>

#include <thread>

#include "shared/core/error.h"
#include "unit/s3/test_support.h"
#include "worker/uploader/uploader.h"

namespace flux::worker::uploader {
namespace {

namespace fs = std::filesystem;
using test_support::read_file;
using test_support::TempDir;
using test_support::write_file;

// Every regular file under `dir`, relative, sorted.
std::vector<std::string> tree(const fs::path& dir) {
  std::vector<std::string> out;
  for (const auto& entry : fs::recursive_directory_iterator(dir)) {
    if (!entry.is_directory()) out.push_back(entry.path().lexically_relative(dir).generic_string());
  }
  std::sort(out.begin(), out.end());
  return out;
}

class LocalUploaderTest : public ::testing::Test {
 protected:
  TempDir tmp;
  fs::path source = tmp.path() / "job-output";
  fs::path root = tmp.path() / "storage";
  std::unique_ptr<Uploader> uploader = make_local_uploader(root);
  flux::CancelToken cancel;

  UploadRequest single(const std::string& destination) {
    write_file(source / "out.mp4", "video-bytes");
    UploadRequest r;
    r.job_id = "job-1";
    r.source_dir = source;
    r.files = {"out.mp4"};
    r.destination = destination;
    r.main_file = "out.mp4";
    return r;
  }
};

TEST_F(LocalUploaderTest, SingleFileLandsAtTheDestination) {
  EXPECT_EQ(uploader->storage_type(), "local");
  const auto result = uploader->upload(single("videos/job 1/final.mp4"), cancel);
  ASSERT_TRUE(result.ok()) << result.status();
  const fs::path expected = fs::canonical(root) / "videos/job 1/final.mp4";
  EXPECT_EQ(read_file(expected), "video-bytes");
  EXPECT_EQ(result->output_url, "file://" + expected.string());
  ASSERT_EQ(result->files.size(), 1u);
  EXPECT_EQ(result->files[0].key, "videos/job 1/final.mp4");
  EXPECT_EQ(result->total_bytes, 11u);
  // No temporary file left next to it.
  EXPECT_EQ(tree(root), std::vector<std::string>{"videos/job 1/final.mp4"});
}

TEST_F(LocalUploaderTest, ReplacesAnExistingFileWhole) {
  write_file(root / "out.mp4", std::string(100000, 'o'));
  ASSERT_TRUE(uploader->upload(single("out.mp4"), cancel).ok());
  EXPECT_EQ(read_file(root / "out.mp4"), "video-bytes");
}

TEST_F(LocalUploaderTest, DirectoryOutputKeepsRelativePaths) {
  for (const char* f :
       {"master.m3u8", "v0/playlist.m3u8", "v0/seg_000.ts", "v0/seg_001.ts", "v1/playlist.m3u8", "v1/seg_000.ts"}) {
    write_file(source / f, std::string("data of ") + f);
  }
  UploadRequest r;
  r.job_id = "job-2";
  r.source_dir = source;
  r.files = {"v0/playlist.m3u8", "master.m3u8", "v0/seg_000.ts", "v0/seg_001.ts", "v1/playlist.m3u8", "v1/seg_000.ts"};
  r.destination = "hls/job-2/";
  r.is_directory = true;
  r.main_file = "master.m3u8";
  const auto result = uploader->upload(r, cancel);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(tree(root), (std::vector<std::string>{"hls/job-2/master.m3u8", "hls/job-2/v0/playlist.m3u8",
                                                  "hls/job-2/v0/seg_000.ts", "hls/job-2/v0/seg_001.ts",
                                                  "hls/job-2/v1/playlist.m3u8", "hls/job-2/v1/seg_000.ts"}));
  EXPECT_EQ(read_file(root / "hls/job-2/v0/seg_001.ts"), "data of v0/seg_001.ts");
  EXPECT_EQ(result->output_url, "file://" + (fs::canonical(root) / "hls/job-2/master.m3u8").string());
  EXPECT_EQ(result->files.size(), 6u);
}

TEST_F(LocalUploaderTest, RefusesDestinationsOutsideTheRoot) {
  for (const char* bad : {"../x.mp4", "a/../../x.mp4", "/abs/x.mp4", "a\\b.mp4"}) {
    const auto result = uploader->upload(single(bad), cancel);
    EXPECT_EQ(flux::error_code(result.status()), "output_path_invalid") << bad;
  }
  EXPECT_FALSE(fs::exists(tmp.path() / "x.mp4"));
  EXPECT_FALSE(fs::exists("/abs/x.mp4"));
}

TEST_F(LocalUploaderTest, RefusesToFollowASymlinkOutOfTheRoot) {
  const fs::path outside = tmp.path() / "outside";
  fs::create_directories(outside);
  fs::create_directories(root);
  fs::create_directory_symlink(outside, root / "link");
  for (const char* via : {"link/x.mp4", "link/sub/x.mp4"}) {
    const auto result = uploader->upload(single(via), cancel);
    EXPECT_EQ(flux::error_code(result.status()), "output_path_invalid") << via;
  }
  EXPECT_TRUE(fs::is_empty(outside)) << "wrote through the symlink";
}

TEST_F(LocalUploaderTest, ASymlinkInsideTheRootIsFine) {
  fs::create_directories(root / "real");
  fs::create_directory_symlink(root / "real", root / "alias");
  ASSERT_TRUE(uploader->upload(single("alias/x.mp4"), cancel).ok());
  EXPECT_EQ(read_file(root / "real/x.mp4"), "video-bytes");
}

TEST_F(LocalUploaderTest, ASymlinkedSourceFileIsNotUploaded) {
  // A job's output that is a symlink could expose any file the worker can read.
  fs::create_directories(source);
  write_file(tmp.path() / "secret", "secret");
  fs::create_symlink(tmp.path() / "secret", source / "out.mp4");
  UploadRequest r;
  r.source_dir = source;
  r.files = {"out.mp4"};
  r.destination = "out.mp4";
  const auto result = uploader->upload(r, cancel);
  EXPECT_EQ(flux::error_code(result.status()), "upload_failed");
  EXPECT_FALSE(fs::exists(root / "out.mp4"));
}

TEST_F(LocalUploaderTest, AFailureMidwayRemovesWhatWasWritten) {
  write_file(source / "a.ts", "a");
  write_file(source / "b.ts", "b");
  write_file(source / "index.m3u8", "#EXTM3U");
  UploadRequest r;
  r.source_dir = source;
  // The third file's name is too long for the storage filesystem once the
  // temporary-file suffix is added: its write fails after two succeeded.
  const std::string long_name = std::string(240, 'n') + ".ts";
  write_file(source / long_name, "n");
  r.files = {"a.ts", "b.ts", long_name, "index.m3u8"};
  r.destination = "out";
  r.is_directory = true;
  r.main_file = "index.m3u8";
  const auto result = uploader->upload(r, cancel);
  EXPECT_EQ(flux::error_code(result.status()), "upload_failed") << result.status();
  EXPECT_EQ(result.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_TRUE(tree(root).empty()) << "left: " << ::testing::PrintToString(tree(root));
}

TEST_F(LocalUploaderTest, CancelledBeforeStartWritesNothing) {
  cancel.cancel("job cancelled");
  const auto result = uploader->upload(single("out.mp4"), cancel);
  EXPECT_EQ(flux::error_code(result.status()), "cancelled");
  EXPECT_FALSE(fs::exists(root / "out.mp4"));
}

TEST_F(LocalUploaderTest, RefusesMalformedRequests) {
  UploadRequest r = single("out.mp4");
  r.files = {"out.mp4", "out.mp4"};
  EXPECT_EQ(flux::error_code(uploader->upload(r, cancel).status()), "output_path_invalid");
  r = single("out.mp4");
  r.files = {"../../etc/passwd"};
  EXPECT_EQ(flux::error_code(uploader->upload(r, cancel).status()), "output_path_invalid");
  r = single("out.mp4");
  r.is_directory = true;
  r.main_file = "missing.m3u8";
  EXPECT_EQ(flux::error_code(uploader->upload(r, cancel).status()), "output_path_invalid");
  r = single("out.mp4");
  r.files = {};
  EXPECT_EQ(flux::error_code(uploader->upload(r, cancel).status()), "output_path_invalid");
  r = single("out.mp4");
  r.files = {"nope.mp4"};
  EXPECT_EQ(flux::error_code(uploader->upload(r, cancel).status()), "upload_failed");
}

}  // namespace
}  // namespace flux::worker::uploader
