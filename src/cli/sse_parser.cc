#include "cli/sse_parser.h"

namespace flux::cli {

SseParser::SseParser(size_t max_line_bytes) : max_line_bytes_(max_line_bytes) {}

std::vector<SseEvent> SseParser::feed(std::string_view bytes) {
  std::vector<SseEvent> out;
  for (size_t i = 0; i < bytes.size() && !overflowed_; ++i) {
    const char c = bytes[i];
    if (after_cr_) {
      after_cr_ = false;
      if (c == '\n') continue;  // the LF of a CRLF
    }
    if (c == '\r' || c == '\n') {
      after_cr_ = c == '\r';
      end_of_line(out);
      continue;
    }
    // Copy the run of ordinary bytes at once.
    size_t end = i;
    while (end < bytes.size() && bytes[end] != '\r' && bytes[end] != '\n') ++end;
    if (line_.size() + (end - i) > max_line_bytes_) {
      overflowed_ = true;
      line_.clear();
      break;
    }
    line_.append(bytes.substr(i, end - i));
    i = end - 1;
  }
  return out;
}

void SseParser::end_of_line(std::vector<SseEvent>& out) {
  std::string_view line = line_;
  if (first_line_) {
    first_line_ = false;
    constexpr std::string_view kBom = "\xEF\xBB\xBF";
    if (line.substr(0, kBom.size()) == kBom) line.remove_prefix(kBom.size());
  }
  process_line(line, out);
  line_.clear();
}

void SseParser::process_line(std::string_view line, std::vector<SseEvent>& out) {
  if (line.empty()) {
    // Dispatch. No data line means no event, but the id (if any) stays set.
    if (has_data_) {
      SseEvent event;
      event.id = last_event_id_;
      if (!type_.empty()) event.type = type_;
      event.data = std::move(data_);
      out.push_back(std::move(event));
    }
    data_.clear();
    has_data_ = false;
    type_.clear();
    return;
  }
  if (line.front() == ':') {
    ++comments_;
    return;
  }
  std::string_view field = line;
  std::string_view value;
  if (const size_t colon = line.find(':'); colon != std::string_view::npos) {
    field = line.substr(0, colon);
    value = line.substr(colon + 1);
    if (!value.empty() && value.front() == ' ') value.remove_prefix(1);
  }
  if (field == "data") {
    if (has_data_) data_ += '\n';
    data_.append(value);
    has_data_ = true;
  } else if (field == "event") {
    type_.assign(value);
  } else if (field == "id") {
    if (value.find('\0') == std::string_view::npos) last_event_id_.assign(value);
  } else if (field == "retry") {
    if (value.empty() || value.size() > 18) return;
    uint64_t ms = 0;
    for (char c : value) {
      if (c < '0' || c > '9') return;
      ms = ms * 10 + static_cast<uint64_t>(c - '0');
    }
    retry_ms_ = ms;
  }
  // Other fields are ignored, as the standard says.
}

}  // namespace flux::cli
