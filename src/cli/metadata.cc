#include "cli/metadata.h"

#include "shared/core/error.h"

namespace flux::cli {
namespace {

bool valid_key(const std::string& key) {
  if (key.empty() || key.size() > 64) return false;
  for (char c : key) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
    if (!ok) return false;
  }
  return true;
}

}  // namespace

absl::StatusOr<std::map<std::string, std::string>> parse_metadata(const std::vector<std::string>& items) {
  std::map<std::string, std::string> metadata;
  for (const std::string& item : items) {
    const size_t eq = item.find('=');
    if (eq == std::string::npos) {
      return invalid_argument("usage", "--metadata: expected key=value, got \"" + item + "\"");
    }
    std::string key = item.substr(0, eq);
    if (!valid_key(key)) {
      return invalid_argument("usage", "--metadata: key \"" + key + "\" must match [A-Za-z0-9_-]{1,64}");
    }
    if (!metadata.emplace(key, item.substr(eq + 1)).second) {
      return invalid_argument("usage", "--metadata: key \"" + key + "\" given twice");
    }
  }
  return metadata;
}

}  // namespace flux::cli
