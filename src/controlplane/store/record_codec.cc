#include "controlplane/store/record_codec.h"

#include <charconv>
#include <cmath>
#include <exception>
#include <string_view>

#include "shared/core/error.h"

namespace flux::controlplane::store {

using nlohmann::json;

namespace {

// The row document is written by hand rather than through a json object: a
// submission writes one, and building the object costs a few dozen
// allocations where this costs one. The text is what nlohmann would dump for
// the same members (keys in sorted order, the same escapes, invalid UTF-8
// replaced), so rows written before and after read back alike and SQLite's
// json_extract/json_set see the same document.
class DocWriter {
 public:
  explicit DocWriter(std::string& out) : out_(out) {}

  void key(std::string_view name) {
    separate();
    out_ += '"';
    out_ += name;  // member names here are plain ASCII literals
    out_ += "\":";
    first_ = true;  // the value follows without a comma
  }
  void open() {
    separate();
    out_ += '{';
    first_ = true;
  }
  void close() {
    out_ += '}';
    first_ = false;
  }
  void string(std::string_view text) {
    separate();
    append_string(text);
  }
  void integer(int64_t value) {
    separate();
    char buffer[24];
    const auto result = std::to_chars(buffer, buffer + sizeof buffer, value);
    out_.append(buffer, result.ptr);
  }
  void number(double value) {
    separate();
    if (!std::isfinite(value)) {
      out_ += "null";  // what nlohmann writes for NaN and infinities
      return;
    }
    char buffer[32];
    const auto result = std::to_chars(buffer, buffer + sizeof buffer, value);  // shortest round trip
    out_.append(buffer, result.ptr);
  }
  void json(const nlohmann::json& value) {
    separate();
    if (value.is_object() && value.empty()) {
      out_ += "{}";
    } else {
      out_ += value.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    }
  }
  void string_map(const std::map<std::string, std::string>& values) {
    open();
    for (const auto& [name, value] : values) {
      separate();
      append_string(name);
      out_ += ':';
      append_string(value);
    }
    close();
  }

 private:
  void separate() {
    if (!first_) out_ += ',';
    first_ = false;
  }

  void append_string(std::string_view text) {
    if (!is_valid_utf8(text)) {
      // Rare (a client's broken bytes): the replacement is nlohmann's own.
      out_ += nlohmann::json(std::string(text)).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
      return;
    }
    static constexpr char kHex[] = "0123456789abcdef";
    out_ += '"';
    size_t plain_from = 0;
    for (size_t i = 0; i < text.size(); ++i) {
      const auto c = static_cast<unsigned char>(text[i]);
      if (c >= 0x20 && c != '"' && c != '\\') continue;
      out_.append(text.data() + plain_from, i - plain_from);
      plain_from = i + 1;
      switch (c) {
        case '"':
          out_ += "\\\"";
          break;
        case '\\':
          out_ += "\\\\";
          break;
        case '\b':
          out_ += "\\b";
          break;
        case '\f':
          out_ += "\\f";
          break;
        case '\n':
          out_ += "\\n";
          break;
        case '\r':
          out_ += "\\r";
          break;
        case '\t':
          out_ += "\\t";
          break;
        default:
          out_ += "\\u00";
          out_ += kHex[c >> 4];
          out_ += kHex[c & 0xf];
      }
    }
    out_.append(text.data() + plain_from, text.size() - plain_from);
    out_ += '"';
  }

  // Well-formed UTF-8 (no overlongs, surrogates or code points past U+10FFFF).
  static bool is_valid_utf8(std::string_view text) {
    size_t i = 0;
    const size_t n = text.size();
    while (i < n) {
      const auto c = static_cast<unsigned char>(text[i]);
      if (c < 0x80) {
        ++i;
        continue;
      }
      size_t length = 0;
      uint32_t lower = 0x80;
      uint32_t upper = 0xBF;
      if (c >= 0xC2 && c <= 0xDF) {
        length = 2;
      } else if (c >= 0xE0 && c <= 0xEF) {
        length = 3;
        if (c == 0xE0) lower = 0xA0;
        if (c == 0xED) upper = 0x9F;
      } else if (c >= 0xF0 && c <= 0xF4) {
        length = 4;
        if (c == 0xF0) lower = 0x90;
        if (c == 0xF4) upper = 0x8F;
      } else {
        return false;
      }
      if (i + length > n) return false;
      const auto second = static_cast<unsigned char>(text[i + 1]);
      if (second < lower || second > upper) return false;
      for (size_t k = 2; k < length; ++k) {
        const auto next = static_cast<unsigned char>(text[i + k]);
        if (next < 0x80 || next > 0xBF) return false;
      }
      i += length;
    }
    return true;
  }

  std::string& out_;
  bool first_ = true;
};

std::string encode_document(const model::JobRecord& job) {
  std::string doc;
  doc.reserve(512 + job.spec.input_url.size() + job.spec.callback_url.size() + job.message.size() + job.error.size());
  DocWriter w(doc);
  // Sorted by key, as nlohmann orders an object's members.
  w.open();
  w.key("attempts");
  w.integer(job.attempts);
  w.key("callback_url");
  w.string(job.spec.callback_url);
  w.key("created_at");
  w.string(job.created_at);
  w.key("error");
  w.string(job.error);
  w.key("error_code");
  w.string(job.error_code);
  w.key("finished_at");
  w.string(job.finished_at);
  w.key("input_url");
  w.string(job.spec.input_url);
  w.key("message");
  w.string(job.message);
  w.key("output");
  w.open();
  w.key("metadata");
  w.string_map(job.spec.output.metadata);
  w.key("path");
  w.string(job.spec.output.path);
  w.key("storage");
  w.string(job.spec.output.storage);
  w.key("type");
  w.string(job.spec.output.type);
  w.close();
  w.key("output_url");
  w.string(job.output_url);
  w.key("phase");
  w.string(job.phase);
  w.key("phase_durations");
  w.json(job.phase_durations);
  w.key("preset");
  w.string(job.spec.preset);
  w.key("progress");
  w.number(job.progress);
  w.key("result");
  w.json(job.result);
  w.key("started_at");
  w.string(job.started_at);
  w.key("webhook");
  w.open();
  w.key("attempts");
  w.integer(job.webhook.attempts);
  w.key("delivered_at");
  w.string(job.webhook.delivered_at);
  w.key("last_error");
  w.string(job.webhook.last_error);
  w.key("last_status");
  w.integer(job.webhook.last_status);
  w.key("state");
  w.string(job.webhook.state);
  w.close();
  w.key("worker_address");
  w.string(job.worker_address);
  w.key("worker_id");
  w.string(job.worker_id);
  w.close();
  return doc;
}

}  // namespace

JobRow to_row(const model::JobRecord& job) {
  JobRow row;
  row.job_id = job.job_id;
  row.status = std::string(model::to_string(job.status));
  row.priority = job.spec.priority;
  row.created_ms = job.created_ms;
  row.api_key_id = job.api_key_id;
  row.idempotency_key = job.idempotency_key;
  row.sequence = static_cast<int64_t>(job.sequence);
  row.doc = encode_document(job);
  return row;
}

absl::StatusOr<model::JobRecord> from_row(const JobRow& row) {
  model::JobRecord job;
  job.job_id = row.job_id;
  auto status = model::parse_job_status(row.status);
  if (!status) return internal_error("store_corrupt_record", "job " + row.job_id + " has unknown status " + row.status);
  job.status = *status;
  job.spec.priority = static_cast<int>(row.priority);
  job.created_ms = row.created_ms;
  job.api_key_id = row.api_key_id;
  job.idempotency_key = row.idempotency_key;
  job.sequence = static_cast<uint64_t>(row.sequence);
  try {
    const json doc = json::parse(row.doc);
    if (!doc.is_object()) throw std::runtime_error("document is not an object");
    job.spec.input_url = doc.value("input_url", "");
    job.spec.preset = doc.value("preset", "");
    const json output = doc.value("output", json::object());
    job.spec.output.storage = output.value("storage", "");
    job.spec.output.path = output.value("path", "");
    job.spec.output.type = output.value("type", "");
    job.spec.output.metadata = output.value("metadata", std::map<std::string, std::string>{});
    job.spec.callback_url = doc.value("callback_url", "");
    job.phase = doc.value("phase", job.phase);
    job.progress = doc.value("progress", 0.0);
    job.message = doc.value("message", "");
    job.output_url = doc.value("output_url", "");
    job.error = doc.value("error", "");
    job.error_code = doc.value("error_code", "");
    job.worker_id = doc.value("worker_id", "");
    job.worker_address = doc.value("worker_address", "");
    job.attempts = doc.value("attempts", 0);
    job.created_at = doc.value("created_at", "");
    job.started_at = doc.value("started_at", "");
    job.finished_at = doc.value("finished_at", "");
    job.result = doc.value("result", json::object());
    job.phase_durations = doc.value("phase_durations", json::object());
    const json webhook = doc.value("webhook", json::object());
    job.webhook.state = webhook.value("state", job.webhook.state);
    job.webhook.attempts = webhook.value("attempts", 0);
    job.webhook.last_status = webhook.value("last_status", 0);
    job.webhook.last_error = webhook.value("last_error", "");
    job.webhook.delivered_at = webhook.value("delivered_at", "");
  } catch (const std::exception& e) {
    return internal_error("store_corrupt_record", "job " + row.job_id + " has an unreadable document: " + e.what());
  }
  return job;
}

}  // namespace flux::controlplane::store
