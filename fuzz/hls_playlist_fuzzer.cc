// HLS playlists as the worker's validator reads them after an encode
// (worker/validator/hls_playlist.h), and HLS attribute lists.
//
// Invariants beyond "no crash, no sanitizer report":
//  - an accepted media playlist has exactly one segment per #EXTINF line and
//    an accepted master one variant per #EXT-X-STREAM-INF line, never both;
//  - every accepted segment has a URI and a finite duration within
//    #EXT-X-TARGETDURATION (+0.5 s rounding); every variant a positive size;
//  - the playlist written back canonically parses to the same playlist;
//  - an accepted attribute list written back parses to the same map.
#include <charconv>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>

#include "fuzz_check.h"
#include "shared/core/error.h"
#include "worker/validator/hls_playlist.h"

namespace {

using flux::worker::validator::HlsPlaylist;

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r')) s.remove_suffix(1);
  return s;
}

bool is_tag(std::string_view line, std::string_view tag) {
  return line.starts_with(tag) && (line.size() == tag.size() || line[tag.size()] == ':');
}

// Lines that are this tag, split and trimmed the way the parser does.
size_t count_tag_lines(std::string_view text, std::string_view tag) {
  if (text.starts_with("\xEF\xBB\xBF")) text.remove_prefix(3);
  size_t count = 0;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t eol = text.find('\n', pos);
    if (eol == std::string_view::npos) eol = text.size();
    if (is_tag(trim(text.substr(pos, eol - pos)), tag)) ++count;
    pos = eol + 1;
  }
  return count;
}

std::string number(double value) {
  char buffer[64];
  auto [end, ec] = std::to_chars(buffer, buffer + sizeof buffer, value);
  FUZZ_CHECK(ec == std::errc(), "to_chars");
  return std::string(buffer, end);
}

// An attribute value that reads back as itself: no accepted value holds a
// quote, and quoted it keeps its commas and edge blanks.
std::string attribute_value(const std::string& value) {
  FUZZ_CHECK(value.find('"') == std::string::npos, "an accepted value with a quote: " + value);
  return "\"" + value + "\"";
}

std::string write_playlist(const HlsPlaylist& p) {
  std::string out = "#EXTM3U\n";
  if (p.version != 0) out += "#EXT-X-VERSION:" + std::to_string(p.version) + "\n";
  if (!p.is_master) out += "#EXT-X-TARGETDURATION:" + number(p.target_duration) + "\n";
  if (!p.playlist_type.empty()) out += "#EXT-X-PLAYLIST-TYPE:" + p.playlist_type + "\n";
  for (const auto& uri : p.init_uris) out += "#EXT-X-MAP:URI=" + attribute_value(uri) + "\n";
  for (const auto& uri : p.rendition_uris) out += "#EXT-X-MEDIA:TYPE=AUDIO,URI=" + attribute_value(uri) + "\n";
  for (const auto& v : p.variants) {
    out += "#EXT-X-STREAM-INF:BANDWIDTH=" + std::to_string(v.bandwidth) + ",RESOLUTION=" + std::to_string(v.width) +
           "x" + std::to_string(v.height);
    if (!v.codecs.empty()) out += ",CODECS=" + attribute_value(v.codecs);
    out += "\n" + v.uri + "\n";
  }
  for (const auto& s : p.segments) out += "#EXTINF:" + number(s.duration) + ",\n" + s.uri + "\n";
  if (p.endlist) out += "#EXT-X-ENDLIST\n";
  return out;
}

bool same_playlist(const HlsPlaylist& a, const HlsPlaylist& b) {
  if (a.is_master != b.is_master || a.version != b.version || a.target_duration != b.target_duration ||
      a.endlist != b.endlist || a.playlist_type != b.playlist_type || a.init_uris != b.init_uris ||
      a.rendition_uris != b.rendition_uris || a.segments.size() != b.segments.size() ||
      a.variants.size() != b.variants.size()) {
    return false;
  }
  for (size_t i = 0; i < a.segments.size(); ++i) {
    if (a.segments[i].uri != b.segments[i].uri || a.segments[i].duration != b.segments[i].duration) return false;
  }
  for (size_t i = 0; i < a.variants.size(); ++i) {
    const auto &x = a.variants[i], &y = b.variants[i];
    if (x.uri != y.uri || x.bandwidth != y.bandwidth || x.width != y.width || x.height != y.height ||
        x.codecs != y.codecs) {
      return false;
    }
  }
  return true;
}

void check_playlist(std::string_view text, const HlsPlaylist& p) {
  const size_t extinf_lines = count_tag_lines(text, "#EXTINF");
  const size_t stream_inf_lines = count_tag_lines(text, "#EXT-X-STREAM-INF");
  if (p.is_master) {
    FUZZ_CHECK(p.segments.empty() && extinf_lines == 0, "a master playlist with media segments");
    FUZZ_CHECK(!p.variants.empty(), "a master playlist without variants");
    FUZZ_CHECK(p.variants.size() == stream_inf_lines, std::to_string(p.variants.size()) + " variants from " +
                                                          std::to_string(stream_inf_lines) +
                                                          " #EXT-X-STREAM-INF lines");
  } else {
    FUZZ_CHECK(p.variants.empty() && stream_inf_lines == 0, "a media playlist with variants");
    FUZZ_CHECK(p.segments.size() == extinf_lines,
               std::to_string(p.segments.size()) + " segments from " + std::to_string(extinf_lines) + " #EXTINF lines");
    FUZZ_CHECK(std::isfinite(p.target_duration) && p.target_duration >= 0, number(p.target_duration));
  }
  for (const auto& s : p.segments) {
    FUZZ_CHECK(!s.uri.empty() && s.uri.front() != '#' && s.uri.find('\n') == std::string::npos, s.uri);
    FUZZ_CHECK(std::isfinite(s.duration) && s.duration >= 0 && s.duration <= p.target_duration + 0.5,
               number(s.duration) + " against target " + number(p.target_duration));
  }
  for (const auto& v : p.variants) {
    FUZZ_CHECK(!v.uri.empty() && v.uri.front() != '#', v.uri);
    FUZZ_CHECK(v.width > 0 && v.height > 0, std::to_string(v.width) + "x" + std::to_string(v.height));
  }
  for (const auto& uri : p.init_uris) FUZZ_CHECK(!uri.empty(), "empty #EXT-X-MAP URI");
  for (const auto& uri : p.rendition_uris) FUZZ_CHECK(!uri.empty(), "empty rendition URI");

  const std::string written = write_playlist(p);
  auto again = flux::worker::validator::parse_hls_playlist(written);
  FUZZ_CHECK(again.ok(), "the canonical form is refused: " + std::string(again.status().message()) + "\n" + written);
  FUZZ_CHECK(same_playlist(p, *again), "the canonical form parses differently:\n" + written);
}

void check_attributes(std::string_view list) {
  auto attributes = flux::worker::validator::parse_hls_attributes(list);
  if (!attributes.ok()) return;
  std::string written;
  for (const auto& [key, value] : *attributes) {
    FUZZ_CHECK(!key.empty(), "empty attribute name");
    if (!written.empty()) written += ",";
    written += key + "=" + attribute_value(value);
  }
  auto again = flux::worker::validator::parse_hls_attributes(written);
  FUZZ_CHECK(again.ok(), "attributes written back are refused: " + written);
  FUZZ_CHECK(*again == *attributes, "attributes written back differ: " + written);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  auto playlist = flux::worker::validator::parse_hls_playlist(text);
  if (playlist.ok()) {
    check_playlist(text, *playlist);
  } else {
    FUZZ_CHECK(flux::error_code(playlist.status()) == "manifest_invalid", std::string(playlist.status().message()));
  }
  // Every attribute-list line, as a list on its own.
  size_t pos = 0;
  while (pos < text.size()) {
    size_t eol = text.find('\n', pos);
    if (eol == std::string_view::npos) eol = text.size();
    const std::string_view line = trim(text.substr(pos, eol - pos));
    if (line.starts_with("#EXT-X-") && line.find(':') != std::string_view::npos) {
      check_attributes(line.substr(line.find(':') + 1));
    }
    pos = eol + 1;
  }
  return 0;
}
