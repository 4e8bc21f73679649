#pragma once
#include <chrono>
#include <string>

namespace flux {

// RFC 3339 in UTC with milliseconds: 2026-11-30T08:43:25.123Z.
std::string format_rfc3339(std::chrono::system_clock::time_point t);
std::string now_rfc3339();

}  // namespace flux
