#pragma once
// Parsing and validation of what REST clients send (SPEC §3.1): the body of
// POST /api/v1/jobs and the query of GET /api/v1/jobs. Pure functions: no
// I/O except the optional DNS lookup of URL hosts, no shared state.
//
// Every refusal is an ApiError with its own machine code and the JSON path of
// the offending field, so a client can point at the exact mistake:
//   invalid_json                 not JSON, not an object, invalid UTF-8, nesting
//                                deeper than 64, a duplicate key, a number out of range
//                                (1e400); "field" is the path of the member being read
//                                when that happened ("priority", "output.path"), if any.
//                                Duplicate keys are always refused, never first- or
//                                last-wins: two readers could disagree on the value.
//   input_url_required           missing, null or ""
//   input_url_invalid            not a string, malformed, host that does not resolve
//   input_url_scheme_forbidden   scheme not in the allow-list (concat:, data:, bare paths...)
//   input_url_address_forbidden  loopback/private/metadata address (literal or resolved)
//   input_url_path_forbidden     file:// outside LOCAL_INPUT_DIR
//   preset_required / preset_unknown
//   output_required              missing or null
//   output_invalid               not an object
//   output_storage_invalid       not "s3" or "local"
//   output_storage_unavailable   no configured worker serves it
//   output_path_invalid          empty, absolute, "..", backslash, control char, > 1024 bytes
//   output_type_invalid          not "single", "hls" or "dash"
//   output_type_mismatch         differs from the preset's output type
//   metadata_invalid             not an object, > 32 entries, bad key, bad value
//   callback_url_invalid / callback_url_scheme_forbidden / callback_url_address_forbidden
//   priority_invalid             not an integer in -10..10
//   dns_unavailable              (503) a temporary DNS failure while checking a host
//   status_invalid / limit_invalid  (list query)
// All are HTTP 400 except dns_unavailable. Unknown fields are ignored; a null
// optional field counts as absent.
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include <nlohmann/json.hpp>

#include "controlplane/model/job.h"
#include "shared/http/url_policy.h"

namespace flux::controlplane::api {

struct ApiError {
  int http_status = 400;
  std::string code;     // machine code
  std::string message;  // human message; never echoes secrets
  std::string field;    // JSON path ("output.path"), "" when none
};

// {"error": message, "code": code, "field": field}; "field" omitted when empty.
// Always valid UTF-8, so dumping it never throws.
nlohmann::json error_body(const ApiError& error);

// What the API needs to know about a preset of the catalogue.
struct PresetSummary {
  std::string name;
  std::string description;
  std::string output_type;  // "single" | "hls" | "dash"
  std::string extension;    // "mp4" | "m3u8" | "mpd"
};

struct ValidationContext {
  // The catalogue lookup: the preset with this name, or nullptr.
  std::function<const PresetSummary*(std::string_view)> find_preset;
  // Storage types ("s3", "local") that at least one configured worker serves.
  std::vector<std::string> served_storage;
  flux::http::UrlPolicy input_policy;
  // Only http and https are ever accepted for callbacks, whatever this lists.
  flux::http::UrlPolicy callback_policy;
  // false: literal checks only (check_url), no DNS lookup; for tests.
  bool resolve_hosts = true;
};

// Parses and validates a POST /api/v1/jobs body (already size-capped by the
// server). Fields are checked in document order and the first failure is
// returned. The JobSpec keeps output.type "" when the client gave none.
std::variant<model::JobSpec, ApiError> parse_job_request(std::string_view body, const ValidationContext& context);

// GET /api/v1/jobs?status=&limit=&cursor=
struct ListParams {
  std::optional<model::JobStatus> status;  // nullopt: every status
  int limit = 50;                          // 1..200
  std::string cursor;                      // opaque, as given ("" = first page)
};
inline constexpr int kDefaultListLimit = 50;
inline constexpr int kMaxListLimit = 200;

// An empty value counts as absent; unknown parameters are ignored.
std::variant<ListParams, ApiError> parse_list_query(const std::map<std::string, std::string>& query);

// Exposed for tests and for the server (which parses other small bodies):
// strict JSON parsing with the rules above (depth <= kMaxJsonDepth, no
// duplicate keys, valid UTF-8). Returns the value or an invalid_json error.
inline constexpr int kMaxJsonDepth = 64;
std::variant<nlohmann::json, ApiError> parse_json_strict(std::string_view body);

}  // namespace flux::controlplane::api
