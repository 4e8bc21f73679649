#include "shared/s3/s3_client.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <random>
#include <thread>
#include <vector>

#include "shared/core/error.h"
#include "shared/s3/s3_request.h"
#include "shared/s3/s3_xml.h"
#include "shared/s3/sigv4.h"

namespace flux::s3 {
namespace {

using internal::Request;
using internal::Response;

constexpr uint64_t kMaxParts = 10000;
constexpr const char* kEmptySha256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

std::string env_or_empty(const char* name) {
  const char* value = std::getenv(name);
  return value != nullptr ? value : "";
}

// Header values come from job requests; a CR or LF would smuggle headers.
bool is_safe_header_value(std::string_view value) {
  return std::none_of(value.begin(), value.end(), [](unsigned char c) { return (c < 0x20 && c != '\t') || c == 0x7f; });
}

bool is_token_char(unsigned char c) {
  return std::isalnum(c) != 0 ||
         std::string_view("!#$%&'*+-.^_`|~").find(static_cast<char>(c)) != std::string_view::npos;
}

absl::Status invalid(std::string message) { return flux::invalid_argument("s3_invalid_request", message); }

absl::Status check_target(const std::string& bucket, const std::string& key) {
  if (bucket.empty()) return invalid("bucket name is empty");
  if (key.empty()) return invalid("object key is empty");
  if (key.size() > 1024) return invalid("object key is longer than 1024 bytes");
  return absl::OkStatus();
}

absl::StatusOr<std::vector<std::pair<std::string, std::string>>> object_headers(const PutOptions& options) {
  std::vector<std::pair<std::string, std::string>> headers;
  if (!is_safe_header_value(options.content_type) || !is_safe_header_value(options.cache_control)) {
    return invalid("content type or cache control holds control characters");
  }
  headers.emplace_back("Content-Type",
                       options.content_type.empty() ? "application/octet-stream" : options.content_type);
  if (!options.cache_control.empty()) headers.emplace_back("Cache-Control", options.cache_control);
  for (const auto& [name, value] : options.metadata) {
    if (name.empty() || !std::all_of(name.begin(), name.end(), [](unsigned char c) { return is_token_char(c); })) {
      return invalid("metadata name '" + name + "' is not a valid header name");
    }
    if (!is_safe_header_value(value)) return invalid("metadata '" + name + "' holds control characters");
    std::string lower = name;
    std::transform(lower.begin(), lower.end(), lower.begin(), [](unsigned char c) { return std::tolower(c); });
    headers.emplace_back("x-amz-meta-" + lower, value);
  }
  return headers;
}

std::string strip_quotes(std::string etag) {
  if (etag.size() >= 2 && etag.front() == '"' && etag.back() == '"') return etag.substr(1, etag.size() - 2);
  return etag;
}

// A bucket name usable as a DNS label under TLS: virtual-hosted style needs it.
bool is_virtual_host_compatible(const std::string& bucket) {
  if (bucket.size() < 3 || bucket.size() > 63) return false;
  return std::all_of(bucket.begin(), bucket.end(),
                     [](unsigned char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-'; });
}

// Removes a file unless released: the temporary download file.
class TempFile {
 public:
  TempFile(std::filesystem::path path, int fd) : path_(std::move(path)), fd_(fd) {}
  ~TempFile() {
    if (fd_ >= 0) ::close(fd_);
    if (!path_.empty()) {
      std::error_code ec;
      std::filesystem::remove(path_, ec);
    }
  }
  TempFile(const TempFile&) = delete;
  TempFile& operator=(const TempFile&) = delete;
  int fd() const { return fd_; }
  const std::filesystem::path& path() const { return path_; }
  int close_fd() {
    const int rc = ::close(fd_);
    fd_ = -1;
    return rc;
  }
  void release() { path_.clear(); }

 private:
  std::filesystem::path path_;
  int fd_;
};

std::string random_suffix() {
  static thread_local std::mt19937_64 rng(std::random_device{}());
  char buffer[17];
  std::snprintf(buffer, sizeof buffer, "%016llx", static_cast<unsigned long long>(rng()));
  return buffer;
}

}  // namespace

Credentials Credentials::from_env() {
  return Credentials{env_or_empty("AWS_ACCESS_KEY_ID"), env_or_empty("AWS_SECRET_ACCESS_KEY"),
                     env_or_empty("AWS_SESSION_TOKEN")};
}

S3Client::S3Client(S3Config config) : config_(std::move(config)) {
  if (config_.part_size == 0) config_.part_size = 8ull << 20;
  if (config_.parallel_parts < 1) config_.parallel_parts = 1;
  std::string endpoint = config_.endpoint;
  while (!endpoint.empty() && endpoint.back() == '/') endpoint.pop_back();
  if (endpoint.empty()) return;
  endpoint_scheme_ = "https";
  if (const size_t sep = endpoint.find("://"); sep != std::string::npos) {
    endpoint_scheme_ = endpoint.substr(0, sep);
    std::transform(endpoint_scheme_.begin(), endpoint_scheme_.end(), endpoint_scheme_.begin(),
                   [](unsigned char c) { return std::tolower(c); });
    endpoint.erase(0, sep + 3);
  }
  const size_t slash = endpoint.find('/');
  endpoint_host_ = endpoint.substr(0, slash);
  if (slash != std::string::npos) endpoint_path_ = endpoint.substr(slash);
  // The Host header (and so the signature) carries no default port.
  const std::string default_port = endpoint_scheme_ == "http" ? ":80" : ":443";
  if (endpoint_host_.ends_with(default_port)) endpoint_host_.resize(endpoint_host_.size() - default_port.size());
}

S3Client::Location S3Client::locate(const std::string& bucket, const std::string& key) const {
  const std::string encoded_key = "/" + encode_key(key);
  const bool path_style = config_.force_path_style || !is_virtual_host_compatible(bucket);
  if (endpoint_host_.empty()) {
    const std::string aws_host = "s3." + config_.region + ".amazonaws.com";
    if (path_style) return {"https", aws_host, "/" + uri_encode(bucket, false) + encoded_key};
    return {"https", bucket + "." + aws_host, encoded_key};
  }
  if (path_style) {
    return {endpoint_scheme_, endpoint_host_, endpoint_path_ + "/" + uri_encode(bucket, false) + encoded_key};
  }
  return {endpoint_scheme_, bucket + "." + endpoint_host_, endpoint_path_ + encoded_key};
}

std::string S3Client::object_url(const std::string& bucket, const std::string& key) const {
  const Location loc = locate(bucket, key);
  return loc.scheme + "://" + loc.host + loc.path;
}

std::string S3Client::presign_get(const std::string& bucket, const std::string& key, std::chrono::seconds expires,
                                  std::chrono::system_clock::time_point now) const {
  const Location loc = locate(bucket, key);
  PresignInput input;
  input.scheme = loc.scheme;
  input.host = loc.host;
  input.canonical_uri = loc.path;
  input.access_key_id = config_.credentials.access_key_id;
  input.secret_access_key = config_.credentials.secret_access_key;
  input.session_token = config_.credentials.session_token;
  input.region = config_.region;
  input.expires = expires;
  input.now = now;
  return presign_get_url(input);
}

namespace {

internal::Transport transport_for(const S3Config& config, bool streamed) {
  internal::Transport t;
  t.credentials = &config.credentials;
  t.region = config.region;
  t.connect_timeout_s = static_cast<long>(config.connect_timeout.count());
  t.request_timeout_s = streamed ? 0 : static_cast<long>(config.request_timeout.count());
  t.stall_timeout_s = static_cast<long>(std::min<int64_t>(60, std::max<int64_t>(1, config.request_timeout.count())));
  return t;
}

std::string describe(const std::string& bucket, const std::string& key) { return "s3://" + bucket + "/" + key; }

void add_session_token(const Credentials& credentials, Request& request) {
  if (!credentials.session_token.empty())
    request.headers.emplace_back("x-amz-security-token", credentials.session_token);
}

}  // namespace

absl::Status S3Client::put_file(const std::string& bucket, const std::string& key, const std::filesystem::path& file,
                                const PutOptions& options, const flux::CancelToken* cancel) {
  if (absl::Status s = check_target(bucket, key); !s.ok()) return s;
  std::error_code ec;
  const uint64_t size = std::filesystem::file_size(file, ec);
  if (ec) return flux::internal_error("file_unreadable", "cannot read " + file.string() + ": " + ec.message());
  if (size >= config_.multipart_threshold && size > 0) return put_multipart(bucket, key, file, size, options, cancel);
  return put_single(bucket, key, file, size, options, cancel);
}

absl::Status S3Client::put_single(const std::string& bucket, const std::string& key, const std::filesystem::path& file,
                                  uint64_t size, const PutOptions& options, const flux::CancelToken* cancel) {
  absl::StatusOr<std::vector<std::pair<std::string, std::string>>> headers = object_headers(options);
  if (!headers.ok()) return headers.status();
  absl::StatusOr<std::string> hash = sha256_file_hex(file, 0, size);
  if (!hash.ok()) return hash.status();

  Request request;
  request.method = "PUT";
  request.url = object_url(bucket, key);
  request.what = "put " + describe(bucket, key);
  request.headers = std::move(*headers);
  add_session_token(config_.credentials, request);
  request.payload_sha256 = *hash;
  request.body_file = file;
  request.body_length = size;
  return internal::call(transport_for(config_, false), config_.retry, request, cancel).status();
}

absl::Status S3Client::put_multipart(const std::string& bucket, const std::string& key,
                                     const std::filesystem::path& file, uint64_t size, const PutOptions& options,
                                     const flux::CancelToken* cancel) {
  absl::StatusOr<std::vector<std::pair<std::string, std::string>>> headers = object_headers(options);
  if (!headers.ok()) return headers.status();
  const internal::Transport transport = transport_for(config_, false);
  const std::string base_url = object_url(bucket, key);
  const std::string target = describe(bucket, key);

  // --- initiate
  Request initiate;
  initiate.method = "POST";
  initiate.url = base_url + "?" + canonical_query({{"uploads", ""}});
  initiate.what = "initiate multipart upload of " + target;
  initiate.headers = std::move(*headers);
  add_session_token(config_.credentials, initiate);
  initiate.payload_sha256 = kEmptySha256;
  std::string upload_id;
  absl::StatusOr<Response> initiated =
      internal::call(transport, config_.retry, initiate, cancel, nullptr, [&](const Response& r) -> absl::Status {
        absl::StatusOr<std::string> id = parse_initiate_multipart(r.body);
        if (!id.ok()) return id.status();
        upload_id = *id;
        return absl::OkStatus();
      });
  if (!initiated.ok()) return initiated.status();

  // Best effort: a failed abort leaves only invisible parts (and S3 lifecycle
  // rules can reap them); it is reported with the original error.
  auto abort_upload = [&](absl::Status cause) -> absl::Status {
    Request abort;
    abort.method = "DELETE";
    abort.url = base_url + "?" + canonical_query({{"uploadId", upload_id}});
    abort.what = "abort multipart upload of " + target;
    add_session_token(config_.credentials, abort);
    abort.payload_sha256 = kEmptySha256;
    retry::RetryPolicy policy = config_.retry;
    policy.max_attempts = std::min(policy.max_attempts, 3);
    // Not tied to `cancel`: a cancelled upload must still be cleaned up.
    absl::StatusOr<Response> aborted = internal::call(transport, policy, abort, nullptr);
    if (!aborted.ok()) {
      return flux::annotate(cause, "(abort also failed: " + std::string(aborted.status().message()) + ")");
    }
    return cause;
  };

  // --- parts
  const uint64_t part_size = std::max(config_.part_size, (size + kMaxParts - 1) / kMaxParts);
  const uint64_t part_count = (size + part_size - 1) / part_size;
  std::vector<std::string> etags(part_count);
  std::atomic<uint64_t> next_part{0};
  std::atomic<bool> failed{false};
  std::mutex error_mu;
  absl::Status first_error;
  auto fail = [&](absl::Status status) {
    std::lock_guard lock(error_mu);
    if (first_error.ok()) first_error = std::move(status);
    failed.store(true);
  };

  auto upload_parts = [&] {
    std::string buffer;
    const int fd = ::open(file.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
      fail(flux::internal_error("file_unreadable", "cannot open " + file.string() + ": " + std::strerror(errno)));
      return;
    }
    for (;;) {
      if (failed.load()) break;
      const uint64_t index = next_part.fetch_add(1);
      if (index >= part_count) break;
      const uint64_t offset = index * part_size;
      const uint64_t length = std::min(part_size, size - offset);
      buffer.resize(length);
      uint64_t got = 0;
      while (got < length) {
        const ssize_t n = ::pread(fd, buffer.data() + got, length - got, static_cast<off_t>(offset + got));
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        got += static_cast<uint64_t>(n);
      }
      if (got != length) {
        fail(flux::internal_error("file_unreadable", "short read from " + file.string()));
        break;
      }
      const std::string part_number = std::to_string(index + 1);
      Request part;
      part.method = "PUT";
      part.url = base_url + "?" + canonical_query({{"partNumber", part_number}, {"uploadId", upload_id}});
      part.what = "upload part " + part_number + "/" + std::to_string(part_count) + " of " + target;
      add_session_token(config_.credentials, part);
      part.payload_sha256 = sha256_hex(buffer);
      part.body = buffer;
      absl::StatusOr<Response> response = internal::call(transport, config_.retry, part, cancel, &failed);
      if (!response.ok()) {
        fail(response.status());
        break;
      }
      auto etag = response->headers.find("etag");
      if (etag == response->headers.end() || etag->second.empty()) {
        fail(flux::unavailable("s3_bad_response", part.what + ": no ETag in the response"));
        break;
      }
      etags[index] = etag->second;
    }
    ::close(fd);
  };
  {
    std::vector<std::jthread> workers;
    const uint64_t worker_count = std::min<uint64_t>(static_cast<uint64_t>(config_.parallel_parts), part_count);
    for (uint64_t i = 0; i < worker_count; ++i) workers.emplace_back(upload_parts);
  }
  if (failed.load()) return abort_upload(first_error);
  if (cancel != nullptr && cancel->cancelled()) {
    return abort_upload(flux::make_error(absl::StatusCode::kCancelled, "cancelled", target + ": upload cancelled"));
  }

  // --- complete
  std::vector<CompletedPart> parts;
  parts.reserve(part_count);
  for (uint64_t i = 0; i < part_count; ++i) parts.push_back({static_cast<int>(i + 1), etags[i]});
  const std::string body = build_complete_multipart(parts);
  Request complete;
  complete.method = "POST";
  complete.url = base_url + "?" + canonical_query({{"uploadId", upload_id}});
  complete.what = "complete multipart upload of " + target;
  complete.headers.emplace_back("Content-Type", "application/xml");
  add_session_token(config_.credentials, complete);
  complete.payload_sha256 = sha256_hex(body);
  complete.body = body;
  absl::StatusOr<Response> completed =
      internal::call(transport, config_.retry, complete, cancel, nullptr, [](const Response& r) -> absl::Status {
        // S3 may answer 200 and still fail the upload, with an <Error> body.
        absl::StatusOr<CompleteMultipartResult> result = parse_complete_multipart(r.body);
        if (result.ok()) return absl::OkStatus();
        const std::optional<S3ErrorInfo> error = parse_s3_error(r.body);
        if (error && internal::is_transient_s3_code(error->code)) return internal::mark_retryable(result.status());
        return result.status();
      });
  if (!completed.ok()) return abort_upload(completed.status());
  return absl::OkStatus();
}

absl::Status S3Client::get_to_file(const std::string& bucket, const std::string& key, const std::filesystem::path& dest,
                                   uint64_t max_bytes, const flux::CancelToken* cancel) {
  if (absl::Status s = check_target(bucket, key); !s.ok()) return s;
  const std::filesystem::path dir = dest.has_parent_path() ? dest.parent_path() : std::filesystem::path(".");
  const std::filesystem::path temp_path = dir / ("." + dest.filename().string() + ".part-" + random_suffix());
  const int fd = ::open(temp_path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0) {
    return flux::internal_error("file_write_failed",
                                "cannot create " + temp_path.string() + ": " + std::strerror(errno));
  }
  TempFile temp(temp_path, fd);

  Request request;
  request.method = "GET";
  request.url = object_url(bucket, key);
  request.what = "get " + describe(bucket, key);
  add_session_token(config_.credentials, request);
  request.payload_sha256 = kEmptySha256;
  request.sink_fd = temp.fd();
  request.max_sink_bytes = max_bytes;
  absl::StatusOr<Response> response =
      internal::call(transport_for(config_, /*streamed=*/true), config_.retry, request, cancel);
  if (!response.ok()) return response.status();
  if (::fsync(temp.fd()) != 0 || temp.close_fd() != 0) {
    return flux::internal_error("file_write_failed",
                                "cannot flush " + temp_path.string() + ": " + std::strerror(errno));
  }
  std::error_code ec;
  std::filesystem::rename(temp_path, dest, ec);
  if (ec) return flux::internal_error("file_write_failed", "cannot rename to " + dest.string() + ": " + ec.message());
  temp.release();
  return absl::OkStatus();
}

absl::StatusOr<ObjectInfo> S3Client::head(const std::string& bucket, const std::string& key) {
  if (absl::Status s = check_target(bucket, key); !s.ok()) return s;
  Request request;
  request.method = "HEAD";
  request.url = object_url(bucket, key);
  request.what = "head " + describe(bucket, key);
  add_session_token(config_.credentials, request);
  request.payload_sha256 = kEmptySha256;
  absl::StatusOr<Response> response = internal::call(transport_for(config_, false), config_.retry, request, nullptr);
  if (!response.ok()) return response.status();
  ObjectInfo info;
  for (const auto& [name, value] : response->headers) {
    if (name == "content-length") {
      info.size = std::strtoull(value.c_str(), nullptr, 10);
    } else if (name == "etag") {
      info.etag = strip_quotes(value);
    } else if (name == "content-type") {
      info.content_type = value;
    } else if (name == "cache-control") {
      info.cache_control = value;
    } else if (name.starts_with("x-amz-meta-")) {
      info.metadata[name.substr(std::string_view("x-amz-meta-").size())] = value;
    }
  }
  return info;
}

absl::Status S3Client::delete_object(const std::string& bucket, const std::string& key) {
  if (absl::Status s = check_target(bucket, key); !s.ok()) return s;
  Request request;
  request.method = "DELETE";
  request.url = object_url(bucket, key);
  request.what = "delete " + describe(bucket, key);
  add_session_token(config_.credentials, request);
  request.payload_sha256 = kEmptySha256;
  absl::StatusOr<Response> response = internal::call(transport_for(config_, false), config_.retry, request, nullptr);
  if (!response.ok() && flux::error_code(response.status()) == "s3_not_found") return absl::OkStatus();
  return response.status();
}

}  // namespace flux::s3
