#pragma once
// The command line of the server programs: configuration comes from the
// environment, so the only arguments are --help and --version.
#include <optional>
#include <string_view>

namespace flux::config {

// Handles --help/-h (prints `usage`), --version (prints "<program> <version>")
// and refuses anything else. Returns the exit code when the program should
// stop now (0, or 2 for an unknown argument), nullopt to go on.
std::optional<int> handle_program_args(int argc, char** argv, std::string_view program, std::string_view version,
                                       std::string_view usage);

}  // namespace flux::config
