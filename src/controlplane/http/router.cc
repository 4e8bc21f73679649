#include "controlplane/http/router.h"

#include <algorithm>
#include <cstdint>
#include <set>

namespace flux::controlplane::http {
namespace {

std::vector<std::string_view> split_path(std::string_view path) {
  // "/a/b" -> {"a", "b"}; "/" -> {""}
  std::vector<std::string_view> segments;
  path.remove_prefix(1);
  size_t start = 0;
  while (true) {
    const size_t slash = path.find('/', start);
    segments.push_back(path.substr(start, slash == std::string_view::npos ? std::string_view::npos : slash - start));
    if (slash == std::string_view::npos) break;
    start = slash + 1;
  }
  return segments;
}

bool is_parameter(std::string_view segment) {
  return segment.size() > 2 && segment.front() == '{' && segment.back() == '}';
}

bool is_dot_segment(std::string_view segment) { return segment == "." || segment == ".."; }

// Well-formed UTF-8 without overlong forms or surrogates: an overlong "%c0%ae"
// is a '.' to lenient decoders, so it must not reach anything downstream.
bool is_valid_utf8(std::string_view text) {
  size_t i = 0;
  while (i < text.size()) {
    const auto c = static_cast<unsigned char>(text[i]);
    size_t extra = 0;
    uint32_t code = 0;
    if (c < 0x80) {
      ++i;
      continue;
    } else if (c >= 0xC2 && c <= 0xDF) {
      extra = 1;
      code = c & 0x1F;
    } else if (c >= 0xE0 && c <= 0xEF) {
      extra = 2;
      code = c & 0x0F;
    } else if (c >= 0xF0 && c <= 0xF4) {
      extra = 3;
      code = c & 0x07;
    } else {
      return false;
    }
    if (i + extra >= text.size()) return false;
    for (size_t k = 1; k <= extra; ++k) {
      const auto next = static_cast<unsigned char>(text[i + k]);
      if ((next & 0xC0) != 0x80) return false;
      code = (code << 6) | (next & 0x3F);
    }
    if ((extra == 2 && (code < 0x800 || (code >= 0xD800 && code <= 0xDFFF))) ||
        (extra == 3 && (code < 0x10000 || code > 0x10FFFF))) {
      return false;
    }
    i += extra + 1;
  }
  return true;
}

// A decoded path segment that could only be an attempt to climb out of a
// directory or to smuggle bytes past a check: "..", "/" or "\\" inside one
// segment, control characters, ill-formed UTF-8.
bool is_hostile_segment(std::string_view decoded) {
  if (is_dot_segment(decoded)) return true;
  if (!is_valid_utf8(decoded)) return true;
  return std::any_of(decoded.begin(), decoded.end(), [](char ch) {
    const auto c = static_cast<unsigned char>(ch);
    return c < 0x20 || c == 0x7F || c == '/' || c == '\\';
  });
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

}  // namespace

const std::string* Request::header(std::string_view lower_case_name) const {
  const auto it = headers.find(lower_case_name);
  return it == headers.end() ? nullptr : &it->second;
}

const std::string* Request::query_param(std::string_view name) const {
  const auto it = query.find(name);
  return it == query.end() ? nullptr : &it->second;
}

Response json_response(int status, const nlohmann::json& body) {
  Response response;
  response.status = status;
  response.body = body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  return response;
}

Response error_response(int status, std::string_view code, std::string_view message, std::string_view field) {
  nlohmann::json body = {{"error", std::string(message)}, {"code", std::string(code)}};
  if (!field.empty()) body["field"] = std::string(field);
  return json_response(status, body);
}

std::optional<std::string> percent_decode(std::string_view text, bool plus_is_space) {
  std::string decoded;
  decoded.reserve(text.size());
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (c == '%') {
      if (i + 2 >= text.size()) return std::nullopt;
      const int high = hex_value(text[i + 1]);
      const int low = hex_value(text[i + 2]);
      if (high < 0 || low < 0) return std::nullopt;
      const char byte = static_cast<char>(high * 16 + low);
      if (byte == '\0') return std::nullopt;
      decoded += byte;
      i += 2;
    } else if (c == '+' && plus_is_space) {
      decoded += ' ';
    } else {
      decoded += c;
    }
  }
  return decoded;
}

std::optional<StringMap> parse_query(std::string_view query) {
  StringMap result;
  while (!query.empty()) {
    const size_t amp = query.find('&');
    const std::string_view pair = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view() : query.substr(amp + 1);
    if (pair.empty()) continue;
    const size_t equals = pair.find('=');
    auto name = percent_decode(pair.substr(0, equals), true);
    auto value = percent_decode(equals == std::string_view::npos ? std::string_view() : pair.substr(equals + 1), true);
    if (!name || !value) return std::nullopt;
    result.emplace(std::move(*name), std::move(*value));  // the first value wins
  }
  return result;
}

void Router::add(std::string method, std::string pattern, Handler handler) {
  Route route;
  route.method = std::move(method);
  route.pattern = std::move(pattern);
  route.handler = std::move(handler);
  add_route(std::move(route));
}

void Router::add_sse(std::string method, std::string pattern, SseHandler handler) {
  Route route;
  route.method = std::move(method);
  route.pattern = std::move(pattern);
  route.sse_handler = std::move(handler);
  add_route(std::move(route));
}

void Router::add_route(Route route) {
  const std::string normalized =
      route.pattern.empty() || route.pattern.front() != '/' ? "/" + route.pattern : route.pattern;
  for (const auto segment : split_path(normalized)) route.segments.emplace_back(segment);
  routes_.push_back(std::move(route));
}

Router::Match Router::match(std::string_view method, std::string_view path) const {
  Match result;
  if (path.empty() || path.front() != '/') {
    result.kind = Match::Kind::kBadPath;
    return result;
  }
  const auto raw_segments = split_path(path);
  std::vector<std::string> segments;
  segments.reserve(raw_segments.size());
  for (const auto raw : raw_segments) {
    auto decoded = percent_decode(raw, false);
    if (!decoded || is_dot_segment(raw) || is_hostile_segment(*decoded)) {
      result.kind = Match::Kind::kBadPath;
      return result;
    }
    segments.push_back(std::move(*decoded));
  }

  // HEAD is answered by any plain GET route (the server drops the body); an
  // SSE stream has nothing to say to a HEAD.
  const bool head = method == "HEAD";
  const auto serves = [&](const Route& route) {
    return route.method == method || (head && route.method == "GET" && route.handler);
  };
  std::set<std::string> allowed;
  int best_score = -1;
  for (const Route& route : routes_) {
    if (route.segments.size() != segments.size()) continue;
    int score = 0;
    bool matches = true;
    for (size_t i = 0; i < segments.size() && matches; ++i) {
      if (is_parameter(route.segments[i])) {
        matches = !segments[i].empty();
      } else {
        // Literal segments compare raw, so "%6Aobs" is not "jobs".
        matches = route.segments[i] == raw_segments[i];
        ++score;
      }
    }
    if (!matches) continue;
    if (!serves(route)) {
      allowed.insert(route.method);
      if (route.method == "GET" && route.handler) allowed.insert("HEAD");
      continue;
    }
    if (score <= best_score) continue;
    best_score = score;
    result.kind = Match::Kind::kFound;
    result.route = &route;
  }
  if (result.kind == Match::Kind::kFound) {
    for (size_t i = 0; i < segments.size(); ++i) {
      const std::string& segment = result.route->segments[i];
      if (is_parameter(segment)) result.params[segment.substr(1, segment.size() - 2)] = segments[i];
    }
    return result;
  }
  if (!allowed.empty()) {
    result.kind = Match::Kind::kMethodNotAllowed;
    for (const auto& allowed_method : allowed) {
      if (!result.allow.empty()) result.allow += ", ";
      result.allow += allowed_method;
    }
  }
  return result;
}

}  // namespace flux::controlplane::http
