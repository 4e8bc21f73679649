// MPEG-DASH manifests as the worker's validator reads them after an encode
// (worker/validator/dash_manifest.h): tinyxml2, BaseURL resolution and
// SegmentTemplate/SegmentTimeline/SegmentList expansion.
//
// Invariants beyond "no crash, no sanitizer report":
//  - an accepted manifest has representations, each with an id and at least
//    one file to fetch, every file name non-empty, and at most 500000 files
//    in all; the duration is finite and not negative;
//  - the manifest written back canonically (one SegmentList per
//    representation) parses to the same representations and files;
//  - parse_iso8601_duration reads back what it accepted, written as PT<s>S.
#include <charconv>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "fuzz_check.h"
#include "shared/core/error.h"
#include "shared/core/xml_text.h"
#include "worker/validator/dash_manifest.h"

namespace {

using flux::worker::validator::DashManifest;

std::string fixed(double value) {
  char buffer[400];
  auto [end, ec] = std::to_chars(buffer, buffer + sizeof buffer, value, std::chars_format::fixed);
  FUZZ_CHECK(ec == std::errc(), "to_chars");
  return std::string(buffer, end);
}

std::string write_manifest(const DashManifest& m) {
  std::string out = "<?xml version=\"1.0\"?>\n<MPD xmlns=\"urn:mpeg:dash:schema:mpd:2011\"";
  if (m.duration_seconds > 0) out += " mediaPresentationDuration=\"PT" + fixed(m.duration_seconds) + "S\"";
  out += ">\n<Period>\n";
  for (const auto& r : m.representations) {
    out += "<AdaptationSet mimeType=\"" + flux::xml_escaped(r.mime_type) + "\" codecs=\"" +
           flux::xml_escaped(r.codecs) + "\">\n<Representation id=\"" + flux::xml_escaped(r.id) + "\" bandwidth=\"" +
           std::to_string(r.bandwidth) + "\" width=\"" + std::to_string(r.width) + "\" height=\"" +
           std::to_string(r.height) + "\">\n<SegmentList>\n";
    for (const auto& file : r.files) out += "<SegmentURL media=\"" + flux::xml_escaped(file) + "\"/>\n";
    out += "</SegmentList>\n</Representation>\n</AdaptationSet>\n";
  }
  out += "</Period>\n</MPD>\n";
  return out;
}

void check_manifest(const DashManifest& m) {
  FUZZ_CHECK(std::isfinite(m.duration_seconds) && m.duration_seconds >= 0, fixed(m.duration_seconds));
  FUZZ_CHECK(!m.representations.empty(), "no representation");
  size_t files = 0;
  for (const auto& r : m.representations) {
    FUZZ_CHECK(!r.id.empty(), "representation without id");
    FUZZ_CHECK(!r.files.empty(), "representation " + r.id + " has no file to fetch");
    FUZZ_CHECK(r.width >= 0 && r.height >= 0, r.id);
    for (const auto& file : r.files) FUZZ_CHECK(!file.empty(), "representation " + r.id + " has an empty file name");
    files += r.files.size();
  }
  FUZZ_CHECK(files <= 500000, std::to_string(files) + " files");
  if (m.duration_seconds > 0) {
    const auto again = flux::worker::validator::parse_iso8601_duration("PT" + fixed(m.duration_seconds) + "S");
    FUZZ_CHECK(again && *again == m.duration_seconds, "PT" + fixed(m.duration_seconds) + "S");
  }
  if (files > 20000) return;  // keeps an execution fast; the checks above did the rest

  const std::string written = write_manifest(m);
  auto again = flux::worker::validator::parse_dash_manifest(written);
  FUZZ_CHECK(again.ok(), "the canonical form is refused: " + std::string(again.status().message()) + "\n" + written);
  FUZZ_CHECK(again->duration_seconds == m.duration_seconds, written);
  FUZZ_CHECK(again->representations.size() == m.representations.size(), written);
  for (size_t i = 0; i < m.representations.size(); ++i) {
    const auto &a = m.representations[i], &b = again->representations[i];
    FUZZ_CHECK(a.id == b.id && a.mime_type == b.mime_type && a.codecs == b.codecs && a.width == b.width &&
                   a.height == b.height && a.bandwidth == b.bandwidth && a.files == b.files,
               "representation " + a.id + " reads back differently:\n" + written);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view xml(reinterpret_cast<const char*>(data), size);
  auto manifest = flux::worker::validator::parse_dash_manifest(xml);
  if (manifest.ok()) {
    check_manifest(*manifest);
  } else {
    FUZZ_CHECK(flux::error_code(manifest.status()) == "manifest_invalid", std::string(manifest.status().message()));
  }
  return 0;
}
