#include "worker/input/input_fetcher.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include "shared/core/error.h"
#include "shared/http/http_client.h"

namespace flux::worker::input {
namespace {

namespace fs = std::filesystem;

// strerror() is not thread-safe; error_code::message() is.
std::string errno_text(int error) { return std::error_code(error, std::generic_category()).message(); }

constexpr size_t kCopyChunk = 8 << 20;

absl::Status cancelled_error() {
  return flux::make_error(absl::StatusCode::kCancelled, "cancelled", "input fetch cancelled");
}

// Transient: worth another attempt. Refusals, 4xx, size and cancellation are not.
bool is_transient(const absl::Status& status) {
  return status.code() == absl::StatusCode::kUnavailable || status.code() == absl::StatusCode::kDeadlineExceeded;
}

class UniqueFd {
 public:
  explicit UniqueFd(int fd = -1) : fd_(fd) {}
  UniqueFd(UniqueFd&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  UniqueFd& operator=(UniqueFd&&) = delete;
  ~UniqueFd() {
    if (fd_ >= 0) ::close(fd_);
  }
  int get() const { return fd_; }
  int release() { return std::exchange(fd_, -1); }

 private:
  int fd_;
};

// A temporary file in the destination directory, removed unless committed.
class TempOutput {
 public:
  explicit TempOutput(const fs::path& dest)
      : pattern_((dest.parent_path() / ".input.part-XXXXXX").string()), fd_(mkostemp(pattern_.data(), O_CLOEXEC)) {
    if (fd_.get() < 0) pattern_.clear();
  }
  ~TempOutput() {
    if (!pattern_.empty()) ::unlink(pattern_.c_str());
  }
  int fd() const { return fd_.get(); }
  absl::Status commit(const fs::path& dest) {
    if (::close(fd_.release()) != 0) {
      return flux::internal_error("input_write_failed", std::string("close: ") + errno_text(errno));
    }
    if (::rename(pattern_.c_str(), dest.c_str()) != 0) {
      return flux::internal_error("input_write_failed", "rename: " + errno_text(errno));
    }
    pattern_.clear();
    return absl::OkStatus();
  }

 private:
  std::string pattern_;
  UniqueFd fd_;
};

bool path_within(const fs::path& p, const fs::path& root) {
  const fs::path relative = p.lexically_relative(root);
  return !relative.empty() && relative != "." && *relative.begin() != "..";
}

// Copies `in` to `out`: in the kernel when it can, by read/write otherwise.
// Stops at `limit` bytes (0 = none) so that a file growing during the copy
// cannot exceed the cap.
absl::Status copy_fd(int in, int out, uint64_t limit, const flux::CancelToken& cancel) {
  uint64_t copied = 0;
  bool kernel_copy = true;
  std::vector<char> buffer;
  while (true) {
    if (cancel.cancelled()) return cancelled_error();
    ssize_t n;
    if (kernel_copy) {
      n = ::copy_file_range(in, nullptr, out, nullptr, kCopyChunk, 0);
      if (n < 0 && (errno == EXDEV || errno == ENOSYS || errno == EINVAL || errno == EOPNOTSUPP)) {
        kernel_copy = false;
        continue;
      }
    } else {
      if (buffer.empty()) buffer.resize(1 << 20);
      n = ::read(in, buffer.data(), buffer.size());
      for (ssize_t written = 0; n > 0 && written < n;) {
        const ssize_t w = ::write(out, buffer.data() + written, static_cast<size_t>(n - written));
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return flux::internal_error("input_write_failed", std::string("write: ") + errno_text(errno));
        written += w;
      }
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return flux::internal_error("input_write_failed", std::string("copy: ") + errno_text(errno));
    if (n == 0) return absl::OkStatus();
    copied += static_cast<uint64_t>(n);
    if (limit > 0 && copied > limit) {
      return flux::invalid_argument("input_too_large", "local input larger than " + std::to_string(limit) + " bytes");
    }
  }
}

}  // namespace

std::string input_file_name(std::string_view url_path) {
  const size_t slash = url_path.rfind('/');
  const std::string_view last = slash == std::string_view::npos ? url_path : url_path.substr(slash + 1);
  const size_t dot = last.rfind('.');
  if (dot == std::string_view::npos) return "input";
  std::string extension(last.substr(dot + 1));
  if (extension.empty() || extension.size() > 8) return "input";
  for (char& c : extension) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'))) return "input";
  }
  return "input." + extension;
}

InputFetcher::InputFetcher(FetchOptions options, std::shared_ptr<s3::S3Client> s3)
    : options_(std::move(options)), s3_(std::move(s3)) {}

absl::StatusOr<fs::path> InputFetcher::fetch(std::string_view url, const fs::path& dest_dir,
                                             const flux::CancelToken& cancel) const {
  if (auto status = http::check_url(url, options_.policy); !status.ok()) return status;
  auto parsed = http::parse_url(url);
  if (!parsed.ok()) return parsed.status();
  if (cancel.cancelled()) return cancelled_error();

  std::error_code ec;
  fs::create_directories(dest_dir, ec);
  if (ec) return flux::internal_error("input_write_failed", "cannot create " + dest_dir.string() + ": " + ec.message());
  const fs::path dest = dest_dir / input_file_name(parsed->path);

  absl::Status status;
  if (parsed->scheme == "http" || parsed->scheme == "https") {
    status = fetch_http(url, dest, cancel);
  } else if (parsed->scheme == "s3") {
    status = fetch_s3(*parsed, dest, cancel);
  } else if (parsed->scheme == "file") {
    status = fetch_local(url, dest, cancel);
  } else {
    status = flux::invalid_argument("url_scheme_forbidden", "scheme '" + parsed->scheme + "' is not fetched");
  }
  if (!status.ok()) {
    fs::remove(dest, ec);  // whatever a failed fetch may have left
    return flux::annotate(status, "fetching input");
  }

  const auto size = fs::file_size(dest, ec);
  if (ec) return flux::internal_error("input_write_failed", "cannot stat the fetched input: " + ec.message());
  if (size == 0) {
    fs::remove(dest, ec);
    return flux::invalid_argument("input_empty", "input " + http::redact_url(url) + " is empty");
  }
  if (options_.max_bytes > 0 && size > options_.max_bytes) {
    fs::remove(dest, ec);
    return flux::invalid_argument("input_too_large",
                                  "input larger than " + std::to_string(options_.max_bytes) + " bytes");
  }
  return dest;
}

absl::Status InputFetcher::fetch_http(std::string_view url, const fs::path& dest,
                                      const flux::CancelToken& cancel) const {
  http::DownloadOptions download;
  download.policy = options_.policy;
  download.max_bytes = options_.max_bytes;
  download.connect_timeout = options_.connect_timeout;
  download.total_timeout = options_.total_timeout;
  return retry::retry_call(
      options_.retry, [&] { return http::download_to_file(url, dest, download, &cancel); }, is_transient, &cancel);
}

absl::Status InputFetcher::fetch_s3(const http::ParsedUrl& url, const fs::path& dest,
                                    const flux::CancelToken& cancel) const {
  if (!s3_) return flux::failed_precondition("s3_not_configured", "this worker has no S3 configuration");
  // check_url() has validated the key, so decoding cannot fail here.
  const std::string key = http::percent_decode(std::string_view(url.path).substr(1)).value_or("");
  absl::Status status = s3_->get_to_file(url.host, key, dest, options_.max_bytes, &cancel);
  if (flux::error_code(status) == "s3_not_found") status = flux::with_code(status, "input_not_found");
  return status;
}

absl::Status InputFetcher::fetch_local(std::string_view url, const fs::path& dest,
                                       const flux::CancelToken& cancel) const {
  // check_url() refused file:// already when no directory is configured.
  const fs::path& dir = *options_.policy.local_input_dir;
  auto source = http::resolve_local_input(url, dir);
  if (!source.ok()) return source.status();

  UniqueFd in(::open(source->c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK));
  if (in.get() < 0) {
    return flux::not_found("input_not_found", "cannot open local input: " + errno_text(errno));
  }
  // The path was checked, then opened: make sure what was opened is still
  // inside the directory, in case a component was swapped for a symlink.
  std::error_code ec;
  const fs::path opened = fs::read_symlink("/proc/self/fd/" + std::to_string(in.get()), ec);
  const fs::path root = fs::canonical(dir, ec);
  if (ec || !path_within(opened, root)) {
    return flux::invalid_argument("url_path_forbidden", "local input left LOCAL_INPUT_DIR while being opened");
  }
  struct stat info {};
  if (::fstat(in.get(), &info) != 0 || !S_ISREG(info.st_mode)) {
    return flux::invalid_argument("url_path_forbidden", "local input is not a regular file");
  }
  if (options_.max_bytes > 0 && static_cast<uint64_t>(info.st_size) > options_.max_bytes) {
    return flux::invalid_argument("input_too_large",
                                  "local input larger than " + std::to_string(options_.max_bytes) + " bytes");
  }
  ::fcntl(in.get(), F_SETFL, 0);  // O_NONBLOCK was only for the open (a FIFO must not hang it)

  TempOutput out(dest);
  if (out.fd() < 0) {
    return flux::internal_error("input_write_failed", "cannot create a temporary file: " + errno_text(errno));
  }
  if (auto status = copy_fd(in.get(), out.fd(), options_.max_bytes, cancel); !status.ok()) return status;
  return out.commit(dest);
}

}  // namespace flux::worker::input
