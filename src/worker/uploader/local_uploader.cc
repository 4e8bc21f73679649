#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <random>
#include <vector>

#include "shared/core/error.h"
#include "worker/uploader/upload_plan.h"
#include "worker/uploader/uploader.h"

namespace flux::worker::uploader {
namespace {

namespace fs = std::filesystem;
using internal::PlannedFile;

constexpr size_t kCopyChunk = 1 << 20;

class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }
  int close() {
    const int rc = ::close(fd_);
    fd_ = -1;
    return rc;
  }

 private:
  int fd_;
};

// Removed on destruction unless released: the temporary file of one write.
class PendingFile {
 public:
  explicit PendingFile(fs::path path) : path_(std::move(path)) {}
  ~PendingFile() {
    if (path_.empty()) return;
    std::error_code ec;
    fs::remove(path_, ec);
  }
  PendingFile(const PendingFile&) = delete;
  PendingFile& operator=(const PendingFile&) = delete;
  void release() { path_.clear(); }

 private:
  fs::path path_;
};

bool is_inside(const fs::path& root, const fs::path& candidate) {
  auto r = root.begin();
  auto c = candidate.begin();
  for (; r != root.end(); ++r, ++c) {
    if (c == candidate.end() || *r != *c) return false;
  }
  return true;
}

std::string random_suffix() {
  static thread_local std::mt19937_64 rng(std::random_device{}());
  char buffer[17];
  std::snprintf(buffer, sizeof buffer, "%016llx", static_cast<unsigned long long>(rng()));
  return buffer;
}

absl::Status io_error(const std::string& what) {
  return flux::internal_error("io_error", what + ": " + std::strerror(errno));
}

class LocalUploader final : public Uploader {
 public:
  explicit LocalUploader(fs::path root) : root_(std::move(root)) {}

  std::string_view storage_type() const override { return "local"; }

  absl::StatusOr<UploadResult> upload(const UploadRequest& request, const flux::CancelToken& cancel) override {
    absl::StatusOr<std::vector<PlannedFile>> plan = internal::plan_upload(request);
    if (!plan.ok()) return plan.status();
    std::error_code ec;
    fs::create_directories(root_, ec);
    const fs::path root = fs::canonical(root_, ec);
    if (ec) {
      return internal::upload_failed(
          request.destination,
          flux::internal_error("io_error", "storage root " + root_.string() + ": " + ec.message()));
    }

    UploadResult result;
    std::vector<fs::path> written;
    auto undo = [&written] {
      for (const auto& path : written) {
        std::error_code ignored;
        fs::remove(path, ignored);
      }
    };
    for (const PlannedFile& file : *plan) {
      if (cancel.cancelled()) {
        undo();
        return internal::upload_cancelled(cancel);
      }
      absl::StatusOr<fs::path> target = place(root, file.key);
      if (!target.ok()) {
        undo();
        return target.status();
      }
      if (absl::Status s = write_atomically(file.source, *target, cancel); !s.ok()) {
        undo();
        if (cancel.cancelled()) return internal::upload_cancelled(cancel);
        return internal::upload_failed(file.key, s);
      }
      written.push_back(*target);
      result.files.push_back({file.key, file.size, "file://" + target->string()});
      result.total_bytes += file.size;
    }
    // The plan puts the main file last.
    result.output_url = result.files.back().url;
    return result;
  }

 private:
  // The absolute path for `key`, its directory created, after checking that
  // neither the path nor any symlink on it leads outside the root.
  static absl::StatusOr<fs::path> place(const fs::path& root, const std::string& key) {
    const fs::path target = (root / key).lexically_normal();
    const fs::path parent = target.parent_path();
    const auto escape = [&key] {
      return flux::invalid_argument("output_path_invalid", "output path leaves the storage directory: " + key);
    };
    std::error_code ec;
    // Resolves the existing part of the path, symlinks included, before anything is created.
    if (!is_inside(root, target) || !is_inside(root, fs::weakly_canonical(parent, ec)) || ec) return escape();
    fs::create_directories(parent, ec);
    if (ec) return flux::internal_error("io_error", "cannot create " + parent.string() + ": " + ec.message());
    // Checked again once it exists: a symlink may have appeared in between.
    const fs::path resolved = fs::canonical(parent, ec);
    if (ec || !is_inside(root, resolved)) return escape();
    if (fs::is_directory(fs::symlink_status(target, ec))) {
      return flux::invalid_argument("output_path_invalid", "output path names an existing directory: " + key);
    }
    return resolved / target.filename();
  }

  static absl::Status write_atomically(const fs::path& source, const fs::path& target,
                                       const flux::CancelToken& cancel) {
    Fd in(::open(source.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
    if (in.get() < 0) return io_error("cannot open " + source.string());
    const fs::path temp = target.parent_path() / ("." + target.filename().string() + ".tmp-" + random_suffix());
    Fd out(::open(temp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644));
    if (out.get() < 0) return io_error("cannot create " + temp.string());
    PendingFile pending(temp);

    std::vector<char> buffer(kCopyChunk);
    for (;;) {
      if (cancel.cancelled()) return internal::upload_cancelled(cancel);
      const ssize_t n = ::read(in.get(), buffer.data(), buffer.size());
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return io_error("cannot read " + source.string());
      if (n == 0) break;
      ssize_t done = 0;
      while (done < n) {
        const ssize_t w = ::write(out.get(), buffer.data() + done, static_cast<size_t>(n - done));
        if (w < 0 && errno == EINTR) continue;
        if (w < 0) return io_error("cannot write " + temp.string());
        done += w;
      }
    }
    if (::fsync(out.get()) != 0) return io_error("cannot flush " + temp.string());
    if (out.close() != 0) return io_error("cannot close " + temp.string());
    if (::rename(temp.c_str(), target.c_str()) != 0) return io_error("cannot rename into " + target.string());
    pending.release();
    // The rename itself is durable only once the directory is flushed.
    Fd dir(::open(target.parent_path().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (dir.get() >= 0) ::fsync(dir.get());
    return absl::OkStatus();
  }

  fs::path root_;
};

}  // namespace

std::unique_ptr<Uploader> make_local_uploader(std::filesystem::path root) {
  return std::make_unique<LocalUploader>(std::move(root));
}

}  // namespace flux::worker::uploader
