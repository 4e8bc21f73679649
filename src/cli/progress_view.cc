#include "cli/progress_view.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include <fmt/format.h>

#include "cli/text.h"

namespace flux::cli {
namespace {

constexpr int kMinBar = 10;
constexpr int kMaxBar = 40;

int whole_percent(double progress) {
  if (!std::isfinite(progress)) return 0;
  // Floor, so 100% only shows when the job really is done.
  return std::clamp(static_cast<int>(std::floor(progress)), 0, 100);
}

std::string percent_text(double progress) { return fmt::format("{:3d}%", whole_percent(progress)); }

std::string phase_text(const JobEvent& e) {
  const std::string& what = e.phase.empty() || e.phase == "done" ? e.status : e.phase;
  return printable(what.empty() ? "waiting" : what);
}

std::string fps_text(double fps) { return fps < 10 ? fmt::format("{:.1f} fps", fps) : fmt::format("{:.0f} fps", fps); }

std::string speed_text(double speed) {
  return speed < 10 ? fmt::format("{:.1f}x", speed) : fmt::format("{:.0f}x", speed);
}

// The stats after the phase, most expendable first.
struct Stats {
  std::vector<std::string> rate;  // fps, speed
  std::string eta;                // "" when not shown
};

Stats stats_of(const JobEvent& e) {
  Stats s;
  // 0 means ffmpeg has not reported yet: say nothing rather than "0.0 fps".
  if (e.fps && *e.fps > 0) s.rate.push_back(fps_text(*e.fps));
  if (e.speed && *e.speed > 0) s.rate.push_back(speed_text(*e.speed));
  if (e.eta_seconds && std::isfinite(*e.eta_seconds) && *e.eta_seconds >= 0) {
    s.eta = "ETA " + format_clock(*e.eta_seconds);
  } else if (e.phase == "encoding" && !e.terminal()) {
    s.eta = "ETA --:--";
  }
  return s;
}

std::string join_parts(const std::vector<std::string>& parts) {
  std::string out;
  for (const auto& p : parts) {
    if (p.empty()) continue;
    if (!out.empty()) out += "  ";
    out += p;
  }
  return out;
}

std::string bar(double progress, int width) {
  const int filled = static_cast<int>(std::lround(std::clamp(progress, 0.0, 100.0) / 100.0 * width));
  return "[" + std::string(static_cast<size_t>(filled), '#') + std::string(static_cast<size_t>(width - filled), '.') +
         "]";
}

}  // namespace

std::string render_progress_bar(const JobEvent& event, int width) {
  const size_t usable = static_cast<size_t>(std::max(width, 1) - 1);
  const std::string percent = percent_text(event.progress);
  const std::string phase = phase_text(event);
  const Stats stats = stats_of(event);

  // Try the richest layout that leaves the bar at least kMinBar cells.
  const std::vector<std::string> tails = {
      join_parts({phase, join_parts(stats.rate), stats.eta}),
      join_parts({phase, stats.eta}),
      phase,
  };
  for (const std::string& tail : tails) {
    // percent + " " + [bar] + " " + tail
    const long room = static_cast<long>(usable) - static_cast<long>(display_width(percent)) - 2 -
                      static_cast<long>(display_width(tail)) - 2;
    if (room >= kMinBar) {
      std::string line = percent;
      line += ' ';
      line += bar(event.progress, static_cast<int>(std::min<long>(room, kMaxBar)));
      line += ' ';
      line += tail;
      return line;
    }
  }
  // No room for a bar: the words alone, cut to fit.
  return truncate_to_width(percent + " " + tails.front(), usable);
}

std::string render_progress_line(const JobEvent& event) {
  const Stats stats = stats_of(event);
  std::string line = "[" + percent_text(event.progress) + "] " + phase_text(event);
  const std::string rest = join_parts({join_parts(stats.rate), stats.eta});
  if (!rest.empty()) {
    line += "  " + rest;
  } else if (!event.message.empty() && event.message != event.phase && event.message != event.status) {
    line += ": " + printable(event.message);
  }
  return line;
}

bool PlainProgressFilter::should_print(const JobEvent& event) {
  if (event.terminal()) return false;
  const int decile = whole_percent(event.progress) / 10;
  const bool print = !printed_any_ || event.status != status_ || event.phase != phase_ || decile > decile_;
  if (print) {
    printed_any_ = true;
    status_ = event.status;
    phase_ = event.phase;
    decile_ = decile;
  }
  return print;
}

std::string render_summary(const JobEvent& e) {
  const std::string id = printable(e.job_id.empty() ? "job" : e.job_id);
  if (e.status == "completed") {
    std::string line = id + " completed";
    if (!e.output_url.empty()) line += ": " + printable(e.output_url);
    std::vector<std::string> facts;
    const nlohmann::json& r = e.result;
    if (r.is_object()) {
      auto str = [&r](const char* k) {
        auto it = r.find(k);
        return it != r.end() && it->is_string() ? it->get<std::string>() : std::string();
      };
      auto num = [&r](const char* k) {
        auto it = r.find(k);
        return it != r.end() && it->is_number() ? it->get<double>() : 0.0;
      };
      std::string video = str("video_codec");
      if (num("width") > 0 && num("height") > 0) {
        video += (video.empty() ? "" : " ") + std::to_string(static_cast<long>(num("width"))) + "x" +
                 std::to_string(static_cast<long>(num("height")));
      }
      if (!video.empty()) facts.push_back(printable(video));
      if (!str("audio_codec").empty()) facts.push_back(printable(str("audio_codec")));
      if (num("duration_seconds") > 0) facts.push_back(format_seconds(num("duration_seconds")));
      if (num("size_bytes") > 0) facts.push_back(format_bytes(static_cast<uint64_t>(num("size_bytes"))));
      if (num("file_count") > 1) facts.push_back(std::to_string(static_cast<long>(num("file_count"))) + " files");
    }
    if (!facts.empty()) {
      line += " (";
      for (size_t i = 0; i < facts.size(); ++i) line += (i ? ", " : "") + facts[i];
      line += ")";
    }
    return line;
  }
  std::string line = id + " " + printable(e.status.empty() ? "ended" : e.status);
  const std::string& reason = e.error.empty() ? e.message : e.error;
  if (!reason.empty()) line += ": " + printable(reason);
  if (!e.error_code.empty()) line += " (" + printable(e.error_code) + ")";
  return line;
}

}  // namespace flux::cli
