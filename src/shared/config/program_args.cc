#include "shared/config/program_args.h"

#include <cstdio>
#include <string>

namespace flux::config {

std::optional<int> handle_program_args(int argc, char** argv, std::string_view program, std::string_view version,
                                       std::string_view usage) {
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      std::fwrite(usage.data(), 1, usage.size(), stdout);
      return 0;
    }
    if (arg == "--version") {
      std::printf("%.*s %.*s\n", static_cast<int>(program.size()), program.data(), static_cast<int>(version.size()),
                  version.data());
      return 0;
    }
    std::fprintf(stderr, "%.*s: unknown argument %s (see --help)\n", static_cast<int>(program.size()), program.data(),
                 argv[i]);
    return 2;
  }
  return std::nullopt;
}

}  // namespace flux::config
