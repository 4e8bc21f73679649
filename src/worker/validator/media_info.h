#pragma once
// What ffprobe says about a media file, and how to ask it.
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "shared/core/cancel_token.h"

namespace flux::worker::validator {

// The streams of one file (or of one playlist/manifest read as a whole).
// The video fields describe the video stream with the largest picture (cover
// art, i.e. attached pictures, never counts); the audio fields the first
// audio stream. Zero/empty means unknown or absent.
struct MediaInfo {
  double duration_seconds = 0;
  std::string format_name;
  bool has_video = false;
  std::string video_codec;
  int width = 0, height = 0;
  double fps = 0;
  std::string pixel_format;
  bool has_audio = false;
  std::string audio_codec;
  int audio_channels = 0;
  int audio_sample_rate = 0;
  uint64_t size_bytes = 0;
  // Every video stream, in stream order (a DASH manifest or an HLS master
  // probed as a whole has one per representation/variant).
  std::vector<std::string> video_codecs;
  std::vector<int> video_widths;
  std::vector<int> video_heights;
};

// Parses the output of `ffprobe -print_format json -show_format -show_streams`.
// Pure; never throws. Errors carry code "probe_failed".
absl::StatusOr<MediaInfo> parse_ffprobe_json(std::string_view json);

struct ProbeOptions {
  std::string ffprobe_path = "ffprobe";
  // Passed as -format_whitelist when not empty.
  std::string format_whitelist;
  std::chrono::milliseconds timeout{60000};
  int nice = 0;  // niceness ffprobe runs at (see process::SpawnOptions::nice)
};

// Runs ffprobe (argv only, reading local files only: -protocol_whitelist file)
// on `path`, made absolute. Errors: "probe_failed" when ffprobe fails, times
// out or prints something unreadable (the message then holds ffprobe's first
// error line); the spawn error when ffprobe cannot be started; the cancel
// reason as code when `cancel` fires.
// The probed input against the worker's limits (0 = no limit):
// "input_too_large" when a video stream's width x height is above max_pixels
// (a decompression bomb: a tiny file declaring an enormous picture),
// "input_too_long" when the duration is above max_duration_seconds. The
// message names the variable (MAX_INPUT_PIXELS, MAX_INPUT_DURATION) and value.
absl::Status check_input_limits(const MediaInfo& info, uint64_t max_pixels, double max_duration_seconds);

absl::StatusOr<MediaInfo> probe_media(const std::filesystem::path& path, const ProbeOptions& options,
                                      const flux::CancelToken* cancel = nullptr);

}  // namespace flux::worker::validator
