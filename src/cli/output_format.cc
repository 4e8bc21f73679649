#include "cli/output_format.h"

#include <algorithm>
#include <cmath>

#include <fmt/format.h>

#include "cli/text.h"

namespace flux::cli {
namespace {

using nlohmann::json;

// A field as display text: strings made printable, numbers and booleans as
// written, null or absent as "-".
std::string text(const json& object, const char* name) {
  if (!object.is_object()) return "-";
  auto it = object.find(name);
  if (it == object.end() || it->is_null()) return "-";
  if (it->is_string()) return it->get_ref<const std::string&>().empty() ? "-" : printable(it->get<std::string>());
  if (it->is_number_float()) {
    const double v = it->get<double>();
    if (v == std::floor(v) && std::abs(v) < 1e15) return std::to_string(static_cast<long long>(v));
    return fmt::format("{:.1f}", v);
  }
  return printable(it->dump());
}

double number(const json& object, const char* name) {
  if (!object.is_object()) return 0;
  auto it = object.find(name);
  return it != object.end() && it->is_number() ? it->get<double>() : 0;
}

const json& member(const json& object, const char* name) {
  static const json kNull;
  if (!object.is_object()) return kNull;
  auto it = object.find(name);
  return it == object.end() ? kNull : *it;
}

std::string percent(const json& job) {
  return std::to_string(std::clamp(static_cast<int>(std::floor(number(job, "progress"))), 0, 100)) + "%";
}

std::string result_summary(const json& r) {
  if (!r.is_object()) return "";
  std::vector<std::string> parts;
  std::string video = text(r, "video_codec");
  if (video == "-") video.clear();
  if (number(r, "width") > 0) {
    video += (video.empty() ? "" : " ") + text(r, "width") + "x" + text(r, "height");
  }
  if (number(r, "fps") > 0) video += " " + text(r, "fps") + " fps";
  if (!video.empty()) parts.push_back(video);
  if (text(r, "audio_codec") != "-") {
    std::string audio = text(r, "audio_codec");
    if (number(r, "audio_channels") > 0) audio += " " + text(r, "audio_channels") + "ch";
    parts.push_back(audio);
  }
  if (number(r, "duration_seconds") > 0) parts.push_back(format_seconds(number(r, "duration_seconds")));
  parts.push_back(format_bytes(static_cast<uint64_t>(std::max(0.0, number(r, "size_bytes")))));
  const auto files = static_cast<long>(number(r, "file_count"));
  parts.push_back(std::to_string(files) + (files == 1 ? " file" : " files"));
  std::string out;
  for (const auto& p : parts) out += (out.empty() ? "" : ", ") + p;
  return out;
}

}  // namespace

std::string short_time(const std::string& rfc3339) {
  // YYYY-MM-DDTHH:MM:SS...
  if (rfc3339.size() >= 19 && rfc3339[10] == 'T') return rfc3339.substr(0, 10) + " " + rfc3339.substr(11, 8);
  return rfc3339;
}

std::string render_table(const std::vector<std::string>& headers, const std::vector<std::vector<std::string>>& rows) {
  std::vector<size_t> widths(headers.size(), 0);
  for (size_t c = 0; c < headers.size(); ++c) widths[c] = display_width(headers[c]);
  for (const auto& row : rows) {
    for (size_t c = 0; c < row.size() && c < widths.size(); ++c) {
      widths[c] = std::max(widths[c], display_width(row[c]));
    }
  }
  std::string out;
  auto emit = [&](const std::vector<std::string>& cells) {
    std::string line;
    for (size_t c = 0; c < widths.size(); ++c) {
      const std::string cell = c < cells.size() ? cells[c] : "";
      line += cell;
      if (c + 1 < widths.size()) line += std::string(widths[c] - display_width(cell) + 2, ' ');
    }
    while (!line.empty() && line.back() == ' ') line.pop_back();
    out += line + "\n";
  };
  emit(headers);
  for (const auto& row : rows) emit(row);
  return out;
}

std::string render_job_details(const json& doc) {
  std::vector<std::pair<std::string, std::string>> lines;
  auto add = [&lines](const std::string& label, const std::string& value) {
    if (!value.empty() && value != "-") lines.emplace_back(label, value);
  };
  add("Job", text(doc, "job_id"));
  std::string status = text(doc, "status");
  const std::string phase = text(doc, "phase");
  status += " (";
  if (phase != "-" && phase != "done" && phase != text(doc, "status")) status += phase + ", ";
  status += percent(doc) + ")";
  add("Status", status);
  if (text(doc, "message") != text(doc, "status") && text(doc, "message") != phase)
    add("Message", text(doc, "message"));
  if (doc.contains("error") || doc.contains("error_code")) {
    add("Error", text(doc, "error") + " (" + text(doc, "error_code") + ")");
  }
  add("Preset", text(doc, "preset"));
  add("Input", text(doc, "input_url"));
  const json& output = member(doc, "output");
  if (output.is_object()) {
    std::string where = text(output, "storage") + " " + text(output, "path");
    if (text(output, "type") != "-") where += " (" + text(output, "type") + ")";
    add("Output", where);
    const json& metadata = member(output, "metadata");
    if (metadata.is_object() && !metadata.empty()) {
      std::string items;
      for (auto it = metadata.begin(); it != metadata.end(); ++it) {
        items += (items.empty() ? "" : ", ") + printable(it.key()) + "=" +
                 (it->is_string() ? printable(it->get<std::string>()) : printable(it->dump()));
      }
      add("Metadata", items);
    }
  }
  add("Output URL", text(doc, "output_url"));
  add("Result", result_summary(member(doc, "result")));
  const json& durations = member(doc, "phase_durations");
  if (durations.is_object() && !durations.empty()) {
    // Pipeline order first (JSON objects come back sorted by name), then any other.
    std::vector<std::string> order = {"download", "probe", "encode", "validate", "upload"};
    for (auto it = durations.begin(); it != durations.end(); ++it) {
      if (std::find(order.begin(), order.end(), it.key()) == order.end()) order.push_back(it.key());
    }
    std::string items;
    for (const std::string& key : order) {
      auto it = durations.find(key);
      if (it == durations.end() || !it->is_number()) continue;
      items += (items.empty() ? "" : ", ") + printable(key) + " " + format_seconds(it->get<double>());
    }
    add("Phases", items);
  }
  std::string worker = text(doc, "worker_id");
  if (worker != "-" || number(doc, "attempts") > 0) {
    add("Worker", worker + " (attempt " + text(doc, "attempts") + ")");
  }
  add("Priority", text(doc, "priority"));
  add("Callback", text(doc, "callback_url"));
  const json& webhook = member(doc, "webhook");
  if (webhook.is_object() && text(webhook, "state") != "none" && text(webhook, "state") != "-") {
    std::string state = text(webhook, "state") + " (" + text(webhook, "attempts") + " attempts";
    if (number(webhook, "last_status") > 0) state += ", last HTTP " + text(webhook, "last_status");
    if (text(webhook, "last_error") != "-") state += ", " + text(webhook, "last_error");
    add("Webhook", state + ")");
  }
  for (const char* key : {"created_at", "started_at", "finished_at"}) {
    const std::string value = text(doc, key);
    if (value == "-") continue;
    std::string label = key;
    label[0] = static_cast<char>(label[0] - 'a' + 'A');
    add(label.substr(0, label.find('_')), short_time(value) + " UTC");
  }

  size_t width = 0;
  for (const auto& [label, value] : lines) width = std::max(width, label.size());
  std::string out;
  for (const auto& [label, value] : lines) {
    out += label;
    out.append(width - label.size() + 2, ' ');
    out += value;
    out += '\n';
  }
  return out;
}

std::string render_job_list(const json& page) {
  const json& jobs = member(page, "jobs");
  if (!jobs.is_array() || jobs.empty()) return "no jobs\n";
  std::vector<std::vector<std::string>> rows;
  for (const json& job : jobs) {
    const std::string status = text(job, "status");
    std::string detail;
    if (status == "completed") {
      detail = text(job, "output_url");
    } else if (status == "failed" || status == "cancelled") {
      detail = text(job, "error_code");
    } else {
      detail = text(job, "phase");
    }
    rows.push_back(
        {text(job, "job_id"), status, percent(job), text(job, "preset"), short_time(text(job, "created_at")), detail});
  }
  std::string out = render_table({"JOB ID", "STATUS", "PROGRESS", "PRESET", "CREATED (UTC)", "DETAIL"}, rows);
  const std::string cursor = text(page, "next_cursor");
  if (cursor != "-") out += "more: repeat with --cursor " + cursor + "\n";
  return out;
}

std::string render_workers(const json& answer) {
  const json& workers = member(answer, "workers");
  if (!workers.is_array() || workers.empty()) return "no workers configured\n";
  std::vector<std::vector<std::string>> rows;
  for (const json& w : workers) {
    std::string storage;
    const json& types = member(w, "storage_types");
    if (types.is_array()) {
      for (const json& t : types) {
        if (t.is_string()) storage += (storage.empty() ? "" : ",") + printable(t.get<std::string>());
      }
    }
    rows.push_back({text(w, "address"), text(w, "worker_id"), text(w, "state"),
                    text(w, "current_jobs") + "/" + text(w, "max_jobs"), storage.empty() ? "-" : storage,
                    text(w, "version"), text(w, "last_seen") == "-" ? "-" : short_time(text(w, "last_seen"))});
  }
  return render_table({"ADDRESS", "WORKER ID", "STATE", "JOBS", "STORAGE", "VERSION", "LAST SEEN (UTC)"}, rows);
}

std::string render_presets(const json& answer) {
  const json& presets = member(answer, "presets");
  if (!presets.is_array() || presets.empty()) return "no presets\n";
  std::vector<std::vector<std::string>> rows;
  for (const json& p : presets) {
    rows.push_back({text(p, "name"), text(p, "output_type"), text(p, "extension"), text(p, "description")});
  }
  return render_table({"NAME", "TYPE", "EXT", "DESCRIPTION"}, rows);
}

}  // namespace flux::cli
