#pragma once
// Real media for the validator tests, made with ffmpeg's lavfi sources in a
// temporary directory that is removed afterwards.
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "shared/process/subprocess.h"

namespace flux::worker::validator::testing {

namespace fs = std::filesystem;

class TempDir {
 public:
  TempDir() {
    std::string pattern = (fs::temp_directory_path() / "flux-validator-XXXXXX").string();
    if (char* made = ::mkdtemp(pattern.data())) path_ = made;
  }
  ~TempDir() {
    std::error_code ec;
    if (!path_.empty()) fs::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

// Runs ffmpeg quietly with `args`; an error holds its stderr.
inline absl::Status ffmpeg(std::vector<std::string> args) {
  std::vector<std::string> argv = {"ffmpeg", "-nostdin", "-v", "error", "-y"};
  argv.insert(argv.end(), args.begin(), args.end());
  auto run = process::run(argv, std::chrono::seconds(60));
  if (!run.ok()) return run.status();
  if (!run->status.ok()) return absl::InternalError("ffmpeg failed: " + run->err);
  return absl::OkStatus();
}

// A 320x240 25 fps test pattern, `seconds` long, with a 440 Hz tone when `audio`.
inline std::vector<std::string> lavfi_inputs(double seconds, bool audio) {
  std::vector<std::string> args = {"-t", std::to_string(seconds), "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25"};
  if (audio) {
    std::vector<std::string> tone = {
        "-t", std::to_string(seconds), "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"};
    args.insert(args.end(), tone.begin(), tone.end());
  }
  return args;
}

inline std::vector<std::string> concat(std::vector<std::string> a, const std::vector<std::string>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

// Fast H.264 with a keyframe every second so that 1 s segments cut cleanly.
inline const std::vector<std::string> kFastH264 = {"-c:v",     "libx264",     "-preset", "ultrafast",     "-g",
                                                   "25",       "-keyint_min", "25",      "-sc_threshold", "0",
                                                   "-pix_fmt", "yuv420p"};

// dir/output.mp4 (moov first, so that a truncated copy still probes).
inline absl::Status make_mp4(const fs::path& dir, double seconds, bool audio) {
  fs::create_directories(dir);
  auto args = concat(lavfi_inputs(seconds, audio), kFastH264);
  if (audio) args = concat(args, {"-c:a", "aac", "-b:a", "64k"});
  return ffmpeg(concat(args, {"-movflags", "+faststart", (dir / "output.mp4").string()}));
}

// dir/playlist.m3u8 + dir/segment_NNN.ts, 1 s segments.
inline absl::Status make_hls(const fs::path& dir, double seconds) {
  fs::create_directories(dir);
  auto args = concat(lavfi_inputs(seconds, true), kFastH264);
  return ffmpeg(
      concat(args, {"-c:a", "aac", "-b:a", "64k", "-f", "hls", "-hls_time", "1", "-hls_playlist_type", "vod",
                    "-hls_segment_filename", (dir / "segment_%03d.ts").string(), (dir / "playlist.m3u8").string()}));
}

// dir/master.m3u8 with variants stream_0 (240p) and stream_1 (120p), each with audio.
inline absl::Status make_hls_abr(const fs::path& dir, double seconds) {
  fs::create_directories(dir);
  auto args = concat(lavfi_inputs(seconds, true),
                     {"-filter_complex", "[0:v]split=2[a][b];[a]scale=-2:240[v0];[b]scale=-2:120[v1]", "-map", "[v0]",
                      "-map", "[v1]", "-map", "1:a", "-map", "1:a"});
  args = concat(args, kFastH264);
  return ffmpeg(concat(args, {"-b:v:0",
                              "300k",
                              "-b:v:1",
                              "100k",
                              "-c:a",
                              "aac",
                              "-b:a",
                              "64k",
                              "-f",
                              "hls",
                              "-hls_time",
                              "1",
                              "-hls_playlist_type",
                              "vod",
                              "-master_pl_name",
                              "master.m3u8",
                              "-var_stream_map",
                              "v:0,a:0 v:1,a:1",
                              "-hls_segment_filename",
                              (dir / "stream_%v/segment_%03d.ts").string(),
                              (dir / "stream_%v/playlist.m3u8").string()}));
}

// dir/manifest.mpd with 240p and 120p video representations and one audio.
inline absl::Status make_dash(const fs::path& dir, double seconds) {
  fs::create_directories(dir);
  auto args = concat(lavfi_inputs(seconds, true),
                     {"-filter_complex", "[0:v]split=2[a][b];[a]scale=-2:240[v0];[b]scale=-2:120[v1]", "-map", "[v0]",
                      "-map", "[v1]", "-map", "1:a"});
  args = concat(args, kFastH264);
  return ffmpeg(concat(args, {"-b:v:0", "300k", "-b:v:1", "100k", "-c:a", "aac", "-b:a", "64k", "-f", "dash",
                              "-seg_duration", "1", "-use_template", "1", "-use_timeline", "1", "-adaptation_sets",
                              "id=0,streams=v id=1,streams=a", (dir / "manifest.mpd").string()}));
}

}  // namespace flux::worker::validator::testing
