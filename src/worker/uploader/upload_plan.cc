#include "worker/uploader/upload_plan.h"

#include <algorithm>
#include <cctype>
#include <optional>

#include "shared/core/error.h"

namespace flux::worker::uploader {
namespace {

absl::Status invalid_path(const std::string& message) { return flux::invalid_argument("output_path_invalid", message); }

std::string lower_extension(std::string_view filename) {
  const size_t slash = filename.find_last_of('/');
  if (slash != std::string_view::npos) filename.remove_prefix(slash + 1);
  const size_t dot = filename.find_last_of('.');
  if (dot == std::string_view::npos) return "";
  std::string ext(filename.substr(dot + 1));
  std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return std::tolower(c); });
  return ext;
}

bool has_dot_dot_segment(std::string_view path) {
  size_t start = 0;
  while (start <= path.size()) {
    const size_t end = std::min(path.find('/', start), path.size());
    if (path.substr(start, end - start) == "..") return true;
    start = end + 1;
  }
  return false;
}

}  // namespace

absl::Status check_destination(std::string_view path) {
  if (path.empty()) return invalid_path("output path is empty");
  if (path.size() > 1024) return invalid_path("output path is longer than 1024 bytes");
  if (path.front() == '/') return invalid_path("output path must be relative: " + std::string(path));
  if (path.find('\\') != std::string_view::npos) return invalid_path("output path contains a backslash");
  if (std::any_of(path.begin(), path.end(), [](unsigned char c) { return c < 0x20 || c == 0x7f; })) {
    return invalid_path("output path contains a control character");
  }
  if (has_dot_dot_segment(path)) return invalid_path("output path contains a '..' segment: " + std::string(path));
  return absl::OkStatus();
}

std::string content_type_for(std::string_view filename) {
  const std::string ext = lower_extension(filename);
  if (ext == "m3u8") return "application/vnd.apple.mpegurl";
  if (ext == "ts") return "video/mp2t";
  if (ext == "mp4") return "video/mp4";
  if (ext == "mpd") return "application/dash+xml";
  if (ext == "m4s") return "video/iso.segment";
  if (ext == "m4a") return "audio/mp4";
  if (ext == "aac") return "audio/aac";
  if (ext == "webm") return "video/webm";
  if (ext == "mkv") return "video/x-matroska";
  if (ext == "mov") return "video/quicktime";
  if (ext == "vtt") return "text/vtt";
  if (ext == "json") return "application/json";
  if (ext == "jpg" || ext == "jpeg") return "image/jpeg";
  if (ext == "png") return "image/png";
  return "application/octet-stream";
}

std::string cache_control_for(std::string_view filename) {
  const std::string ext = lower_extension(filename);
  if (ext == "m3u8" || ext == "mpd") return "no-cache";
  if (ext == "ts" || ext == "m4s" || ext == "m4a" || ext == "aac" || ext == "vtt") {
    return "max-age=31536000, immutable";
  }
  return "";
}

namespace internal {

absl::Status upload_failed(std::string_view key, const absl::Status& cause) {
  return flux::make_error(absl::StatusCode::kUnavailable, "upload_failed",
                          "uploading " + std::string(key) + ": " + std::string(cause.message()));
}

absl::Status upload_cancelled(const flux::CancelToken& cancel) {
  return flux::make_error(absl::StatusCode::kCancelled, "cancelled", "upload cancelled: " + cancel.reason());
}

absl::StatusOr<std::vector<PlannedFile>> plan_upload(const UploadRequest& request) {
  if (absl::Status s = check_destination(request.destination); !s.ok()) return s;
  if (request.files.empty()) return invalid_path("no output files to upload");
  if (!request.is_directory) {
    if (request.files.size() != 1) return invalid_path("a single-file output must have exactly one file");
    if (request.destination.back() == '/') return invalid_path("a single-file output path must name a file");
  }
  std::string prefix = request.destination;
  while (!prefix.empty() && prefix.back() == '/') prefix.pop_back();

  std::vector<PlannedFile> plan;
  std::optional<PlannedFile> main;
  const std::string main_file = std::filesystem::path(request.main_file).lexically_normal().generic_string();
  if (request.is_directory && main_file.empty()) return invalid_path("a directory output needs a main file");
  for (const auto& file : request.files) {
    const std::filesystem::path relative = file.lexically_normal();
    const std::string rel = relative.generic_string();
    if (rel.empty() || relative.is_absolute() || check_destination(rel).code() != absl::StatusCode::kOk) {
      return invalid_path("output file is not a plain relative path: " + file.string());
    }
    PlannedFile planned;
    planned.source = request.source_dir / relative;
    planned.key = request.is_directory ? prefix + "/" + rel : request.destination;
    if (absl::Status s = check_destination(planned.key); !s.ok()) return s;
    // Only regular files: a symlink in the job's output could point at any file the worker can read.
    std::error_code ec;
    const auto status = std::filesystem::symlink_status(planned.source, ec);
    if (ec || !std::filesystem::is_regular_file(status)) {
      return upload_failed(planned.key, flux::not_found("output_missing",
                                                        planned.source.string() + " is missing or not a regular file"));
    }
    planned.size = std::filesystem::file_size(planned.source, ec);
    if (ec) return upload_failed(planned.key, flux::internal_error("output_unreadable", ec.message()));
    if (!request.is_directory || rel == main_file) {
      if (main) return invalid_path("output file listed twice: " + rel);
      main = std::move(planned);
    } else {
      plan.push_back(std::move(planned));
    }
  }
  if (!main) return invalid_path("main file " + request.main_file + " is not among the output files");
  plan.push_back(std::move(*main));
  return plan;
}

}  // namespace internal
}  // namespace flux::worker::uploader
