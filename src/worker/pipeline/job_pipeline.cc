#include "worker/pipeline/job_pipeline.h"

#include <openssl/sha.h>

#include <algorithm>
#include <atomic>
#include <regex>
#include <system_error>
#include <thread>

#include "shared/core/error.h"
#include "shared/log/log.h"
#include "worker/encoder/encoder.h"
#include "worker/validator/validator.h"

namespace flux::worker::pipeline {
namespace fs = std::filesystem;
namespace {

using SteadyClock = std::chrono::steady_clock;

double seconds_since(SteadyClock::time_point start) {
  return std::chrono::duration<double>(SteadyClock::now() - start).count();
}

bool is_safe_name(const std::string& s) {
  static const std::regex kSafe("[A-Za-z0-9_-][A-Za-z0-9._:-]{0,127}");
  return std::regex_match(s, kSafe);
}

validator::OutputKind to_output_kind(preset::OutputType type) {
  switch (type) {
    case preset::OutputType::kHls:
      return validator::OutputKind::kHls;
    case preset::OutputType::kDash:
      return validator::OutputKind::kDash;
    case preset::OutputType::kSingle:
      break;
  }
  return validator::OutputKind::kSingle;
}

absl::Status cancelled_status(const CancelToken& token) {
  const std::string reason = token.reason();
  if (reason == "timeout") {
    return make_error(absl::StatusCode::kDeadlineExceeded, "timeout", "job exceeded its time limit");
  }
  if (reason == "cancelled") return make_error(absl::StatusCode::kCancelled, "cancelled", "job was cancelled");
  return make_error(absl::StatusCode::kAborted, reason, "job stopped: " + reason);
}

// A step failed: if it failed because the job was cancelled, report the cancel.
absl::Status step_error(const absl::Status& status, const CancelToken& token) {
  if (token.cancelled()) return cancelled_status(token);
  return status;
}

// ffprobe on its own thread, beside ffmpeg. Its verdict is the media info
// or why the input is refused ("input_invalid", "input_too_large",
// "input_too_long"); a refusal fires stop_token() with that code, and so
// does an input without audio when audio was assumed ("restart_without_audio").
// The destructor waits for the probe (bounded by its timeout and the job's
// cancel token).
class ProbeBeside {
 public:
  ProbeBeside(fs::path input, validator::ProbeOptions options, const CancelToken& cancel,
              const config::WorkerConfig& config, bool audio_assumed)
      : started_(SteadyClock::now()) {
    thread_ = std::thread([this, input = std::move(input), options = std::move(options), &cancel, &config,
                           audio_assumed] {
      absl::StatusOr<validator::MediaInfo> media = validator::probe_media(input, options, &cancel);
      if (!media.ok()) {
        media = with_code(annotate(media.status(), "input is not readable media"), "input_invalid");
      } else if (!media->has_video) {
        media = invalid_argument("input_invalid", "input has no video stream");
      } else if (auto s = validator::check_input_limits(
                     *media, config.max_input_pixels, std::chrono::duration<double>(config.max_input_duration).count());
                 !s.ok()) {
        media = s;
      }
      seconds_ = seconds_since(started_);
      if (media.ok()) duration_.store(media->duration_seconds);
      verdict_ = std::move(media);
      if (!verdict_.ok()) {
        stop_.cancel(error_code(verdict_.status()));
      } else if (audio_assumed && !verdict_->has_audio) {
        stop_.cancel("restart_without_audio");
      }
    });
  }
  ProbeBeside(const ProbeBeside&) = delete;
  ProbeBeside& operator=(const ProbeBeside&) = delete;
  ~ProbeBeside() {
    if (thread_.joinable()) thread_.join();
  }

  // The probed duration; 0 until the probe has answered.
  double duration() const { return duration_.load(); }
  const CancelToken& stop_token() const { return stop_; }
  // Blocks until the probe has answered.
  const absl::StatusOr<validator::MediaInfo>& wait() {
    if (thread_.joinable()) thread_.join();
    return verdict_;
  }
  // How long the probe took (valid after wait()).
  double seconds() const { return seconds_; }

 private:
  SteadyClock::time_point started_;
  std::atomic<double> duration_{0};
  CancelToken stop_;
  absl::StatusOr<validator::MediaInfo> verdict_ = absl::UnknownError("not probed");
  double seconds_ = 0;
  std::thread thread_;
};

}  // namespace

std::string work_dir_name(const std::string& job_id) {
  if (is_safe_name(job_id) && job_id.find("..") == std::string::npos) return "job-" + job_id;
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(job_id.data()), job_id.size(), digest);
  static constexpr char kHex[] = "0123456789abcdef";
  std::string name = "job-";
  for (int i = 0; i < 16; ++i) {
    name += kHex[digest[i] >> 4];
    name += kHex[digest[i] & 0xF];
  }
  return name;
}

absl::Status sweep_work_dir(const fs::path& work_dir) {
  std::error_code ec;
  fs::create_directories(work_dir, ec);
  if (ec) return failed_precondition("work_dir_unusable", "WORK_DIR " + work_dir.string() + ": " + ec.message());
  for (const auto& entry : fs::directory_iterator(work_dir, ec)) {
    std::error_code remove_ec;
    fs::remove_all(entry.path(), remove_ec);
    if (remove_ec) {
      return failed_precondition("work_dir_unusable",
                                 "cannot remove leftover " + entry.path().string() + ": " + remove_ec.message());
    }
    log::info("removed leftover work directory", {{"path", entry.path().string()}});
  }
  if (ec) return failed_precondition("work_dir_unusable", "WORK_DIR " + work_dir.string() + ": " + ec.message());
  return absl::OkStatus();
}

JobPipeline::JobPipeline(const config::WorkerConfig& config, const preset::Catalog& catalog,
                         input::InputFetcher& fetcher,
                         std::map<std::string, std::unique_ptr<uploader::Uploader>> uploaders, WorkerMetrics* metrics)
    : config_(config), catalog_(catalog), fetcher_(fetcher), uploaders_(std::move(uploaders)), metrics_(metrics) {}

std::vector<std::string> JobPipeline::storage_types() const {
  std::vector<std::string> types;
  for (const auto& [type, uploader] : uploaders_) types.push_back(type);
  return types;
}

validator::ProbeOptions JobPipeline::probe_options() const {
  // The same demuxer allow-list ffmpeg gets: a playlist or a concat list
  // disguised as media must not be followed even by ffprobe.
  validator::ProbeOptions options;
  options.ffprobe_path = config_.ffprobe_path;
  options.format_whitelist = encoder::kInputFormatWhitelist;
  options.nice = config_.ffmpeg_nice;
  return options;
}

encoder::EncodeLimits JobPipeline::encode_limits() const {
  encoder::EncodeLimits limits;
  limits.max_wall = config_.ffmpeg_max_wall;
  limits.max_output_bytes = config_.max_output_bytes;
  limits.cpu_seconds = config_.ffmpeg_cpu_seconds;
  limits.address_space_bytes = config_.ffmpeg_memory_mb << 20;
  limits.nice = config_.ffmpeg_nice;
  limits.max_frame_pixels = config_.max_input_pixels;
  return limits;
}

absl::Status JobPipeline::check_request(const v1::JobRequest& request) const {
  if (request.job_id().empty()) return invalid_argument("job_id_required", "job_id is required");
  if (request.job_id().size() > 128 ||
      std::any_of(request.job_id().begin(), request.job_id().end(),
                  [](unsigned char c) { return c < 0x20 || c == 0x7F || c == '/' || c == '\\'; })) {
    return invalid_argument("job_id_invalid", "job_id must be at most 128 printable characters without slashes");
  }
  if (request.input_url().empty()) return invalid_argument("input_url_required", "input_url is required");
  if (request.preset().empty()) return invalid_argument("preset_required", "preset is required");
  const preset::Preset* p = catalog_.find(request.preset());
  if (p == nullptr) return invalid_argument("preset_unknown", "unknown preset \"" + request.preset() + "\"");
  const std::string storage = request.output().storage().empty() ? config_.storage_type : request.output().storage();
  if (uploaders_.count(storage) == 0) {
    return invalid_argument("storage_unsupported", "this worker does not serve output.storage \"" + storage + "\"");
  }
  if (auto s = uploader::check_destination(request.output().path()); !s.ok()) {
    return invalid_argument("output_path_invalid", "output.path: " + std::string(s.message()));
  }
  const std::string& type = request.output().type();
  if (!type.empty() && type != preset::to_string(p->type)) {
    return invalid_argument("output_type_mismatch", "output.type \"" + type + "\" does not match preset " + p->name +
                                                        " (" + std::string(preset::to_string(p->type)) + ")");
  }
  static const std::regex kMetaKey("[A-Za-z0-9_-]{1,64}");
  if (request.output().metadata_size() > 32) {
    return invalid_argument("metadata_invalid", "output.metadata: at most 32 entries");
  }
  for (const auto& [key, value] : request.output().metadata()) {
    if (!std::regex_match(key, kMetaKey)) {
      return invalid_argument("metadata_invalid",
                              "output.metadata: key \"" + key + "\" must match [A-Za-z0-9_-]{1,64}");
    }
    if (value.size() > 1024 ||
        std::any_of(value.begin(), value.end(), [](unsigned char c) { return c < 0x20 || c == 0x7f; })) {
      return invalid_argument("metadata_invalid",
                              "output.metadata." + key + ": at most 1024 bytes without control characters");
    }
  }
  if (request.timeout_seconds() < 0) return invalid_argument("timeout_invalid", "timeout_seconds must be >= 0");
  return absl::OkStatus();
}

JobOutcome JobPipeline::run(const v1::JobRequest& request, JobContext& context) {
  const fs::path job_dir = config_.work_dir / work_dir_name(request.job_id());
  std::error_code ec;
  fs::remove_all(job_dir, ec);
  fs::create_directories(job_dir / "input", ec);
  if (!ec) fs::create_directories(job_dir / "output", ec);
  JobOutcome outcome;
  if (ec) {
    outcome.status = internal_error("work_dir_unusable", "cannot create " + job_dir.string() + ": " + ec.message());
  } else {
    auto result = run_steps(request, context, job_dir);
    if (result.ok()) {
      outcome = std::move(*result);
    } else {
      outcome.status = result.status();
    }
  }
  fs::remove_all(job_dir, ec);
  if (ec) log::error("cannot remove work directory", {{"job_id", request.job_id()}, {"error", ec.message()}});
  if (outcome.status.ok()) {
    log::info("job completed", {{"job_id", request.job_id()}, {"output_url", outcome.output_url}});
  } else {
    log::warn("job ended without output", {{"job_id", request.job_id()},
                                           {"error_code", error_code(outcome.status)},
                                           {"error", std::string(outcome.status.message())}});
  }
  return outcome;
}

absl::StatusOr<JobOutcome> JobPipeline::run_steps(const v1::JobRequest& request, JobContext& context,
                                                  const fs::path& job_dir) {
  const CancelToken& cancel = context.cancel_token();
  const preset::Preset& p = *catalog_.find(request.preset());
  const std::string storage = request.output().storage().empty() ? config_.storage_type : request.output().storage();
  const std::string& job_id = request.job_id();
  JobOutcome outcome;
  v1::JobResult& result = outcome.result;
  auto observe = [&](const char* phase, double seconds) {
    if (metrics_ != nullptr) metrics_->phase_duration_seconds.with({phase, p.name}).observe(seconds);
  };

  // 1. Input.
  context.report(jobs::ProgressUpdate{v1::JOB_STATUS_PROCESSING, v1::JOB_PHASE_DOWNLOADING, 0, "fetching input"});
  auto start = SteadyClock::now();
  log::info("fetching input", {{"job_id", job_id}, {"preset", p.name}});
  auto input = fetcher_.fetch(request.input_url(), job_dir / "input", cancel);
  if (!input.ok()) return step_error(annotate(input.status(), "input"), cancel);
  result.set_download_seconds(seconds_since(start));
  observe("download", result.download_seconds());
  std::error_code ec;
  if (metrics_ != nullptr) metrics_->input_bytes_total.inc(static_cast<double>(fs::file_size(*input, ec)));

  // 2. Probe and encode side by side: ffprobe costs 100-200 ms (most of it
  // loading libav*), which would otherwise delay every encode. ffmpeg starts
  // at once; the probe's answer brings the duration for progress and, when
  // the input is refused, stops ffmpeg at once: the job then fails with the
  // probe's code exactly as if the probe had run first.
  if (cancel.cancelled()) return cancelled_status(cancel);
  context.report(jobs::ProgressUpdate{v1::JOB_STATUS_PROCESSING, v1::JOB_PHASE_PROBING, 0, "probing input"});
  // Presets whose arguments name the audio streams start as if the input had
  // audio (most do); ffmpeg is restarted without it if the probe says otherwise.
  const bool audio_assumed = preset::output_args_depend_on_audio(p);
  ProbeBeside probe(*input, probe_options(), cancel, config_, audio_assumed);

  context.report(jobs::ProgressUpdate{v1::JOB_STATUS_PROCESSING, v1::JOB_PHASE_ENCODING, 0, "encoding"});
  start = SteadyClock::now();
  encoder::EncodeRequest encode;
  encode.job_id = job_id;
  encode.ffmpeg_path = config_.ffmpeg_path;
  encode.preset = &p;
  encode.input = *input;
  encode.output_dir = job_dir / "output";
  encode.duration_source = [&probe] { return probe.duration(); };
  encode.stop = &probe.stop_token();
  encode.limits = encode_limits();
  auto report_progress = [&context](const encoder::Progress& progress) {
    context.report(jobs::ProgressUpdate{v1::JOB_STATUS_PROCESSING, v1::JOB_PHASE_ENCODING,
                                        static_cast<float>(progress.percent), "encoding",
                                        static_cast<float>(progress.fps), static_cast<float>(progress.speed),
                                        static_cast<float>(progress.eta_seconds)});
  };
  auto log_command = [&]() {
    if (log::enabled(log::Level::kDebug)) {
      log::debug("ffmpeg command", {{"job_id", job_id}, {"argv", encoder::build_ffmpeg_argv(encode)}});
    }
  };
  log_command();
  std::vector<std::string> stderr_tail;
  absl::Status encoded = encoder::run_encode(encode, report_progress, cancel, &stderr_tail);

  // The probe's answer decides first: an input it refuses fails the job with
  // its code whatever ffmpeg made of it.
  const absl::StatusOr<validator::MediaInfo>& media = probe.wait();
  if (cancel.cancelled()) return cancelled_status(cancel);
  if (!media.ok()) {
    log::info("input refused by the probe", {{"job_id", job_id},
                                             {"error_code", error_code(media.status())},
                                             {"ffmpeg", encoded.ok() ? "completed" : error_code(encoded)}});
    return media.status();
  }
  result.set_probe_seconds(probe.seconds());
  observe("probe", result.probe_seconds());
  if (audio_assumed && !media->has_audio) {
    log::info("input has no audio: restarting ffmpeg without it", {{"job_id", job_id}, {"preset", p.name}});
    fs::remove_all(encode.output_dir, ec);
    encode.input_has_audio = false;
    encode.input_duration_seconds = media->duration_seconds;
    encode.duration_source = nullptr;
    encode.stop = nullptr;
    log_command();
    encoded = encoder::run_encode(encode, report_progress, cancel, &stderr_tail);
  }
  if (!encoded.ok()) {
    if (!cancel.cancelled()) {
      nlohmann::json lines = stderr_tail;
      log::error("ffmpeg failed",
                 {{"job_id", job_id}, {"preset", p.name}, {"error_code", error_code(encoded)}, {"stderr_tail", lines}});
    }
    return step_error(encoded, cancel);
  }
  result.set_encode_seconds(seconds_since(start));
  observe("encode", result.encode_seconds());

  // 4. Validate.
  if (cancel.cancelled()) return cancelled_status(cancel);
  context.report(jobs::ProgressUpdate{v1::JOB_STATUS_PROCESSING, v1::JOB_PHASE_VALIDATING, 100, "validating output"});
  start = SteadyClock::now();
  validator::ValidationRequest check;
  check.level = config_.validation_level;
  check.kind = to_output_kind(p.type);
  check.output_dir = job_dir / "output";
  check.main_file = p.main_file;
  check.expected_video_codec = p.video_codec;
  for (const auto& variant : p.variants) check.expected_heights.push_back(variant.height);
  check.expect_audio = p.audio && media->has_audio;
  check.expected_duration_seconds = media->duration_seconds;
  check.ffprobe_path = config_.ffprobe_path;
  check.ffmpeg_path = config_.ffmpeg_path;
  auto validated = validator::validate_output(check, cancel);
  if (!validated.ok()) return step_error(validated.status(), cancel);
  result.set_validate_seconds(seconds_since(start));
  observe("validate", result.validate_seconds());

  // 5. Upload.
  if (cancel.cancelled()) return cancelled_status(cancel);
  context.report(jobs::ProgressUpdate{v1::JOB_STATUS_UPLOADING, v1::JOB_PHASE_UPLOADING, 100, "uploading output"});
  start = SteadyClock::now();
  uploader::UploadRequest upload;
  upload.job_id = job_id;
  upload.source_dir = job_dir / "output";
  for (const auto& file : validated->files) upload.files.push_back(file.relative);
  upload.destination = request.output().path();
  upload.is_directory = p.type != preset::OutputType::kSingle;
  upload.main_file = p.main_file;
  for (const auto& [key, value] : request.output().metadata()) upload.metadata[key] = value;
  auto uploaded = uploaders_.at(storage)->upload(upload, cancel);
  if (!uploaded.ok()) return step_error(uploaded.status(), cancel);
  result.set_upload_seconds(seconds_since(start));
  observe("upload", result.upload_seconds());
  if (metrics_ != nullptr) {
    metrics_->uploaded_bytes_total.with({storage}).inc(static_cast<double>(uploaded->total_bytes));
  }

  const validator::MediaInfo& out = validated->media;
  result.set_duration_seconds(out.duration_seconds);
  result.set_size_bytes(uploaded->total_bytes);
  result.set_file_count(static_cast<uint32_t>(uploaded->files.size()));
  result.set_video_codec(out.video_codec);
  result.set_width(out.width);
  result.set_height(out.height);
  result.set_fps(out.fps);
  result.set_pixel_format(out.pixel_format);
  result.set_audio_codec(out.has_audio ? out.audio_codec : "");
  result.set_audio_channels(out.audio_channels);
  result.set_audio_sample_rate(out.audio_sample_rate);
  for (const auto& file : uploaded->files) {
    auto* f = result.add_files();
    f->set_key(file.key);
    f->set_size_bytes(file.size_bytes);
    f->set_url(file.url);
  }
  outcome.output_url = uploaded->output_url;
  return outcome;
}

}  // namespace flux::worker::pipeline
