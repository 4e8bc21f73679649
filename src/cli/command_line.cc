#include "cli/command_line.h"

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cctype>
#include <sstream>

#include "cli/exit_codes.h"
#include "cli/metadata.h"
#include "flux_version.h"

namespace flux::cli {
namespace {

constexpr char kFooter[] = R"footer(Environment:
  FLUX_URL       control plane URL (default http://localhost:8080); --url wins
  FLUX_API_KEY   API key sent as a Bearer token; --api-key wins

Exit codes:
  0  success (submit --wait / watch: the job completed)
  1  the job failed or was cancelled
  2  usage error
  3  server or network error (printed as "error: <message> (<code>)")
  130 interrupted while waiting (the job keeps running))footer";

ParsedCommandLine usage_error(const std::string& message) {
  ParsedCommandLine result;
  result.exit_code = to_int(ExitCode::kUsage);
  result.err = "fluxctl: " + message + "\nRun with --help for more information.\n";
  return result;
}

bool is_http_url(const std::string& url) {
  auto starts = [&url](const char* prefix) {
    const std::string p(prefix);
    if (url.size() <= p.size()) return false;
    return std::equal(p.begin(), p.end(), url.begin(),
                      [](char a, char b) { return a == std::tolower(static_cast<unsigned char>(b)); });
  };
  return starts("http://") || starts("https://");
}

}  // namespace

ParsedCommandLine parse_command_line(const std::vector<std::string>& args, const Environment& env) {
  Invocation inv;
  std::string url;
  std::string api_key;
  std::vector<std::string> metadata_items;
  int priority = 0;

  CLI::App app{"fluxctl: submit and follow flux-encoder jobs through the control plane's REST API.", "fluxctl"};
  app.footer(kFooter);
  app.set_version_flag("--version", std::string("fluxctl ") + FLUX_VERSION, "Print the version and exit");
  app.require_subcommand(1);
  // Global options may come after the command too ("fluxctl get ID --json").
  app.fallthrough();
  app.add_option("--url", url, "Control plane URL (env FLUX_URL, default http://localhost:8080)");
  // No default shown for the key: it must never be printed.
  app.add_option("--api-key", api_key, "API key (env FLUX_API_KEY)");
  app.add_flag("--json", inv.json, "Machine-readable JSON output");

  SubmitArgs& s = inv.submit;
  CLI::App* submit = app.add_subcommand("submit", "Submit a job");
  submit->add_option("--input", s.input_url, "Input URL (https://, http://, s3:// or file:// as allowed)")->required();
  submit->add_option("--preset", s.preset, "Preset name (see `fluxctl presets`)")->required();
  submit->add_option("--output", s.output_path, "Output path (a key; a directory prefix for hls/dash)")->required();
  submit->add_option("--storage", s.storage, "s3 or local (default: what the workers serve; s3 when both or unknown)")
      ->check(CLI::IsMember({"s3", "local"}));
  submit->add_option("--type", s.type, "single, hls or dash (default: the preset's)")
      ->check(CLI::IsMember({"single", "hls", "dash"}));
  CLI::Option* priority_option =
      submit->add_option("--priority", priority, "-10..10, higher first (default 0)")->check(CLI::Range(-10, 10));
  submit->add_option("--callback", s.callback_url, "Webhook URL called when the job ends");
  submit->add_option("--metadata", metadata_items, "Output metadata, key=value (repeatable)");
  submit->add_option("--idempotency-key", s.idempotency_key, "Retrying with the same key returns the first job");
  submit->add_flag("--wait", s.wait, "Follow the job's progress until it ends");

  CLI::App* watch = app.add_subcommand("watch", "Follow a job's progress until it ends");
  watch->add_option("id", inv.job_id, "Job id")->required();
  CLI::App* get = app.add_subcommand("get", "Show a job");
  get->add_option("id", inv.job_id, "Job id")->required();
  CLI::App* list = app.add_subcommand("list", "List jobs, newest first");
  list->add_option("--status", inv.list.status, "Only jobs with this status")
      ->check(CLI::IsMember({"queued", "processing", "uploading", "completed", "failed", "cancelled"}));
  list->add_option("--limit", inv.list.limit, "At most this many (1..200)")->check(CLI::Range(1, 200));
  list->add_option("--cursor", inv.list.cursor, "Continue from a previous page");
  CLI::App* cancel = app.add_subcommand("cancel", "Cancel a queued or running job");
  cancel->add_option("id", inv.job_id, "Job id")->required();
  CLI::App* workers = app.add_subcommand("workers", "Show every configured worker");
  CLI::App* presets = app.add_subcommand("presets", "Show the preset catalogue");

  try {
    std::vector<std::string> reversed(args.rbegin(), args.rend());  // CLI11 takes them in reverse
    app.parse(reversed);
  } catch (const CLI::ParseError& e) {
    std::ostringstream out, err;
    const int code = app.exit(e, out, err);
    ParsedCommandLine result;
    result.out = out.str();
    result.err = err.str().empty() ? "" : "fluxctl: " + err.str();
    result.exit_code = code == 0 ? 0 : to_int(ExitCode::kUsage);
    return result;
  }

  if (submit->parsed()) {
    inv.command = Command::kSubmit;
    if (*priority_option) s.priority = priority;
    auto metadata = parse_metadata(metadata_items);
    if (!metadata.ok()) return usage_error(std::string(metadata.status().message()));
    s.metadata = *std::move(metadata);
  } else if (watch->parsed()) {
    inv.command = Command::kWatch;
  } else if (get->parsed()) {
    inv.command = Command::kGet;
  } else if (list->parsed()) {
    inv.command = Command::kList;
  } else if (cancel->parsed()) {
    inv.command = Command::kCancel;
  } else if (workers->parsed()) {
    inv.command = Command::kWorkers;
  } else if (presets->parsed()) {
    inv.command = Command::kPresets;
  }
  if ((inv.command == Command::kWatch || inv.command == Command::kGet || inv.command == Command::kCancel) &&
      inv.job_id.empty()) {
    return usage_error("the job id is empty");
  }

  inv.url = !url.empty() ? url : env.flux_url.value_or("");
  if (inv.url.empty()) inv.url = kDefaultUrl;
  if (!is_http_url(inv.url)) return usage_error("--url must be an http:// or https:// URL, got \"" + inv.url + "\"");
  inv.api_key = !api_key.empty() ? api_key : env.flux_api_key.value_or("");

  ParsedCommandLine result;
  result.invocation = std::move(inv);
  return result;
}

}  // namespace flux::cli
