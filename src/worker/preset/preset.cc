#include "worker/preset/preset.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>
#include <regex>
#include <set>
#include <sstream>

#include "shared/core/error.h"

namespace flux::worker::preset {
namespace {

using nlohmann::json;

constexpr size_t kMaxFileBytes = 1 << 20;
constexpr size_t kMaxPresetsPerFile = 256;
constexpr size_t kMaxVariants = 8;
constexpr size_t kMaxDescription = 500;
constexpr std::array<std::string_view, 10> kX264Presets = {"ultrafast", "superfast", "veryfast", "faster",   "fast",
                                                           "medium",    "slow",      "slower",   "veryslow", "placebo"};

Preset make_builtin(std::string name, std::string description, OutputType type, std::string x264_preset, int crf,
                    bool audio, int segment_seconds, std::vector<Variant> variants) {
  Preset p;
  p.name = std::move(name);
  p.description = std::move(description);
  p.type = type;
  p.x264_preset = std::move(x264_preset);
  p.crf = crf;
  p.audio = audio;
  p.segment_seconds = segment_seconds;
  p.variants = std::move(variants);
  derive_output_names(p);
  return p;
}

// ---- arguments ---------------------------------------------------------------

std::string kbps(int value) { return std::to_string(value) + "k"; }

// Even width for the height (-2), and 8-bit 4:2:0 whatever the input, which
// is what browsers' H.264 decoders accept.
std::string scale_chain(int height) { return "scale=-2:" + std::to_string(height) + ",format=yuv420p"; }

// Rate control for one variant; `spec` is "" for the only video stream or
// ":v:<i>" to address one of several.
void add_rate_control(std::vector<std::string>& args, const Preset& p, const Variant& v, const std::string& spec) {
  if (v.video_bitrate_kbps > 0) {
    const int maxrate = static_cast<int>(std::lround(v.video_bitrate_kbps * 1.07));
    const int bufsize = static_cast<int>(std::lround(v.video_bitrate_kbps * 1.5));
    args.insert(args.end(), {"-b" + spec, kbps(v.video_bitrate_kbps), "-maxrate" + spec, kbps(maxrate),
                             "-bufsize" + spec, kbps(bufsize)});
  } else {
    args.insert(args.end(), {"-crf" + spec, std::to_string(p.crf)});
  }
}

void add_video_codec(std::vector<std::string>& args, const Preset& p) {
  args.insert(args.end(), {"-c:v", "libx264", "-preset", p.x264_preset, "-profile:v", "high", "-pix_fmt", "yuv420p"});
  if (p.type != OutputType::kSingle) {
    // A keyframe at every segment boundary so segments come out close to
    // segment_seconds and variants stay aligned for switching.
    args.insert(args.end(), {"-force_key_frames", "expr:gte(t,n_forced*" + std::to_string(p.segment_seconds) + ")"});
  }
}

std::string path_in(const std::filesystem::path& dir, std::string_view name) { return (dir / name).string(); }

// Several variants: one decode, split and scaled once per variant.
void add_split_video(std::vector<std::string>& args, const Preset& p) {
  const size_t n = p.variants.size();
  std::string graph = "[0:v:0]split=" + std::to_string(n);
  for (size_t i = 0; i < n; ++i) graph += "[s" + std::to_string(i) + "]";
  for (size_t i = 0; i < n; ++i) {
    graph += ";[s" + std::to_string(i) + "]" + scale_chain(p.variants[i].height) + "[v" + std::to_string(i) + "]";
  }
  args.insert(args.end(), {"-filter_complex", graph});
  for (size_t i = 0; i < n; ++i) args.insert(args.end(), {"-map", "[v" + std::to_string(i) + "]"});
}

void add_stereo_aac(std::vector<std::string>& args) { args.insert(args.end(), {"-c:a", "aac", "-ac", "2"}); }

// ---- presets files -----------------------------------------------------------

json yaml_to_json(const YAML::Node& node) {
  switch (node.Type()) {
    case YAML::NodeType::Sequence: {
      json out = json::array();
      for (const auto& item : node) out.push_back(yaml_to_json(item));
      return out;
    }
    case YAML::NodeType::Map: {
      json out = json::object();
      for (const auto& item : node) out[item.first.as<std::string>()] = yaml_to_json(item.second);
      return out;
    }
    case YAML::NodeType::Scalar: {
      const std::string& text = node.Scalar();
      if (node.Tag() == "!") return text;  // quoted: always a string
      static const std::regex kInteger("[-+]?[0-9]+");
      static const std::regex kFloat("[-+]?([0-9]+\\.[0-9]*|\\.[0-9]+)([eE][-+]?[0-9]+)?");
      if (text == "true" || text == "True" || text == "TRUE") return true;
      if (text == "false" || text == "False" || text == "FALSE") return false;
      if (text == "null" || text == "~" || text.empty()) return nullptr;
      if (std::regex_match(text, kInteger) && text.size() < 18) return std::stoll(text);
      if (std::regex_match(text, kFloat)) return std::stod(text);
      return text;
    }
    default:
      return nullptr;
  }
}

// Collects the context of a validation error: file, preset, field.
class PresetReader {
 public:
  PresetReader(std::string_view origin, std::string preset_label, const json& object)
      : origin_(origin), label_(std::move(preset_label)), object_(object) {}

  absl::Status error(std::string_view field, std::string_view problem) const {
    return invalid_argument("presets_file_invalid", std::string(origin_) + ": preset " + label_ + ": field '" +
                                                        std::string(field) + "': " + std::string(problem));
  }
  void set_label(std::string label) { label_ = std::move(label); }

  const json* get(const json& obj, std::string_view key) const {
    auto it = obj.find(std::string(key));
    return it == obj.end() || it->is_null() ? nullptr : &*it;
  }

  absl::Status read_int(const json& obj, std::string_view key, std::string_view field, int min, int max, bool required,
                        int& out) const {
    const json* value = get(obj, key);
    if (value == nullptr) return required ? error(field, "is required") : absl::OkStatus();
    if (!value->is_number_integer()) return error(field, "must be an integer");
    int64_t n = value->get<int64_t>();
    if (n < min || n > max) {
      return error(field, "must be between " + std::to_string(min) + " and " + std::to_string(max) + " (got " +
                              std::to_string(n) + ")");
    }
    out = static_cast<int>(n);
    return absl::OkStatus();
  }

  absl::Status read_string(const json& obj, std::string_view key, bool required, std::string& out) const {
    const json* value = get(obj, key);
    if (value == nullptr) return required ? error(key, "is required") : absl::OkStatus();
    if (!value->is_string()) return error(key, "must be a string");
    out = value->get<std::string>();
    return absl::OkStatus();
  }

  absl::Status check_keys(const json& obj, std::string_view where, const std::set<std::string_view>& allowed) const {
    for (const auto& [key, value] : obj.items()) {
      if (!allowed.contains(key)) return error(std::string(where) + key, "unknown field");
    }
    return absl::OkStatus();
  }

  const json& object() const { return object_; }

 private:
  std::string_view origin_;
  std::string label_;
  const json& object_;
};

absl::StatusOr<Preset> parse_preset(const json& item, size_t index, std::string_view origin) {
  PresetReader r(origin, "#" + std::to_string(index + 1), item);
  if (!item.is_object()) return r.error("", "must be a mapping");
  Preset p;
  if (auto s = r.read_string(item, "name", true, p.name); !s.ok()) return s;
  static const std::regex kName("[a-z0-9_]{1,64}");
  if (!std::regex_match(p.name, kName)) return r.error("name", "must match [a-z0-9_]{1,64}");
  r.set_label("'" + p.name + "'");

  if (auto s = r.check_keys(
          item, "",
          {"name", "description", "type", "video_codec", "x264_preset", "crf", "audio", "segment_seconds", "variants"});
      !s.ok()) {
    return s;
  }
  if (auto s = r.read_string(item, "description", false, p.description); !s.ok()) return s;
  if (p.description.size() > kMaxDescription) return r.error("description", "is too long");

  std::string type_text;
  if (auto s = r.read_string(item, "type", true, type_text); !s.ok()) return s;
  auto type = parse_output_type(type_text);
  if (!type.ok()) return r.error("type", "must be single, hls or dash (got '" + type_text + "')");
  p.type = *type;

  if (auto s = r.read_string(item, "video_codec", false, p.video_codec); !s.ok()) return s;
  if (p.video_codec != "h264") return r.error("video_codec", "only h264 is supported");
  if (auto s = r.read_string(item, "x264_preset", false, p.x264_preset); !s.ok()) return s;
  if (std::find(kX264Presets.begin(), kX264Presets.end(), p.x264_preset) == kX264Presets.end()) {
    return r.error("x264_preset", "must be an x264 preset name (ultrafast ... placebo)");
  }
  if (auto s = r.read_int(item, "crf", "crf", 0, 51, false, p.crf); !s.ok()) return s;
  if (const json* audio = r.get(item, "audio")) {
    if (!audio->is_boolean()) return r.error("audio", "must be true or false");
    p.audio = audio->get<bool>();
  }
  p.segment_seconds = p.type == OutputType::kDash ? 4 : 6;
  if (auto s = r.read_int(item, "segment_seconds", "segment_seconds", 1, 60, false, p.segment_seconds); !s.ok()) {
    return s;
  }

  const json* variants = r.get(item, "variants");
  if (variants == nullptr) return r.error("variants", "is required");
  if (!variants->is_array() || variants->empty()) return r.error("variants", "must be a non-empty list");
  if (variants->size() > kMaxVariants) return r.error("variants", "at most 8 variants");
  if (p.type == OutputType::kSingle && variants->size() != 1) {
    return r.error("variants", "a single-file output has exactly one variant");
  }
  for (size_t i = 0; i < variants->size(); ++i) {
    const json& v = (*variants)[i];
    const std::string field = "variants[" + std::to_string(i) + "]";
    if (!v.is_object()) return r.error(field, "must be a mapping");
    if (auto s = r.check_keys(v, field + ".", {"height", "video_bitrate_kbps", "audio_bitrate_kbps"}); !s.ok()) {
      return s;
    }
    Variant variant;
    variant.audio_bitrate_kbps = p.audio ? 128 : 0;
    if (auto s = r.read_int(v, "height", field + ".height", 144, 4320, true, variant.height); !s.ok()) return s;
    if (variant.height % 2 != 0) {
      return r.error(field + ".height", "must be even (got " + std::to_string(variant.height) + ")");
    }
    if (i > 0 && variant.height >= p.variants.back().height) {
      return r.error(field + ".height", "variants must be listed from the highest to the lowest height");
    }
    if (auto s = r.read_int(v, "video_bitrate_kbps", field + ".video_bitrate_kbps", 0, 100000, false,
                            variant.video_bitrate_kbps);
        !s.ok()) {
      return s;
    }
    if (variant.video_bitrate_kbps != 0 && variant.video_bitrate_kbps < 100) {
      return r.error(field + ".video_bitrate_kbps", "must be 0 (constant quality) or at least 100");
    }
    if (auto s = r.read_int(v, "audio_bitrate_kbps", field + ".audio_bitrate_kbps", p.audio ? 32 : 0, 512, false,
                            variant.audio_bitrate_kbps);
        !s.ok()) {
      return s;
    }
    p.variants.push_back(variant);
  }
  derive_output_names(p);
  return p;
}

absl::StatusOr<json> parse_document(std::string_view text, bool as_json, std::string_view origin) {
  auto invalid = [origin](std::string_view why) {
    return invalid_argument("presets_file_invalid", std::string(origin) + ": " + std::string(why));
  };
  try {
    if (as_json) return json::parse(text);
    YAML::Node root = YAML::Load(std::string(text));
    return yaml_to_json(root);
  } catch (const json::exception& e) {
    return invalid(std::string("not valid JSON: ") + e.what());
  } catch (const YAML::Exception& e) {
    return invalid(std::string("not valid YAML: ") + e.what());
  } catch (const std::exception& e) {
    return invalid(std::string("unreadable: ") + e.what());
  }
}

}  // namespace

std::string_view to_string(OutputType type) {
  switch (type) {
    case OutputType::kSingle:
      return "single";
    case OutputType::kHls:
      return "hls";
    case OutputType::kDash:
      return "dash";
  }
  return "single";
}

absl::StatusOr<OutputType> parse_output_type(std::string_view text) {
  if (text == "single") return OutputType::kSingle;
  if (text == "hls") return OutputType::kHls;
  if (text == "dash") return OutputType::kDash;
  return invalid_argument("preset_type_unknown", "unknown output type '" + std::string(text) + "'");
}

std::string Preset::variant_playlist(size_t index) const {
  return "stream_" + std::to_string(index) + "/playlist.m3u8";
}

void derive_output_names(Preset& preset) {
  switch (preset.type) {
    case OutputType::kSingle:
      preset.extension = "mp4";
      preset.main_file = "output.mp4";
      break;
    case OutputType::kHls:
      preset.extension = "m3u8";
      preset.main_file = preset.variants.size() > 1 ? "master.m3u8" : "playlist.m3u8";
      break;
    case OutputType::kDash:
      preset.extension = "mpd";
      preset.main_file = "manifest.mpd";
      break;
  }
}

Catalog Catalog::builtin() {
  Catalog c;
  const std::vector<Variant> abr = {{720, 2800, 128}, {480, 1400, 128}, {360, 800, 96}};
  const std::vector<Variant> abr_video_only = {{720, 2800, 0}, {480, 1400, 0}, {360, 800, 0}};
  for (Preset& p : std::vector<Preset>{
           make_builtin("720p_h264", "720p H.264 MP4 (CRF 23, AAC 128k)", OutputType::kSingle, "medium", 23, true, 6,
                        {{720, 0, 128}}),
           make_builtin("1080p_h264", "1080p H.264 MP4 (CRF 23, AAC 192k)", OutputType::kSingle, "medium", 23, true, 6,
                        {{1080, 0, 192}}),
           make_builtin("480p_h264", "480p H.264 MP4 (fast, CRF 24, AAC 96k)", OutputType::kSingle, "fast", 24, true, 6,
                        {{480, 0, 96}}),
           make_builtin("hls_720p", "HLS 720p H.264 2500k + AAC 128k, 6 s segments", OutputType::kHls, "medium", 23,
                        true, 6, {{720, 2500, 128}}),
           make_builtin("hls_720p_video_only", "HLS 720p H.264 2500k, no audio, 6 s segments", OutputType::kHls,
                        "medium", 23, false, 6, {{720, 2500, 0}}),
           make_builtin("hls_720p_abr", "HLS ABR 720p/480p/360p (2800k/1400k/800k) + AAC", OutputType::kHls, "medium",
                        23, true, 6, abr),
           make_builtin("hls_720p_abr_video_only", "HLS ABR 720p/480p/360p (2800k/1400k/800k), no audio",
                        OutputType::kHls, "medium", 23, false, 6, abr_video_only),
           make_builtin("dash_1080p", "DASH 1080p 5000k + 720p 2500k + AAC 128k, 4 s segments", OutputType::kDash,
                        "medium", 23, true, 4, {{1080, 5000, 128}, {720, 2500, 128}}),
       }) {
    c.presets_.emplace(p.name, std::move(p));
  }
  return c;
}

absl::Status Catalog::merge_file(const std::filesystem::path& file) {
  const std::string origin = "presets file " + file.string();
  std::error_code ec;
  auto size = std::filesystem::file_size(file, ec);
  if (ec) return invalid_argument("presets_file_invalid", origin + ": cannot read: " + ec.message());
  if (size > kMaxFileBytes) return invalid_argument("presets_file_invalid", origin + ": larger than 1 MiB");
  std::ifstream in(file, std::ios::binary);
  std::stringstream buffer;
  buffer << in.rdbuf();
  if (!in && !in.eof()) return invalid_argument("presets_file_invalid", origin + ": cannot read");
  std::string text = buffer.str();
  std::string ext = file.extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return std::tolower(c); });
  size_t first = text.find_first_not_of(" \t\r\n");
  bool as_json = ext == ".json" || (ext != ".yaml" && ext != ".yml" && first != std::string::npos &&
                                    (text[first] == '{' || text[first] == '['));
  return merge_text(text, as_json, origin);
}

absl::Status Catalog::merge_text(std::string_view text, bool json_format, std::string_view origin) {
  auto document = parse_document(text, json_format, origin);
  if (!document.ok()) return document.status();
  const json* list = &*document;
  if (document->is_object()) {
    for (const auto& [key, value] : document->items()) {
      if (key != "presets") {
        return invalid_argument("presets_file_invalid",
                                std::string(origin) + ": unknown top-level field '" + key + "' (expected 'presets')");
      }
    }
    auto it = document->find("presets");
    if (it == document->end()) {
      return invalid_argument("presets_file_invalid", std::string(origin) + ": missing top-level 'presets' list");
    }
    list = &*it;
  }
  if (!list->is_array()) {
    return invalid_argument("presets_file_invalid", std::string(origin) + ": 'presets' must be a list of presets");
  }
  if (list->size() > kMaxPresetsPerFile) {
    return invalid_argument("presets_file_invalid", std::string(origin) + ": more than 256 presets");
  }
  std::vector<Preset> parsed;
  std::set<std::string> names;
  for (size_t i = 0; i < list->size(); ++i) {
    auto preset = parse_preset((*list)[i], i, origin);
    if (!preset.ok()) return preset.status();
    if (!names.insert(preset->name).second) {
      return invalid_argument("presets_file_invalid",
                              std::string(origin) + ": preset '" + preset->name + "': field 'name': defined twice");
    }
    parsed.push_back(std::move(*preset));
  }
  for (Preset& p : parsed) presets_.insert_or_assign(p.name, std::move(p));
  return absl::OkStatus();
}

const Preset* Catalog::find(std::string_view name) const {
  auto it = presets_.find(name);
  return it == presets_.end() ? nullptr : &it->second;
}

std::vector<const Preset*> Catalog::all() const {
  std::vector<const Preset*> out;
  out.reserve(presets_.size());
  for (const auto& [name, preset] : presets_) out.push_back(&preset);
  return out;
}

std::filesystem::path main_output_path(const Preset& preset, const std::filesystem::path& output_dir) {
  return output_dir / preset.main_file;
}

bool output_args_depend_on_audio(const Preset& p) {
  return p.audio && (p.type == OutputType::kDash || (p.type == OutputType::kHls && p.variants.size() > 1));
}

std::vector<std::string> build_output_args(const Preset& p, const std::filesystem::path& dir,
                                           std::optional<bool> input_has_audio) {
  std::vector<std::string> args;
  const bool with_audio = p.audio && input_has_audio.value_or(true);
  // "?": a map that matches no stream is skipped instead of failing. Presets
  // that name the audio streams elsewhere assume audio instead.
  const bool optional_audio = !input_has_audio.has_value() && !output_args_depend_on_audio(p);
  const std::string audio_map = optional_audio ? "0:a:0?" : "0:a:0";
  const size_t n = p.variants.size();
  const bool several = n > 1;
  const int audio_kbps = p.variants.front().audio_bitrate_kbps;

  // Video.
  if (several) {
    add_split_video(args, p);
  } else {
    args.insert(args.end(), {"-map", "0:v:0", "-vf", scale_chain(p.variants.front().height)});
  }
  add_video_codec(args, p);
  if (several) {
    for (size_t i = 0; i < n; ++i) add_rate_control(args, p, p.variants[i], ":v:" + std::to_string(i));
  } else {
    add_rate_control(args, p, p.variants.front(), ":v");
  }

  // Audio: HLS with several variants muxes one audio copy into each
  // variant (each at its own bitrate); everything else has one audio stream.
  if (!with_audio) {
    args.push_back("-an");
  } else if (p.type == OutputType::kHls && several) {
    for (size_t i = 0; i < n; ++i) args.insert(args.end(), {"-map", "0:a:0"});
    add_stereo_aac(args);
    for (size_t i = 0; i < n; ++i) {
      args.insert(args.end(), {"-b:a:" + std::to_string(i), kbps(p.variants[i].audio_bitrate_kbps)});
    }
  } else {
    args.insert(args.end(), {"-map", audio_map});
    add_stereo_aac(args);
    args.insert(args.end(), {"-b:a", kbps(audio_kbps)});
  }
  // Subtitles, data and attachments are never carried over.
  args.insert(args.end(), {"-sn", "-dn", "-map_metadata", "-1", "-map_chapters", "-1"});

  // Muxer.
  const std::string seg = std::to_string(p.segment_seconds);
  switch (p.type) {
    case OutputType::kSingle:
      args.insert(args.end(), {"-movflags", "+faststart", "-f", "mp4", path_in(dir, p.main_file)});
      break;
    case OutputType::kHls:
      args.insert(args.end(), {"-f", "hls", "-hls_time", seg, "-hls_playlist_type", "vod"});
      if (several) {
        std::string stream_map;
        for (size_t i = 0; i < n; ++i) {
          if (i > 0) stream_map += ' ';
          stream_map += "v:" + std::to_string(i);
          if (with_audio) stream_map += ",a:" + std::to_string(i);
        }
        args.insert(args.end(), {"-master_pl_name", p.main_file, "-var_stream_map", stream_map, "-hls_segment_filename",
                                 path_in(dir, "stream_%v/segment_%03d.ts"), path_in(dir, "stream_%v/playlist.m3u8")});
      } else {
        args.insert(args.end(), {"-hls_segment_filename", path_in(dir, "segment_%03d.ts"), path_in(dir, p.main_file)});
      }
      break;
    case OutputType::kDash:
      args.insert(args.end(),
                  {"-f", "dash", "-seg_duration", seg, "-use_template", "1", "-use_timeline", "1", "-init_seg_name",
                   "init-$RepresentationID$.$ext$", "-media_seg_name", "chunk-$RepresentationID$-$Number%05d$.$ext$",
                   "-adaptation_sets", with_audio ? "id=0,streams=v id=1,streams=a" : "id=0,streams=v",
                   path_in(dir, p.main_file)});
      break;
  }
  return args;
}

}  // namespace flux::worker::preset
