#pragma once
// Delivering a job's output files to storage: a local directory or S3. Either
// the whole output lands or none of it does: on failure what was already
// written for the job is removed.
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "shared/core/cancel_token.h"
#include "shared/s3/s3_client.h"

namespace flux::worker::uploader {

struct UploadRequest {
  std::string job_id;
  std::filesystem::path source_dir;          // the job's output dir
  std::vector<std::filesystem::path> files;  // relative to source_dir; exactly one unless is_directory
  std::string destination;                   // the client's output.path: a relative key (see check_destination)
  // HLS/DASH: `destination` is a prefix and files keep their relative paths
  // under it; otherwise the single file is stored at `destination` itself.
  bool is_directory = false;
  std::string main_file;                        // relative path of the file output_url points at (playlist/manifest)
  std::map<std::string, std::string> metadata;  // S3: x-amz-meta-*
};

struct UploadedFile {
  std::string key;  // destination key ("out/job1/master.m3u8")
  uint64_t size_bytes = 0;
  std::string url;
};

struct UploadResult {
  std::string output_url;  // URL of the main file
  std::vector<UploadedFile> files;
  uint64_t total_bytes = 0;
};

// Implementations are thread-safe: several jobs may upload at once.
//
// Errors: a bad request or destination → kInvalidArgument
// "output_path_invalid"; any storage failure → kUnavailable "upload_failed"
// (the cause in the message); cancellation → kCancelled "cancelled". In every
// failure case no file of the job is left at the destination.
class Uploader {
 public:
  virtual ~Uploader() = default;
  virtual std::string_view storage_type() const = 0;  // "local" | "s3"
  virtual absl::StatusOr<UploadResult> upload(const UploadRequest& request, const flux::CancelToken& cancel) = 0;
};

// Files under `root` (created when missing), each written to a temporary file
// in its final directory, fsynced and renamed into place. Nothing is ever
// written outside `root`, symlinks included. output_url is "file://" + the
// absolute path.
std::unique_ptr<Uploader> make_local_uploader(std::filesystem::path root);

// Objects in `bucket`, Content-Type and Cache-Control by extension, up to
// `parallel_files` files at once; the main file goes last, so output_url only
// exists once everything it references does.
std::unique_ptr<Uploader> make_s3_uploader(std::shared_ptr<s3::S3Client> client, std::string bucket,
                                           int parallel_files = 4);

// A destination key must be non-empty, at most 1024 bytes, relative (no
// leading '/'), without a '..' segment, backslash or control character.
// Error code "output_path_invalid".
absl::Status check_destination(std::string_view path);

// "application/vnd.apple.mpegurl" for .m3u8, "video/mp2t" for .ts, "video/mp4"
// for .mp4, "application/dash+xml" for .mpd, "video/iso.segment" for .m4s, ...;
// "application/octet-stream" when unknown.
std::string content_type_for(std::string_view filename);
// "no-cache" for playlists and manifests (they change while players poll),
// "max-age=31536000, immutable" for segments (never rewritten under the same
// name), "" otherwise (a standalone file may be re-encoded to the same key).
std::string cache_control_for(std::string_view filename);

}  // namespace flux::worker::uploader
