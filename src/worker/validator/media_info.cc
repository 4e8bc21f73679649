#include "worker/validator/media_info.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <limits>
#include <optional>
#include <utility>

#include <nlohmann/json.hpp>

#include "shared/core/error.h"
#include "shared/process/subprocess.h"

namespace flux::worker::validator {
namespace {

using nlohmann::json;

absl::Status probe_error(std::string_view message) { return invalid_argument("probe_failed", message); }

// ffprobe writes most numbers as JSON strings ("duration": "2.000000") and a
// few as numbers ("width": 320); both forms are accepted everywhere.
std::optional<double> as_double(const json& object, const char* key) {
  auto it = object.find(key);
  if (it == object.end()) return std::nullopt;
  double value = 0;
  if (it->is_number()) {
    value = it->get<double>();
  } else if (it->is_string()) {
    const std::string& s = it->get_ref<const std::string&>();
    auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), value);
    if (ec != std::errc() || end != s.data() + s.size()) return std::nullopt;
  } else {
    return std::nullopt;
  }
  if (!std::isfinite(value)) return std::nullopt;
  return value;
}

// A non-negative integer no larger than `max`; anything else is "unknown".
template <class Int>
Int as_count(const json& object, const char* key) {
  std::optional<double> value = as_double(object, key);
  if (!value || *value < 0 || *value > static_cast<double>(std::numeric_limits<Int>::max())) return 0;
  return static_cast<Int>(*value);
}

std::string as_string(const json& object, const char* key) {
  auto it = object.find(key);
  if (it == object.end() || !it->is_string()) return "";
  return it->get<std::string>();
}

// "30000/1001" -> 29.97; "0/0" (unknown) -> 0.
double parse_rate(const std::string& rate) {
  size_t slash = rate.find('/');
  if (slash == std::string::npos) return 0;
  double num = 0, den = 0;
  auto r1 = std::from_chars(rate.data(), rate.data() + slash, num);
  auto r2 = std::from_chars(rate.data() + slash + 1, rate.data() + rate.size(), den);
  if (r1.ec != std::errc() || r2.ec != std::errc() || den <= 0 || num <= 0) return 0;
  double fps = num / den;
  return std::isfinite(fps) ? fps : 0;
}

bool is_attached_picture(const json& stream) {
  auto disposition = stream.find("disposition");
  if (disposition == stream.end() || !disposition->is_object()) return false;
  auto flag = disposition->find("attached_pic");
  return flag != disposition->end() && flag->is_number() && flag->get<double>() != 0;
}

MediaInfo parse_document(const json& doc) {
  MediaInfo info;
  const json& format = doc.at("format");
  info.format_name = as_string(format, "format_name");
  info.duration_seconds = std::max(0.0, as_double(format, "duration").value_or(0));
  info.size_bytes = as_count<uint64_t>(format, "size");

  double longest_stream = 0;
  auto streams = doc.find("streams");
  if (streams != doc.end() && streams->is_array()) {
    for (const json& stream : *streams) {
      if (!stream.is_object()) continue;
      longest_stream = std::max(longest_stream, as_double(stream, "duration").value_or(0));
      std::string type = as_string(stream, "codec_type");
      if (type == "video" && !is_attached_picture(stream)) {
        int height = as_count<int>(stream, "height");
        std::string codec = as_string(stream, "codec_name");
        info.video_codecs.push_back(codec);
        info.video_widths.push_back(as_count<int>(stream, "width"));
        info.video_heights.push_back(height);
        if (info.has_video && height <= info.height) continue;
        info.has_video = true;
        info.video_codec = std::move(codec);
        info.width = as_count<int>(stream, "width");
        info.height = height;
        info.pixel_format = as_string(stream, "pix_fmt");
        info.fps = parse_rate(as_string(stream, "avg_frame_rate"));
        if (info.fps == 0) info.fps = parse_rate(as_string(stream, "r_frame_rate"));
      } else if (type == "audio" && !info.has_audio) {
        info.has_audio = true;
        info.audio_codec = as_string(stream, "codec_name");
        info.audio_channels = as_count<int>(stream, "channels");
        info.audio_sample_rate = as_count<int>(stream, "sample_rate");
      }
    }
  }
  if (info.duration_seconds == 0) info.duration_seconds = longest_stream;
  return info;
}

// ffprobe's first error line names the problem ("x.mp4: moov atom not found").
std::string first_line(std::string_view text) {
  while (!text.empty() && (text.front() == '\n' || text.front() == '\r')) text.remove_prefix(1);
  std::string_view line = text.substr(0, text.find('\n'));
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  // "[mov,mp4,m4a,3gp,3g2,mj2 @ 0x5632...] moov atom not found": the bracket
  // names a demuxer instance by address, noise for a human.
  if (line.starts_with('[')) {
    size_t close = line.find("] ");
    if (close != std::string_view::npos && line.substr(0, close).find(" @ 0x") != std::string_view::npos) {
      line.remove_prefix(close + 2);
    }
  }
  return std::string(line.substr(0, 500));
}

}  // namespace

absl::StatusOr<MediaInfo> parse_ffprobe_json(std::string_view text) {
  json doc = json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded()) return probe_error("ffprobe output is not valid JSON");
  if (!doc.is_object()) return probe_error("ffprobe output is not a JSON object");
  auto format = doc.find("format");
  if (format == doc.end() || !format->is_object()) return probe_error("ffprobe output has no format section");
  try {
    return parse_document(doc);
  } catch (const std::exception& e) {
    // The accessors above check types first; this is a backstop so that no
    // nlohmann exception ever leaves the module.
    return probe_error(std::string("unexpected ffprobe output: ") + e.what());
  }
}

absl::Status check_input_limits(const MediaInfo& info, uint64_t max_pixels, double max_duration_seconds) {
  if (max_pixels > 0) {
    for (size_t i = 0; i < info.video_widths.size() && i < info.video_heights.size(); ++i) {
      const uint64_t pixels =
          static_cast<uint64_t>(info.video_widths[i]) * static_cast<uint64_t>(info.video_heights[i]);
      if (pixels > max_pixels) {
        return invalid_argument("input_too_large", "input video is " + std::to_string(info.video_widths[i]) + "x" +
                                                       std::to_string(info.video_heights[i]) + " = " +
                                                       std::to_string(pixels) +
                                                       " pixels, above MAX_INPUT_PIXELS=" + std::to_string(max_pixels));
      }
    }
  }
  if (max_duration_seconds > 0 && info.duration_seconds > max_duration_seconds) {
    char text[96];
    std::snprintf(text, sizeof text, "input lasts %.0f s, above MAX_INPUT_DURATION=%g s", info.duration_seconds,
                  max_duration_seconds);
    return invalid_argument("input_too_long", text);
  }
  return absl::OkStatus();
}

absl::StatusOr<MediaInfo> probe_media(const std::filesystem::path& path, const ProbeOptions& options,
                                      const flux::CancelToken* cancel) {
  std::error_code ec;
  std::filesystem::path absolute = std::filesystem::absolute(path, ec);
  if (ec) return probe_error("cannot resolve " + path.string() + ": " + ec.message());
  // An absolute path can never be read as "proto:..." by ffprobe.
  std::vector<std::string> argv = {
      options.ffprobe_path,  "-v",  "error", "-print_format", "json", "-show_format", "-show_streams",
      "-protocol_whitelist", "file"};
  if (!options.format_whitelist.empty()) {
    argv.push_back("-format_whitelist");
    argv.push_back(options.format_whitelist);
  }
  argv.push_back(absolute.string());

  process::SpawnOptions spawn;
  spawn.argv = std::move(argv);
  spawn.nice = options.nice;
  absl::StatusOr<process::RunResult> run = process::run_with(std::move(spawn), options.timeout, 16 << 20, cancel);
  if (!run.ok()) return run.status();
  const std::string name = path.filename().string();
  if (run->timed_out) {
    return probe_error("ffprobe timed out on " + name + " after " + std::to_string(options.timeout.count() / 1000) +
                       " s");
  }
  if (!run->status.ok()) {
    std::string line = first_line(run->err);
    return probe_error("ffprobe failed on " + name + " (" + run->status.describe() +
                       (line.empty() ? ")" : "): " + line));
  }
  return parse_ffprobe_json(run->out);
}

}  // namespace flux::worker::validator
