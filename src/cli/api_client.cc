#include "cli/api_client.h"

#include <curl/curl.h>

#include <memory>
#include <utility>

#include "shared/core/error.h"

namespace flux::cli {
namespace {

using nlohmann::json;

struct CurlDeleter {
  void operator()(CURL* handle) const { curl_easy_cleanup(handle); }
};
using CurlHandle = std::unique_ptr<CURL, CurlDeleter>;

struct SlistDeleter {
  void operator()(curl_slist* list) const { curl_slist_free_all(list); }
};
using HeaderList = std::unique_ptr<curl_slist, SlistDeleter>;

absl::Status append_header(HeaderList& list, const std::string& header) {
  curl_slist* head = curl_slist_append(list.get(), header.c_str());
  if (head == nullptr) return internal_error("internal", "out of memory building request headers");
  // Appending to a non-empty list returns its unchanged head.
  if (!list) list.reset(head);
  return absl::OkStatus();
}

// Percent-encodes everything but letters, digits, '-', '_' and '~' (a '.' too,
// so ".." cannot become a dot segment): a job id or cursor can never change
// the path or add query parameters.
std::string escape_segment(const std::string& segment) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (char ch : segment) {
    const auto c = static_cast<unsigned char>(ch);
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_' ||
        c == '~') {
      out += ch;
    } else {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  return out;
}

// What a transfer's callbacks share with the code that started it.
struct Transfer {
  const ClientOptions* options = nullptr;
  CURL* handle = nullptr;
  std::string body;
  bool too_large = false;
  // Streaming: events go to on_event once the answer is known to be a 200
  // event stream; anything else is kept in `body` as an error answer.
  const std::function<bool(const SseEvent&)>* on_event = nullptr;
  std::unique_ptr<SseParser> parser;
  bool decided = false;
  bool streaming = false;
  bool stopped = false;
  bool stream_invalid = false;
  bool callback_failed = false;
};

bool is_event_stream(CURL* handle) {
  char* type = nullptr;
  if (curl_easy_getinfo(handle, CURLINFO_CONTENT_TYPE, &type) != CURLE_OK || type == nullptr) return false;
  const std::string value(type);
  return value.rfind("text/event-stream", 0) == 0;
}

size_t on_write(char* data, size_t size, size_t count, void* user) {
  auto* t = static_cast<Transfer*>(user);
  const size_t bytes = size * count;
  try {
    if (t->on_event != nullptr && !t->decided) {
      t->decided = true;
      long status = 0;
      curl_easy_getinfo(t->handle, CURLINFO_RESPONSE_CODE, &status);
      t->streaming = status == 200 && is_event_stream(t->handle);
      if (t->streaming) t->parser = std::make_unique<SseParser>();
    }
    if (t->streaming) {
      for (const SseEvent& event : t->parser->feed(std::string_view(data, bytes))) {
        if (!(*t->on_event)(event)) {
          t->stopped = true;
          return 0;
        }
      }
      if (t->parser->overflowed()) {
        t->stream_invalid = true;
        return 0;
      }
      return bytes;
    }
    if (t->body.size() + bytes > t->options->max_response_bytes) {
      t->too_large = true;
      return 0;
    }
    t->body.append(data, bytes);
    return bytes;
  } catch (...) {
    t->callback_failed = true;
    return 0;
  }
}

int on_progress(void* user, curl_off_t, curl_off_t, curl_off_t, curl_off_t) {
  auto* t = static_cast<Transfer*>(user);
  return t->options->interrupted != nullptr && t->options->interrupted->load() ? 1 : 0;
}

absl::Status transport_error(CURLcode code, const char* detail, const std::string& base_url) {
  const std::string reason = detail[0] != '\0' ? std::string(detail) : std::string(curl_easy_strerror(code));
  switch (code) {
    case CURLE_ABORTED_BY_CALLBACK:
      return make_error(absl::StatusCode::kCancelled, "interrupted", "interrupted");
    case CURLE_COULDNT_CONNECT:
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
      return unavailable("connection_failed", "cannot reach the control plane at " + base_url + ": " + reason);
    case CURLE_OPERATION_TIMEDOUT:
      return make_error(absl::StatusCode::kDeadlineExceeded, "timeout",
                        "the control plane at " + base_url + " did not answer in time: " + reason);
    case CURLE_URL_MALFORMAT:
    case CURLE_UNSUPPORTED_PROTOCOL:
      return invalid_argument("url_invalid", "bad control plane URL " + base_url + ": " + reason);
    default:
      return unavailable("network_error", "talking to the control plane at " + base_url + " failed: " + reason);
  }
}

// A handle with what every request shares.
absl::StatusOr<CurlHandle> new_handle(const ClientOptions& options, const std::string& url, Transfer& transfer,
                                      char* error_buffer) {
  CurlHandle handle(curl_easy_init());
  if (!handle) return internal_error("internal", "curl_easy_init failed");
  CURL* h = handle.get();
  transfer.handle = h;
  transfer.options = &options;
  curl_easy_setopt(h, CURLOPT_URL, url.c_str());
  curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(h, CURLOPT_ERRORBUFFER, error_buffer);
  curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(options.connect_timeout.count()));
  curl_easy_setopt(h, CURLOPT_USERAGENT, options.user_agent.c_str());
  curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, &on_write);
  curl_easy_setopt(h, CURLOPT_WRITEDATA, &transfer);
  curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
  curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, &on_progress);
  curl_easy_setopt(h, CURLOPT_XFERINFODATA, &transfer);
  // Redirects are not followed: they would carry the API key to another host.
  curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
  return handle;
}

}  // namespace

absl::Status error_from_response(long http_status, const std::string& body) {
  std::string message = "HTTP " + std::to_string(http_status);
  std::string code = "http_" + std::to_string(http_status);
  const json parsed = json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (parsed.is_object()) {
    if (auto it = parsed.find("error");
        it != parsed.end() && it->is_string() && !it->get_ref<const std::string&>().empty()) {
      message = it->get<std::string>();
    }
    if (auto it = parsed.find("code");
        it != parsed.end() && it->is_string() && !it->get_ref<const std::string&>().empty()) {
      code = it->get<std::string>();
    }
  }
  absl::StatusCode category = absl::StatusCode::kInternal;
  if (http_status == 401) {
    category = absl::StatusCode::kUnauthenticated;
  } else if (http_status == 403) {
    category = absl::StatusCode::kPermissionDenied;
  } else if (http_status == 404) {
    category = absl::StatusCode::kNotFound;
  } else if (http_status == 409) {
    category = absl::StatusCode::kFailedPrecondition;
  } else if (http_status == 429) {
    category = absl::StatusCode::kResourceExhausted;
  } else if (http_status == 503 || http_status == 502 || http_status == 504) {
    category = absl::StatusCode::kUnavailable;
  } else if (http_status >= 400 && http_status < 500) {
    category = absl::StatusCode::kInvalidArgument;
  }
  return make_error(category, code, message);
}

HttpJobService::HttpJobService(ClientOptions options) : options_(std::move(options)) {
  while (!options_.base_url.empty() && options_.base_url.back() == '/') options_.base_url.pop_back();
}

absl::StatusOr<HttpJobService::Reply> HttpJobService::exchange(const std::string& method, const std::string& path,
                                                               const std::string* json_body,
                                                               const std::vector<std::string>& extra_headers) {
  Transfer transfer;
  char error_buffer[CURL_ERROR_SIZE] = {0};
  auto handle = new_handle(options_, options_.base_url + path, transfer, error_buffer);
  if (!handle.ok()) return handle.status();
  CURL* h = handle->get();
  HeaderList headers;
  std::vector<std::string> all = {"Accept: application/json"};
  if (!options_.api_key.empty()) all.push_back("Authorization: Bearer " + options_.api_key);
  if (json_body != nullptr) all.push_back("Content-Type: application/json");
  all.insert(all.end(), extra_headers.begin(), extra_headers.end());
  for (const auto& header : all) {
    if (auto s = append_header(headers, header); !s.ok()) return s;
  }
  curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers.get());
  curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, static_cast<long>(options_.request_timeout.count()));
  if (method == "POST") {
    curl_easy_setopt(h, CURLOPT_POST, 1L);
    const std::string empty;
    const std::string& body = json_body != nullptr ? *json_body : empty;
    curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, static_cast<long>(body.size()));
    curl_easy_setopt(h, CURLOPT_COPYPOSTFIELDS, body.c_str());
  } else if (method != "GET") {
    curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method.c_str());
  }
  const CURLcode code = curl_easy_perform(h);
  if (transfer.too_large) {
    return make_error(absl::StatusCode::kDataLoss, "response_invalid", "the control plane's answer is too large");
  }
  if (code != CURLE_OK) return transport_error(code, error_buffer, options_.base_url);
  Reply reply;
  curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &reply.status);
  char* type = nullptr;
  if (curl_easy_getinfo(h, CURLINFO_CONTENT_TYPE, &type) == CURLE_OK && type != nullptr) reply.content_type = type;
  reply.body = std::move(transfer.body);
  return reply;
}

absl::StatusOr<json> HttpJobService::json_call(const std::string& method, const std::string& path, const json* body,
                                               const std::vector<std::string>& extra_headers, long expected_status) {
  std::string text;
  if (body != nullptr) text = body->dump(-1, ' ', false, json::error_handler_t::replace);
  auto reply = exchange(method, path, body != nullptr ? &text : nullptr, extra_headers);
  if (!reply.ok()) return reply.status();
  if (reply->status != expected_status) {
    if (reply->status >= 200 && reply->status < 300) {
      return make_error(absl::StatusCode::kDataLoss, "response_invalid",
                        "unexpected HTTP " + std::to_string(reply->status) + " from " + method + " " + path);
    }
    return error_from_response(reply->status, reply->body);
  }
  json parsed = json::parse(reply->body, nullptr, /*allow_exceptions=*/false);
  if (!parsed.is_object()) {
    return make_error(absl::StatusCode::kDataLoss, "response_invalid",
                      "the answer to " + method + " " + path + " is not a JSON object");
  }
  return parsed;
}

absl::StatusOr<json> HttpJobService::submit(const json& request, const std::string& idempotency_key) {
  std::vector<std::string> headers;
  if (!idempotency_key.empty()) headers.push_back("Idempotency-Key: " + idempotency_key);
  auto answer = json_call("POST", "/api/v1/jobs", &request, headers, 202);
  if (answer.ok() && !(answer->contains("job_id") && (*answer)["job_id"].is_string())) {
    return make_error(absl::StatusCode::kDataLoss, "response_invalid", "the submit answer has no job_id");
  }
  return answer;
}

absl::StatusOr<json> HttpJobService::get_job(const std::string& job_id) {
  return json_call("GET", "/api/v1/jobs/" + escape_segment(job_id), nullptr, {}, 200);
}

absl::StatusOr<json> HttpJobService::list_jobs(const ListQuery& query) {
  std::string path = "/api/v1/jobs";
  std::string sep = "?";
  if (!query.status.empty()) {
    path += sep + "status=" + escape_segment(query.status);
    sep = "&";
  }
  if (query.limit > 0) {
    path += sep + "limit=" + std::to_string(query.limit);
    sep = "&";
  }
  if (!query.cursor.empty()) path += sep + "cursor=" + escape_segment(query.cursor);
  return json_call("GET", path, nullptr, {}, 200);
}

absl::StatusOr<json> HttpJobService::cancel_job(const std::string& job_id) {
  return json_call("POST", "/api/v1/jobs/" + escape_segment(job_id) + "/cancel", nullptr, {}, 200);
}

absl::StatusOr<json> HttpJobService::workers() { return json_call("GET", "/api/v1/workers/status", nullptr, {}, 200); }

absl::StatusOr<json> HttpJobService::presets() { return json_call("GET", "/api/v1/presets", nullptr, {}, 200); }

absl::StatusOr<StreamEnd> HttpJobService::stream_job(const std::string& job_id, const std::string& last_event_id,
                                                     const std::function<bool(const SseEvent&)>& on_event) {
  Transfer transfer;
  transfer.on_event = &on_event;
  char error_buffer[CURL_ERROR_SIZE] = {0};
  const std::string path = "/api/v1/jobs/" + escape_segment(job_id) + "/stream";
  auto handle = new_handle(options_, options_.base_url + path, transfer, error_buffer);
  if (!handle.ok()) return handle.status();
  CURL* h = handle->get();
  HeaderList headers;
  std::vector<std::string> all = {"Accept: text/event-stream", "Cache-Control: no-cache"};
  if (!options_.api_key.empty()) all.push_back("Authorization: Bearer " + options_.api_key);
  if (!last_event_id.empty()) all.push_back("Last-Event-ID: " + last_event_id);
  for (const auto& header : all) {
    if (auto s = append_header(headers, header); !s.ok()) return s;
  }
  curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers.get());
  // No overall limit: a job may run for hours. A silent stream is broken.
  curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, 0L);
  curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, 1L);
  curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, static_cast<long>(options_.stream_idle_timeout.count()));

  const CURLcode code = curl_easy_perform(h);
  if (transfer.stopped) return StreamEnd::kStopped;
  if (transfer.callback_failed) return internal_error("internal", "handling a progress event failed");
  if (transfer.stream_invalid) {
    return make_error(absl::StatusCode::kDataLoss, "stream_invalid", "the progress stream has an oversized line");
  }
  if (transfer.too_large) {
    return make_error(absl::StatusCode::kDataLoss, "response_invalid", "the control plane's answer is too large");
  }
  long status = 0;
  curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
  if (code != CURLE_OK) {
    if (transfer.streaming && code != CURLE_ABORTED_BY_CALLBACK) {
      // Connected, then the stream broke: worth reconnecting.
      return unavailable("stream_broken", std::string("the progress stream broke: ") +
                                              (error_buffer[0] != '\0' ? error_buffer : curl_easy_strerror(code)));
    }
    return transport_error(code, error_buffer, options_.base_url);
  }
  if (status == 204) return StreamEnd::kNoContent;
  if (status != 200) return error_from_response(status, transfer.body);
  if (!transfer.streaming) {
    // A 200 without body never called on_write; with a body it was not an event stream.
    if (!is_event_stream(h)) {
      return make_error(absl::StatusCode::kDataLoss, "response_invalid",
                        "the progress stream answer is not text/event-stream");
    }
  }
  return StreamEnd::kClosed;
}

}  // namespace flux::cli
