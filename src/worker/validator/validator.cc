#include "worker/validator/validator.h"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <fstream>
#include <map>
#include <optional>
#include <sstream>
#include <system_error>
#include <utility>

#include "shared/core/error.h"
#include "shared/process/subprocess.h"

namespace flux::worker::validator {
namespace {

namespace fs = std::filesystem;

constexpr uint64_t kMaxManifestBytes = 16 << 20;
constexpr size_t kMaxOutputFiles = 200000;

absl::Status failed(std::string_view message) { return failed_precondition("validation_failed", message); }

// Joins message parts in one allocation (for messages built inside loops).
template <class... Parts>
std::string join(const Parts&... parts) {
  std::string out;
  (out.append(std::string_view(parts)), ...);
  return out;
}

std::string message_of(const absl::Status& status) {
  return std::string(status.message().data(), status.message().size());
}

std::string format_seconds(double seconds) {
  char buffer[64];
  auto [end, ec] = std::to_chars(buffer, buffer + sizeof buffer, seconds, std::chars_format::fixed, 2);
  return ec == std::errc() ? std::string(buffer, end) : std::string("?");
}

absl::Status check_cancel(const flux::CancelToken& cancel) {
  if (!cancel.cancelled()) return absl::OkStatus();
  return make_error(absl::StatusCode::kCancelled, cancel.reason(), "validation cancelled");
}

// Every regular file under the output directory, by generic relative path.
using FileSizes = std::map<std::string, uint64_t>;

absl::StatusOr<FileSizes> scan_output(const fs::path& dir) {
  std::error_code ec;
  fs::file_status status = fs::symlink_status(dir, ec);
  if (ec || !fs::is_directory(status)) return failed("output directory " + dir.string() + " does not exist");
  FileSizes files;
  // The iterator does not follow symlinks, and any symlink is refused below,
  // so nothing outside `dir` is ever listed or uploaded.
  fs::recursive_directory_iterator it(dir, fs::directory_options::none, ec);
  for (; !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
    std::string relative = it->path().lexically_relative(dir).generic_string();
    fs::file_status entry = it->symlink_status(ec);
    if (ec) break;
    if (fs::is_symlink(entry)) return failed("output contains a symlink: " + relative);
    if (fs::is_directory(entry)) continue;
    if (!fs::is_regular_file(entry)) return failed("output contains " + relative + ", which is not a regular file");
    uint64_t size = it->file_size(ec);
    if (ec) break;
    if (size == 0) return failed("output file " + relative + " is empty");
    if (files.size() >= kMaxOutputFiles) return failed("output holds more than 200000 files");
    files.emplace(std::move(relative), size);
  }
  if (ec) return failed("cannot list output directory " + dir.string() + ": " + ec.message());
  return files;
}

bool has_scheme(std::string_view uri) {
  size_t colon = uri.find(':');
  if (colon == std::string_view::npos || colon == 0) return false;
  return std::all_of(uri.begin(), uri.begin() + colon, [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '+' || c == '-' ||
           c == '.';
  });
}

// A manifest's reference, resolved against the manifest's own folder, as a
// path relative to the output directory; refused when it is a URL, absolute
// or climbs out.
absl::StatusOr<std::string> resolve_reference(const std::string& manifest, std::string_view uri,
                                              std::string_view what) {
  auto refuse = [&](std::string_view why) {
    std::string message(what);
    message += " '";
    message += uri;
    message += "' listed in ";
    message += manifest;
    message += why;
    return failed(message);
  };
  if (uri.empty()) return refuse(" is empty");
  if (has_scheme(uri) || uri.starts_with('/') || uri.find_first_of("?#\\") != std::string_view::npos) {
    return refuse(" is not a plain relative path");
  }
  fs::path resolved = (fs::path(manifest).parent_path() / fs::path(uri)).lexically_normal();
  std::string generic = resolved.generic_string();
  if (generic.empty() || generic == "." || generic == ".." || generic.starts_with("../") || resolved.is_absolute()) {
    return refuse(" points outside the output directory");
  }
  return generic;
}

// `describe` builds the message only when the file is missing: manifests can
// list many thousands of segments.
template <class Describe>
absl::Status require_file(const FileSizes& files, const std::string& relative, Describe&& describe) {
  if (files.contains(relative)) return absl::OkStatus();
  std::string message = describe();
  message += " is missing";
  return failed(message);
}

absl::StatusOr<std::string> read_manifest(const fs::path& dir, const std::string& relative, const FileSizes& files) {
  auto it = files.find(relative);
  if (it == files.end()) return failed(relative + " is missing");
  if (it->second > kMaxManifestBytes) return failed(relative + " is larger than 16 MiB");
  std::ifstream in(dir / relative, std::ios::binary);
  std::ostringstream text;
  text << in.rdbuf();
  if (!in && !in.eof()) return failed("cannot read " + relative);
  return text.str();
}

// ---- ffprobe checks ---------------------------------------------------------

absl::StatusOr<MediaInfo> probe(const ValidationRequest& request, const std::string& relative,
                                const flux::CancelToken& cancel) {
  if (absl::Status s = check_cancel(cancel); !s.ok()) return s;
  ProbeOptions options;
  options.ffprobe_path = request.ffprobe_path;
  options.timeout = request.probe_timeout;
  auto info = probe_media(request.output_dir / relative, options, &cancel);
  // ffprobe refusing the file is the output's fault; ffprobe missing is not.
  if (!info.ok() && error_code(info.status()) == "probe_failed") return failed(message_of(info.status()));
  return info;
}

absl::Status check_codec(const ValidationRequest& request, const MediaInfo& media, const std::string& relative) {
  if (!media.has_video) return failed("no video stream in " + relative);
  if (request.expected_video_codec.empty()) return absl::OkStatus();
  for (const std::string& codec : media.video_codecs) {
    if (codec != request.expected_video_codec) {
      return failed(join("expected video codec ", request.expected_video_codec, ", got ", codec, " in ", relative));
    }
  }
  return absl::OkStatus();
}

absl::Status check_duration(const ValidationRequest& request, double actual, const std::string& relative) {
  double expected = request.expected_duration_seconds;
  if (expected <= 0) return absl::OkStatus();
  double tolerance = std::max(2.0, expected * 0.02);
  if (std::fabs(actual - expected) <= tolerance) return absl::OkStatus();
  return failed("duration of " + relative + " is " + format_seconds(actual) + " s, expected " +
                format_seconds(expected) + " s (tolerance " + format_seconds(tolerance) + " s)");
}

absl::Status check_audio(const ValidationRequest& request, bool has_audio, const std::string& audio_codec,
                         const std::string& where) {
  if (request.expect_audio && !has_audio) return failed("expected an audio stream, found none in " + where);
  if (!request.expect_audio && has_audio) {
    return failed("expected no audio stream, found " + audio_codec + " in " + where);
  }
  return absl::OkStatus();
}

std::string join_heights(const std::vector<int>& heights) {
  std::string out;
  for (int h : heights) out += (out.empty() ? "" : ", ") + std::to_string(h);
  return out;
}

// Every expected height must be among the actual ones.
absl::Status check_heights(const ValidationRequest& request, const std::vector<int>& actual, const std::string& where) {
  for (int expected : request.expected_heights) {
    if (std::find(actual.begin(), actual.end(), expected) != actual.end()) continue;
    if (actual.size() == 1) {
      return failed("expected height " + std::to_string(expected) + ", got " + std::to_string(actual[0]) + " in " +
                    where);
    }
    return failed("expected a rendition of height " + std::to_string(expected) + " in " + where + ", got heights " +
                  join_heights(actual));
  }
  return absl::OkStatus();
}

// ---- strict: full decode ----------------------------------------------------

absl::Status decode(const ValidationRequest& request, const std::string& relative, const flux::CancelToken& cancel) {
  if (absl::Status s = check_cancel(cancel); !s.ok()) return s;
  std::error_code ec;
  fs::path absolute = fs::absolute(request.output_dir / relative, ec);
  if (ec) return failed("cannot resolve " + relative + ": " + ec.message());
  std::vector<std::string> argv = {request.ffmpeg_path,
                                   "-nostdin",
                                   "-v",
                                   "error",
                                   "-xerror",
                                   "-protocol_whitelist",
                                   "file",
                                   "-i",
                                   absolute.string(),
                                   "-map",
                                   "0:v?",
                                   "-map",
                                   "0:a?",
                                   "-f",
                                   "null",
                                   "-"};
  auto run = process::run(std::move(argv), request.decode_timeout, 1 << 20, &cancel);
  if (!run.ok()) return run.status();
  if (run->timed_out) {
    return failed("full decode of " + relative + " timed out after " +
                  std::to_string(request.decode_timeout.count() / 1000) + " s");
  }
  if (!run->status.ok()) {
    std::string_view err = run->err;
    std::string_view line = err.substr(0, err.find('\n'));
    return failed("full decode of " + relative + " failed (" + run->status.describe() + ")" +
                  (line.empty() ? "" : ": " + std::string(line.substr(0, 500))));
  }
  return absl::OkStatus();
}

// ---- per kind ---------------------------------------------------------------

absl::Status validate_single(const ValidationRequest& request, const std::string& main, const FileSizes& files,
                             const flux::CancelToken& cancel, ValidationResult& result) {
  if (request.level == Level::kMinimal) return absl::OkStatus();
  auto media = probe(request, main, cancel);
  if (!media.ok()) return media.status();
  if (absl::Status s = check_codec(request, *media, main); !s.ok()) return s;
  if (absl::Status s = check_heights(request, {media->height}, main); !s.ok()) return s;
  if (absl::Status s = check_audio(request, media->has_audio, media->audio_codec, main); !s.ok()) return s;
  if (absl::Status s = check_duration(request, media->duration_seconds, main); !s.ok()) return s;
  result.media = std::move(*media);
  if (request.level == Level::kStrict) return decode(request, main, cancel);
  return absl::OkStatus();
}

struct MediaPlaylist {
  std::string relative;
  HlsPlaylist playlist;
  const HlsVariant* variant = nullptr;  // null for the main playlist or a rendition
};

absl::StatusOr<HlsPlaylist> load_playlist(const ValidationRequest& request, const std::string& relative,
                                          const FileSizes& files) {
  auto text = read_manifest(request.output_dir, relative, files);
  if (!text.ok()) return text.status();
  auto playlist = parse_hls_playlist(*text);
  if (!playlist.ok()) return failed(relative + ": " + message_of(playlist.status()));
  return playlist;
}

absl::Status check_media_playlist(const MediaPlaylist& media, const FileSizes& files) {
  if (media.playlist.is_master) return failed(media.relative + " is a master playlist where a media playlist belongs");
  if (media.playlist.segments.empty()) return failed(media.relative + " lists no segments");
  for (const std::string& uri : media.playlist.init_uris) {
    auto relative = resolve_reference(media.relative, uri, "initialization segment");
    if (!relative.ok()) return relative.status();
    if (absl::Status s = require_file(files, *relative,
                                      [&] { return "initialization segment " + uri + " listed in " + media.relative; });
        !s.ok()) {
      return s;
    }
  }
  for (const HlsSegment& segment : media.playlist.segments) {
    auto relative = resolve_reference(media.relative, segment.uri, "segment");
    if (!relative.ok()) return relative.status();
    if (absl::Status s =
            require_file(files, *relative, [&] { return "segment " + segment.uri + " listed in " + media.relative; });
        !s.ok()) {
      return s;
    }
  }
  return absl::OkStatus();
}

absl::Status validate_hls(const ValidationRequest& request, const std::string& main, const FileSizes& files,
                          const flux::CancelToken& cancel, ValidationResult& result) {
  auto top = load_playlist(request, main, files);
  if (!top.ok()) return top.status();

  std::vector<MediaPlaylist> variants, renditions;
  // Audio either muxed into every variant or in renditions of its own.
  const bool audio_in_renditions = top->is_master && !top->rendition_uris.empty();
  if (!top->is_master) {
    variants.push_back({main, std::move(*top), nullptr});
  } else {
    for (const HlsVariant& variant : top->variants) {
      auto relative = resolve_reference(main, variant.uri, "variant playlist");
      if (!relative.ok()) return relative.status();
      if (absl::Status s =
              require_file(files, *relative, [&] { return "variant playlist " + variant.uri + " listed in " + main; });
          !s.ok()) {
        return s;
      }
      auto playlist = load_playlist(request, *relative, files);
      if (!playlist.ok()) return playlist.status();
      variants.push_back({*relative, std::move(*playlist), &variant});
    }
    for (const std::string& uri : top->rendition_uris) {
      auto relative = resolve_reference(main, uri, "rendition playlist");
      if (!relative.ok()) return relative.status();
      if (absl::Status s =
              require_file(files, *relative, [&] { return join("rendition playlist ", uri, " listed in ", main); });
          !s.ok()) {
        return s;
      }
      auto playlist = load_playlist(request, *relative, files);
      if (!playlist.ok()) return playlist.status();
      renditions.push_back({*relative, std::move(*playlist), nullptr});
    }
  }
  for (const auto* group : {&variants, &renditions}) {
    for (const MediaPlaylist& media : *group) {
      if (absl::Status s = check_media_playlist(media, files); !s.ok()) return s;
    }
  }
  if (request.level == Level::kMinimal) return absl::OkStatus();

  std::vector<int> heights;
  bool any_audio = false;
  std::string audio_codec;
  std::vector<MediaInfo> probed;
  probed.reserve(variants.size());
  for (const MediaPlaylist& variant : variants) {
    auto media = probe(request, variant.relative, cancel);
    if (!media.ok()) return media.status();
    if (absl::Status s = check_codec(request, *media, variant.relative); !s.ok()) return s;
    if (variant.variant && (variant.variant->width != media->width || variant.variant->height != media->height)) {
      return failed(main + " declares RESOLUTION=" + std::to_string(variant.variant->width) + "x" +
                    std::to_string(variant.variant->height) + " for " + variant.variant->uri + ", but it is " +
                    std::to_string(media->width) + "x" + std::to_string(media->height));
    }
    double duration = media->duration_seconds > 0 ? media->duration_seconds : variant.playlist.duration_seconds();
    if (absl::Status s = check_duration(request, duration, variant.relative); !s.ok()) return s;
    if (!audio_in_renditions) {
      if (absl::Status s = check_audio(request, media->has_audio, media->audio_codec, variant.relative); !s.ok()) {
        return s;
      }
    }
    if (media->has_audio && !any_audio) audio_codec = media->audio_codec;
    any_audio = any_audio || media->has_audio;
    heights.push_back(media->height);
    probed.push_back(std::move(*media));
  }
  for (const MediaPlaylist& rendition : renditions) {
    auto media = probe(request, rendition.relative, cancel);
    if (!media.ok()) return media.status();
    if (media->has_audio && !any_audio) audio_codec = media->audio_codec;
    any_audio = any_audio || media->has_audio;
  }
  if (audio_in_renditions) {
    if (absl::Status s = check_audio(request, any_audio, audio_codec, main); !s.ok()) return s;
  }
  if (absl::Status s = check_heights(request, heights, main); !s.ok()) return s;
  // The main variant: the tallest, then the richest.
  size_t best = 0;
  auto bandwidth_of = [&](size_t i) { return variants[i].variant ? variants[i].variant->bandwidth : 0; };
  for (size_t i = 1; i < probed.size(); ++i) {
    if (probed[i].height > probed[best].height ||
        (probed[i].height == probed[best].height && bandwidth_of(i) > bandwidth_of(best))) {
      best = i;
    }
  }
  result.media = std::move(probed[best]);
  if (request.level != Level::kStrict) return absl::OkStatus();
  for (const auto* group : {&variants, &renditions}) {
    for (const MediaPlaylist& media : *group) {
      if (absl::Status s = decode(request, media.relative, cancel); !s.ok()) return s;
    }
  }
  return absl::OkStatus();
}

absl::Status validate_dash(const ValidationRequest& request, const std::string& main, const FileSizes& files,
                           const flux::CancelToken& cancel, ValidationResult& result) {
  auto text = read_manifest(request.output_dir, main, files);
  if (!text.ok()) return text.status();
  auto manifest = parse_dash_manifest(*text);
  if (!manifest.ok()) return failed(main + ": " + message_of(manifest.status()));
  for (const DashRepresentation& representation : manifest->representations) {
    for (const std::string& uri : representation.files) {
      auto relative = resolve_reference(main, uri, "segment");
      if (!relative.ok()) return relative.status();
      if (absl::Status s = require_file(
              files, *relative,
              [&] { return join("segment ", uri, " of representation ", representation.id, " listed in ", main); });
          !s.ok()) {
        return s;
      }
    }
  }
  if (request.level == Level::kMinimal) return absl::OkStatus();

  // The dash demuxer exposes every representation as a stream of its own.
  auto media = probe(request, main, cancel);
  if (!media.ok()) return media.status();
  if (absl::Status s = check_codec(request, *media, main); !s.ok()) return s;
  if (absl::Status s = check_heights(request, media->video_heights, main); !s.ok()) return s;
  if (absl::Status s = check_audio(request, media->has_audio, media->audio_codec, main); !s.ok()) return s;
  double duration = media->duration_seconds > 0 ? media->duration_seconds : manifest->duration_seconds;
  if (absl::Status s = check_duration(request, duration, main); !s.ok()) return s;
  result.media = std::move(*media);
  if (request.level == Level::kStrict) return decode(request, main, cancel);
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<Level> parse_level(std::string_view text) {
  std::string lower(text);
  std::transform(lower.begin(), lower.end(), lower.begin(), [](unsigned char c) { return std::tolower(c); });
  if (lower == "minimal") return Level::kMinimal;
  if (lower == "standard") return Level::kStandard;
  if (lower == "strict") return Level::kStrict;
  return invalid_argument("validation_level_invalid",
                          "validation level must be minimal, standard or strict, not '" + std::string(text) + "'");
}

std::string_view level_name(Level level) {
  switch (level) {
    case Level::kMinimal:
      return "minimal";
    case Level::kStandard:
      return "standard";
    case Level::kStrict:
      return "strict";
  }
  return "standard";
}

absl::StatusOr<ValidationResult> validate_output(const ValidationRequest& request, const flux::CancelToken& cancel) {
  if (absl::Status s = check_cancel(cancel); !s.ok()) return s;
  fs::path main_path = fs::path(request.main_file).lexically_normal();
  std::string main = main_path.generic_string();
  if (main.empty() || main_path.is_absolute() || main == "." || main == ".." || main.starts_with("../")) {
    return invalid_argument("validation_request_invalid",
                            "main file '" + request.main_file + "' is not a path inside the output directory");
  }
  auto files = scan_output(request.output_dir);
  if (!files.ok()) return files.status();
  if (!files->contains(main)) return failed("output file " + main + " is missing");

  ValidationResult result;
  absl::Status status;
  switch (request.kind) {
    case OutputKind::kSingle:
      status = validate_single(request, main, *files, cancel, result);
      break;
    case OutputKind::kHls:
      status = validate_hls(request, main, *files, cancel, result);
      break;
    case OutputKind::kDash:
      status = validate_dash(request, main, *files, cancel, result);
      break;
  }
  if (!status.ok()) return status;

  result.files.reserve(files->size());
  for (const auto& [relative, size] : *files) {
    result.files.push_back({fs::path(relative), size});
    result.total_bytes += size;
  }
  std::sort(result.files.begin(), result.files.end(),
            [](const ValidatedFile& a, const ValidatedFile& b) { return a.relative < b.relative; });
  return result;
}

}  // namespace flux::worker::validator
