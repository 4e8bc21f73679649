#pragma once
// Method + path pattern routing. Patterns are made of literal segments and
// whole-segment parameters: "/api/v1/jobs/{id}/cancel". A path's segments are
// percent-decoded one by one (exactly once). A HEAD request is served by the
// GET route of its path (not by an SSE route).
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "controlplane/http/types.h"

namespace flux::controlplane::http {

class Router {
 public:
  struct Route {
    std::string method;
    std::string pattern;
    std::vector<std::string> segments;  // "{name}" for a parameter
    Handler handler;                    // exactly one of handler / sse_handler is set
    SseHandler sse_handler;
  };

  struct Match {
    enum class Kind { kFound, kNotFound, kMethodNotAllowed, kBadPath };
    Kind kind = Kind::kNotFound;
    const Route* route = nullptr;  // kFound
    StringMap params;              // kFound
    std::string allow;             // kMethodNotAllowed: "GET, POST"
  };

  void add(std::string method, std::string pattern, Handler handler);
  void add_sse(std::string method, std::string pattern, SseHandler handler);

  // The route for method and path (percent-encoded, without the query). When
  // several patterns match, the one with the most literal segments wins.
  // kBadPath: the path does not start with "/", has a broken %-escape, or a
  // segment that is "." or ".." (raw or decoded) or decodes to a '/', a '\\',
  // a control character or ill-formed UTF-8 (overlong "%c0%ae" included):
  // traversal attempts, refused before any route sees them.
  Match match(std::string_view method, std::string_view path) const;

 private:
  void add_route(Route route);
  std::vector<Route> routes_;
};

// Decodes %XX escapes (and '+' as a space when plus_is_space). nullopt for a
// broken escape or a decoded NUL.
std::optional<std::string> percent_decode(std::string_view text, bool plus_is_space);

// "a=1&b=x%20y" -> {a: 1, b: "x y"}; a name without '=' maps to "". nullopt on
// a broken escape.
std::optional<StringMap> parse_query(std::string_view query);

}  // namespace flux::controlplane::http
