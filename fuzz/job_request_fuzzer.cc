// POST /api/v1/jobs bodies: strict JSON parsing and job-request validation
// (controlplane/api/validation.h) with the built-in preset catalogue, both
// storage types served and the default input policy; no DNS (literal checks
// only, as resolution would make runs slow and non-deterministic).
//
// Invariants beyond "no crash, no sanitizer report":
//  - a refusal has a documented code, HTTP 400, and an error body that dumps;
//  - an accepted spec obeys every rule of the contract (URL policy, preset,
//    storage, path, type, metadata, priority);
//  - the job document of an accepted spec (model::to_document, what GET
//    /api/v1/jobs/{id} returns) is itself a valid request for the same spec;
//  - what parse_json_strict accepts, nlohmann's own parser reads the same,
//    and its serialisation re-parses strictly to an equal value;
//  - SSRF, checked against libcurl's own URL parser (what the worker's HTTP
//    client connects with): an accepted http(s) URL names the host that was
//    checked, and a host libc would read as a numeric address (any
//    inet_aton spelling, IPv6 with an embedded IPv4) is public.
#include <arpa/inet.h>
#include <curl/curl.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cstddef>
#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <string_view>
#include <variant>

#include <nlohmann/json.hpp>

#include "controlplane/api/validation.h"
#include "controlplane/model/job.h"
#include "fuzz_check.h"
#include "worker/preset/preset.h"

namespace {

using flux::controlplane::api::ApiError;
using flux::controlplane::api::PresetSummary;
using flux::controlplane::api::ValidationContext;
using flux::controlplane::model::JobSpec;

const std::map<std::string, PresetSummary, std::less<>>& presets() {
  static const auto* catalogue = [] {
    auto* summaries = new std::map<std::string, PresetSummary, std::less<>>();
    const auto builtin = flux::worker::preset::Catalog::builtin();
    for (const auto* preset : builtin.all()) {
      (*summaries)[preset->name] =
          PresetSummary{preset->name, preset->description, std::string(flux::worker::preset::to_string(preset->type)),
                        preset->extension};
    }
    return summaries;
  }();
  return *catalogue;
}

const ValidationContext& context() {
  static const ValidationContext* ctx = [] {
    auto* c = new ValidationContext();
    c->find_preset = [](std::string_view name) -> const PresetSummary* {
      const auto it = presets().find(name);
      return it == presets().end() ? nullptr : &it->second;
    };
    c->served_storage = {"local", "s3"};
    c->callback_policy.allowed_schemes = {"https", "http"};
    c->resolve_hosts = false;
    return c;
  }();
  return *ctx;
}

const std::set<std::string>& documented_codes() {
  static const std::set<std::string> codes = {"invalid_json",
                                              "input_url_required",
                                              "input_url_invalid",
                                              "input_url_scheme_forbidden",
                                              "input_url_address_forbidden",
                                              "input_url_path_forbidden",
                                              "preset_required",
                                              "preset_unknown",
                                              "output_required",
                                              "output_invalid",
                                              "output_storage_invalid",
                                              "output_storage_unavailable",
                                              "output_path_invalid",
                                              "output_type_invalid",
                                              "output_type_mismatch",
                                              "metadata_invalid",
                                              "callback_url_invalid",
                                              "callback_url_scheme_forbidden",
                                              "callback_url_address_forbidden",
                                              "priority_invalid"};
  return codes;
}

bool has_control_char(std::string_view text) {
  return std::any_of(text.begin(), text.end(), [](unsigned char c) { return c < 0x20 || c == 0x7f; });
}

std::string describe(const JobSpec& spec) {
  std::string text = "input_url=" + spec.input_url + " preset=" + spec.preset + " storage=" + spec.output.storage +
                     " path=" + spec.output.path + " type=" + spec.output.type + " callback=" + spec.callback_url +
                     " priority=" + std::to_string(spec.priority) + " metadata={";
  for (const auto& [key, value] : spec.output.metadata) text += key + ":" + value + ",";
  return text + "}";
}

bool same_spec(const JobSpec& a, const JobSpec& b) {
  return a.input_url == b.input_url && a.preset == b.preset && a.output.storage == b.output.storage &&
         a.output.path == b.output.path && a.output.type == b.output.type && a.output.metadata == b.output.metadata &&
         a.callback_url == b.callback_url && a.priority == b.priority;
}

bool forbidden_ipv4(uint32_t a) {  // host byte order
  const auto in = [a](uint32_t network, int bits) { return (a >> (32 - bits)) == (network >> (32 - bits)); };
  return in(0x00000000, 8) || in(0x0A000000, 8) || in(0x64400000, 10) || in(0x7F000000, 8) || in(0xA9FE0000, 16) ||
         in(0xAC100000, 12) || in(0xC0A80000, 16) || in(0xE0000000, 4) || in(0xF0000000, 4);
}

bool forbidden_ipv6(const std::array<unsigned char, 16>& b) {
  const auto v4_at = [&b](size_t i) {
    return (uint32_t{b[i]} << 24) | (uint32_t{b[i + 1]} << 16) | (uint32_t{b[i + 2]} << 8) | b[i + 3];
  };
  const auto zeros = [&b](size_t from, size_t to) {
    return std::all_of(b.begin() + static_cast<long>(from), b.begin() + static_cast<long>(to),
                       [](unsigned char x) { return x == 0; });
  };
  if (zeros(0, 10) && b[10] == 0xff && b[11] == 0xff) return forbidden_ipv4(v4_at(12));  // ::ffff:a.b.c.d
  if (zeros(0, 12)) return true;  // ::, ::1 and the deprecated ::a.b.c.d
  if (b[0] == 0x00 && b[1] == 0x64 && b[2] == 0xff && b[3] == 0x9b && zeros(4, 12)) {
    return forbidden_ipv4(v4_at(12));  // NAT64 64:ff9b::a.b.c.d
  }
  if (b[0] == 0x20 && b[1] == 0x02) return forbidden_ipv4(v4_at(2));  // 6to4
  return (b[0] & 0xfe) == 0xfc || (b[0] == 0xfe && (b[1] & 0xc0) == 0x80) || b[0] == 0xff;
}

// What libcurl makes of an http(s) URL the policy accepted.
void check_against_curl(const std::string& url) {
  const auto parsed = flux::http::parse_url(url);
  if (!parsed.ok() || (parsed->scheme != "http" && parsed->scheme != "https")) return;
  CURLU* handle = curl_url();
  FUZZ_CHECK(handle != nullptr, "curl_url");
  std::string curl_host;
  if (curl_url_set(handle, CURLUPART_URL, url.c_str(), 0) == CURLUE_OK) {
    char* host = nullptr;
    if (curl_url_get(handle, CURLUPART_HOST, &host, 0) == CURLUE_OK && host != nullptr) curl_host = host;
    curl_free(host);
  }
  curl_url_cleanup(handle);
  if (curl_host.empty()) return;  // curl refuses it: the fetch fails, nothing is reached

  std::string bare = curl_host;
  if (bare.size() >= 2 && bare.front() == '[' && bare.back() == ']') bare = bare.substr(1, bare.size() - 2);
  in_addr v4{};
  std::array<unsigned char, 16> v6{};
  if (inet_aton(bare.c_str(), &v4) != 0) {
    FUZZ_CHECK(!forbidden_ipv4(ntohl(v4.s_addr)),
               "accepted " + flux::fuzz::printable(url) + ": curl connects to " + bare);
  } else if (inet_pton(AF_INET6, bare.c_str(), v6.data()) == 1) {
    FUZZ_CHECK(!forbidden_ipv6(v6), "accepted " + flux::fuzz::printable(url) + ": curl connects to " + bare);
  } else {
    std::string lower = bare;
    std::transform(lower.begin(), lower.end(), lower.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    FUZZ_CHECK(lower == parsed->host, "accepted " + flux::fuzz::printable(url) + ": checked host '" +
                                          flux::fuzz::printable(parsed->host) + "', curl's host '" +
                                          flux::fuzz::printable(curl_host) + "'");
  }
}

void check_accepted(const JobSpec& spec) {
  const ValidationContext& ctx = context();
  FUZZ_CHECK(!spec.input_url.empty(), describe(spec));
  FUZZ_CHECK(flux::http::check_url(spec.input_url, ctx.input_policy).ok(), describe(spec));
  check_against_curl(spec.input_url);
  const auto preset = presets().find(spec.preset);
  FUZZ_CHECK(preset != presets().end(), describe(spec));
  FUZZ_CHECK(spec.output.storage == "s3" || spec.output.storage == "local", describe(spec));
  const std::string& path = spec.output.path;
  FUZZ_CHECK(!path.empty() && path.size() <= 1024 && path.front() != '/', describe(spec));
  FUZZ_CHECK(path.find('\\') == std::string::npos && !has_control_char(path), describe(spec));
  FUZZ_CHECK(
      path != ".." && !path.starts_with("../") && !path.ends_with("/..") && path.find("/../") == std::string::npos,
      describe(spec));
  FUZZ_CHECK(spec.output.type.empty() || spec.output.type == preset->second.output_type, describe(spec));
  FUZZ_CHECK(spec.output.metadata.size() <= 32, describe(spec));
  for (const auto& [key, value] : spec.output.metadata) {
    FUZZ_CHECK(!key.empty() && key.size() <= 64, describe(spec));
    FUZZ_CHECK(std::all_of(key.begin(), key.end(),
                           [](char c) {
                             return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                                    c == '_' || c == '-';
                           }),
               describe(spec));
    FUZZ_CHECK(value.size() <= 1024 && !has_control_char(value), describe(spec));
  }
  if (!spec.callback_url.empty()) {
    const auto parsed = flux::http::parse_url(spec.callback_url);
    FUZZ_CHECK(parsed.ok() && (parsed->scheme == "http" || parsed->scheme == "https"), describe(spec));
    FUZZ_CHECK(flux::http::check_url(spec.callback_url, ctx.callback_policy).ok(), describe(spec));
    check_against_curl(spec.callback_url);
  }
  FUZZ_CHECK(spec.priority >= -10 && spec.priority <= 10, describe(spec));

  // The job document is a valid request for the very same job.
  flux::controlplane::model::JobRecord record;
  record.job_id = "job_fuzz";
  record.spec = spec;
  const std::string document = flux::controlplane::model::to_document(record).dump();
  auto again = flux::controlplane::api::parse_job_request(document, ctx);
  if (const auto* error = std::get_if<ApiError>(&again)) {
    FUZZ_CHECK(false, "the job document of an accepted spec is refused: " + error->code + ": " + error->message +
                          "\n  document: " + document);
  }
  FUZZ_CHECK(same_spec(std::get<JobSpec>(again), spec), "re-validated spec differs:\n  first:  " + describe(spec) +
                                                            "\n  second: " + describe(std::get<JobSpec>(again)));
}

void check_refused(const ApiError& error, std::string_view body) {
  FUZZ_CHECK(documented_codes().count(error.code) == 1, "undocumented code " + error.code + ": " + error.message);
  FUZZ_CHECK(error.http_status == 400, error.code + " answered " + std::to_string(error.http_status));
  FUZZ_CHECK(!error.message.empty(), error.code);
  // error_body promises valid UTF-8: dumping it strictly must not throw.
  std::string dumped;
  try {
    dumped = flux::controlplane::api::error_body(error).dump();
  } catch (const std::exception& e) {
    FUZZ_CHECK(false, std::string("error_body does not dump: ") + e.what());
  }
  FUZZ_CHECK(nlohmann::json::accept(dumped), dumped);
}

void check_strict_json(std::string_view body) {
  auto strict = flux::controlplane::api::parse_json_strict(body);
  if (std::holds_alternative<ApiError>(strict)) {
    FUZZ_CHECK(std::get<ApiError>(strict).code == "invalid_json", std::get<ApiError>(strict).code);
    return;
  }
  const nlohmann::json& value = std::get<nlohmann::json>(strict);
  nlohmann::json reference;
  try {
    reference = nlohmann::json::parse(body);
  } catch (const std::exception& e) {
    FUZZ_CHECK(false, std::string("strict parser accepted what nlohmann refuses: ") + e.what());
  }
  FUZZ_CHECK(reference == value, "strict and reference values differ");
  std::string dumped;
  try {
    dumped = value.dump();
  } catch (const std::exception& e) {
    FUZZ_CHECK(false, std::string("an accepted document does not serialise: ") + e.what());
  }
  auto reparsed = flux::controlplane::api::parse_json_strict(dumped);
  FUZZ_CHECK(std::holds_alternative<nlohmann::json>(reparsed), "serialised document is refused: " + dumped);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view body(reinterpret_cast<const char*>(data), size);
  check_strict_json(body);
  auto result = flux::controlplane::api::parse_job_request(body, context());
  if (const auto* spec = std::get_if<JobSpec>(&result)) {
    check_accepted(*spec);
  } else {
    check_refused(std::get<ApiError>(result), body);
  }
  return 0;
}
