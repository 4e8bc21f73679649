#pragma once
// MPEG-DASH manifests (ISO/IEC 23009-1), reduced to what validation needs:
// every representation and every file a player would fetch for it.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace flux::worker::validator {

struct DashRepresentation {
  std::string id, mime_type, codecs;  // mime type and codecs inherited from the AdaptationSet
  int width = 0, height = 0;
  uint64_t bandwidth = 0;
  // The initialization segment (when there is one) then every media segment,
  // as URLs relative to the manifest (after BaseURL resolution), expanded from
  // SegmentTemplate ($RepresentationID$, $Number%05d$, $Time$, $Bandwidth$)
  // with a SegmentTimeline (S t/d/r, r=-1 included) or @duration, from a
  // SegmentList, or the single BaseURL file of a SegmentBase representation.
  std::vector<std::string> files;
};

struct DashManifest {
  double duration_seconds = 0;                      // mediaPresentationDuration; 0 when absent
  std::vector<DashRepresentation> representations;  // of every Period, in document order
};

// Parses a manifest with tinyxml2. Errors carry code "manifest_invalid" and,
// where one applies, the line ("line 12: ..."). A manifest that expands to
// more than 500000 segments is refused rather than expanded.
absl::StatusOr<DashManifest> parse_dash_manifest(std::string_view xml);

// ISO-8601 durations as DASH writes them: "PT3.0S", "PT1H2M3.5S", "P1DT2H".
// Years and months count as 365 and 30 days.
std::optional<double> parse_iso8601_duration(std::string_view text);

}  // namespace flux::worker::validator
