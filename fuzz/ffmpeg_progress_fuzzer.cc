// ffmpeg's "-progress pipe:3" output as the worker reads it: bytes split into
// lines by process::LineReader, lines fed to encoder::ProgressParser; each
// input is read with an unknown, a short and a typical input duration.
//
// Invariants beyond "no crash, no sanitizer report":
//  - the lines do not depend on how the bytes were split into reads;
//  - percent stays within 0..100 and never decreases, is 100 only once ended,
//    and stays 0 while the duration is unknown and the end not reached;
//  - fps and speed are never negative or NaN, eta is -1 or >= 0, out_time_us
//    never negative and never decreasing;
//  - a snapshot comes exactly for each "progress=" line.
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "fuzz_check.h"
#include "shared/process/subprocess.h"
#include "worker/encoder/encoder.h"

namespace {

using flux::worker::encoder::Progress;
using flux::worker::encoder::ProgressParser;

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t' || s.front() == '\r')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r')) s.remove_suffix(1);
  return s;
}

bool closes_block(std::string_view line) {
  line = trim(line);
  const size_t eq = line.find('=');
  return eq != std::string_view::npos && trim(line.substr(0, eq)) == "progress";
}

std::string show(const Progress& p) {
  return "percent=" + std::to_string(p.percent) + " fps=" + std::to_string(p.fps) +
         " speed=" + std::to_string(p.speed) + " eta=" + std::to_string(p.eta_seconds) +
         " out_time_us=" + std::to_string(p.out_time_us) + " ended=" + std::to_string(p.ended);
}

std::vector<std::string> split(std::string_view bytes, size_t read_size) {
  flux::process::LineReader reader;
  std::vector<std::string> lines;
  for (size_t pos = 0; pos < bytes.size(); pos += read_size) reader.feed(bytes.substr(pos, read_size), lines);
  reader.flush(lines);
  return lines;
}

void run(const std::vector<std::string>& lines, double duration_seconds) {
  ProgressParser parser(duration_seconds);
  Progress last;
  for (const std::string& line : lines) {
    const auto snapshot = parser.feed_line(line);
    const Progress& now = parser.current();
    FUZZ_CHECK(snapshot.has_value() == closes_block(line), "line '" + line + "'");
    if (snapshot) {
      FUZZ_CHECK(snapshot->percent == now.percent && snapshot->ended == now.ended, show(*snapshot));
    }
    FUZZ_CHECK(std::isfinite(now.percent) && now.percent >= 0 && now.percent <= 100, show(now));
    FUZZ_CHECK(now.percent >= last.percent, "percent went back: " + show(last) + " -> " + show(now));
    FUZZ_CHECK(now.percent < 100 || now.ended, "100% before the end block: " + show(now));
    FUZZ_CHECK(duration_seconds > 0 || now.ended || now.percent == 0, "percent without a duration: " + show(now));
    FUZZ_CHECK(now.fps >= 0 && now.speed >= 0, show(now));  // also false for NaN
    FUZZ_CHECK(now.eta_seconds == -1 || now.eta_seconds >= 0, show(now));
    FUZZ_CHECK(now.out_time_us >= 0 && now.out_time_us >= last.out_time_us, show(last) + " -> " + show(now));
    last = now;
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  const std::vector<std::string> lines = split(bytes, 16384);  // what one read() of the pipe gives at most
  const std::vector<std::string> small_reads = split(bytes, 7);
  FUZZ_CHECK(lines == small_reads, "the lines depend on how the bytes were read");
  for (double duration : {0.0, 0.04, 12.5}) run(lines, duration);
  return 0;
}
