#include "shared/http/http_client.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <memory>
#include <mutex>
#include <optional>
#include <system_error>

#include "shared/core/error.h"

namespace flux::http {
namespace {

namespace fs = std::filesystem;

// strerror() is not thread-safe; error_code::message() is.
std::string errno_text(int error) { return std::error_code(error, std::generic_category()).message(); }
using Clock = std::chrono::steady_clock;

// Bodies of error answers are thrown away; a server streaming an endless one
// is cut off after this much.
constexpr uint64_t kMaxDiscardedBytes = 1 << 20;
constexpr size_t kMaxHeaders = 256;

void ensure_curl_initialised() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

struct CurlEasyDeleter {
  void operator()(CURL* easy) const { curl_easy_cleanup(easy); }
};
using CurlEasy = std::unique_ptr<CURL, CurlEasyDeleter>;

struct CurlSlistDeleter {
  void operator()(curl_slist* list) const { curl_slist_free_all(list); }
};

class CurlList {
 public:
  bool append(const std::string& item) {
    curl_slist* grown = curl_slist_append(list_.get(), item.c_str());
    if (grown == nullptr) return false;
    if (list_ == nullptr) list_.reset(grown);  // appending to a list returns its unchanged head
    return true;
  }
  curl_slist* get() const { return list_.get(); }

 private:
  std::unique_ptr<curl_slist, CurlSlistDeleter> list_;
};

// A temporary file next to the destination, removed unless committed.
class TempFile {
 public:
  static absl::StatusOr<TempFile> create_next_to(const fs::path& dest) {
    const fs::path dir = dest.has_parent_path() ? dest.parent_path() : fs::path(".");
    std::string pattern = (dir / ("." + dest.filename().string() + ".part-XXXXXX")).string();
    const int fd = mkostemp(pattern.data(), O_CLOEXEC);
    if (fd < 0) {
      return flux::internal_error("input_write_failed",
                                  "cannot create a temporary file in " + dir.string() + ": " + errno_text(errno));
    }
    return TempFile(fd, pattern);
  }
  TempFile(TempFile&& other) noexcept : fd_(std::exchange(other.fd_, -1)), path_(std::move(other.path_)) {}
  TempFile& operator=(TempFile&&) = delete;
  ~TempFile() {
    if (fd_ >= 0) ::close(fd_);
    if (!path_.empty()) ::unlink(path_.c_str());
  }
  int fd() const { return fd_; }

  absl::Status commit(const fs::path& dest) {
    const int fd = std::exchange(fd_, -1);
    if (::close(fd) != 0) return flux::internal_error("input_write_failed", std::string("close: ") + errno_text(errno));
    if (::rename(path_.c_str(), dest.c_str()) != 0) {
      return flux::internal_error("input_write_failed", "rename to " + dest.string() + ": " + errno_text(errno));
    }
    path_.clear();
    return absl::OkStatus();
  }

 private:
  TempFile(int fd, std::string path) : fd_(fd), path_(std::move(path)) {}
  int fd_;
  std::string path_;
};

struct ErrorCodes {
  std::string_view failed;
  std::string_view too_large;
};
constexpr ErrorCodes kDownloadCodes{"input_download_failed", "input_too_large"};
constexpr ErrorCodes kRequestCodes{"http_request_failed", "http_response_too_large"};

bool is_redirect(long status) {
  return status == 301 || status == 302 || status == 303 || status == 307 || status == 308;
}

std::string trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r' || s.back() == '\n'))
    s.remove_suffix(1);
  return std::string(s);
}

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) == std::tolower(static_cast<unsigned char>(y));
         });
}

// What one hop of a transfer sees; filled by the curl callbacks.
struct TransferState {
  CURL* easy = nullptr;
  const UrlPolicy* policy = nullptr;
  const flux::CancelToken* cancel = nullptr;
  // Body handling.
  bool only_success_bodies = false;      // downloads keep 2xx bodies only
  bool discard_redirect_bodies = false;  // when redirects are followed
  uint64_t max_bytes = 0;
  uint64_t received = 0;
  uint64_t discarded = 0;
  int fd = -1;
  std::string* buffer = nullptr;
  HttpHeaders headers;
  // Why the transfer stopped, when a callback stopped it.
  bool address_refused = false;
  std::string refused_address;
  bool cancelled = false;
  bool too_large = false;
  bool discard_overflow = false;
  int write_errno = 0;

  void start_hop() {
    received = 0;
    discarded = 0;
    headers.clear();
    discard_overflow = false;
  }
};

long response_status(CURL* easy) {
  long status = 0;
  curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &status);
  return status;
}

size_t on_body(char* data, size_t size, size_t count, void* userp) {
  auto* state = static_cast<TransferState*>(userp);
  const size_t n = size * count;
  const long status = response_status(state->easy);
  const bool discard =
      (state->only_success_bodies && (status < 200 || status > 299)) ||
      (state->discard_redirect_bodies && is_redirect(status) && !header_value(state->headers, "location").empty());
  if (discard) {
    state->discarded += n;
    if (state->discarded > kMaxDiscardedBytes) {
      state->discard_overflow = true;
      return CURL_WRITEFUNC_ERROR;
    }
    return n;
  }
  if (state->max_bytes > 0 && state->received + n > state->max_bytes) {
    state->too_large = true;
    return CURL_WRITEFUNC_ERROR;
  }
  state->received += n;
  if (state->buffer != nullptr) {
    state->buffer->append(data, n);
    return n;
  }
  size_t written = 0;
  while (written < n) {
    const ssize_t rc = ::write(state->fd, data + written, n - written);
    if (rc < 0 && errno == EINTR) continue;
    if (rc <= 0) {
      state->write_errno = rc < 0 ? errno : EIO;
      return CURL_WRITEFUNC_ERROR;
    }
    written += static_cast<size_t>(rc);
  }
  return n;
}

size_t on_header(char* data, size_t size, size_t count, void* userp) {
  auto* state = static_cast<TransferState*>(userp);
  const size_t n = size * count;
  const std::string_view line(data, n);
  if (line.substr(0, 5) == "HTTP/") {
    state->headers.clear();  // a new response (after 100 Continue, say)
  } else if (const size_t colon = line.find(':');
             colon != std::string_view::npos && state->headers.size() < kMaxHeaders) {
    state->headers.emplace_back(trim(line.substr(0, colon)), trim(line.substr(colon + 1)));
  }
  return n;
}

int on_progress(void* userp, curl_off_t, curl_off_t, curl_off_t, curl_off_t) {
  auto* state = static_cast<TransferState*>(userp);
  if (state->cancel != nullptr && state->cancel->cancelled()) {
    state->cancelled = true;
    return 1;
  }
  return 0;
}

// Every socket curl opens comes through here, after name resolution and for
// each candidate address: the one place where the address is final.
curl_socket_t on_open_socket(void* userp, curlsocktype purpose, curl_sockaddr* address) {
  auto* state = static_cast<TransferState*>(userp);
  if (purpose != CURLSOCKTYPE_IPCXN || !is_address_allowed(&address->addr, *state->policy)) {
    state->address_refused = true;
    char text[INET6_ADDRSTRLEN] = {};
    if (address->family == AF_INET) {
      inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(&address->addr)->sin_addr, text, sizeof(text));
    } else if (address->family == AF_INET6) {
      inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6*>(&address->addr)->sin6_addr, text, sizeof(text));
    }
    state->refused_address = text;
    return CURL_SOCKET_BAD;
  }
  // CLOEXEC: the worker starts ffmpeg while downloads run on other threads.
  return ::socket(address->family, address->socktype | SOCK_CLOEXEC, address->protocol);
}

// Everything an exchange needs, for downloads and requests alike.
struct Exchange {
  std::string method;
  std::string url;
  HttpHeaders headers;
  std::string body;
  const UrlPolicy* policy = nullptr;
  std::chrono::milliseconds connect_timeout{0};
  std::chrono::milliseconds total_timeout{0};
  std::chrono::seconds low_speed_time{0};
  long low_speed_bytes = 0;
  int max_redirects = 0;
  const std::vector<std::string>* resolve = nullptr;
  uint64_t max_bytes = 0;
  bool only_success_bodies = false;
  int fd = -1;
  std::string* buffer = nullptr;
  ErrorCodes codes;
};

struct ExchangeResult {
  long status = 0;
  HttpHeaders headers;
  std::string final_url;
};

absl::Status transport_error(const TransferState& state, CURLcode rc, const char* detail, const Exchange& ex,
                             const std::string& url) {
  const std::string where = " (" + redact_url(url) + ")";
  if (state.cancelled) return flux::make_error(absl::StatusCode::kCancelled, "cancelled", "transfer cancelled" + where);
  if (state.address_refused) {
    return flux::invalid_argument("url_address_forbidden",
                                  "refused to connect to the non-public address " + state.refused_address + where);
  }
  if (state.too_large || rc == CURLE_FILESIZE_EXCEEDED) {
    return flux::invalid_argument(ex.codes.too_large,
                                  "larger than the limit of " + std::to_string(ex.max_bytes) + " bytes" + where);
  }
  if (state.write_errno != 0) {
    return flux::internal_error("input_write_failed",
                                std::string("writing the body: ") + errno_text(state.write_errno));
  }
  std::string message = curl_easy_strerror(rc);
  if (detail != nullptr && detail[0] != '\0') message += std::string(": ") + detail;
  message += where;
  switch (rc) {
    case CURLE_OPERATION_TIMEDOUT:
      return flux::make_error(absl::StatusCode::kDeadlineExceeded, ex.codes.failed, "timed out: " + message);
    case CURLE_UNSUPPORTED_PROTOCOL:
      return flux::invalid_argument("url_scheme_forbidden", message);
    case CURLE_URL_MALFORMAT:
      return flux::invalid_argument("url_invalid", message);
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_ISSUER_ERROR:
    case CURLE_TOO_MANY_REDIRECTS:
      return flux::failed_precondition(ex.codes.failed, message);
    case CURLE_OUT_OF_MEMORY:
      return flux::internal_error(ex.codes.failed, message);
    default:
      return flux::unavailable(ex.codes.failed, message);
  }
}

void set_method(CURL* easy, const std::string& method, const std::string& body) {
  curl_easy_setopt(easy, CURLOPT_CUSTOMREQUEST, nullptr);
  curl_easy_setopt(easy, CURLOPT_NOBODY, 0L);
  curl_easy_setopt(easy, CURLOPT_HTTPGET, 1L);
  if (method == "GET") return;
  if (method == "HEAD") {
    curl_easy_setopt(easy, CURLOPT_NOBODY, 1L);
    return;
  }
  if (method == "POST" || !body.empty()) {
    curl_easy_setopt(easy, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(body.size()));
    curl_easy_setopt(easy, CURLOPT_POSTFIELDS, body.data());
  }
  if (method != "POST") curl_easy_setopt(easy, CURLOPT_CUSTOMREQUEST, method.c_str());
}

bool same_origin(const std::string& a, const std::string& b) {
  auto pa = parse_url(a);
  auto pb = parse_url(b);
  return pa.ok() && pb.ok() && pa->scheme == pb->scheme && pa->host == pb->host && pa->port == pb->port;
}

// Runs the exchange hop by hop: every hop's URL is checked against the policy
// before curl sees it, and every socket against the address rules.
absl::StatusOr<ExchangeResult> run_exchange(Exchange ex, const flux::CancelToken* cancel) {
  ensure_curl_initialised();
  CurlEasy easy(curl_easy_init());
  if (!easy) return flux::internal_error(ex.codes.failed, "curl_easy_init failed");

  // Redirects may only lead to http(s), whatever else the policy allows.
  UrlPolicy hop_policy = *ex.policy;
  hop_policy.local_input_dir.reset();
  std::erase_if(hop_policy.allowed_schemes, [](const std::string& s) { return s != "http" && s != "https"; });

  TransferState state;
  state.easy = easy.get();
  state.policy = &hop_policy;
  state.cancel = cancel;
  state.only_success_bodies = ex.only_success_bodies;
  state.discard_redirect_bodies = ex.max_redirects > 0;
  state.max_bytes = ex.max_bytes;
  state.fd = ex.fd;
  state.buffer = ex.buffer;

  CurlList resolve;
  if (ex.resolve != nullptr) {
    for (const auto& entry : *ex.resolve) {
      if (!resolve.append(entry)) return flux::internal_error(ex.codes.failed, "out of memory");
    }
  }
  char error_buffer[CURL_ERROR_SIZE] = {};
  CURL* h = easy.get();
  curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
  curl_easy_setopt(h, CURLOPT_PROXY, "");  // environment proxies would hide the destination
  curl_easy_setopt(h, CURLOPT_OPENSOCKETFUNCTION, on_open_socket);
  curl_easy_setopt(h, CURLOPT_OPENSOCKETDATA, &state);
  curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(h, CURLOPT_WRITEDATA, &state);
  curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
  curl_easy_setopt(h, CURLOPT_HEADERDATA, &state);
  curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
  curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, on_progress);
  curl_easy_setopt(h, CURLOPT_XFERINFODATA, &state);
  curl_easy_setopt(h, CURLOPT_ERRORBUFFER, error_buffer);
  curl_easy_setopt(h, CURLOPT_USERAGENT, "flux-encoder");
  curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L);
  if (ex.low_speed_time.count() > 0) {
    curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, static_cast<long>(ex.low_speed_time.count()));
    curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, ex.low_speed_bytes);
  }
  if (ex.max_bytes > 0) curl_easy_setopt(h, CURLOPT_MAXFILESIZE_LARGE, static_cast<curl_off_t>(ex.max_bytes));
  if (resolve.get() != nullptr) curl_easy_setopt(h, CURLOPT_RESOLVE, resolve.get());

  const auto deadline = Clock::now() + ex.total_timeout;
  std::string url = ex.url;
  for (int hop = 0;; ++hop) {
    if (auto status = check_url(url, hop_policy); !status.ok()) {
      return hop == 0 ? status : flux::annotate(status, "redirect refused");
    }
    const auto remaining = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    if (remaining.count() <= 0) {
      return flux::make_error(absl::StatusCode::kDeadlineExceeded, ex.codes.failed,
                              "timed out following redirects (" + redact_url(url) + ")");
    }
    CurlList header_list;
    for (const auto& [name, value] : ex.headers) {
      std::string line = name;
      line += value.empty() ? ";" : ": ";
      line += value;
      if (!header_list.append(line)) {
        return flux::internal_error(ex.codes.failed, "out of memory");
      }
    }
    if (!header_list.append("Expect:")) return flux::internal_error(ex.codes.failed, "out of memory");
    curl_easy_setopt(h, CURLOPT_URL, url.c_str());
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, header_list.get());
    set_method(h, ex.method, ex.body);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, static_cast<long>(remaining.count()));
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(std::min(ex.connect_timeout, remaining).count()));
    state.start_hop();
    error_buffer[0] = '\0';

    const CURLcode rc = curl_easy_perform(h);
    const long status = response_status(h);
    // An error answer whose discarded body ran too long is still that answer.
    const bool answered = rc == CURLE_WRITE_ERROR && state.discard_overflow && status != 0;
    if (rc != CURLE_OK && !answered) return transport_error(state, rc, error_buffer, ex, url);

    char* location = nullptr;
    curl_easy_getinfo(h, CURLINFO_REDIRECT_URL, &location);
    if (ex.max_redirects > 0 && is_redirect(status) && location != nullptr) {
      if (hop >= ex.max_redirects) {
        return flux::failed_precondition(ex.codes.failed, "more than " + std::to_string(ex.max_redirects) +
                                                              " redirects (" + redact_url(ex.url) + ")");
      }
      std::string next = location;
      if (status == 303 || ((status == 301 || status == 302) && ex.method == "POST")) {
        ex.method = "GET";
        ex.body.clear();
      }
      if (!same_origin(url, next)) {
        std::erase_if(ex.headers, [](const auto& header) {
          return iequals(header.first, "authorization") || iequals(header.first, "cookie") ||
                 iequals(header.first, "proxy-authorization");
        });
      }
      url = std::move(next);
      continue;
    }
    return ExchangeResult{status, std::move(state.headers), url};
  }
}

absl::Status status_error(long status, const std::string& url) {
  const std::string message = "HTTP " + std::to_string(status) + " from " + redact_url(url);
  if (status == 404 || status == 410) return flux::not_found("input_not_found", message);
  if (status == 408 || status == 425 || status == 429 || (status >= 500 && status <= 599)) {
    return flux::unavailable("input_download_failed", message);
  }
  return flux::failed_precondition("input_download_failed", message);
}

bool is_token(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.';
  });
}

}  // namespace

std::string header_value(const HttpHeaders& headers, std::string_view name) {
  for (const auto& [key, value] : headers) {
    if (iequals(key, name)) return value;
  }
  return "";
}

absl::Status download_to_file(std::string_view url, const fs::path& dest, const DownloadOptions& options,
                              const flux::CancelToken* cancel) {
  // Refuse before touching the file system: a forbidden URL leaves nothing.
  if (auto status = check_url(url, options.policy); !status.ok()) return status;
  auto temp = TempFile::create_next_to(dest);
  if (!temp.ok()) return temp.status();

  Exchange ex;
  ex.method = "GET";
  ex.url = std::string(url);
  ex.policy = &options.policy;
  ex.connect_timeout = options.connect_timeout;
  ex.total_timeout = options.total_timeout;
  ex.low_speed_time = options.low_speed_time;
  ex.low_speed_bytes = options.low_speed_bytes;
  ex.max_redirects = options.max_redirects;
  ex.resolve = &options.test_only_resolve;
  ex.max_bytes = options.max_bytes;
  ex.only_success_bodies = true;
  ex.fd = temp->fd();
  ex.codes = kDownloadCodes;

  auto result = run_exchange(std::move(ex), cancel);
  if (!result.ok()) return result.status();
  if (result->status < 200 || result->status > 299) return status_error(result->status, result->final_url);
  return temp->commit(dest);
}

absl::StatusOr<HttpResponse> request(const HttpRequest& req, const RequestOptions& options,
                                     const flux::CancelToken* cancel) {
  if (!is_token(req.method)) return flux::invalid_argument("http_request_invalid", "malformed method");
  for (const auto& [name, value] : req.headers) {
    // CR or LF would let a value smuggle extra headers or a second request.
    if (!is_token(name) || value.find_first_of("\r\n") != std::string::npos || value.find('\0') != std::string::npos) {
      return flux::invalid_argument("http_request_invalid", "malformed header " + name);
    }
  }
  std::string body;
  Exchange ex;
  ex.method = req.method;
  ex.url = req.url;
  ex.headers = req.headers;
  ex.body = req.body;
  ex.policy = &options.policy;
  ex.connect_timeout = options.connect_timeout;
  ex.total_timeout = options.total_timeout;
  ex.max_redirects = options.max_redirects;
  ex.resolve = &options.test_only_resolve;
  ex.max_bytes = options.max_response_bytes;
  ex.buffer = &body;
  ex.codes = kRequestCodes;

  auto result = run_exchange(std::move(ex), cancel);
  if (!result.ok()) return result.status();
  return HttpResponse{result->status, std::move(result->headers), std::move(body)};
}

}  // namespace flux::http
