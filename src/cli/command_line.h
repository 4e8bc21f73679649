#pragma once
// fluxctl's command line (CLI11): what the user asked for, checked before
// anything is sent. Pure: arguments and environment values in, an Invocation
// (or the text to print and the exit code) out.
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "cli/job_service.h"

namespace flux::cli {

enum class Command { kSubmit, kWatch, kGet, kList, kCancel, kWorkers, kPresets };

struct SubmitArgs {
  std::string input_url;
  std::string preset;
  std::string output_path;
  std::string storage;  // "" = what the workers serve (s3 when both or unknown)
  std::string type;     // "" = the preset's
  std::optional<int> priority;
  std::string callback_url;
  std::map<std::string, std::string> metadata;
  std::string idempotency_key;
  bool wait = false;
};

struct Invocation {
  Command command = Command::kGet;
  std::string url;      // control plane base URL
  std::string api_key;  // "" = none
  bool json = false;
  SubmitArgs submit;
  std::string job_id;  // watch, get, cancel
  ListQuery list;
};

// The environment variables fluxctl reads (nullopt when unset).
struct Environment {
  std::optional<std::string> flux_url;      // FLUX_URL
  std::optional<std::string> flux_api_key;  // FLUX_API_KEY
};

inline constexpr char kDefaultUrl[] = "http://localhost:8080";

struct ParsedCommandLine {
  // Set when there is a command to run; otherwise print `out` and `err` and
  // exit with exit_code (0 after --help/--version, 2 on a usage error).
  std::optional<Invocation> invocation;
  int exit_code = 0;
  std::string out;
  std::string err;
};

// Parses argv[1..]. --url beats FLUX_URL beats the default; --api-key beats
// FLUX_API_KEY. Usage errors (unknown option, missing or malformed value,
// no command, a non-http(s) URL, bad --metadata) give exit code 2 and a
// message on `err`. The API key never appears in any output.
ParsedCommandLine parse_command_line(const std::vector<std::string>& args, const Environment& env);

}  // namespace flux::cli
