#pragma once
// `--metadata k=v` arguments.
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace flux::cli {

// Parses "key=value" items into a map. The key is everything before the first
// '=', the value everything after (it may hold '=' and be empty). Refused,
// with error code "usage": no '=', a key outside [A-Za-z0-9_-]{1,64} (the
// server's rule, checked here so the mistake is reported before anything is
// sent), or the same key twice.
absl::StatusOr<std::map<std::string, std::string>> parse_metadata(const std::vector<std::string>& items);

}  // namespace flux::cli
