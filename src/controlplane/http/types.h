#pragma once
// What the HTTP server hands to handlers and takes back. No Beast types here:
// handlers compile without Asio.
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include <nlohmann/json.hpp>

#include "controlplane/events/progress_hub.h"

namespace flux::controlplane::http {

using StringMap = std::map<std::string, std::string, std::less<>>;

struct Request {
  std::string method;  // as sent, e.g. "GET"
  std::string target;  // the raw request target, e.g. "/api/v1/jobs?limit=5"
  std::string path;    // the target without its query, still percent-encoded
  StringMap query;     // decoded; a repeated name keeps its first value
  StringMap headers;   // lower-case names; a repeated header's values joined with ", "
  StringMap params;    // decoded path parameters of the matched route ("{id}" -> "id")
  std::string route;   // the matched pattern, e.g. "/api/v1/jobs/{id}"
  std::string body;
  std::string remote_address;  // the peer's IP address
  std::string principal;       // set by Hooks::before_handler, e.g. the API key id

  // The value of a header (name in lower case), or nullptr.
  const std::string* header(std::string_view lower_case_name) const;
  // A query parameter, or nullptr.
  const std::string* query_param(std::string_view name) const;
};

struct Response {
  int status = 200;
  std::vector<std::pair<std::string, std::string>> headers;  // names/values with CR or LF are dropped
  std::string body;
  std::string content_type = "application/json";
};

// A JSON response.
Response json_response(int status, const nlohmann::json& body);

// The SPEC §3 error body {"error": message, "code": code[, "field": field]}.
Response error_response(int status, std::string_view code, std::string_view message, std::string_view field = {});

// Completes a request. Call it exactly once, from any thread; later calls are
// ignored. Dropping every copy without calling it answers 500.
using Responder = std::function<void(Response)>;

// Runs on an io thread and must not block: hand slow work to another thread
// and call the Responder from there.
using Handler = std::function<void(const Request&, Responder)>;

// An accepted SSE request: the server writes the stream headers, then the
// subscriber's events as they come, a ": keep-alive" comment whenever the
// stream has been silent for ServerOptions::sse_keepalive, and closes the
// connection after a terminal event, when the subscriber is finished or
// overflows, when the client goes away, or at server stop. on_close runs once
// when the stream ends (unsubscribe there).
struct SseStream {
  std::shared_ptr<events::Subscriber> subscriber;
  std::function<void()> on_close;
};

// Runs on an io thread and must not block. A Response answers normally (404
// for an unknown job, 401, 204 ...).
using SseHandler = std::function<std::variant<Response, SseStream>(const Request&)>;

}  // namespace flux::controlplane::http
