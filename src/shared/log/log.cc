#include "shared/log/log.h"

#include <algorithm>
#include <atomic>
#include <memory>
#include <mutex>

#include <spdlog/logger.h>
#include <spdlog/sinks/stdout_sinks.h>

#include "shared/core/error.h"
#include "shared/core/time.h"

namespace flux::log {
namespace {

using Json = nlohmann::json;

constexpr std::string_view kRedacted = "<redacted>";

// Immutable once published; init() and set_sink_for_testing() publish a new one,
// so writers only take the lock long enough to copy a shared_ptr.
struct Settings {
  std::string component = "flux";
  Format format = Format::kJson;
  std::function<void(const std::string&)> test_sink;
  std::shared_ptr<spdlog::logger> logger;
};

std::shared_ptr<spdlog::logger> make_stdout_logger() {
  // Not registered with spdlog's global registry: other code may use spdlog
  // for its own purposes without clashing with this logger's name.
  auto logger = std::make_shared<spdlog::logger>("flux", std::make_shared<spdlog::sinks::stdout_sink_mt>());
  logger->set_pattern("%v");
  logger->set_level(spdlog::level::trace);  // filtering happens in enabled()
  logger->flush_on(spdlog::level::trace);
  return logger;
}

struct State {
  std::mutex mu;
  std::shared_ptr<const Settings> settings;
  std::atomic<int> min_level{static_cast<int>(Level::kInfo)};
};

State& state() {
  // Leaked on purpose: logging must keep working during static destruction.
  static State* const instance = [] {
    auto* s = new State;
    auto settings = std::make_shared<Settings>();
    settings->logger = make_stdout_logger();
    s->settings = std::move(settings);
    return s;
  }();
  return *instance;
}

std::shared_ptr<const Settings> current_settings() {
  State& s = state();
  std::lock_guard lock(s.mu);
  return s.settings;
}

void publish(const std::function<void(Settings&)>& change) {
  State& s = state();
  std::lock_guard lock(s.mu);
  auto next = std::make_shared<Settings>(*s.settings);
  change(*next);
  s.settings = std::move(next);
}

std::string lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; });
  return out;
}

Json redact(const Json& value) {
  if (value.is_object()) {
    Json out = Json::object();
    for (const auto& [key, member] : value.items()) {
      out[key] = is_secret_key(key) ? Json(kRedacted) : redact(member);
    }
    return out;
  }
  if (value.is_array()) {
    Json out = Json::array();
    for (const auto& element : value) out.push_back(redact(element));
    return out;
  }
  return value;
}

// Invalid UTF-8 (from a file name, an ffmpeg line...) is replaced, not thrown on.
std::string dump(const Json& value) { return value.dump(-1, ' ', false, Json::error_handler_t::replace); }

// Printable ASCII without quotes or backslashes: written as is, inside quotes
// or bare. Most of what is logged (ids, codes, addresses) is like that.
bool is_plain(std::string_view text) {
  return std::all_of(text.begin(), text.end(), [](char c) { return c >= 0x20 && c < 0x7f && c != '"' && c != '\\'; });
}

// Appends `text` as a JSON string, exactly as dump() would write it.
void append_json_string(std::string& out, std::string_view text) {
  if (!is_plain(text)) {
    out += dump(Json(std::string(text)));
    return;
  }
  out += '"';
  out += text;
  out += '"';
}

void append_json(std::string& out, const Json& value) {
  if (value.is_string()) {
    append_json_string(out, value.get_ref<const std::string&>());
  } else {
    out += dump(value);
  }
}

// Case-insensitive: does `text` contain `lower_word` (given in lower case)?
bool contains_word(std::string_view text, std::string_view lower_word) {
  if (lower_word.size() > text.size()) return false;
  for (size_t i = 0; i + lower_word.size() <= text.size(); ++i) {
    size_t k = 0;
    while (k < lower_word.size()) {
      char c = text[i + k];
      if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
      if (c != lower_word[k]) break;
      ++k;
    }
    if (k == lower_word.size()) return true;
  }
  return false;
}

// True when a key at any depth must be redacted; most entries have none, and
// are then written without a redacted copy.
bool has_secret(const Json& value) {
  if (value.is_object()) {
    for (auto it = value.begin(); it != value.end(); ++it) {
      if (is_secret_key(it.key()) || has_secret(it.value())) return true;
    }
  } else if (value.is_array()) {
    for (const auto& element : value) {
      if (has_secret(element)) return true;
    }
  }
  return false;
}

bool is_reserved(std::string_view key) { return key == "ts" || key == "level" || key == "msg" || key == "component"; }

std::string field_name(const std::string& key) { return is_reserved(key) ? "field_" + key : key; }

// The fields as (name, value) pairs, redacted, in key order.
Json normalized_fields(const Json& fields) {
  if (fields.is_null()) return Json::object();
  if (!fields.is_object()) return redact(Json{{"fields", fields}});
  return redact(fields);
}

std::string json_line(std::string_view ts, Level level, std::string_view msg, const std::string& component,
                      const Json& fields) {
  std::string line;
  line.reserve(128 + msg.size());
  line += "{\"ts\":";
  append_json_string(line, ts);
  line += ",\"level\":\"";
  line += level_name(level);
  line += "\",\"msg\":";
  append_json_string(line, msg);
  line += ",\"component\":";
  append_json_string(line, component);
  for (auto it = fields.begin(); it != fields.end(); ++it) {
    line += ',';
    if (is_reserved(it.key())) {
      append_json_string(line, field_name(it.key()));
    } else {
      append_json_string(line, it.key());
    }
    line += ':';
    append_json(line, it.value());
  }
  line += '}';
  return line;
}

// A bare word stays bare; anything that could be mistaken for several tokens
// (spaces, quotes, '=', control characters) or is empty gets JSON quotes.
std::string text_value(const Json& value) {
  if (!value.is_string()) return dump(value);
  const auto& s = value.get_ref<const std::string&>();
  if (!s.empty() && s.find(' ') == std::string::npos && is_plain(s) && s.find('=') == std::string::npos) return s;
  const bool bare = !s.empty() && std::none_of(s.begin(), s.end(), [](char c) {
    return static_cast<unsigned char>(c) <= ' ' || c == '"' || c == '=' || c == '\\' || c == 0x7f;
  });
  return bare ? s : dump(value);
}

// The message without control characters, so one entry stays one line.
std::string text_message(std::string_view msg) {
  if (is_plain(msg)) return std::string(msg);
  const std::string quoted = dump(Json(msg));
  return quoted.substr(1, quoted.size() - 2);
}

std::string text_line(std::string_view ts, Level level, std::string_view msg, const std::string& component,
                      const Json& fields) {
  static constexpr std::string_view kPadded[] = {"DEBUG", "INFO ", "WARN ", "ERROR"};
  std::string line(ts);
  line += ' ';
  line += kPadded[static_cast<int>(level)];
  line += " [";
  line += component;
  line += "] ";
  line += text_message(msg);
  for (const auto& [key, value] : fields.items()) {
    line += ' ';
    line += field_name(key);
    line += '=';
    line += text_value(value);
  }
  return line;
}

spdlog::level::level_enum spdlog_level(Level level) {
  switch (level) {
    case Level::kDebug:
      return spdlog::level::debug;
    case Level::kInfo:
      return spdlog::level::info;
    case Level::kWarn:
      return spdlog::level::warn;
    case Level::kError:
      return spdlog::level::err;
  }
  return spdlog::level::info;
}

}  // namespace

absl::StatusOr<Level> parse_level(std::string_view text) {
  const std::string name = lower(text);
  if (name == "debug") return Level::kDebug;
  if (name == "info") return Level::kInfo;
  if (name == "warn" || name == "warning") return Level::kWarn;
  if (name == "error") return Level::kError;
  return invalid_argument("invalid_log_level",
                          "unknown log level \"" + std::string(text) + "\" (expected debug, info, warn or error)");
}

std::string_view level_name(Level level) {
  switch (level) {
    case Level::kDebug:
      return "debug";
    case Level::kInfo:
      return "info";
    case Level::kWarn:
      return "warn";
    case Level::kError:
      return "error";
  }
  return "info";
}

void init(std::string component, Level level, Format format) {
  publish([&](Settings& s) {
    s.component = std::move(component);
    s.format = format;
  });
  set_level(level);
}

void set_level(Level level) { state().min_level.store(static_cast<int>(level), std::memory_order_relaxed); }

bool enabled(Level level) { return static_cast<int>(level) >= state().min_level.load(std::memory_order_relaxed); }

void write(Level level, std::string_view msg, const nlohmann::json& fields) {
  if (!enabled(level)) return;
  try {
    const auto settings = current_settings();
    // Redacted into a copy only when there is something to redact.
    Json redacted;
    const bool as_is = fields.is_object() && !has_secret(fields);
    if (!as_is) redacted = normalized_fields(fields);
    const Json& normalized = as_is ? fields : redacted;
    const std::string ts = now_rfc3339();
    const std::string line = settings->format == Format::kJson
                                 ? json_line(ts, level, msg, settings->component, normalized)
                                 : text_line(ts, level, msg, settings->component, normalized);
    if (settings->test_sink) {
      settings->test_sink(line);
    } else {
      settings->logger->log(spdlog_level(level), spdlog::string_view_t(line.data(), line.size()));
    }
  } catch (...) {
    // A log call must never take the caller down; losing one line is the lesser evil.
  }
}

void debug(std::string_view msg, const nlohmann::json& fields) { write(Level::kDebug, msg, fields); }
void info(std::string_view msg, const nlohmann::json& fields) { write(Level::kInfo, msg, fields); }
void warn(std::string_view msg, const nlohmann::json& fields) { write(Level::kWarn, msg, fields); }
void error(std::string_view msg, const nlohmann::json& fields) { write(Level::kError, msg, fields); }

void set_sink_for_testing(std::function<void(const std::string&)> sink) {
  publish([&](Settings& s) {
    if (sink) {
      // Serialise calls so a test's sink need not be thread-safe itself.
      auto mu = std::make_shared<std::mutex>();
      s.test_sink = [mu, sink = std::move(sink)](const std::string& line) {
        std::lock_guard lock(*mu);
        sink(line);
      };
    } else {
      s.test_sink = nullptr;
    }
  });
}

bool is_secret_key(std::string_view key) {
  for (const std::string_view word : {"key", "secret", "token", "password", "authorization"}) {
    if (contains_word(key, word)) return true;
  }
  return false;
}

}  // namespace flux::log
