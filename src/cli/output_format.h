#pragma once
// Human-readable renderings of the control plane's answers (the --json flag
// prints the answers themselves instead). Every server-provided string goes
// through printable(), so nothing a job carries can drive the terminal.
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace flux::cli {

// Left-aligned columns separated by two spaces, a header row first, no
// trailing spaces; the last column is not padded. Cells are used as given.
std::string render_table(const std::vector<std::string>& headers, const std::vector<std::vector<std::string>>& rows);

// `fluxctl get`: a "Label  value" block of a job document (SPEC §3.2).
std::string render_job_details(const nlohmann::json& document);

// `fluxctl list`: a table of {"jobs": [...], "next_cursor": ...}, plus a last
// line "more: repeat with --cursor <c>" when there is a next page.
std::string render_job_list(const nlohmann::json& page);

// `fluxctl workers`: a table of {"workers": [...]}.
std::string render_workers(const nlohmann::json& answer);

// `fluxctl presets`: a table of {"presets": [...]}.
std::string render_presets(const nlohmann::json& answer);

// "2026-11-30T08:43:25.123Z" -> "2026-11-30 08:43:25" (UTC); other text as is.
std::string short_time(const std::string& rfc3339);

}  // namespace flux::cli
