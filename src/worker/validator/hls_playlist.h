#pragma once
// HLS playlists (RFC 8216), parsed strictly enough to tell whether an encode
// produced a playable stream.
#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace flux::worker::validator {

struct HlsSegment {
  std::string uri;
  double duration = 0;
};

struct HlsVariant {
  std::string uri;
  uint64_t bandwidth = 0;
  int width = 0, height = 0;
  std::string codecs;
};

// A media playlist (segments) or a master playlist (variants and renditions).
struct HlsPlaylist {
  bool is_master = false;
  int version = 0;
  double target_duration = 0;
  bool endlist = false;
  std::string playlist_type;
  std::vector<HlsSegment> segments;
  // URIs of #EXT-X-MAP initialization sections (fMP4 segments), in order.
  std::vector<std::string> init_uris;
  std::vector<HlsVariant> variants;
  // URIs of #EXT-X-MEDIA renditions (alternate audio, subtitles) and of
  // #EXT-X-I-FRAME-STREAM-INF playlists: more playlists the master refers to.
  std::vector<std::string> rendition_uris;

  // Sum of the segment durations.
  double duration_seconds() const;
};

// Parses a playlist. It must start with #EXTM3U. A media playlist needs
// #EXT-X-TARGETDURATION, an #EXTINF before each segment URI and no segment
// longer than the target duration (rounded to the nearest second). In a master
// playlist every #EXT-X-STREAM-INF needs BANDWIDTH and RESOLUTION and a URI on
// the next line. A playlist cannot be both. Errors carry code
// "manifest_invalid" and name the line ("line 4: ...").
absl::StatusOr<HlsPlaylist> parse_hls_playlist(std::string_view text);

// Parses an attribute list (BANDWIDTH=1280000,CODECS="avc1.4d401f,mp4a.40.2"):
// quoted values keep their commas and lose their quotes; blanks around names
// and values are ignored; a quote anywhere but around a whole value is an
// error. Keys are case-sensitive; a malformed list is an error with code
// "manifest_invalid".
absl::StatusOr<std::map<std::string, std::string>> parse_hls_attributes(std::string_view list);

}  // namespace flux::worker::validator
