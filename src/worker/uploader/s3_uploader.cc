#include <algorithm>
#include <atomic>
#include <mutex>
#include <thread>
#include <vector>

#include "shared/core/error.h"
#include "worker/uploader/upload_plan.h"
#include "worker/uploader/uploader.h"

namespace flux::worker::uploader {
namespace {

using internal::PlannedFile;

class S3Uploader final : public Uploader {
 public:
  S3Uploader(std::shared_ptr<s3::S3Client> client, std::string bucket, int parallel_files)
      : client_(std::move(client)), bucket_(std::move(bucket)), parallel_files_(std::max(1, parallel_files)) {}

  std::string_view storage_type() const override { return "s3"; }

  absl::StatusOr<UploadResult> upload(const UploadRequest& request, const flux::CancelToken& cancel) override {
    absl::StatusOr<std::vector<PlannedFile>> plan = internal::plan_upload(request);
    if (!plan.ok()) return plan.status();
    const std::vector<PlannedFile>& files = *plan;
    if (cancel.cancelled()) return internal::upload_cancelled(cancel);

    // `stop` halts the other transfers as soon as one file fails or the job is
    // cancelled; the watcher forwards the job's cancellation to it.
    flux::CancelToken stop;
    std::atomic<bool> finished{false};
    std::jthread watcher([&] {
      while (!finished.load()) {
        if (cancel.wait_for(std::chrono::milliseconds(50))) {
          stop.cancel(cancel.reason());
          return;
        }
      }
    });

    // Every file whose PUT started: a request interrupted by a cancellation
    // may still have been stored by S3, so cleanup covers it too.
    std::vector<char> attempted(files.size(), 0);
    std::mutex error_mu;
    absl::Status first_error;
    std::string failed_key;
    auto put = [&](size_t index) {
      const PlannedFile& file = files[index];
      s3::PutOptions options;
      options.content_type = content_type_for(file.key);
      options.cache_control = cache_control_for(file.key);
      options.metadata = request.metadata;
      attempted[index] = 1;
      absl::Status status = client_->put_file(bucket_, file.key, file.source, options, &stop);
      if (status.ok()) return;
      {
        std::lock_guard lock(error_mu);
        if (first_error.ok()) {
          first_error = status;
          failed_key = file.key;
        }
      }
      stop.cancel("another file failed");
    };

    // Everything but the main file, in parallel; then the main file, so that
    // output_url never points at an incomplete output.
    const size_t others = files.size() - 1;
    std::atomic<size_t> next{0};
    {
      std::vector<std::jthread> workers;
      const size_t count = std::min<size_t>(static_cast<size_t>(parallel_files_), others);
      for (size_t i = 0; i < count; ++i) {
        workers.emplace_back([&] {
          for (size_t index = next.fetch_add(1); index < others && !stop.cancelled(); index = next.fetch_add(1)) {
            put(index);
          }
        });
      }
    }
    if (!stop.cancelled()) put(others);
    finished.store(true);
    watcher.join();

    if (cancel.cancelled() || !first_error.ok()) {
      remove_attempted(files, attempted);
      if (cancel.cancelled()) return internal::upload_cancelled(cancel);
      return internal::upload_failed(failed_key, first_error);
    }

    UploadResult result;
    for (const PlannedFile& file : files) {
      result.files.push_back({file.key, file.size, client_->object_url(bucket_, file.key)});
      result.total_bytes += file.size;
    }
    result.output_url = result.files.back().url;
    return result;
  }

 private:
  // No half-written output: what this job may have stored goes again
  // (deleting a key that was never written succeeds).
  void remove_attempted(const std::vector<PlannedFile>& files, const std::vector<char>& attempted) {
    for (size_t i = 0; i < files.size(); ++i) {
      if (attempted[i]) (void)client_->delete_object(bucket_, files[i].key);
    }
  }

  std::shared_ptr<s3::S3Client> client_;
  std::string bucket_;
  int parallel_files_;
};

}  // namespace

std::unique_ptr<Uploader> make_s3_uploader(std::shared_ptr<s3::S3Client> client, std::string bucket,
                                           int parallel_files) {
  return std::make_unique<S3Uploader>(std::move(client), std::move(bucket), parallel_files);
}

}  // namespace flux::worker::uploader
