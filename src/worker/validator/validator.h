#pragma once
// Checks an encode's output directory before anything is uploaded (SPEC §5,
// Validation): the files are there, the manifests parse and reference only
// files that exist, and — depending on the level — ffprobe and a full decode
// agree that the media is what the preset promised.
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "shared/core/cancel_token.h"
#include "worker/validator/dash_manifest.h"
#include "worker/validator/hls_playlist.h"
#include "worker/validator/media_info.h"

namespace flux::worker::validator {

// minimal: every file exists, is not empty, every manifest parses and every
//          file it references is there.
// standard: minimal + ffprobe: expected video codec and heights, audio present
//          if and only if expected, duration within max(2 s, 2 %).
// strict:  standard + a full decode of every stream with ffmpeg -xerror.
enum class Level { kMinimal, kStandard, kStrict };

// "minimal" | "standard" | "strict" (any case). Error code "validation_level_invalid".
absl::StatusOr<Level> parse_level(std::string_view text);
std::string_view level_name(Level level);

enum class OutputKind { kSingle, kHls, kDash };

struct ValidationRequest {
  Level level = Level::kStandard;
  OutputKind kind = OutputKind::kSingle;
  std::filesystem::path output_dir;
  // Relative to output_dir: "output.mp4" | "playlist.m3u8" | "master.m3u8" | "manifest.mpd".
  std::string main_file;
  // Empty = not checked.
  std::string expected_video_codec = "h264";
  // One per variant/representation (every one must be found), one for a
  // single file; empty = not checked.
  std::vector<int> expected_heights;
  bool expect_audio = false;
  // 0 = not checked.
  double expected_duration_seconds = 0;
  std::string ffprobe_path = "ffprobe", ffmpeg_path = "ffmpeg";
  std::chrono::milliseconds probe_timeout{60000};
  std::chrono::milliseconds decode_timeout{std::chrono::hours(4)};
};

struct ValidatedFile {
  std::filesystem::path relative;  // to output_dir
  uint64_t size_bytes = 0;
};

struct ValidationResult {
  // Of the main file, or of the highest variant/representation (for DASH: of
  // the manifest as a whole, with every representation in video_heights).
  // Empty at level minimal.
  MediaInfo media;
  // Every regular file under output_dir, recursively, sorted by path: what to upload.
  std::vector<ValidatedFile> files;
  uint64_t total_bytes = 0;
};

// Validates request.output_dir. A defect in the output is an error with code
// "validation_failed" and a message that names the file and the mismatch
// ("expected height 720, got 718"; "segment segment_003.ts listed in
// stream_1/playlist.m3u8 is missing"). A symlink, or anything other than a
// regular file or directory, anywhere under output_dir is a defect; so is a
// manifest reference that leaves output_dir. When `cancel` fires the error's
// code is its reason; a tool that cannot be started keeps its spawn error.
absl::StatusOr<ValidationResult> validate_output(const ValidationRequest& request, const flux::CancelToken& cancel);

}  // namespace flux::worker::validator
