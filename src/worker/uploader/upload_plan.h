#pragma once
// Internal to the uploaders: turning an UploadRequest into checked
// (source file, destination key) pairs.
#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "worker/uploader/uploader.h"

namespace flux::worker::uploader::internal {

struct PlannedFile {
  std::filesystem::path source;  // absolute or as given, a regular file
  std::string key;               // checked destination key
  uint64_t size = 0;
};

// Every file checked (relative, inside source_dir, a regular file and not a
// symlink) and its key computed; the main file last. Invalid requests fail
// with "output_path_invalid", missing sources with "upload_failed".
absl::StatusOr<std::vector<PlannedFile>> plan_upload(const UploadRequest& request);

// kUnavailable "upload_failed": "uploading <key>: <cause>".
absl::Status upload_failed(std::string_view key, const absl::Status& cause);

// The status to return when `cancel` fired: kCancelled "cancelled".
absl::Status upload_cancelled(const flux::CancelToken& cancel);

}  // namespace flux::worker::uploader::internal
