#pragma once
// Encoding presets. A preset is structured data (heights, bitrates, output
// type); only code in this module turns it into ffmpeg arguments, so a
// presets file can never smuggle arbitrary ffmpeg options in.
//
// Output layouts (inside the job's output directory):
//   single: output.mp4
//   hls, one variant: playlist.m3u8 + segment_000.ts ...
//   hls, several variants: master.m3u8 + stream_<i>/playlist.m3u8 + stream_<i>/segment_000.ts ...
//   dash: manifest.mpd + init-<rep>.m4s + chunk-<rep>-00001.m4s ...
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace flux::worker::preset {

enum class OutputType { kSingle, kHls, kDash };

// "single" | "hls" | "dash".
std::string_view to_string(OutputType type);
// Error code "preset_type_unknown" for anything else.
absl::StatusOr<OutputType> parse_output_type(std::string_view text);

// One rendition. Heights are even; a bitrate of 0 means constant-quality (CRF).
struct Variant {
  int height = 0;
  int video_bitrate_kbps = 0;
  int audio_bitrate_kbps = 128;
};

struct Preset {
  std::string name;
  std::string description;
  OutputType type = OutputType::kSingle;
  std::string extension;             // "mp4" | "m3u8" | "mpd"
  std::string main_file;             // "output.mp4" | "playlist.m3u8" | "master.m3u8" | "manifest.mpd"
  std::string video_codec = "h264";  // as ffprobe names it
  std::string x264_preset = "medium";
  int crf = 23;                   // used when a variant's video_bitrate_kbps == 0
  bool audio = true;              // audio wanted when the input has any
  int segment_seconds = 6;        // hls / dash
  std::vector<Variant> variants;  // >= 1; the first is the highest

  // Where the variant's playlist lives, relative to the output dir (HLS with
  // several variants only): "stream_<i>/playlist.m3u8".
  std::string variant_playlist(size_t index) const;
};

// Fills extension and main_file from type and variant count.
void derive_output_names(Preset& preset);

class Catalog {
 public:
  // The presets of SPEC §6.
  static Catalog builtin();

  // Adds presets from a YAML or JSON file (JSON when the extension is .json
  // or the content starts with '{' or '['), replacing same-named ones. The
  // whole file is validated before anything changes; any problem gives error
  // code "presets_file_invalid" with a message naming the preset and field.
  //
  // Shape: {"presets": [ {name, description?, type, x264_preset?, crf?,
  //          audio?, segment_seconds?, video_codec?, variants: [{height,
  //          video_bitrate_kbps?, audio_bitrate_kbps?}, ...]}, ...]}
  // (a bare list of presets is accepted too). Unknown fields are errors.
  absl::Status merge_file(const std::filesystem::path& file);
  // Same, from text; `origin` names it in errors.
  absl::Status merge_text(std::string_view text, bool json, std::string_view origin);

  // nullptr when unknown. Pointers stay valid until the next merge.
  const Preset* find(std::string_view name) const;
  // Sorted by name.
  std::vector<const Preset*> all() const;

 private:
  std::map<std::string, Preset, std::less<>> presets_;
};

// True when the preset's ffmpeg arguments depend on whether the input has
// audio: HLS with several variants (-var_stream_map) and DASH
// (-adaptation_sets) name the audio streams, and ffmpeg refuses a name that
// matches nothing. Every other preset maps audio optionally ("0:a:0?").
bool output_args_depend_on_audio(const Preset& preset);

// The ffmpeg arguments after "-i <input>": filters, maps, codecs, muxer
// options and output path(s) inside output_dir. Without input audio (or for a
// preset without audio) no audio is mapped and the output has none.
// input_has_audio nullopt (not probed yet): audio is mapped optionally, so
// the output has audio exactly when the input does; for presets where
// output_args_depend_on_audio() that is impossible and the input is assumed
// to have audio (ffmpeg then fails at once on an input without any).
std::vector<std::string> build_output_args(const Preset& preset, const std::filesystem::path& output_dir,
                                           std::optional<bool> input_has_audio);

// output_dir / preset.main_file.
std::filesystem::path main_output_path(const Preset& preset, const std::filesystem::path& output_dir);

}  // namespace flux::worker::preset
