#pragma once
// Runs ffmpeg for one job: argv built from the preset alone, the child in its
// own process group, progress read from "-progress pipe:3", cancellation by
// SIGTERM then SIGKILL to the group.
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "shared/core/cancel_token.h"
#include "worker/preset/preset.h"

namespace flux::worker::encoder {

struct Progress {
  double percent = 0;       // 0..100, never decreasing
  double fps = 0;           // frames encoded per second (0 when unknown)
  double speed = 0;         // media seconds per wall second (0 when unknown)
  double eta_seconds = -1;  // -1 when unknown
  int64_t out_time_us = 0;  // media time encoded so far
  bool ended = false;       // ffmpeg's last block (progress=end)
};

// Parses ffmpeg's "-progress" output: blocks of key=value lines, each closed
// by progress=continue or progress=end. "N/A" values leave the field as it was.
class ProgressParser {
 public:
  // duration_seconds <= 0 (unknown): percent stays 0 until the end block.
  explicit ProgressParser(double duration_seconds);
  // A snapshot when the line closes a block, nullopt otherwise.
  std::optional<Progress> feed_line(std::string_view line);
  const Progress& current() const { return current_; }

 private:
  double duration_seconds_;
  Progress current_;
};

// The demuxers ffmpeg may use on an untrusted input: media containers only.
// No hls, dash, concat/ffconcat, image sequences, sdp/rtp or other formats
// that open further files or URLs named inside the input.
inline constexpr char kInputFormatWhitelist[] =
    "mov,mp4,m4a,3gp,3g2,mj2,matroska,webm,avi,flv,mpegts,mpeg,ogg,wav,mp3,aac,flac,asf,mxf";

struct EncodeRequest {
  std::string job_id;
  std::string ffmpeg_path = "ffmpeg";
  const preset::Preset* preset = nullptr;
  std::filesystem::path input;
  // Created when missing. Must not contain '%' or '$' (they are template
  // characters for the HLS and DASH muxers).
  std::filesystem::path output_dir;
  bool input_has_audio = false;
  double input_duration_seconds = 0;
  std::chrono::milliseconds progress_interval{250};
  std::chrono::milliseconds kill_grace{5000};
  // Limits for the ffmpeg process; 0 = none.
  uint64_t cpu_seconds = 0;
  uint64_t max_output_file_bytes = 0;
  uint64_t address_space_bytes = 0;
  int nice = 0;
};

using ProgressCallback = std::function<void(const Progress&)>;

// Runs the encode to completion on the calling thread. on_progress (may be
// empty) is called at most every progress_interval, plus a final snapshot
// with ended=true and percent=100 on success.
// Errors (codes): "invalid_request" (no preset, bad output dir), "spawn_failed"
// (ffmpeg missing), cancel.reason() when cancelled ("cancelled", "timeout", ...),
// "encode_failed" when ffmpeg fails: the message is a one-line summary (its
// last meaningful stderr line, job paths replaced by "input"/"output") and
// *stderr_tail (when given) receives its last 50 stderr lines for the log.
absl::Status run_encode(const EncodeRequest& request, const ProgressCallback& on_progress,
                        const flux::CancelToken& cancel, std::vector<std::string>* stderr_tail = nullptr);

// The full ffmpeg argv (argv[0] = ffmpeg_path). Exposed for tests.
std::vector<std::string> build_ffmpeg_argv(const EncodeRequest& request);

}  // namespace flux::worker::encoder
