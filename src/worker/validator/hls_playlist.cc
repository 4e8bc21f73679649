#include "worker/validator/hls_playlist.h"

#include <charconv>
#include <cmath>
#include <optional>
#include <utility>

#include "shared/core/error.h"

namespace flux::worker::validator {
namespace {

absl::Status invalid(std::string_view message) { return invalid_argument("manifest_invalid", message); }
absl::Status invalid_at(size_t line, std::string_view message) {
  return invalid("line " + std::to_string(line) + ": " + std::string(message));
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r')) s.remove_suffix(1);
  return s;
}

bool starts_with_tag(std::string_view line, std::string_view tag, std::string_view& value) {
  if (!line.starts_with(tag)) return false;
  std::string_view rest = line.substr(tag.size());
  if (rest.empty()) {
    value = rest;
    return true;
  }
  if (rest.front() != ':') return false;  // #EXT-X-MAP must not match #EXT-X-MAPPING
  value = rest.substr(1);
  return true;
}

std::optional<double> parse_decimal(std::string_view s) {
  double value = 0;
  if (s.empty() || s.front() == '+' || s.front() == '-') return std::nullopt;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), value);
  if (ec != std::errc() || end != s.data() + s.size() || !std::isfinite(value)) return std::nullopt;
  return value;
}

template <class Int>
std::optional<Int> parse_integer(std::string_view s) {
  Int value = 0;
  if (s.empty()) return std::nullopt;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), value);
  if (ec != std::errc() || end != s.data() + s.size() || value < 0) return std::nullopt;
  return value;
}

// "1280x720" -> {1280, 720}.
std::optional<std::pair<int, int>> parse_resolution(std::string_view s) {
  size_t x = s.find('x');
  if (x == std::string_view::npos) return std::nullopt;
  auto width = parse_integer<int>(s.substr(0, x));
  auto height = parse_integer<int>(s.substr(x + 1));
  if (!width || !height || *width == 0 || *height == 0) return std::nullopt;
  return std::make_pair(*width, *height);
}

std::string message_of(const absl::Status& status) {
  return std::string(status.message().data(), status.message().size());
}

// "6", "6.006": short, exact enough for a human.
std::string format_seconds(double seconds) {
  char buffer[64];
  auto [end, ec] = std::to_chars(buffer, buffer + sizeof buffer, seconds);
  return ec == std::errc() ? std::string(buffer, end) : std::string("?");
}

struct PendingUri {
  size_t line = 0;  // 0 = nothing pending
};

}  // namespace

double HlsPlaylist::duration_seconds() const {
  double total = 0;
  for (const HlsSegment& segment : segments) total += segment.duration;
  return total;
}

absl::StatusOr<std::map<std::string, std::string>> parse_hls_attributes(std::string_view list) {
  std::map<std::string, std::string> attributes;
  size_t pos = 0;
  while (pos < list.size()) {
    size_t eq = list.find('=', pos);
    if (eq == std::string_view::npos) return invalid("attribute without a value: " + std::string(list.substr(pos)));
    std::string key(trim(list.substr(pos, eq - pos)));
    if (key.empty()) return invalid("attribute without a name");
    for (char c : key) {
      if (!((c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-')) {
        return invalid("bad attribute name '" + key + "'");
      }
    }
    // Blanks around a value are skipped as they are around a name, so that
    // ` "a,b"` is the quoted a,b rather than the plain `"a` and a stray `b"`.
    pos = eq + 1;
    while (pos < list.size() && (list[pos] == ' ' || list[pos] == '\t')) ++pos;
    std::string value;
    if (pos < list.size() && list[pos] == '"') {
      size_t close = list.find('"', pos + 1);
      if (close == std::string_view::npos) return invalid("unterminated quoted value for " + key);
      value = std::string(list.substr(pos + 1, close - pos - 1));
      pos = close + 1;
      while (pos < list.size() && (list[pos] == ' ' || list[pos] == '\t')) ++pos;
      if (pos < list.size() && list[pos] != ',') return invalid("garbage after the quoted value of " + key);
    } else {
      size_t comma = list.find(',', pos);
      if (comma == std::string_view::npos) comma = list.size();
      value = std::string(trim(list.substr(pos, comma - pos)));
      // RFC 8216 4.2: only a quoted-string holds quotes (around it).
      if (value.find('"') != std::string::npos) return invalid("stray quote in the value of " + key);
      pos = comma;
    }
    if (!attributes.emplace(key, std::move(value)).second) return invalid("duplicate attribute " + key);
    if (pos < list.size()) ++pos;  // the comma
  }
  return attributes;
}

absl::StatusOr<HlsPlaylist> parse_hls_playlist(std::string_view text) {
  HlsPlaylist playlist;
  bool saw_target = false;
  bool saw_extinf = false;
  PendingUri pending_segment;  // an #EXTINF waiting for its URI
  PendingUri pending_variant;  // an #EXT-X-STREAM-INF waiting for its URI
  double pending_duration = 0;
  HlsVariant variant;
  std::vector<size_t> segment_lines;

  if (text.starts_with("\xEF\xBB\xBF")) text.remove_prefix(3);  // UTF-8 BOM
  size_t line_number = 0;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t eol = text.find('\n', pos);
    if (eol == std::string_view::npos) eol = text.size();
    std::string_view line = trim(text.substr(pos, eol - pos));
    pos = eol + 1;
    ++line_number;

    if (line_number == 1) {
      if (line != "#EXTM3U") return invalid_at(1, "playlist does not start with #EXTM3U");
      continue;
    }
    if (line.empty()) continue;

    if (line.front() != '#') {  // a URI
      if (pending_variant.line) {
        variant.uri = std::string(line);
        playlist.variants.push_back(std::move(variant));
        variant = HlsVariant{};
        pending_variant.line = 0;
      } else if (pending_segment.line) {
        if (playlist.endlist) return invalid_at(line_number, "segment after #EXT-X-ENDLIST");
        playlist.segments.push_back({std::string(line), pending_duration});
        segment_lines.push_back(pending_segment.line);
        pending_segment.line = 0;
      } else {
        return invalid_at(line_number,
                          "URI '" + std::string(line) + "' without a preceding #EXTINF or #EXT-X-STREAM-INF");
      }
      continue;
    }
    if (!line.starts_with("#EXT")) continue;  // a comment

    if (pending_variant.line) {
      return invalid_at(pending_variant.line, "#EXT-X-STREAM-INF is not followed by a URI");
    }
    std::string_view value;
    if (starts_with_tag(line, "#EXTINF", value)) {
      if (pending_segment.line) return invalid_at(pending_segment.line, "#EXTINF is not followed by a URI");
      auto duration = parse_decimal(trim(value.substr(0, value.find(','))));
      if (!duration) return invalid_at(line_number, "bad #EXTINF duration '" + std::string(value) + "'");
      pending_duration = *duration;
      pending_segment.line = line_number;
      saw_extinf = true;
    } else if (starts_with_tag(line, "#EXT-X-STREAM-INF", value)) {
      auto attributes = parse_hls_attributes(value);
      if (!attributes.ok()) return invalid_at(line_number, message_of(attributes.status()));
      auto bandwidth = attributes->find("BANDWIDTH");
      if (bandwidth == attributes->end()) return invalid_at(line_number, "#EXT-X-STREAM-INF without BANDWIDTH");
      auto bandwidth_value = parse_integer<uint64_t>(bandwidth->second);
      if (!bandwidth_value) return invalid_at(line_number, "bad BANDWIDTH '" + bandwidth->second + "'");
      auto resolution = attributes->find("RESOLUTION");
      if (resolution == attributes->end()) return invalid_at(line_number, "#EXT-X-STREAM-INF without RESOLUTION");
      auto size = parse_resolution(resolution->second);
      if (!size) return invalid_at(line_number, "bad RESOLUTION '" + resolution->second + "'");
      variant.bandwidth = *bandwidth_value;
      variant.width = size->first;
      variant.height = size->second;
      if (auto codecs = attributes->find("CODECS"); codecs != attributes->end()) variant.codecs = codecs->second;
      pending_variant.line = line_number;
      playlist.is_master = true;
    } else if (starts_with_tag(line, "#EXT-X-MEDIA", value) ||
               starts_with_tag(line, "#EXT-X-I-FRAME-STREAM-INF", value)) {
      auto attributes = parse_hls_attributes(value);
      if (!attributes.ok()) return invalid_at(line_number, message_of(attributes.status()));
      if (auto uri = attributes->find("URI"); uri != attributes->end()) {
        if (uri->second.empty()) return invalid_at(line_number, "empty URI");
        playlist.rendition_uris.push_back(uri->second);
      } else if (line.starts_with("#EXT-X-I-FRAME-STREAM-INF")) {
        return invalid_at(line_number, "#EXT-X-I-FRAME-STREAM-INF without URI");
      }
      playlist.is_master = true;
    } else if (starts_with_tag(line, "#EXT-X-MAP", value)) {
      auto attributes = parse_hls_attributes(value);
      if (!attributes.ok()) return invalid_at(line_number, message_of(attributes.status()));
      auto uri = attributes->find("URI");
      if (uri == attributes->end() || uri->second.empty()) return invalid_at(line_number, "#EXT-X-MAP without URI");
      if (playlist.init_uris.empty() || playlist.init_uris.back() != uri->second) {
        playlist.init_uris.push_back(uri->second);
      }
    } else if (starts_with_tag(line, "#EXT-X-TARGETDURATION", value)) {
      auto target = parse_decimal(value);
      if (!target) return invalid_at(line_number, "bad #EXT-X-TARGETDURATION '" + std::string(value) + "'");
      playlist.target_duration = *target;
      saw_target = true;
    } else if (starts_with_tag(line, "#EXT-X-VERSION", value)) {
      auto version = parse_integer<int>(value);
      if (!version) return invalid_at(line_number, "bad #EXT-X-VERSION '" + std::string(value) + "'");
      playlist.version = *version;
    } else if (starts_with_tag(line, "#EXT-X-PLAYLIST-TYPE", value)) {
      if (value != "VOD" && value != "EVENT") {
        return invalid_at(line_number, "bad #EXT-X-PLAYLIST-TYPE '" + std::string(value) + "'");
      }
      playlist.playlist_type = std::string(value);
    } else if (starts_with_tag(line, "#EXT-X-ENDLIST", value)) {
      if (pending_segment.line) return invalid_at(pending_segment.line, "#EXTINF is not followed by a URI");
      playlist.endlist = true;
    }
    // Every other tag (#EXT-X-MEDIA-SEQUENCE, #EXT-X-DISCONTINUITY, ...) is
    // legal and irrelevant to whether the files are there and playable.
  }

  if (text.empty()) return invalid_at(1, "playlist does not start with #EXTM3U");
  if (pending_variant.line) return invalid_at(pending_variant.line, "#EXT-X-STREAM-INF is not followed by a URI");
  if (pending_segment.line) return invalid_at(pending_segment.line, "#EXTINF is not followed by a URI");
  if (playlist.is_master) {
    if (saw_extinf || saw_target) return invalid("playlist mixes master tags and media segment tags");
    if (playlist.variants.empty()) return invalid("master playlist lists no #EXT-X-STREAM-INF variant");
    return playlist;
  }
  if (!saw_target) return invalid("media playlist has no #EXT-X-TARGETDURATION");
  for (size_t i = 0; i < playlist.segments.size(); ++i) {
    // RFC 8216 4.3.3.1: each duration, rounded to the nearest integer, is at
    // most the target duration.
    if (playlist.segments[i].duration > playlist.target_duration + 0.5) {
      return invalid_at(segment_lines[i], "segment duration " + format_seconds(playlist.segments[i].duration) +
                                              " exceeds #EXT-X-TARGETDURATION " +
                                              format_seconds(playlist.target_duration));
    }
  }
  return playlist;
}

}  // namespace flux::worker::validator
