#pragma once
// An incremental parser of a text/event-stream body, following the WHATWG
// "event stream interpretation" rules: lines end in CRLF, LF or CR (a CRLF may
// be split across chunks), `data:` lines join with "\n", `id:` sets the last
// event id (kept across events, ignored when it holds a NUL), `event:` names
// the event, `retry:` takes digits only, lines starting with ':' are comments,
// one leading space after the colon is dropped, a blank line dispatches the
// event (none when no data line came), and a leading UTF-8 BOM is skipped.
// Pure: it is fed bytes and hands back events; it does no I/O.
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace flux::cli {

struct SseEvent {
  std::string id;  // the last event id when dispatched ("" = none seen)
  std::string type = "message";
  std::string data;  // data lines joined with "\n"
};

class SseParser {
 public:
  // A line longer than max_line_bytes makes the parser stop (overflowed()),
  // so a broken server cannot make the client buffer without bound.
  explicit SseParser(size_t max_line_bytes = 4 << 20);

  // Parses the next bytes of the stream; returns the events they complete.
  std::vector<SseEvent> feed(std::string_view bytes);

  // The last event id seen on the stream ("" when none): the Last-Event-ID to
  // reconnect with.
  const std::string& last_event_id() const { return last_event_id_; }
  // The server's last `retry:` value, in milliseconds.
  std::optional<uint64_t> retry_ms() const { return retry_ms_; }
  // Comment lines seen (keep-alives).
  size_t comments() const { return comments_; }
  bool overflowed() const { return overflowed_; }

 private:
  void process_line(std::string_view line, std::vector<SseEvent>& out);
  void end_of_line(std::vector<SseEvent>& out);

  size_t max_line_bytes_;
  std::string line_;
  bool after_cr_ = false;   // the previous byte ended a line with CR: skip an LF
  bool first_line_ = true;  // a BOM may start it
  bool overflowed_ = false;
  std::string data_;
  bool has_data_ = false;
  std::string type_;
  std::string last_event_id_;
  std::optional<uint64_t> retry_ms_;
  size_t comments_ = 0;
};

}  // namespace flux::cli
