#include "worker/validator/dash_manifest.h"

#include <tinyxml2.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <cstring>
#include <limits>
#include <utility>

#include "shared/core/error.h"

namespace flux::worker::validator {
namespace {

using tinyxml2::XMLElement;

constexpr size_t kMaxSegments = 500000;
constexpr size_t kMaxExpandedBytes = 64 << 20;
constexpr int kMaxNumberWidth = 32;
constexpr size_t kMaxUrlBytes = 4096;  // PATH_MAX: no longer name can be a file

absl::Status invalid(std::string_view message) { return invalid_argument("manifest_invalid", message); }
absl::Status invalid_at(const XMLElement* element, std::string_view message) {
  return invalid("line " + std::to_string(element->GetLineNum()) + ": " + std::string(message));
}

// Element names compared without a namespace prefix ("mpd:Period" is a Period).
std::string_view local_name(const XMLElement* element) {
  std::string_view name = element->Name() ? element->Name() : "";
  size_t colon = name.find(':');
  return colon == std::string_view::npos ? name : name.substr(colon + 1);
}

const XMLElement* next_sibling(const XMLElement* element, std::string_view name) {
  for (element = element->NextSiblingElement(); element; element = element->NextSiblingElement()) {
    if (local_name(element) == name) return element;
  }
  return nullptr;
}

const XMLElement* first_child(const XMLElement* parent, std::string_view name) {
  const XMLElement* child = parent->FirstChildElement();
  if (!child || local_name(child) == name) return child;
  return next_sibling(child, name);
}

template <class Fn>
absl::Status for_each_child(const XMLElement* parent, std::string_view name, Fn&& fn) {
  for (const XMLElement* child = parent->FirstChildElement(); child; child = child->NextSiblingElement()) {
    if (local_name(child) != name) continue;
    if (absl::Status status = fn(child); !status.ok()) return status;
  }
  return absl::OkStatus();
}

std::optional<std::string> attribute(const XMLElement* element, const char* name) {
  const char* value = element->Attribute(name);
  if (!value) return std::nullopt;
  return std::string(value);
}

// An optional unsigned integer attribute; present but malformed is an error.
absl::StatusOr<std::optional<uint64_t>> unsigned_attribute(const XMLElement* element, const char* name) {
  const char* value = element->Attribute(name);
  if (!value) return std::optional<uint64_t>();
  uint64_t number = 0;
  const char* end = value + std::strlen(value);
  auto [stop, ec] = std::from_chars(value, end, number);
  if (ec != std::errc() || stop != end || stop == value) {
    return invalid_at(element, std::string("bad ") + name + " '" + value + "'");
  }
  return std::optional<uint64_t>(number);
}

absl::StatusOr<std::optional<int64_t>> signed_attribute(const XMLElement* element, const char* name) {
  const char* value = element->Attribute(name);
  if (!value) return std::optional<int64_t>();
  int64_t number = 0;
  const char* end = value + std::strlen(value);
  auto [stop, ec] = std::from_chars(value, end, number);
  if (ec != std::errc() || stop != end || stop == value) {
    return invalid_at(element, std::string("bad ") + name + " '" + value + "'");
  }
  return std::optional<int64_t>(number);
}

absl::StatusOr<std::optional<double>> duration_attribute(const XMLElement* element, const char* name) {
  const char* value = element->Attribute(name);
  if (!value) return std::optional<double>();
  std::optional<double> seconds = parse_iso8601_duration(value);
  if (!seconds) return invalid_at(element, std::string("bad ") + name + " '" + value + "'");
  return seconds;
}

bool has_scheme(std::string_view url) {
  size_t colon = url.find(':');
  if (colon == std::string_view::npos || colon == 0) return false;
  for (size_t i = 0; i < colon; ++i) {
    char c = url[i];
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              (i > 0 && ((c >= '0' && c <= '9') || c == '+' || c == '-' || c == '.'));
    if (!ok) return false;
  }
  return true;
}

// RFC 3986 reference resolution, reduced to what manifests use: an absolute
// reference replaces the base, a relative one replaces its last segment.
std::string resolve(const std::string& base, std::string_view reference) {
  if (has_scheme(reference) || reference.starts_with('/')) return std::string(reference);
  size_t slash = base.rfind('/');
  std::string resolved = slash == std::string::npos ? std::string() : base.substr(0, slash + 1);
  resolved += reference;
  return resolved;
}

absl::StatusOr<std::string> apply_base_url(const XMLElement* element, const std::string& base) {
  const XMLElement* base_url = first_child(element, "BaseURL");
  if (!base_url) return base;
  const char* text = base_url->GetText();
  std::string_view reference = text ? text : "";
  while (!reference.empty() && std::isspace(static_cast<unsigned char>(reference.front()))) reference.remove_prefix(1);
  while (!reference.empty() && std::isspace(static_cast<unsigned char>(reference.back()))) reference.remove_suffix(1);
  if (reference.empty()) return invalid_at(base_url, "empty BaseURL");
  return resolve(base, reference);
}

// SegmentTemplate attributes are inherited Period -> AdaptationSet ->
// Representation, each level overriding what it sets.
struct Template {
  std::optional<std::string> media, initialization;
  std::optional<uint64_t> timescale, duration, start_number, presentation_time_offset;
  const XMLElement* timeline = nullptr;
  const XMLElement* element = nullptr;  // the innermost, for error lines
};

absl::Status merge_template(const XMLElement* element, Template& into) {
  into.element = element;
  if (auto v = attribute(element, "media")) into.media = *v;
  if (auto v = attribute(element, "initialization")) into.initialization = *v;
  for (auto [name, field] : {std::pair{"timescale", &into.timescale}, std::pair{"duration", &into.duration},
                             std::pair{"startNumber", &into.start_number},
                             std::pair{"presentationTimeOffset", &into.presentation_time_offset}}) {
    auto value = unsigned_attribute(element, name);
    if (!value.ok()) return value.status();
    if (*value) *field = **value;
  }
  if (const XMLElement* timeline = first_child(element, "SegmentTimeline")) into.timeline = timeline;
  return absl::OkStatus();
}

enum class Addressing { kNone, kTemplate, kList, kBase };

// What a level of the hierarchy passes down to the next.
struct Context {
  std::string base_url;
  Template segment_template;
  Addressing addressing = Addressing::kNone;
  const XMLElement* addressing_element = nullptr;
  std::string mime_type, codecs;
  int width = 0, height = 0;
};

absl::Status descend(const XMLElement* element, Context& context) {
  auto base = apply_base_url(element, context.base_url);
  if (!base.ok()) return base.status();
  context.base_url = std::move(*base);
  if (auto v = attribute(element, "mimeType")) context.mime_type = *v;
  if (auto v = attribute(element, "codecs")) context.codecs = *v;
  for (auto [name, field] : {std::pair{"width", &context.width}, std::pair{"height", &context.height}}) {
    auto value = unsigned_attribute(element, name);
    if (!value.ok()) return value.status();
    if (*value) {
      if (**value > static_cast<uint64_t>(std::numeric_limits<int>::max())) return invalid_at(element, "bad size");
      *field = static_cast<int>(**value);
    }
  }
  if (const XMLElement* t = first_child(element, "SegmentTemplate")) {
    if (absl::Status s = merge_template(t, context.segment_template); !s.ok()) return s;
    context.addressing = Addressing::kTemplate;
    context.addressing_element = t;
  } else if (const XMLElement* list = first_child(element, "SegmentList")) {
    context.addressing = Addressing::kList;
    context.addressing_element = list;
  } else if (const XMLElement* segment_base = first_child(element, "SegmentBase")) {
    context.addressing = Addressing::kBase;
    context.addressing_element = segment_base;
  }
  return absl::OkStatus();
}

struct TemplateValues {
  const std::string& representation_id;
  uint64_t number;
  uint64_t time;
  uint64_t bandwidth;
};

// Expands $RepresentationID$, $Number$, $Time$, $Bandwidth$ (the last three
// with an optional %0<width>d format tag) and $$.
absl::StatusOr<std::string> expand_template(std::string_view pattern, const TemplateValues& values,
                                            const XMLElement* element) {
  std::string out;
  size_t pos = 0;
  while (pos < pattern.size()) {
    size_t open = pattern.find('$', pos);
    if (open == std::string_view::npos) {
      out.append(pattern.substr(pos));
      break;
    }
    out.append(pattern.substr(pos, open - pos));
    size_t close = pattern.find('$', open + 1);
    if (close == std::string_view::npos)
      return invalid_at(element, "unterminated $ in template '" + std::string(pattern) + "'");
    std::string_view token = pattern.substr(open + 1, close - open - 1);
    pos = close + 1;
    if (token.empty()) {
      out.push_back('$');
      continue;
    }
    std::string_view name = token.substr(0, token.find('%'));
    std::string_view format = token.substr(name.size());
    if (name == "RepresentationID") {
      if (!format.empty()) return invalid_at(element, "format tag on $RepresentationID$");
      out.append(values.representation_id);
      if (out.size() > kMaxUrlBytes) return invalid_at(element, "template expands to an over-long name");
      continue;
    }
    uint64_t number = 0;
    if (name == "Number") {
      number = values.number;
    } else if (name == "Time") {
      number = values.time;
    } else if (name == "Bandwidth") {
      number = values.bandwidth;
    } else {
      return invalid_at(element, "unknown template identifier $" + std::string(token) + "$");
    }
    int width = 1;
    if (!format.empty()) {
      // Only %0<width>d (or %d) is allowed by ISO/IEC 23009-1 5.3.9.4.4.
      if (format.size() < 2 || format.back() != 'd')
        return invalid_at(element, "bad format tag '" + std::string(format) + "'");
      std::string_view digits = format.substr(1, format.size() - 2);
      if (!digits.empty()) {
        auto [stop, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), width);
        if (ec != std::errc() || stop != digits.data() + digits.size() || width < 0 || width > kMaxNumberWidth) {
          return invalid_at(element, "bad format tag '" + std::string(format) + "'");
        }
      }
    }
    std::string digits = std::to_string(number);
    if (static_cast<int>(digits.size()) < width) out.append(width - digits.size(), '0');
    out.append(digits);
  }
  return out;
}

class Expander {
 public:
  absl::Status add_segment(DashRepresentation& representation, std::string file, const XMLElement* element) {
    // An empty template or sourceURL resolves to the BaseURL's directory:
    // that is no file a player could fetch.
    if (file.empty() || file.ends_with('/')) {
      return invalid_at(element,
                        "representation " + representation.id + " names a directory, not a file: '" + file + "'");
    }
    if (++count_ > kMaxSegments) return invalid_at(element, "manifest lists more than 500000 segments");
    bytes_ += file.size();
    // A long media template times many segments could otherwise take gigabytes.
    if (bytes_ > kMaxExpandedBytes) return invalid_at(element, "manifest expands to more than 64 MiB of file names");
    representation.files.push_back(std::move(file));
    return absl::OkStatus();
  }
  size_t remaining() const { return count_ >= kMaxSegments ? 0 : kMaxSegments - count_; }

 private:
  size_t count_ = 0;
  size_t bytes_ = 0;
};

absl::Status expand_segment_template(const Context& context, double period_seconds, DashRepresentation& rep,
                                     Expander& expander) {
  const Template& t = context.segment_template;
  const XMLElement* element = t.element;
  if (!t.media) return invalid_at(element, "SegmentTemplate without media");
  uint64_t timescale = t.timescale.value_or(1);
  if (timescale == 0) return invalid_at(element, "timescale 0");
  uint64_t number = t.start_number.value_or(1);
  if (t.initialization) {
    auto init = expand_template(*t.initialization, {rep.id, number, 0, rep.bandwidth}, element);
    if (!init.ok()) return init.status();
    if (absl::Status s = expander.add_segment(rep, resolve(context.base_url, *init), element); !s.ok()) return s;
  }

  auto emit = [&](uint64_t time) -> absl::Status {
    auto media = expand_template(*t.media, {rep.id, number, time, rep.bandwidth}, element);
    if (!media.ok()) return media.status();
    ++number;
    return expander.add_segment(rep, resolve(context.base_url, *media), element);
  };

  if (t.timeline) {
    uint64_t pto = t.presentation_time_offset.value_or(0);
    uint64_t time = 0;
    bool first = true;
    for (const XMLElement* s = t.timeline->FirstChildElement(); s; s = s->NextSiblingElement()) {
      if (local_name(s) != "S") continue;
      auto start = unsigned_attribute(s, "t");
      auto duration = unsigned_attribute(s, "d");
      auto repeat = signed_attribute(s, "r");
      if (!start.ok()) return start.status();
      if (!duration.ok()) return duration.status();
      if (!repeat.ok()) return repeat.status();
      if (*start) time = **start;
      first = false;
      if (!*duration || **duration == 0) return invalid_at(s, "S without a positive d");
      uint64_t d = **duration;
      int64_t r = repeat->value_or(0);
      uint64_t count = 0;
      if (r >= 0) {
        count = static_cast<uint64_t>(r) + 1;
      } else if (r == -1) {
        // Repeat until the next S's start, or the end of the period.
        const XMLElement* next = next_sibling(s, "S");
        double end = 0;
        if (next && next->Attribute("t")) {
          auto next_start = unsigned_attribute(next, "t");
          if (!next_start.ok()) return next_start.status();
          end = static_cast<double>(**next_start);
        } else if (period_seconds > 0) {
          end = static_cast<double>(pto) + period_seconds * static_cast<double>(timescale);
        } else {
          return invalid_at(s, "r=-1 with no period duration to end it");
        }
        double span = end - static_cast<double>(time);
        if (span <= 0) return invalid_at(s, "r=-1 segment starts after the end of its period");
        double repeats = std::ceil(span / static_cast<double>(d));
        if (repeats > static_cast<double>(expander.remaining())) {
          return invalid_at(s, "manifest lists more than 500000 segments");
        }
        // The S is a segment however short the span: a tiny span over a huge
        // d must not round (or underflow) to none.
        count = std::max<uint64_t>(1, static_cast<uint64_t>(repeats));
      } else {
        return invalid_at(s, "bad r " + std::to_string(r));
      }
      if (count > expander.remaining()) return invalid_at(s, "manifest lists more than 500000 segments");
      if (d > 0 && count > (std::numeric_limits<uint64_t>::max() - time) / d)
        return invalid_at(s, "timeline overflows");
      for (uint64_t i = 0; i < count; ++i) {
        if (absl::Status status = emit(time); !status.ok()) return status;
        time += d;
      }
    }
    if (first) return invalid_at(t.timeline, "empty SegmentTimeline");
    return absl::OkStatus();
  }

  if (!t.duration || *t.duration == 0)
    return invalid_at(element, "SegmentTemplate with neither SegmentTimeline nor duration");
  if (period_seconds <= 0) return invalid_at(element, "cannot count segments: the period has no duration");
  double count_exact = period_seconds * static_cast<double>(timescale) / static_cast<double>(*t.duration);
  if (count_exact > static_cast<double>(expander.remaining())) {
    return invalid_at(element, "manifest lists more than 500000 segments");
  }
  // The tolerance keeps 3.0000000001 segments at 3; a period shorter than
  // one segment still has that one.
  uint64_t count = std::max<uint64_t>(1, static_cast<uint64_t>(std::ceil(count_exact - 1e-9)));
  for (uint64_t i = 0; i < count; ++i) {
    if (absl::Status status = emit(i * *t.duration); !status.ok()) return status;
  }
  return absl::OkStatus();
}

absl::Status add_initialization(const XMLElement* parent, const Context& context, DashRepresentation& rep,
                                Expander& expander) {
  const XMLElement* init = first_child(parent, "Initialization");
  if (!init) return absl::OkStatus();
  const char* source = init->Attribute("sourceURL");
  if (!source) return absl::OkStatus();  // the init data is a byte range of the BaseURL file
  return expander.add_segment(rep, resolve(context.base_url, source), init);
}

absl::Status expand_representation(const Context& context, double period_seconds, DashRepresentation& rep,
                                   Expander& expander, const XMLElement* element) {
  switch (context.addressing) {
    case Addressing::kTemplate:
      return expand_segment_template(context, period_seconds, rep, expander);
    case Addressing::kList: {
      const XMLElement* list = context.addressing_element;
      if (absl::Status s = add_initialization(list, context, rep, expander); !s.ok()) return s;
      size_t before = rep.files.size();
      absl::Status s = for_each_child(list, "SegmentURL", [&](const XMLElement* url) -> absl::Status {
        const char* media = url->Attribute("media");
        if (!media || !*media) return invalid_at(url, "SegmentURL without media");
        return expander.add_segment(rep, resolve(context.base_url, media), url);
      });
      if (!s.ok()) return s;
      if (rep.files.size() == before) return invalid_at(list, "SegmentList without SegmentURL");
      return absl::OkStatus();
    }
    case Addressing::kBase:
      if (absl::Status s = add_initialization(context.addressing_element, context, rep, expander); !s.ok()) return s;
      [[fallthrough]];
    case Addressing::kNone:
      // The whole representation is the one file its BaseURL names.
      if (context.base_url.empty() || context.base_url.ends_with('/')) {
        return invalid_at(element, "representation " + rep.id + " names no segment or file");
      }
      return expander.add_segment(rep, context.base_url, element);
  }
  return absl::OkStatus();
}

}  // namespace

std::optional<double> parse_iso8601_duration(std::string_view text) {
  if (!text.starts_with('P')) return std::nullopt;
  text.remove_prefix(1);
  double seconds = 0;
  bool in_time = false;
  bool any = false;
  std::string_view order = "YMWD";  // designators allowed next, date part
  while (!text.empty()) {
    if (text.front() == 'T') {
      if (in_time) return std::nullopt;
      in_time = true;
      order = "HMS";
      text.remove_prefix(1);
      if (text.empty()) return std::nullopt;  // "PT" alone
      continue;
    }
    double value = 0;
    if (text.front() == '-' || text.front() == '+') return std::nullopt;
    auto [stop, ec] = std::from_chars(text.data(), text.data() + text.size(), value, std::chars_format::fixed);
    if (ec != std::errc() || stop == text.data() + text.size() || !std::isfinite(value)) return std::nullopt;
    char designator = *stop;
    text.remove_prefix(stop - text.data() + 1);
    size_t at = order.find(designator);
    if (at == std::string_view::npos) return std::nullopt;
    order.remove_prefix(at + 1);  // each designator at most once, in order
    double unit = 0;
    if (!in_time) {
      unit = designator == 'Y'   ? 365 * 86400.0
             : designator == 'M' ? 30 * 86400.0
             : designator == 'W' ? 7 * 86400.0
                                 : 86400.0;
    } else {
      unit = designator == 'H' ? 3600.0 : designator == 'M' ? 60.0 : 1.0;
    }
    seconds += value * unit;
    any = true;
  }
  if (!any || !std::isfinite(seconds)) return std::nullopt;
  return seconds;
}

absl::StatusOr<DashManifest> parse_dash_manifest(std::string_view xml) {
  tinyxml2::XMLDocument doc;
  if (doc.Parse(xml.data(), xml.size()) != tinyxml2::XML_SUCCESS) {
    return invalid(std::string("manifest is not well-formed XML: ") + doc.ErrorStr());
  }
  const XMLElement* mpd = doc.RootElement();
  if (!mpd || local_name(mpd) != "MPD") return invalid("root element is not MPD");

  DashManifest manifest;
  auto total = duration_attribute(mpd, "mediaPresentationDuration");
  if (!total.ok()) return total.status();
  manifest.duration_seconds = total->value_or(0);

  Context root;
  if (absl::Status s = descend(mpd, root); !s.ok()) return s;
  Expander expander;
  bool any_period = false;
  double next_start = 0;  // a Period without @start begins where the previous one ended
  for (const XMLElement* period = mpd->FirstChildElement(); period; period = period->NextSiblingElement()) {
    if (local_name(period) != "Period") continue;
    any_period = true;
    auto start = duration_attribute(period, "start");
    auto duration = duration_attribute(period, "duration");
    if (!start.ok()) return start.status();
    if (!duration.ok()) return duration.status();
    double period_start = start->value_or(next_start);
    double period_seconds = 0;
    if (*duration) {
      period_seconds = **duration;
    } else {
      const XMLElement* following = next_sibling(period, "Period");
      std::optional<double> following_start;
      if (following) {
        auto parsed = duration_attribute(following, "start");
        if (!parsed.ok()) return parsed.status();
        following_start = *parsed;
      }
      if (following_start) {
        period_seconds = *following_start - period_start;
      } else if (manifest.duration_seconds > 0) {
        period_seconds = manifest.duration_seconds - period_start;
      }
    }
    next_start = period_start + std::max(0.0, period_seconds);

    Context period_context = root;
    if (absl::Status s = descend(period, period_context); !s.ok()) return s;
    absl::Status status = for_each_child(period, "AdaptationSet", [&](const XMLElement* set) -> absl::Status {
      Context set_context = period_context;
      if (absl::Status s = descend(set, set_context); !s.ok()) return s;
      return for_each_child(set, "Representation", [&](const XMLElement* element) -> absl::Status {
        Context context = set_context;
        if (absl::Status s = descend(element, context); !s.ok()) return s;
        DashRepresentation rep;
        const char* id = element->Attribute("id");
        if (!id || !*id) return invalid_at(element, "Representation without id");
        rep.id = id;
        auto bandwidth = unsigned_attribute(element, "bandwidth");
        if (!bandwidth.ok()) return bandwidth.status();
        rep.bandwidth = bandwidth->value_or(0);
        rep.mime_type = context.mime_type;
        rep.codecs = context.codecs;
        rep.width = context.width;
        rep.height = context.height;
        if (absl::Status s = expand_representation(context, period_seconds, rep, expander, element); !s.ok()) return s;
        manifest.representations.push_back(std::move(rep));
        return absl::OkStatus();
      });
    });
    if (!status.ok()) return status;
  }
  if (!any_period) return invalid("manifest has no Period");
  if (manifest.representations.empty()) return invalid("manifest has no Representation");
  return manifest;
}

}  // namespace flux::worker::validator
