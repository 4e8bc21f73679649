// The control plane's HTTP request path without a socket: raw bytes through
// Boost.Beast's request parser with the server's own limits (16 KiB of
// request line + headers, 64 KiB of body: ServerOptions' defaults), the
// server's Request assembly, the router with the control plane's route table,
// query parsing, API-key authentication, and the pure part of the handlers
// (Idempotency-Key check, job-request validation, list-query parsing).
//
// Invariants beyond "no crash, no sanitizer report":
//  - whether a request is accepted, and what it says, does not depend on
//    how its bytes arrived (one read or 61-byte reads); a complete request
//    respects the body cap;
//  - routing: a malformed target is refused exactly when it is malformed; a
//    found route matches the method, and the path rebuilt from its pattern
//    and decoded parameters finds it again with the same parameters; a 405's
//    Allow methods each find the path; not-found does not depend on the method;
//  - a parsed query written back parses to itself;
//  - only the configured key authenticates, and only in "Bearer <key>" form;
//  - the handlers' validation never answers 500, and every answer dumps.
#include <utility>  // Boost 1.74 Asio misses it under GCC 12

#include <boost/asio/buffer.hpp>
#include <boost/beast/http.hpp>
#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "controlplane/api/validation.h"
#include "controlplane/auth/api_keys.h"
#include "controlplane/http/router.h"
#include "fuzz_check.h"
#include "worker/preset/preset.h"

namespace {

namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
namespace cphttp = flux::controlplane::http;
namespace api = flux::controlplane::api;

constexpr size_t kMaxHeaderBytes = 16 * 1024;  // cphttp::ServerOptions::max_header_bytes
constexpr size_t kMaxBodyBytes = 64 * 1024;    // cphttp::ServerOptions::max_body_bytes
constexpr size_t kMaxIdempotencyKey = 200;     // controlplane/app/control_plane.cc
constexpr std::string_view kApiKey = "fuzz-api-key-0123456789";
constexpr std::string_view kStreamRoute = "/api/v1/jobs/{id}/stream";

// The control plane's routes (ControlPlane::Parts::routes in
// controlplane/app/control_plane.cc), with handlers that never run.
const cphttp::Router& router() {
  static const cphttp::Router* r = [] {
    auto* routes = new cphttp::Router();
    const auto none = [](const cphttp::Request&, cphttp::Responder) {};
    for (const auto& [method, pattern] :
         std::vector<std::pair<std::string, std::string>>{{"POST", "/api/v1/jobs"},
                                                          {"GET", "/api/v1/jobs/{id}"},
                                                          {"GET", "/api/v1/jobs"},
                                                          {"POST", "/api/v1/jobs/{id}/cancel"},
                                                          {"GET", "/api/v1/workers/status"},
                                                          {"GET", "/api/v1/presets"},
                                                          {"GET", "/health"},
                                                          {"GET", "/ready"},
                                                          {"GET", "/metrics"},
                                                          {"GET", "/openapi.json"},
                                                          {"GET", "/docs"}}) {
      routes->add(method, pattern, none);
    }
    routes->add_sse("GET", std::string(kStreamRoute),
                    [](const cphttp::Request&) -> std::variant<cphttp::Response, cphttp::SseStream> { return {}; });
    return routes;
  }();
  return *r;
}

const flux::controlplane::auth::ApiKeys& api_keys() {
  static const auto keys = flux::controlplane::auth::ApiKeys::from({std::string(kApiKey)});
  return keys;
}

const api::ValidationContext& validation_context() {
  static const api::ValidationContext* ctx = [] {
    static const auto catalogue = flux::worker::preset::Catalog::builtin();
    static std::map<std::string, api::PresetSummary, std::less<>> presets;
    for (const auto* p : catalogue.all()) {
      presets[p->name] = {p->name, p->description, std::string(flux::worker::preset::to_string(p->type)), p->extension};
    }
    auto* c = new api::ValidationContext();
    c->find_preset = [](std::string_view name) -> const api::PresetSummary* {
      const auto it = presets.find(name);
      return it == presets.end() ? nullptr : &it->second;
    };
    c->served_storage = {"local", "s3"};
    c->callback_policy.allowed_schemes = {"https", "http"};
    c->resolve_hosts = false;
    return c;
  }();
  return *ctx;
}

struct Parsed {
  bool done = false;
  beast::error_code error;
  std::string method, target, body;
  unsigned version = 0;
  bool keep_alive = false;
  std::vector<std::pair<std::string, std::string>> fields;
};

// Feeds the bytes to a fresh parser `read_size` bytes at a time, keeping what
// it did not consume, as the server's buffered reads do; the end of the
// bytes is the client closing the connection.
Parsed parse(std::string_view bytes, size_t read_size) {
  bhttp::request_parser<bhttp::string_body> parser;
  parser.header_limit(static_cast<std::uint32_t>(kMaxHeaderBytes));
  parser.body_limit(kMaxBodyBytes);
  parser.eager(true);
  Parsed out;
  std::string buffer;
  size_t fed = 0;
  bool starved = true;
  while (!parser.is_done()) {
    if (starved) {
      if (fed == bytes.size()) {
        // The client closed: mid-message, or before sending anything.
        if (parser.got_some()) {
          parser.put_eof(out.error);
        } else {
          out.error = bhttp::error::end_of_stream;
        }
        break;
      }
      const size_t n = std::min(read_size, bytes.size() - fed);
      buffer.append(bytes.substr(fed, n));
      fed += n;
    }
    beast::error_code ec;
    const size_t used = parser.put(boost::asio::buffer(buffer.data(), buffer.size()), ec);
    buffer.erase(0, used);
    if (ec == bhttp::error::need_more) {
      starved = true;
      continue;
    }
    if (ec) {
      out.error = ec;
      break;
    }
    starved = buffer.empty() || used == 0;
  }
  out.done = parser.is_done() && !out.error;
  if (out.done) {
    const auto& message = parser.get();
    out.method = std::string(message.method_string());
    out.target = std::string(message.target());
    out.version = message.version();
    out.keep_alive = message.keep_alive();
    out.body = message.body();
    for (const auto& field : message) out.fields.emplace_back(field.name_string(), field.value());
  }
  return out;
}

std::string lower(std::string_view text) {
  std::string result(text);
  for (char& c : result) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return result;
}

// The server's make_request (controlplane/http/server.cc).
cphttp::Request make_request(const Parsed& parsed) {
  cphttp::Request request;
  request.method = parsed.method;
  request.target = parsed.target;
  request.remote_address = "192.0.2.1";
  for (const auto& [name, value] : parsed.fields) {
    auto [it, inserted] = request.headers.try_emplace(lower(name), value);
    if (!inserted) {
      it->second += ", ";
      it->second += value;
    }
  }
  request.body = parsed.body;
  request.path = request.target.substr(0, request.target.find('?'));
  return request;
}

int hex(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Independent of the router: a broken %-escape or a decoded NUL.
bool malformed_path(std::string_view path) {
  if (path.empty() || path.front() != '/') return true;
  for (size_t i = 0; i < path.size(); ++i) {
    if (path[i] != '%') continue;
    if (i + 2 >= path.size() || hex(path[i + 1]) < 0 || hex(path[i + 2]) < 0) return true;
    if (hex(path[i + 1]) == 0 && hex(path[i + 2]) == 0) return true;  // %00
    i += 2;
  }
  return false;
}

// Well-formed UTF-8 (RFC 3629: no overlong forms, no surrogates, <= U+10FFFF).
bool valid_utf8(std::string_view text) {
  for (size_t i = 0; i < text.size();) {
    const auto c = static_cast<unsigned char>(text[i]);
    size_t length = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xE ? 3 : (c >> 3) == 0x1E ? 4 : 0;
    if (length == 0 || i + length > text.size()) return false;
    uint32_t code = length == 1 ? c : c & (0x7F >> length);
    for (size_t k = 1; k < length; ++k) {
      const auto next = static_cast<unsigned char>(text[i + k]);
      if ((next >> 6) != 0x2) return false;
      code = (code << 6) | (next & 0x3F);
    }
    static constexpr uint32_t kSmallest[] = {0, 0, 0x80, 0x800, 0x10000};
    if (code < kSmallest[length] || code > 0x10FFFF || (code >= 0xD800 && code <= 0xDFFF)) return false;
    i += length;
  }
  return true;
}

std::string decode(std::string_view text) {
  std::string out;
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '%') {
      out.push_back(static_cast<char>(hex(text[i + 1]) * 16 + hex(text[i + 2])));
      i += 2;
    } else {
      out.push_back(text[i]);
    }
  }
  return out;
}

// router.h: a segment that is "." or ".." (raw or decoded) or decodes to a
// '/', a '\\', a control character or ill-formed UTF-8. Only for paths that
// are not malformed.
bool hostile_path(std::string_view path) {
  path.remove_prefix(1);
  while (true) {
    const size_t slash = path.find('/');
    const std::string_view raw = path.substr(0, slash);
    const std::string decoded = decode(raw);
    if (raw == "." || raw == ".." || decoded == "." || decoded == ".." || !valid_utf8(decoded)) return true;
    for (const char ch : decoded) {
      const auto c = static_cast<unsigned char>(ch);
      if (c < 0x20 || c == 0x7F || c == '/' || c == '\\') return true;
    }
    if (slash == std::string_view::npos) return false;
    path.remove_prefix(slash + 1);
  }
}

std::string percent_encode(std::string_view text) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (const char c : text) {
    const auto b = static_cast<unsigned char>(c);
    if ((b >= 'A' && b <= 'Z') || (b >= 'a' && b <= 'z') || (b >= '0' && b <= '9') || b == '-' || b == '_' ||
        b == '.' || b == '~') {
      out.push_back(c);
    } else {
      out += '%';
      out += kHex[b >> 4];
      out += kHex[b & 15];
    }
  }
  return out;
}

using Kind = cphttp::Router::Match::Kind;

void check_routing(const cphttp::Request& request, const cphttp::Router::Match& match) {
  const std::string& path = request.path;
  const bool refused = malformed_path(path) || hostile_path(path);
  FUZZ_CHECK((match.kind == Kind::kBadPath) == refused, "path '" + path + "'");
  switch (match.kind) {
    case Kind::kBadPath:
      return;
    case Kind::kFound: {
      // A HEAD is served by the GET route of its path (not by an SSE route).
      FUZZ_CHECK(match.route != nullptr &&
                     (match.route->method == request.method ||
                      (request.method == "HEAD" && match.route->method == "GET" && match.route->handler)),
                 path);
      std::string rebuilt;
      for (const std::string& segment : match.route->segments) {
        rebuilt += "/";
        if (segment.size() > 2 && segment.front() == '{' && segment.back() == '}') {
          const auto it = match.params.find(segment.substr(1, segment.size() - 2));
          FUZZ_CHECK(it != match.params.end() && !it->second.empty(), "parameter " + segment + " of " + path);
          FUZZ_CHECK(it->second.find('\0') == std::string::npos, "NUL in a parameter of " + path);
          rebuilt += percent_encode(it->second);
        } else {
          rebuilt += segment;
        }
      }
      const auto again = router().match(request.method, rebuilt);
      FUZZ_CHECK(again.kind == Kind::kFound && again.route == match.route && again.params == match.params,
                 path + " rebuilt as " + rebuilt + " routes elsewhere");
      return;
    }
    case Kind::kMethodNotAllowed: {
      FUZZ_CHECK(!match.allow.empty(), path);
      size_t start = 0;
      while (start <= match.allow.size()) {
        const size_t end = std::min(match.allow.find(", ", start), match.allow.size());
        const std::string method = match.allow.substr(start, end - start);
        FUZZ_CHECK(method != request.method, "Allow lists the refused method " + method);
        FUZZ_CHECK(router().match(method, path).kind == Kind::kFound, "Allow lists " + method + " for " + path);
        start = end + 2;
      }
      return;
    }
    case Kind::kNotFound:
      for (const char* method : {"GET", "POST", "HEAD"}) {
        FUZZ_CHECK(router().match(method, path).kind == Kind::kNotFound, std::string(method) + " " + path);
      }
      return;
  }
}

void check_query(const cphttp::StringMap& query) {
  std::string written;
  for (const auto& [name, value] : query) {
    FUZZ_CHECK(name.find('\0') == std::string::npos && value.find('\0') == std::string::npos, "NUL in a query");
    if (!written.empty()) written += "&";
    written += percent_encode(name) + "=" + percent_encode(value);
  }
  const auto again = cphttp::parse_query(written);
  FUZZ_CHECK(again && *again == query, "query written back differs: " + written);
}

void check_auth(const cphttp::Request& request) {
  const std::string* authorization = request.header("authorization");
  std::optional<std::string> key_id;
  std::string presented;
  if (authorization != nullptr) {
    key_id = api_keys().authenticate(*authorization);
    presented = *authorization;
  } else if (request.route == kStreamRoute) {
    if (const std::string* token = request.query_param("access_token")) {
      presented = "Bearer " + *token;
      key_id = api_keys().authenticate(presented);
    }
  }
  if (!key_id) return;
  FUZZ_CHECK(*key_id == flux::controlplane::auth::ApiKeys::key_id(kApiKey), "a foreign key id " + *key_id);
  FUZZ_CHECK(lower(presented.substr(0, 6)) == "bearer" && presented.size() > 6 + kApiKey.size() &&
                 presented.ends_with(kApiKey) &&
                 presented.substr(6, presented.size() - 6 - kApiKey.size()).find_first_not_of(' ') == std::string::npos,
             "authenticated by '" + presented + "'");
}

void check_handlers(const cphttp::Request& request) {
  if (request.method == "POST" && request.route == "/api/v1/jobs") {
    if (const std::string* key = request.header("idempotency-key")) {
      if (key->empty() || key->size() > kMaxIdempotencyKey) return;  // 400 idempotency_key_invalid
    }
    auto parsed = api::parse_job_request(request.body, validation_context());
    if (const auto* error = std::get_if<api::ApiError>(&parsed)) {
      FUZZ_CHECK(error->http_status == 400, error->code + ": " + error->message);
      const auto response = cphttp::json_response(error->http_status, api::error_body(*error));
      FUZZ_CHECK(nlohmann::json::accept(response.body), response.body);
    }
  } else if (request.method == "GET" && request.route == "/api/v1/jobs") {
    const std::map<std::string, std::string> query(request.query.begin(), request.query.end());
    auto params = api::parse_list_query(query);
    if (const auto* error = std::get_if<api::ApiError>(&params)) {
      FUZZ_CHECK(error->code == "status_invalid" || error->code == "limit_invalid", error->code);
    } else {
      const auto& list = std::get<api::ListParams>(params);
      FUZZ_CHECK(list.limit >= 1 && list.limit <= api::kMaxListLimit, std::to_string(list.limit));
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  const Parsed whole = parse(bytes, bytes.size() + 1);
  const Parsed pieces = parse(bytes, 61);
  // Which error an unfinished request gets may depend on the reads (Beast
  // parses a complete request line before the header is complete), whether
  // it is accepted may not.
  FUZZ_CHECK(whole.done == pieces.done,
             "one read: " + whole.error.message() + ", 61-byte reads: " + pieces.error.message());
  if (!whole.done) return 0;  // the server answers 400/413/431 or just closes
  FUZZ_CHECK(whole.method == pieces.method && whole.target == pieces.target && whole.body == pieces.body &&
                 whole.fields == pieces.fields,
             "the request depends on how its bytes arrived");
  FUZZ_CHECK(whole.body.size() <= kMaxBodyBytes, std::to_string(whole.body.size()));
  FUZZ_CHECK(!whole.method.empty() && !whole.target.empty(), "empty method or target");

  cphttp::Request request = make_request(whole);
  const auto match = router().match(request.method, request.path);
  check_routing(request, match);
  const auto query = cphttp::parse_query(request.target.size() > request.path.size()
                                             ? std::string_view(request.target).substr(request.path.size() + 1)
                                             : std::string_view());
  if (query) check_query(*query);
  if (match.kind != Kind::kFound || !query) return 0;  // 400, 404 or 405 from the server itself
  request.route = match.route->pattern;
  request.params = match.params;
  request.query = *query;
  check_auth(request);
  check_handlers(request);
  return 0;
}
