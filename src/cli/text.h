#pragma once
// Small text helpers for what fluxctl prints to a terminal.
#include <cstdint>
#include <string>
#include <string_view>

namespace flux::cli {

// `text` safe to print on a terminal: C0 controls, DEL and UTF-8-encoded C1
// controls become '?', so a server-provided string (an error message, an
// input URL, metadata) cannot move the cursor or send escape sequences.
std::string printable(std::string_view text);

// Columns `text` takes, counting one per UTF-8 code point (wide characters
// are not special-cased; what fluxctl prints is essentially ASCII).
size_t display_width(std::string_view text);

// The longest prefix of `text` that fits `width` columns, cut on a code point
// boundary.
std::string truncate_to_width(std::string_view text, size_t width);

// "0:07", "12:34", "1:02:03"; negative is treated as 0.
std::string format_clock(double seconds);

// "0.4 s", "12.3 s", "2 min 5 s", "1 h 2 min".
std::string format_seconds(double seconds);

// "512 B", "1.5 KiB", "12.0 MiB", "1.20 GiB".
std::string format_bytes(uint64_t bytes);

}  // namespace flux::cli
