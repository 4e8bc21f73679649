#pragma once
// Typed access to the process environment for start-up configuration.
//
// Every reader returns the default when the variable is unset or empty, and an
// error (code "invalid_config") when it is set to something malformed, so that a
// typo stops the program at start instead of being silently replaced by a
// default. Error messages start with the variable name:
//   MAX_CONCURRENT_JOBS: expected an integer between 1 and 1024, got "abc"
// Values of variables whose name contains KEY, SECRET, TOKEN or PASSWORD are
// never echoed: the message says <redacted> instead.
#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

// Assigns the value of an absl::StatusOr expression to `lhs`, or returns its
// error from the enclosing function: configuration loaders read dozens of
// variables and stop at the first bad one.
#define FLUX_ASSIGN_OR_RETURN(lhs, expr)                              \
  do {                                                                \
    auto flux_assign_value_ = (expr);                                 \
    if (!flux_assign_value_.ok()) return flux_assign_value_.status(); \
    lhs = std::move(*flux_assign_value_);                             \
  } while (0)

namespace flux::config {

class Env {
 public:
  // A snapshot of the process environment; later setenv() calls are not seen.
  static Env from_process();
  explicit Env(std::map<std::string, std::string> vars);

  // The value as set, or nullopt when the variable is unset or empty.
  std::optional<std::string> raw(std::string_view name) const;

  // The value as set (not trimmed).
  absl::StatusOr<std::string> string(std::string_view name, std::string default_value) const;

  // A decimal integer in [min, max]; surrounding whitespace is ignored.
  absl::StatusOr<int64_t> integer(std::string_view name, int64_t default_value, int64_t min, int64_t max) const;

  // true/false, 1/0, yes/no, on/off (case-insensitive).
  absl::StatusOr<bool> boolean(std::string_view name, bool default_value) const;

  // A duration in [min, max] seconds: a plain number of seconds ("1", "0.5") or
  // a number with a unit: ms, s, m, h ("500ms", "30s", "2m", "1h").
  // Rounded to the nearest millisecond.
  absl::StatusOr<std::chrono::milliseconds> seconds(std::string_view name, double default_seconds, double min,
                                                    double max) const;

  // A size in bytes: a plain number ("1048576") or a number with a unit.
  // Binary units are powers of 1024 (KiB, MiB, GiB, TiB, and the short K, M, G, T);
  // decimal units with a B are powers of 1000 (KB, MB, GB, TB). Units are
  // case-insensitive; fractions are allowed with a unit ("1.5GiB") and rounded down.
  absl::StatusOr<uint64_t> bytes(std::string_view name, uint64_t default_value) const;

  // One of `allowed`, compared case-insensitively; returns the spelling from `allowed`.
  absl::StatusOr<std::string> one_of(std::string_view name, std::string default_value,
                                     std::vector<std::string> allowed) const;

  // A comma-separated list; items are trimmed and empty items dropped.
  absl::StatusOr<std::vector<std::string>> list(std::string_view name, std::vector<std::string> default_value) const;

 private:
  std::map<std::string, std::string, std::less<>> vars_;
};

// True when the variable's value must never appear in messages or logs
// (its name contains KEY, SECRET, TOKEN or PASSWORD, in any case).
bool is_secret_name(std::string_view name);

}  // namespace flux::config
