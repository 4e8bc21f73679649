#pragma once
// FUZZ_CHECK(condition, detail): an invariant of the code under test. A
// violation prints what broke and aborts, which libFuzzer reports as a crash
// and saves the input for.
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

namespace flux::fuzz {

[[noreturn]] inline void invariant_failed(const char* file, int line, const char* condition,
                                          const std::string& detail) {
  std::fprintf(stderr, "%s:%d: invariant violated: %s\n  %s\n", file, line, condition, detail.c_str());
  std::abort();
}

// `text` with non-printable bytes as \xNN, for invariant messages.
inline std::string printable(std::string_view text) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (const char ch : text) {
    const auto c = static_cast<unsigned char>(ch);
    if (c >= 0x20 && c < 0x7f && c != '\\') {
      out.push_back(ch);
    } else {
      out += "\\x";
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  return out;
}

}  // namespace flux::fuzz

#define FUZZ_CHECK(condition, detail)                                                           \
  do {                                                                                          \
    if (!(condition)) ::flux::fuzz::invariant_failed(__FILE__, __LINE__, #condition, (detail)); \
  } while (false)
