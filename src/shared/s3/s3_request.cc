#include "shared/s3/s3_request.h"

#include <curl/curl.h>
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <memory>
#include <mutex>

#include "absl/strings/cord.h"
#include "shared/core/error.h"
#include "shared/s3/s3_client.h"
#include "shared/s3/s3_xml.h"

namespace flux::s3::internal {
namespace {

constexpr absl::string_view kRetryablePayload = "flux.dev/s3_retryable";
// S3 answers are small XML documents; a larger in-memory body is refused.
constexpr size_t kMaxMemoryBody = 4u << 20;
constexpr size_t kMaxErrorBody = 64u << 10;

struct CurlEasyDeleter {
  void operator()(CURL* handle) const { curl_easy_cleanup(handle); }
};
using CurlEasy = std::unique_ptr<CURL, CurlEasyDeleter>;

struct CurlSlistDeleter {
  void operator()(curl_slist* list) const { curl_slist_free_all(list); }
};
using CurlHeaders = std::unique_ptr<curl_slist, CurlSlistDeleter>;

class UniqueFd {
 public:
  explicit UniqueFd(int fd) : fd_(fd) {}
  ~UniqueFd() {
    if (fd_ >= 0) ::close(fd_);
  }
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;
  int get() const { return fd_; }

 private:
  int fd_;
};

// Everything the curl callbacks of one attempt touch.
struct Exchange {
  CURL* handle = nullptr;
  const Request* request = nullptr;
  Response response;
  // Request body reading.
  int body_fd = -1;
  uint64_t body_sent = 0;
  // Response body writing.
  uint64_t sink_written = 0;
  bool too_large = false;
  bool sink_failed = false;
  int sink_errno = 0;
  bool memory_overflow = false;
  // Stopping.
  const flux::CancelToken* cancel = nullptr;
  const std::atomic<bool>* abort = nullptr;

  long current_status() const {
    long code = 0;
    curl_easy_getinfo(handle, CURLINFO_RESPONSE_CODE, &code);
    return code;
  }
};

size_t read_body(char* buffer, size_t size, size_t count, void* user) {
  auto* ex = static_cast<Exchange*>(user);
  const Request& req = *ex->request;
  const size_t room = size * count;
  if (ex->body_fd >= 0) {
    const uint64_t left = req.body_length - ex->body_sent;
    const size_t want = static_cast<size_t>(std::min<uint64_t>(left, room));
    if (want == 0) return 0;
    const ssize_t got = ::pread(ex->body_fd, buffer, want, static_cast<off_t>(req.body_offset + ex->body_sent));
    if (got <= 0) return CURL_READFUNC_ABORT;  // file shrank or unreadable: never send a short body
    ex->body_sent += static_cast<uint64_t>(got);
    return static_cast<size_t>(got);
  }
  const size_t left = req.body.size() - ex->body_sent;
  const size_t n = std::min(left, room);
  std::memcpy(buffer, req.body.data() + ex->body_sent, n);
  ex->body_sent += n;
  return n;
}

size_t write_body(char* data, size_t size, size_t count, void* user) {
  auto* ex = static_cast<Exchange*>(user);
  const size_t n = size * count;
  const Request& req = *ex->request;
  const long status = ex->current_status();
  if (req.sink_fd >= 0 && status >= 200 && status < 300) {
    if (req.max_sink_bytes != 0 && ex->sink_written + n > req.max_sink_bytes) {
      ex->too_large = true;
      return 0;
    }
    size_t done = 0;
    while (done < n) {
      const ssize_t w = ::write(req.sink_fd, data + done, n - done);
      if (w < 0 && errno == EINTR) continue;
      if (w <= 0) {
        ex->sink_failed = true;
        ex->sink_errno = errno;
        return 0;
      }
      done += static_cast<size_t>(w);
    }
    ex->sink_written += n;
    return n;
  }
  const size_t cap = (status >= 200 && status < 300) ? kMaxMemoryBody : kMaxErrorBody;
  if (ex->response.body.size() + n > cap) {
    // An oversized error body is cut, not fatal: its start carries the Code.
    if (status < 200 || status >= 300) {
      ex->response.body.append(data, cap - std::min(cap, ex->response.body.size()));
      return n;
    }
    ex->memory_overflow = true;
    return 0;
  }
  ex->response.body.append(data, n);
  return n;
}

size_t read_header(char* data, size_t size, size_t count, void* user) {
  auto* ex = static_cast<Exchange*>(user);
  const size_t n = size * count;
  std::string_view line(data, n);
  while (!line.empty() && (line.back() == '\r' || line.back() == '\n')) line.remove_suffix(1);
  if (line.starts_with("HTTP/")) {
    ex->response.headers.clear();  // a new response (after 100 Continue)
    return n;
  }
  const size_t colon = line.find(':');
  if (colon == std::string_view::npos) return n;
  std::string name(line.substr(0, colon));
  std::transform(name.begin(), name.end(), name.begin(), [](unsigned char c) { return std::tolower(c); });
  std::string_view value = line.substr(colon + 1);
  while (!value.empty() && (value.front() == ' ' || value.front() == '\t')) value.remove_prefix(1);
  while (!value.empty() && (value.back() == ' ' || value.back() == '\t')) value.remove_suffix(1);
  // A declared body above the cap is refused before any of it is read.
  const Request& req = *ex->request;
  if (name == "content-length" && req.sink_fd >= 0 && req.max_sink_bytes != 0) {
    const long status = ex->current_status();
    if (status >= 200 && status < 300 && std::strtoull(std::string(value).c_str(), nullptr, 10) > req.max_sink_bytes) {
      ex->too_large = true;
      return 0;
    }
  }
  ex->response.headers[name] = std::string(value);
  return n;
}

int on_progress(void* user, curl_off_t, curl_off_t, curl_off_t, curl_off_t) {
  auto* ex = static_cast<Exchange*>(user);
  if (ex->cancel != nullptr && ex->cancel->cancelled()) return 1;
  if (ex->abort != nullptr && ex->abort->load()) return 1;
  return 0;
}

bool is_transient_curl_error(CURLcode code) {
  switch (code) {
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_CONNECT:
    case CURLE_OPERATION_TIMEDOUT:
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_PARTIAL_FILE:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
      return true;
    default:
      return false;
  }
}

void global_init() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

absl::Status cancelled(std::string_view what) {
  return flux::make_error(absl::StatusCode::kCancelled, "cancelled", std::string(what) + ": cancelled");
}

}  // namespace

bool is_transient_s3_code(std::string_view code) {
  static constexpr std::string_view kTransient[] = {
      "SlowDown",           "Throttling",           "ThrottlingException", "RequestThrottled",
      "TooManyRequests",    "RequestLimitExceeded", "RequestTimeout",      "InternalError",
      "ServiceUnavailable", "RequestTimeTooSkewed"};
  return std::find(std::begin(kTransient), std::end(kTransient), code) != std::end(kTransient);
}

absl::Status mark_retryable(absl::Status status) {
  if (!status.ok()) status.SetPayload(kRetryablePayload, absl::Cord("1"));
  return status;
}

bool is_retryable(const absl::Status& status) { return status.GetPayload(kRetryablePayload).has_value(); }

absl::StatusOr<Response> perform(const Transport& transport, const Request& request, const flux::CancelToken* cancel,
                                 const std::atomic<bool>* abort) {
  global_init();
  if (cancel != nullptr && cancel->cancelled()) return cancelled(request.what);
  if (request.sink_fd >= 0) {
    // Each attempt starts the file afresh.
    if (::ftruncate(request.sink_fd, 0) != 0 || ::lseek(request.sink_fd, 0, SEEK_SET) != 0) {
      return flux::internal_error("file_write_failed",
                                  request.what + ": cannot reset the destination file: " + std::strerror(errno));
    }
  }
  CurlEasy handle(curl_easy_init());
  if (!handle) return flux::internal_error("internal", request.what + ": curl_easy_init failed");
  CURL* h = handle.get();

  Exchange ex;
  ex.handle = h;
  ex.request = &request;
  ex.cancel = cancel;
  ex.abort = abort;

  std::unique_ptr<UniqueFd> body_fd;
  if (!request.body_file.empty()) {
    body_fd = std::make_unique<UniqueFd>(::open(request.body_file.c_str(), O_RDONLY | O_CLOEXEC));
    if (body_fd->get() < 0) {
      return flux::internal_error("file_unreadable", request.what + ": cannot open " + request.body_file.string() +
                                                         ": " + std::strerror(errno));
    }
    ex.body_fd = body_fd->get();
  }

  CurlHeaders headers;
  // curl_slist_append returns the list head (new only for the first item), or
  // null on allocation failure with the list left intact.
  auto add_header = [&headers](const std::string& line) {
    curl_slist* head = curl_slist_append(headers.get(), line.c_str());
    if (head != nullptr && head != headers.get()) headers.reset(head);
  };
  add_header("x-amz-content-sha256: " + request.payload_sha256);
  for (const auto& [name, value] : request.headers) add_header(name + ": " + value);

  curl_easy_setopt(h, CURLOPT_URL, request.url.c_str());
  // Object keys may hold "." segments; they must reach S3 as written.
  curl_easy_setopt(h, CURLOPT_PATH_AS_IS, 1L);
  curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
  curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, transport.connect_timeout_s);
  if (transport.request_timeout_s > 0) curl_easy_setopt(h, CURLOPT_TIMEOUT, transport.request_timeout_s);
  curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, 1L);
  curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, transport.stall_timeout_s);
  curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, read_header);
  curl_easy_setopt(h, CURLOPT_HEADERDATA, &ex);
  curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, write_body);
  curl_easy_setopt(h, CURLOPT_WRITEDATA, &ex);
  curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, on_progress);
  curl_easy_setopt(h, CURLOPT_XFERINFODATA, &ex);
  curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);

  const Credentials& creds = *transport.credentials;
  std::string sigv4_provider;
  if (!creds.access_key_id.empty()) {
    sigv4_provider = "aws:amz:" + transport.region + ":s3";
    curl_easy_setopt(h, CURLOPT_AWS_SIGV4, sigv4_provider.c_str());
    curl_easy_setopt(h, CURLOPT_USERNAME, creds.access_key_id.c_str());
    curl_easy_setopt(h, CURLOPT_PASSWORD, creds.secret_access_key.c_str());
  }

  const uint64_t body_size = ex.body_fd >= 0 ? request.body_length : request.body.size();
  if (request.method == "PUT") {
    curl_easy_setopt(h, CURLOPT_UPLOAD, 1L);
    curl_easy_setopt(h, CURLOPT_READFUNCTION, read_body);
    curl_easy_setopt(h, CURLOPT_READDATA, &ex);
    curl_easy_setopt(h, CURLOPT_INFILESIZE_LARGE, static_cast<curl_off_t>(body_size));
  } else if (request.method == "POST") {
    curl_easy_setopt(h, CURLOPT_POST, 1L);
    curl_easy_setopt(h, CURLOPT_READFUNCTION, read_body);
    curl_easy_setopt(h, CURLOPT_READDATA, &ex);
    curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(body_size));
  } else if (request.method == "HEAD") {
    curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
  } else if (request.method == "DELETE") {
    curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, "DELETE");
  } else {
    curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
  }
  curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers.get());

  char error_buffer[CURL_ERROR_SIZE] = {0};
  curl_easy_setopt(h, CURLOPT_ERRORBUFFER, error_buffer);

  const CURLcode code = curl_easy_perform(h);
  if (code != CURLE_OK) {
    if (ex.too_large) {
      return flux::invalid_argument("input_too_large", request.what + ": object is larger than the limit of " +
                                                           std::to_string(request.max_sink_bytes) + " bytes");
    }
    if (ex.sink_failed) {
      return flux::internal_error("file_write_failed",
                                  request.what + ": writing the download failed: " + std::strerror(ex.sink_errno));
    }
    if (code == CURLE_ABORTED_BY_CALLBACK) return cancelled(request.what);
    if (ex.memory_overflow) return flux::unavailable("s3_bad_response", request.what + ": response body too large");
    std::string detail = error_buffer[0] != '\0' ? error_buffer : curl_easy_strerror(code);
    absl::Status status = flux::unavailable("s3_error", request.what + ": " + detail);
    return is_transient_curl_error(code) ? mark_retryable(std::move(status)) : status;
  }
  curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &ex.response.status);
  return std::move(ex.response);
}

absl::Status status_for(const Response& response, std::string_view what) {
  const long status = response.status;
  if (status >= 200 && status < 300) return absl::OkStatus();
  const std::optional<S3ErrorInfo> error = parse_s3_error(response.body);
  std::string message = std::string(what) + ": HTTP " + std::to_string(status);
  if (error) {
    message += " " + error->code;
    if (!error->message.empty()) message += ": " + error->message;
  }
  if (status == 404) return flux::not_found("s3_not_found", message);
  if (status == 403) return flux::make_error(absl::StatusCode::kPermissionDenied, "s3_access_denied", message);
  absl::Status result = flux::unavailable("s3_error", message);
  if (status >= 500 || status == 429 || (error && is_transient_s3_code(error->code))) {
    return mark_retryable(std::move(result));
  }
  return result;
}

absl::StatusOr<Response> call(const Transport& transport, const retry::RetryPolicy& policy, const Request& request,
                              const flux::CancelToken* cancel, const std::atomic<bool>* abort,
                              const std::function<absl::Status(const Response&)>& check) {
  Response last;
  absl::Status status = retry::retry_call(
      policy,
      [&]() -> absl::Status {
        if (abort != nullptr && abort->load()) return cancelled(request.what);
        absl::StatusOr<Response> response = perform(transport, request, cancel, abort);
        if (!response.ok()) return response.status();
        if (absl::Status s = status_for(*response, request.what); !s.ok()) return s;
        if (check) {
          if (absl::Status s = check(*response); !s.ok()) return s;
        }
        last = std::move(*response);
        return absl::OkStatus();
      },
      is_retryable, cancel);
  if (!status.ok()) return status;
  return last;
}

}  // namespace flux::s3::internal
