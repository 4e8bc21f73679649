#pragma once
// Structured logging to stdout, one line per entry.
//
// JSON format (default): {"ts":"2026-11-30T08:43:25.123Z","level":"info","msg":"...","component":"worker",<fields>}
// Text format (for ENV=development): 2026-11-30T08:43:25.123Z INFO  [worker] msg key=value ...
//
// Fields whose key contains "key", "secret", "token", "password" or
// "authorization" (in any case, at any nesting depth) are written as
// "<redacted>", so a secret passed as a field never reaches the output.
// Usable before init(): the defaults are level info, JSON, component "flux".
// Every function is thread-safe and never throws.
#include <functional>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "absl/status/statusor.h"

namespace flux::log {

enum class Level { kDebug, kInfo, kWarn, kError };
enum class Format { kJson, kText };

// "debug", "info", "warn" (or "warning"), "error", case-insensitive.
absl::StatusOr<Level> parse_level(std::string_view text);
std::string_view level_name(Level level);

// Sets the component name, minimum level and output format for the whole process.
void init(std::string component, Level level, Format format);

// Changes only the minimum level.
void set_level(Level level);

bool enabled(Level level);

// `fields` is normally a JSON object; each member becomes a field of the line.
// A field named like a reserved key (ts, level, msg, component) is written as
// "field_<name>" so it cannot forge the entry's own metadata.
void write(Level level, std::string_view msg, const nlohmann::json& fields = nlohmann::json::object());
void debug(std::string_view msg, const nlohmann::json& fields = nlohmann::json::object());
void info(std::string_view msg, const nlohmann::json& fields = nlohmann::json::object());
void warn(std::string_view msg, const nlohmann::json& fields = nlohmann::json::object());
void error(std::string_view msg, const nlohmann::json& fields = nlohmann::json::object());

// Test hook: lines (without the trailing newline) go to `sink` instead of
// stdout. An empty function restores stdout. `sink` may be called from any
// thread, one line at a time.
void set_sink_for_testing(std::function<void(const std::string&)> sink);

// True when a field with this key is redacted.
bool is_secret_key(std::string_view key);

}  // namespace flux::log
