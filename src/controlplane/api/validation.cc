#include "controlplane/api/validation.h"

#include <algorithm>
#include <charconv>
#include <cstdint>
#include <exception>
#include <utility>

#include "absl/status/status.h"
#include "shared/core/error.h"

namespace flux::controlplane::api {
namespace {

using nlohmann::json;

constexpr size_t kMaxOutputPathBytes = 1024;
constexpr size_t kMaxMetadataEntries = 32;
constexpr size_t kMaxMetadataKeyBytes = 64;
constexpr size_t kMaxMetadataValueBytes = 1024;
constexpr int kMinPriority = -10;
constexpr int kMaxPriority = 10;

ApiError bad(std::string code, std::string message, std::string field = "") {
  return ApiError{400, std::move(code), std::move(message), std::move(field)};
}

// The longest prefix of `text` of at most `max_bytes` that does not cut a
// UTF-8 sequence, so that echoing client text into an error stays valid JSON.
std::string utf8_prefix(std::string_view text, size_t max_bytes) {
  if (text.size() <= max_bytes) return std::string(text);
  size_t end = max_bytes;
  while (end > 0 && (static_cast<unsigned char>(text[end]) & 0xC0) == 0x80) --end;
  return std::string(text.substr(0, end));
}

// `text` with every ill-formed UTF-8 sequence replaced by U+FFFD: error
// bodies may quote client text, and dumping invalid UTF-8 would throw.
std::string valid_utf8(const std::string& text) {
  try {
    return json::parse(json(text).dump(-1, ' ', false, json::error_handler_t::replace)).get<std::string>();
  } catch (const std::exception&) {
    return "(unprintable)";
  }
}

bool has_control_char(std::string_view text) {
  return std::any_of(text.begin(), text.end(), [](unsigned char c) { return c < 0x20 || c == 0x7f; });
}

// Builds the DOM like nlohmann's own SAX DOM parser, but refuses duplicate
// keys and nesting deeper than kMaxJsonDepth. nlohmann's parser is iterative,
// so a 10,000-deep document stops here at depth 65 without deep recursion.
class StrictDomBuilder {
 public:
  using number_integer_t = json::number_integer_t;
  using number_unsigned_t = json::number_unsigned_t;
  using number_float_t = json::number_float_t;
  using string_t = json::string_t;
  using binary_t = json::binary_t;

  bool null() { return put(json(nullptr)); }
  bool boolean(bool value) { return put(json(value)); }
  bool number_integer(number_integer_t value) { return put(json(value)); }
  bool number_unsigned(number_unsigned_t value) { return put(json(value)); }
  bool number_float(number_float_t value, const string_t&) { return put(json(value)); }
  bool string(string_t& value) { return put(json(std::move(value))); }
  bool binary(binary_t&) { return fail("binary values are not JSON"); }

  bool start_object(std::size_t) { return open(json::object()); }
  bool key(string_t& name) {
    json& object = *stack_.back();
    Frame& frame = frames_.back();
    frame.label = utf8_prefix(name, 64);
    frame.in_child = true;
    if (object.contains(name)) {
      return fail("duplicate key \"" + frame.label +
                  "\" in an object: its meaning would be ambiguous, so it is refused");
    }
    pending_key_ = &object[name];
    return true;
  }
  bool end_object() { return close(); }
  bool start_array(std::size_t) { return open(json::array()); }
  bool end_array() { return close(); }

  bool parse_error(std::size_t position, const std::string&, const nlohmann::detail::exception& error) {
    if (error_.empty()) {
      // A broken value inside an array is its next element.
      if (!frames_.empty() && stack_.back()->is_array() && !frames_.back().in_child) {
        frames_.back().label = "[" + std::to_string(stack_.back()->size()) + "]";
        frames_.back().in_child = true;
      }
      // nlohmann's message names the byte offset and the problem ("invalid
      // string: ill-formed UTF-8 byte", "number overflow", "unexpected end").
      fail("body is not valid JSON (at byte " + std::to_string(position) + "): " + error.what());
    }
    return false;
  }

  json& root() { return root_; }
  const std::string& error() const { return error_; }
  // The JSON path of the member being read when the parse failed ("" at the
  // top level), so that a client learns which field to fix.
  const std::string& error_field() const { return error_field_; }

 private:
  // One open container, and which of its children is being read.
  struct Frame {
    std::string label;  // "key" of an object member, "[i]" of an array element
    bool in_child = false;
  };

  bool fail(std::string message) {
    if (error_.empty()) {
      error_ = std::move(message);
      error_field_ = current_path();
    }
    return false;
  }

  std::string current_path() const {
    std::string path;
    for (const Frame& frame : frames_) {
      if (!frame.in_child) break;
      if (!path.empty() && (frame.label.empty() || frame.label.front() != '[')) path += '.';
      path += frame.label;
    }
    return path;
  }

  bool close() {
    stack_.pop_back();
    frames_.pop_back();
    if (!frames_.empty()) frames_.back().in_child = false;
    return true;
  }

  // Places a value where the parser is: the root, the pending key of the
  // innermost object, or the end of the innermost array.
  json* place(json&& value) {
    if (stack_.empty()) {
      root_ = std::move(value);
      return &root_;
    }
    json& container = *stack_.back();
    if (container.is_array()) {
      container.push_back(std::move(value));
      return &container.back();
    }
    *pending_key_ = std::move(value);
    return pending_key_;
  }

  // Marks the child about to be placed in an array (objects did it in key()).
  void enter_child() {
    if (frames_.empty() || !stack_.back()->is_array()) return;
    frames_.back().label = "[" + std::to_string(stack_.back()->size()) + "]";
    frames_.back().in_child = true;
  }

  bool put(json&& value) {
    enter_child();
    place(std::move(value));
    if (!frames_.empty()) frames_.back().in_child = false;
    return true;
  }

  bool open(json&& empty) {
    enter_child();
    if (static_cast<int>(stack_.size()) >= kMaxJsonDepth) {
      return fail("JSON nesting deeper than " + std::to_string(kMaxJsonDepth) + " levels");
    }
    stack_.push_back(place(std::move(empty)));
    frames_.emplace_back();
    return true;
  }

  json root_;
  std::vector<json*> stack_;
  std::vector<Frame> frames_;  // parallel to stack_
  json* pending_key_ = nullptr;
  std::string error_;
  std::string error_field_;
};

ApiError invalid_json(std::string message, std::string field = "") {
  return bad("invalid_json", std::move(message), std::move(field));
}

// Maps a url_policy error to "<prefix>_<kind>" on `field`.
ApiError url_error(const absl::Status& status, const std::string& prefix, const std::string& field) {
  const std::string code = flux::error_code(status);
  const std::string message = field + ": " + std::string(status.message());
  if (code == "url_resolve_failed") return ApiError{503, "dns_unavailable", message, field};
  if (code == "url_scheme_forbidden") return bad(prefix + "_scheme_forbidden", message, field);
  if (code == "url_address_forbidden") return bad(prefix + "_address_forbidden", message, field);
  if (code == "url_path_forbidden") return bad(prefix + "_path_forbidden", message, field);
  return bad(prefix + "_invalid", message, field);
}

absl::Status check_url_with(std::string_view url, const flux::http::UrlPolicy& policy, bool resolve) {
  return resolve ? flux::http::check_url_resolved(url, policy) : flux::http::check_url(url, policy);
}

bool absent(const json& object, const char* name) {
  const auto it = object.find(name);
  return it == object.end() || it->is_null();
}

std::optional<ApiError> check_input_url(const json& request, const ValidationContext& context, model::JobSpec& spec) {
  if (absent(request, "input_url")) return bad("input_url_required", "input_url is required", "input_url");
  const json& value = request["input_url"];
  if (!value.is_string()) return bad("input_url_invalid", "input_url must be a string", "input_url");
  const auto& url = value.get_ref<const std::string&>();
  if (url.empty()) return bad("input_url_required", "input_url is required", "input_url");
  if (auto status = check_url_with(url, context.input_policy, context.resolve_hosts); !status.ok()) {
    return url_error(status, "input_url", "input_url");
  }
  spec.input_url = url;
  return std::nullopt;
}

std::optional<ApiError> check_preset(const json& request, const ValidationContext& context, model::JobSpec& spec,
                                     const PresetSummary*& preset) {
  if (absent(request, "preset")) return bad("preset_required", "preset is required", "preset");
  const json& value = request["preset"];
  if (!value.is_string()) return bad("preset_unknown", "preset must be the name of a preset (a string)", "preset");
  const auto& name = value.get_ref<const std::string&>();
  if (name.empty()) return bad("preset_required", "preset is required", "preset");
  preset = context.find_preset ? context.find_preset(name) : nullptr;
  if (preset == nullptr) {
    return bad("preset_unknown", "unknown preset \"" + utf8_prefix(name, 64) + "\" (see GET /api/v1/presets)",
               "preset");
  }
  spec.preset = name;
  return std::nullopt;
}

// The same rules as the worker's upload destination check, so that a job
// the control plane accepts is never refused by the worker for its path.
std::optional<std::string> output_path_problem(std::string_view path) {
  if (path.empty()) return "output.path must not be empty";
  if (path.size() > kMaxOutputPathBytes) return "output.path is longer than 1024 bytes";
  if (path.front() == '/') return "output.path must be relative (no leading '/')";
  if (path.find('\\') != std::string_view::npos) return "output.path must not contain a backslash";
  if (has_control_char(path)) return "output.path must not contain control characters";
  size_t start = 0;
  while (start <= path.size()) {
    const size_t end = std::min(path.find('/', start), path.size());
    if (path.substr(start, end - start) == "..") return "output.path must not contain a '..' segment";
    start = end + 1;
  }
  return std::nullopt;
}

std::optional<ApiError> check_metadata(const json& output, model::OutputSpec& spec) {
  if (absent(output, "metadata")) return std::nullopt;
  const json& metadata = output["metadata"];
  const std::string field = "output.metadata";
  if (!metadata.is_object()) return bad("metadata_invalid", "output.metadata must be an object", field);
  if (metadata.size() > kMaxMetadataEntries) {
    return bad("metadata_invalid", "output.metadata has more than 32 entries", field);
  }
  for (const auto& [key, value] : metadata.items()) {
    const std::string entry_field = field + "." + utf8_prefix(key, kMaxMetadataKeyBytes);
    const bool key_ok =
        !key.empty() && key.size() <= kMaxMetadataKeyBytes && std::all_of(key.begin(), key.end(), [](char c) {
          return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
        });
    if (!key_ok) {
      return bad("metadata_invalid", "output.metadata keys must match [A-Za-z0-9_-]{1,64}", entry_field);
    }
    if (!value.is_string()) return bad("metadata_invalid", "output.metadata values must be strings", entry_field);
    const auto& text = value.get_ref<const std::string&>();
    if (text.size() > kMaxMetadataValueBytes) {
      return bad("metadata_invalid", "output.metadata values must be at most 1024 bytes", entry_field);
    }
    if (has_control_char(text)) {
      return bad("metadata_invalid", "output.metadata values must not contain control characters", entry_field);
    }
    spec.metadata[key] = text;
  }
  return std::nullopt;
}

std::optional<ApiError> check_output(const json& request, const ValidationContext& context, const PresetSummary& preset,
                                     model::JobSpec& spec) {
  if (absent(request, "output")) return bad("output_required", "output is required", "output");
  const json& output = request["output"];
  if (!output.is_object()) return bad("output_invalid", "output must be an object", "output");

  const auto storage_it = output.find("storage");
  if (storage_it == output.end() || !storage_it->is_string() || (*storage_it != "s3" && *storage_it != "local")) {
    return bad("output_storage_invalid", "output.storage must be \"s3\" or \"local\"", "output.storage");
  }
  const auto& storage = storage_it->get_ref<const std::string&>();
  if (std::find(context.served_storage.begin(), context.served_storage.end(), storage) ==
      context.served_storage.end()) {
    return bad("output_storage_unavailable", "no configured worker serves output.storage \"" + storage + "\"",
               "output.storage");
  }
  spec.output.storage = storage;

  const auto path_it = output.find("path");
  if (path_it == output.end() || !path_it->is_string()) {
    return bad("output_path_invalid", "output.path is required and must be a string", "output.path");
  }
  const auto& path = path_it->get_ref<const std::string&>();
  if (auto problem = output_path_problem(path)) return bad("output_path_invalid", *problem, "output.path");
  spec.output.path = path;

  if (!absent(output, "type")) {
    const json& type = output["type"];
    if (!type.is_string()) {
      return bad("output_type_invalid", "output.type must be \"single\", \"hls\" or \"dash\"", "output.type");
    }
    const auto& name = type.get_ref<const std::string&>();
    if (!name.empty()) {
      if (name != "single" && name != "hls" && name != "dash") {
        return bad("output_type_invalid", "output.type must be \"single\", \"hls\" or \"dash\"", "output.type");
      }
      if (name != preset.output_type) {
        return bad("output_type_mismatch",
                   "output.type \"" + name + "\" does not match preset " + preset.name + ", whose output is \"" +
                       preset.output_type + "\"",
                   "output.type");
      }
      spec.output.type = name;
    }
  }
  return check_metadata(output, spec.output);
}

std::optional<ApiError> check_callback_url(const json& request, const ValidationContext& context,
                                           model::JobSpec& spec) {
  if (absent(request, "callback_url")) return std::nullopt;
  const json& value = request["callback_url"];
  const std::string field = "callback_url";
  if (!value.is_string()) return bad("callback_url_invalid", "callback_url must be a string", field);
  const auto& url = value.get_ref<const std::string&>();
  if (url.empty()) return std::nullopt;
  auto parsed = flux::http::parse_url(url);
  if (parsed.ok() && parsed->scheme != "http" && parsed->scheme != "https") {
    return bad("callback_url_scheme_forbidden", "callback_url must be an http or https URL", field);
  }
  flux::http::UrlPolicy policy = context.callback_policy;
  policy.allowed_schemes.clear();
  for (const char* scheme : {"https", "http"}) {
    const auto& allowed = context.callback_policy.allowed_schemes;
    if (std::find(allowed.begin(), allowed.end(), scheme) != allowed.end()) policy.allowed_schemes.push_back(scheme);
  }
  policy.local_input_dir.reset();  // never file:// for a callback
  if (auto status = check_url_with(url, policy, context.resolve_hosts); !status.ok()) {
    return url_error(status, "callback_url", field);
  }
  spec.callback_url = url;
  return std::nullopt;
}

std::optional<ApiError> check_priority(const json& request, model::JobSpec& spec) {
  if (absent(request, "priority")) return std::nullopt;
  const json& value = request["priority"];
  const ApiError error = bad("priority_invalid", "priority must be an integer from -10 to 10", "priority");
  if (value.is_number_unsigned()) {
    const auto n = value.get<json::number_unsigned_t>();
    if (n > static_cast<json::number_unsigned_t>(kMaxPriority)) return error;
    spec.priority = static_cast<int>(n);
    return std::nullopt;
  }
  if (value.is_number_integer()) {
    const auto n = value.get<json::number_integer_t>();
    if (n < kMinPriority || n > kMaxPriority) return error;
    spec.priority = static_cast<int>(n);
    return std::nullopt;
  }
  return error;  // strings, floats (1.5, 1e2, 1.0), booleans...
}

}  // namespace

nlohmann::json error_body(const ApiError& error) {
  nlohmann::json body = {{"error", valid_utf8(error.message)}, {"code", valid_utf8(error.code)}};
  if (!error.field.empty()) body["field"] = valid_utf8(error.field);
  return body;
}

std::variant<nlohmann::json, ApiError> parse_json_strict(std::string_view body) {
  StrictDomBuilder builder;
  bool ok = false;
  try {
    ok = json::sax_parse(body.begin(), body.end(), &builder, json::input_format_t::json, /*strict=*/true);
  } catch (const std::exception& e) {
    return invalid_json(std::string("body is not valid JSON: ") + e.what());
  }
  if (!ok) {
    return invalid_json(builder.error().empty() ? "body is not valid JSON" : builder.error(), builder.error_field());
  }
  return std::move(builder.root());
}

std::variant<model::JobSpec, ApiError> parse_job_request(std::string_view body, const ValidationContext& context) {
  auto parsed = parse_json_strict(body);
  if (auto* error = std::get_if<ApiError>(&parsed)) return std::move(*error);
  const json& request = std::get<json>(parsed);
  if (!request.is_object()) return invalid_json("the body must be a JSON object");

  try {
    model::JobSpec spec;
    const PresetSummary* preset = nullptr;
    if (auto error = check_input_url(request, context, spec)) return std::move(*error);
    if (auto error = check_preset(request, context, spec, preset)) return std::move(*error);
    if (auto error = check_output(request, context, *preset, spec)) return std::move(*error);
    if (auto error = check_callback_url(request, context, spec)) return std::move(*error);
    if (auto error = check_priority(request, spec)) return std::move(*error);
    return spec;
  } catch (const std::exception& e) {
    // Not expected (every access is type-checked first); keep exceptions
    // inside the module all the same.
    return ApiError{500, "internal", std::string("validating the request: ") + e.what(), ""};
  }
}

std::variant<ListParams, ApiError> parse_list_query(const std::map<std::string, std::string>& query) {
  ListParams params;
  if (auto it = query.find("status"); it != query.end() && !it->second.empty()) {
    params.status = model::parse_job_status(it->second);
    if (!params.status) {
      return bad("status_invalid", "status must be one of queued, processing, uploading, completed, failed, cancelled",
                 "status");
    }
  }
  if (auto it = query.find("limit"); it != query.end() && !it->second.empty()) {
    const std::string& text = it->second;
    int limit = 0;
    const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), limit);
    if (ec != std::errc() || end != text.data() + text.size() || limit < 1 || limit > kMaxListLimit) {
      return bad("limit_invalid", "limit must be an integer from 1 to " + std::to_string(kMaxListLimit), "limit");
    }
    params.limit = limit;
  }
  if (auto it = query.find("cursor"); it != query.end()) params.cursor = it->second;
  return params;
}

}  // namespace flux::controlplane::api
