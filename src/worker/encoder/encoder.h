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
#include "shared/process/subprocess.h"
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
  // The duration learnt later (the probe answers while ffmpeg runs).
  void set_duration(double duration_seconds) { duration_seconds_ = duration_seconds; }
  double duration() const { return duration_seconds_; }
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

// Limits on one ffmpeg run; 0 = none for each. A breach ends the encode with
// its own error code (see run_encode).
struct EncodeLimits {
  std::chrono::milliseconds max_wall{0};  // wall time, own timer: "time_limit_exceeded"
  // Bytes ffmpeg may write under output_dir: RLIMIT_FSIZE for each file plus
  // a watch of the directory's total: "output_too_large".
  uint64_t max_output_bytes = 0;
  uint64_t cpu_seconds = 0;          // RLIMIT_CPU: "cpu_limit_exceeded"
  uint64_t address_space_bytes = 0;  // RLIMIT_AS: "memory_limit_exceeded"
  int nice = 0;                      // niceness ffmpeg runs at (see process::SpawnOptions::nice)
  // Decoder's -max_pixels (width x height of any frame): the probe only sees
  // the first frames, a stream may grow later. 0 = ffmpeg's own limit.
  uint64_t max_frame_pixels = 0;
};

struct EncodeRequest {
  std::string job_id;
  std::string ffmpeg_path = "ffmpeg";
  const preset::Preset* preset = nullptr;
  std::filesystem::path input;
  // Created when missing. Must not contain '%' or '$' (they are template
  // characters for the HLS and DASH muxers).
  std::filesystem::path output_dir;
  // nullopt: not known yet (the probe runs beside ffmpeg); see
  // preset::build_output_args for what ffmpeg is then told.
  std::optional<bool> input_has_audio;
  // For percent and ETA; 0 = unknown (percent stays 0 until the end).
  double input_duration_seconds = 0;
  // When set, polled during the encode while the duration is unknown: its
  // first value > 0 becomes the duration (the probe's answer arriving late).
  std::function<double()> duration_source;
  // A stop asked by the caller for its own reasons (the probe beside ffmpeg
  // rejected the input): ffmpeg's group is killed at once and run_encode
  // returns an error whose code is stop->reason(). May be null.
  const flux::CancelToken* stop = nullptr;
  std::chrono::milliseconds progress_interval{250};
  std::chrono::milliseconds kill_grace{5000};
  EncodeLimits limits;
};

using ProgressCallback = std::function<void(const Progress&)>;

// Runs the encode to completion on the calling thread. on_progress (may be
// empty) is called at most every progress_interval, plus a final snapshot
// with ended=true and percent=100 on success.
// Errors (codes): "invalid_request" (no preset, bad output dir), "spawn_failed"
// (ffmpeg missing), cancel.reason() when cancelled ("cancelled", "timeout", ...),
// request.stop->reason() when stopped, a limit's code when ffmpeg breached one
// (see limit_breach; "time_limit_exceeded" from the wall-time timer), else
// "encode_failed" when ffmpeg fails: the message is a one-line summary (its
// last meaningful stderr line, job paths replaced by "input"/"output") and
// *stderr_tail (when given) receives its last 50 stderr lines for the log.
// Every limit's message names its variable and value.
absl::Status run_encode(const EncodeRequest& request, const ProgressCallback& on_progress,
                        const flux::CancelToken& cancel, std::vector<std::string>* stderr_tail = nullptr);

// The full ffmpeg argv (argv[0] = ffmpeg_path). Exposed for tests.
std::vector<std::string> build_ffmpeg_argv(const EncodeRequest& request);

// Whether ffmpeg's end was one of the limits, from how it ended, the bytes
// under its output directory and its last stderr lines; nullopt when not.
// The evidence per limit: output: SIGXFSZ, "File too large" (EFBIG) or a
// total above the cap; CPU: SIGXCPU, or a failure after using the whole CPU
// allowance; memory: a failure while an address-space limit was set, unless
// stderr blames the input (an allocation failure in stderr or a crash makes
// it certain; the message says when it is only likely).
std::optional<absl::Status> limit_breach(const EncodeLimits& limits, const process::ExitStatus& status,
                                         uint64_t output_bytes, const std::vector<std::string>& stderr_tail);

// Bytes in the regular files under `dir` (0 when it is missing).
uint64_t directory_bytes(const std::filesystem::path& dir);

}  // namespace flux::worker::encoder
