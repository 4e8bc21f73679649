#include "shared/config/env.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <limits>
#include <utility>

#include "shared/core/error.h"

extern char** environ;  // NOLINT: POSIX, declared by no standard header in C++ mode

namespace flux::config {
namespace {

constexpr std::string_view kCode = "invalid_config";

char lower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

std::string to_lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(), lower);
  return out;
}

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() &&
         std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) { return lower(x) == lower(y); });
}

std::string_view trim(std::string_view s) {
  constexpr std::string_view kSpace = " \t\r\n\v\f";
  const auto first = s.find_first_not_of(kSpace);
  if (first == std::string_view::npos) return {};
  const auto last = s.find_last_not_of(kSpace);
  return s.substr(first, last - first + 1);
}

// Shortest round-trip form: 1 → "1", 0.5 → "0.5".
std::string format_number(double v) {
  char buf[64];
  const auto result = std::to_chars(buf, buf + sizeof buf, v);
  return std::string(buf, result.ptr);
}

// A JSON-style quoted rendering so that control characters in a bad value
// cannot forge extra log lines when the message is printed.
std::string quote(std::string_view value) {
  std::string out = "\"";
  for (const char c : value) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          static constexpr char kHex[] = "0123456789abcdef";
          out += "\\u00";
          out += kHex[(c >> 4) & 0xf];
          out += kHex[c & 0xf];
        } else {
          out += c;
        }
    }
  }
  out += '"';
  return out;
}

absl::Status invalid(std::string_view name, std::string_view expectation, std::string_view value) {
  std::string message(name);
  message += ": expected ";
  message += expectation;
  message += ", got ";
  message += is_secret_name(name) ? std::string("<redacted>") : quote(value);
  return invalid_argument(kCode, message);
}

// Parses the whole of `s` as a finite, non-negative decimal number.
std::optional<double> parse_non_negative(std::string_view s) {
  if (s.empty()) return std::nullopt;
  double v = 0;
  const auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), v, std::chars_format::fixed);
  if (ec != std::errc() || ptr != s.data() + s.size() || !std::isfinite(v) || v < 0) return std::nullopt;
  return v;
}

// Splits "30s" into ("30", "s"): the number is the leading run of digits and dots.
std::pair<std::string_view, std::string_view> split_unit(std::string_view s) {
  const auto end = s.find_first_not_of("0123456789.");
  if (end == std::string_view::npos) return {s, {}};
  return {s.substr(0, end), trim(s.substr(end))};
}

}  // namespace

bool is_secret_name(std::string_view name) {
  const std::string upper = [&] {
    std::string out(name);
    std::transform(out.begin(), out.end(), out.begin(),
                   [](char c) { return (c >= 'a' && c <= 'z') ? static_cast<char>(c - 'a' + 'A') : c; });
    return out;
  }();
  for (const std::string_view word : {"KEY", "SECRET", "TOKEN", "PASSWORD"}) {
    if (upper.find(word) != std::string::npos) return true;
  }
  return false;
}

Env Env::from_process() {
  std::map<std::string, std::string> vars;
  for (char** entry = environ; entry != nullptr && *entry != nullptr; ++entry) {
    const std::string_view line(*entry);
    const auto eq = line.find('=');
    if (eq == std::string_view::npos) continue;
    vars.emplace(std::string(line.substr(0, eq)), std::string(line.substr(eq + 1)));
  }
  return Env(std::move(vars));
}

Env::Env(std::map<std::string, std::string> vars) : vars_(vars.begin(), vars.end()) {}

std::optional<std::string> Env::raw(std::string_view name) const {
  const auto it = vars_.find(name);
  if (it == vars_.end() || it->second.empty()) return std::nullopt;
  return it->second;
}

absl::StatusOr<std::string> Env::string(std::string_view name, std::string default_value) const {
  auto value = raw(name);
  if (!value) return default_value;
  return *std::move(value);
}

absl::StatusOr<int64_t> Env::integer(std::string_view name, int64_t default_value, int64_t min, int64_t max) const {
  const auto value = raw(name);
  if (!value) return default_value;
  const std::string_view text = trim(*value);
  int64_t parsed = 0;
  const auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), parsed);
  if (text.empty() || ec != std::errc() || ptr != text.data() + text.size() || parsed < min || parsed > max) {
    return invalid(name, "an integer between " + std::to_string(min) + " and " + std::to_string(max), *value);
  }
  return parsed;
}

absl::StatusOr<bool> Env::boolean(std::string_view name, bool default_value) const {
  const auto value = raw(name);
  if (!value) return default_value;
  const std::string text = to_lower(trim(*value));
  if (text == "true" || text == "1" || text == "yes" || text == "on") return true;
  if (text == "false" || text == "0" || text == "no" || text == "off") return false;
  return invalid(name, "true or false", *value);
}

absl::StatusOr<std::chrono::milliseconds> Env::seconds(std::string_view name, double default_seconds, double min,
                                                       double max) const {
  const auto to_ms = [](double secs) { return std::chrono::milliseconds(std::llround(secs * 1000.0)); };
  const auto value = raw(name);
  if (!value) return to_ms(default_seconds);
  const auto fail = [&] {
    return invalid(name,
                   "a duration between " + format_number(min) + " and " + format_number(max) +
                       " seconds (like 30, 0.5, 30s, 500ms, 2m)",
                   *value);
  };
  const auto [number, unit] = split_unit(trim(*value));
  const auto amount = parse_non_negative(number);
  if (!amount) return fail();
  double factor = 0;
  const std::string unit_lower = to_lower(unit);
  if (unit_lower.empty() || unit_lower == "s") {
    factor = 1;
  } else if (unit_lower == "ms") {
    factor = 0.001;
  } else if (unit_lower == "m") {
    factor = 60;
  } else if (unit_lower == "h") {
    factor = 3600;
  } else {
    return fail();
  }
  const double secs = *amount * factor;
  if (!std::isfinite(secs) || secs < min || secs > max) return fail();
  return to_ms(secs);
}

absl::StatusOr<uint64_t> Env::bytes(std::string_view name, uint64_t default_value) const {
  const auto value = raw(name);
  if (!value) return default_value;
  const auto fail = [&] { return invalid(name, "a size in bytes (like 1048576, 512MiB, 2GB, 10G)", *value); };
  const auto [number, unit] = split_unit(trim(*value));
  if (number.empty()) return fail();

  struct Unit {
    std::string_view name;
    uint64_t multiplier;
  };
  static constexpr uint64_t kKi = 1024, kK = 1000;
  static constexpr Unit kUnits[] = {
      {"", 1},
      {"b", 1},
      {"k", kKi},
      {"ki", kKi},
      {"kib", kKi},
      {"kb", kK},
      {"m", kKi * kKi},
      {"mi", kKi * kKi},
      {"mib", kKi * kKi},
      {"mb", kK * kK},
      {"g", kKi * kKi * kKi},
      {"gi", kKi * kKi * kKi},
      {"gib", kKi * kKi * kKi},
      {"gb", kK * kK * kK},
      {"t", kKi * kKi * kKi * kKi},
      {"ti", kKi * kKi * kKi * kKi},
      {"tib", kKi * kKi * kKi * kKi},
      {"tb", kK * kK * kK * kK},
  };
  const std::string unit_lower = to_lower(unit);
  const auto it =
      std::find_if(std::begin(kUnits), std::end(kUnits), [&](const Unit& u) { return u.name == unit_lower; });
  if (it == std::end(kUnits)) return fail();

  if (number.find('.') == std::string_view::npos) {
    // Integers are parsed exactly: a double would lose precision above 2^53.
    uint64_t count = 0;
    const auto [ptr, ec] = std::from_chars(number.data(), number.data() + number.size(), count);
    if (ec != std::errc() || ptr != number.data() + number.size()) return fail();
    if (count > std::numeric_limits<uint64_t>::max() / it->multiplier) return fail();
    return count * it->multiplier;
  }
  if (it->multiplier == 1) return fail();  // a fraction of a byte makes no sense
  const auto amount = parse_non_negative(number);
  if (!amount) return fail();
  const double total = std::floor(*amount * static_cast<double>(it->multiplier));
  // 2^64 is exactly representable; anything at or above it overflows uint64_t.
  if (!(total < 18446744073709551616.0)) return fail();
  return static_cast<uint64_t>(total);
}

absl::StatusOr<std::string> Env::one_of(std::string_view name, std::string default_value,
                                        std::vector<std::string> allowed) const {
  const auto value = raw(name);
  if (!value) return default_value;
  const std::string_view text = trim(*value);
  for (auto& candidate : allowed) {
    if (iequals(candidate, text)) return std::move(candidate);
  }
  std::string expectation = "one of ";
  for (size_t i = 0; i < allowed.size(); ++i) {
    if (i > 0) expectation += i + 1 == allowed.size() ? " or " : ", ";
    expectation += allowed[i];
  }
  return invalid(name, expectation, *value);
}

absl::StatusOr<std::vector<std::string>> Env::list(std::string_view name,
                                                   std::vector<std::string> default_value) const {
  const auto value = raw(name);
  if (!value) return default_value;
  std::vector<std::string> items;
  std::string_view rest = *value;
  while (true) {
    const auto comma = rest.find(',');
    const std::string_view item = trim(rest.substr(0, comma));
    if (!item.empty()) items.emplace_back(item);
    if (comma == std::string_view::npos) break;
    rest.remove_prefix(comma + 1);
  }
  return items;
}

}  // namespace flux::config
