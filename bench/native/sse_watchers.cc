// sse_watchers: N SSE clients of one stream on 127.0.0.1, for bench/sse_fanout.py.
//
// One thread, one epoll loop, raw non-blocking sockets. Every socket has
// SO_TIMESTAMPNS set, so an event's arrival time is the kernel's receive time
// on that socket, not the time this loop got round to reading it. When one
// read returns several events (the kernel merged them while the socket was
// not read), only the last one's arrival is exact; the others are counted as
// "coalesced" (their arrival is an upper bound).
//
// Protocol with the caller: prints "READY" once every watcher has its first
// event (the job's state on connect), then, when every stream has been closed
// by the server (or --timeout passes), one line "RESULT <json>".
//
// Usage: sse_watchers --port P --path /api/v1/jobs/ID/stream --count N [--timeout S] [--batch B]
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;

struct Watcher {
  int fd = -1;
  bool sent = false;
  bool headers = false;
  bool closed = false;
  std::string buf;
  std::vector<uint64_t> ids;
  std::string error;
};

struct EventInfo {
  double timestamp = 0;  // the event's own "timestamp", epoch seconds
  std::string status;
  std::vector<double> latencies;  // arrival - timestamp, one per watcher (live events only)
  uint64_t coalesced = 0;
};

double now_epoch() {
  timespec ts{};
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) / 1e9;
}

// "2026-11-30T08:43:25.123Z" -> epoch seconds; 0 when malformed.
double parse_rfc3339(std::string_view s) {
  tm t{};
  int ms = 0;
  std::string copy(s);
  if (std::sscanf(copy.c_str(), "%4d-%2d-%2dT%2d:%2d:%2d.%3dZ", &t.tm_year, &t.tm_mon, &t.tm_mday, &t.tm_hour,
                  &t.tm_min, &t.tm_sec, &ms) != 7) {
    return 0;
  }
  t.tm_year -= 1900;
  t.tm_mon -= 1;
  return static_cast<double>(timegm(&t)) + ms / 1000.0;
}

std::string json_field(std::string_view json, std::string_view name) {
  const std::string key = "\"" + std::string(name) + "\":\"";
  const auto at = json.find(key);
  if (at == std::string_view::npos) return "";
  const auto start = at + key.size();
  const auto end = json.find('"', start);
  return end == std::string_view::npos ? "" : std::string(json.substr(start, end - start));
}

double percentile(std::vector<double> v, double p) {
  if (v.empty()) return -1;
  std::sort(v.begin(), v.end());
  size_t k = static_cast<size_t>(p / 100.0 * static_cast<double>(v.size()) + 0.5);
  k = std::clamp<size_t>(k, 1, v.size()) - 1;
  return v[k];
}

class Watchers {
 public:
  Watchers(int port, std::string path, int count) : count_(count) {
    request_ = "GET " + path + " HTTP/1.1\r\nHost: 127.0.0.1:" + std::to_string(port) +
               "\r\nAccept: text/event-stream\r\n\r\n";
    addr_.sin_family = AF_INET;
    addr_.sin_port = htons(static_cast<uint16_t>(port));
    addr_.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    epoll_ = epoll_create1(EPOLL_CLOEXEC);
    watchers_.resize(count);
  }

  int with_first_event() const { return with_first_; }
  int open() const { return open_; }
  int failed() const { return failed_; }
  int started() const { return started_; }

  bool start_one() {
    Watcher& w = watchers_[started_];
    w.fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (w.fd < 0) {
      std::fprintf(stderr, "socket: %s\n", std::strerror(errno));
      return false;
    }
    int one = 1;
    setsockopt(w.fd, SOL_SOCKET, SO_TIMESTAMPNS, &one, sizeof one);
    if (connect(w.fd, reinterpret_cast<sockaddr*>(&addr_), sizeof addr_) != 0 && errno != EINPROGRESS) {
      std::fprintf(stderr, "connect: %s\n", std::strerror(errno));
      return false;
    }
    epoll_event ev{};
    ev.events = EPOLLOUT | EPOLLIN;
    ev.data.u32 = static_cast<uint32_t>(started_);
    epoll_ctl(epoll_, EPOLL_CTL_ADD, w.fd, &ev);
    ++started_;
    ++open_;
    return true;
  }

  void poll(int wait_ms) {
    epoll_event events[1024];
    const int n = epoll_wait(epoll_, events, 1024, wait_ms);
    for (int i = 0; i < n; ++i) {
      Watcher& w = watchers_[events[i].data.u32];
      if (w.closed) continue;
      if ((events[i].events & EPOLLOUT) && !w.sent) {
        int err = 0;
        socklen_t len = sizeof err;
        getsockopt(w.fd, SOL_SOCKET, SO_ERROR, &err, &len);
        if (err != 0) {
          close_watcher(w, std::string("connect: ") + std::strerror(err));
          continue;
        }
        if (send(w.fd, request_.data(), request_.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(request_.size())) {
          close_watcher(w, "send failed");
          continue;
        }
        w.sent = true;
        epoll_event ev{};
        ev.events = EPOLLIN;
        ev.data.u32 = events[i].data.u32;
        epoll_ctl(epoll_, EPOLL_CTL_MOD, w.fd, &ev);
        continue;
      }
      if (events[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) read_watcher(w);
    }
  }

  void close_all() {
    for (auto& w : watchers_) {
      if (w.fd >= 0 && !w.closed) close_watcher(w, "still open at the end");
    }
  }

  std::string result_json() const {
    // Every watcher must hold the same contiguous id sequence, first to terminal.
    std::map<std::string, int> errors;
    std::map<uint64_t, int> first_ids;
    for (const auto& w : watchers_) {
      if (!w.error.empty()) ++errors[w.error];
      if (!w.ids.empty()) ++first_ids[w.ids.front()];
    }
    uint64_t terminal = 0;
    int terminals = 0;
    for (const auto& [id, info] : events_) {
      if (info.status == "completed" || info.status == "failed" || info.status == "cancelled") {
        terminal = id;
        ++terminals;
      }
    }
    bool complete = errors.empty() && first_ids.size() == 1 && terminals == 1 && started_ == count_;
    std::vector<uint64_t> expected;
    if (complete) {
      for (uint64_t id = first_ids.begin()->first; id <= terminal; ++id) expected.push_back(id);
      for (const auto& w : watchers_) {
        if (w.ids != expected) {
          complete = false;
          break;
        }
      }
    }
    std::vector<double> all;
    std::vector<double> last;  // per live event: the last watcher's latency
    uint64_t coalesced = 0;
    std::string per_event;
    for (const auto& [id, info] : events_) {
      coalesced += info.coalesced;
      if (info.latencies.empty()) continue;
      all.insert(all.end(), info.latencies.begin(), info.latencies.end());
      const double mx = *std::max_element(info.latencies.begin(), info.latencies.end());
      last.push_back(mx);
      char row[256];
      std::snprintf(row, sizeof row,
                    "%s{\"id\":%llu,\"status\":\"%s\",\"receipts\":%zu,\"p50_ms\":%.3f,\"max_ms\":%.3f}",
                    per_event.empty() ? "" : ",", static_cast<unsigned long long>(id), info.status.c_str(),
                    info.latencies.size(), percentile(info.latencies, 50) * 1000, mx * 1000);
      per_event += row;
    }
    std::string errs;
    for (const auto& [e, n] : errors) {
      std::string clean;
      for (char c : e) clean += (c == '"' || c == '\\' || static_cast<unsigned char>(c) < 0x20) ? '?' : c;
      errs += (errs.empty() ? "" : ",") + std::string("\"") + clean + "\":" + std::to_string(n);
    }
    std::string firsts;
    for (const auto& [id, n] : first_ids) firsts += (firsts.empty() ? "" : ",") + std::to_string(id);
    char head[1024];
    std::snprintf(head, sizeof head,
                  "{\"watchers\":%d,\"complete\":%s,\"events\":%zu,\"first_ids\":[%s],\"terminal_id\":%llu,"
                  "\"final_status\":\"%s\",\"live_events\":%zu,\"last_p50_ms\":%.3f,\"last_p99_ms\":%.3f,"
                  "\"last_max_ms\":%.3f,\"all_p50_ms\":%.3f,\"all_p99_ms\":%.3f,\"receipts\":%zu,"
                  "\"coalesced\":%llu,\"kernel_timestamps\":%s,",
                  count_, complete ? "true" : "false", expected.size(), firsts.c_str(),
                  static_cast<unsigned long long>(terminal), terminals == 1 ? events_.at(terminal).status.c_str() : "",
                  last.size(), percentile(last, 50) * 1000, percentile(last, 99) * 1000,
                  last.empty() ? -1 : *std::max_element(last.begin(), last.end()) * 1000, percentile(all, 50) * 1000,
                  percentile(all, 99) * 1000, all.size(), static_cast<unsigned long long>(coalesced),
                  kernel_timestamps_ ? "true" : "false");
    return std::string(head) + "\"errors\":{" + errs + "},\"per_event\":[" + per_event + "]}";
  }

 private:
  void close_watcher(Watcher& w, std::string error) {
    if (w.closed) return;
    w.closed = true;
    w.error = std::move(error);
    if (!w.error.empty()) ++failed_;
    --open_;
    epoll_ctl(epoll_, EPOLL_CTL_DEL, w.fd, nullptr);
    ::close(w.fd);
  }

  void read_watcher(Watcher& w) {
    char data[65536];
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(timespec))];
    for (;;) {
      iovec iov{data, sizeof data};
      msghdr msg{};
      msg.msg_iov = &iov;
      msg.msg_iovlen = 1;
      msg.msg_control = control;
      msg.msg_controllen = sizeof control;
      const ssize_t n = recvmsg(w.fd, &msg, 0);
      if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK) return;
        if (errno == EINTR) continue;
        close_watcher(w, std::string("recv: ") + std::strerror(errno));
        return;
      }
      if (n == 0) {
        close_watcher(w, w.headers ? "" : "closed before the response headers");
        return;
      }
      double arrival = 0;
      for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SO_TIMESTAMPNS) {
          timespec ts{};
          std::memcpy(&ts, CMSG_DATA(c), sizeof ts);
          arrival = static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) / 1e9;
        }
      }
      if (arrival == 0) {
        kernel_timestamps_ = false;
        arrival = now_epoch();
      }
      w.buf.append(data, static_cast<size_t>(n));
      if (!parse(w, arrival)) return;
    }
  }

  // false when the watcher was closed.
  bool parse(Watcher& w, double arrival) {
    if (!w.headers) {
      const auto end = w.buf.find("\r\n\r\n");
      if (end == std::string::npos) return true;
      const std::string status_line = w.buf.substr(0, w.buf.find("\r\n"));
      if (status_line.find(" 200 ") == std::string::npos) {
        close_watcher(w, "status: " + status_line);
        return false;
      }
      w.buf.erase(0, end + 4);
      w.headers = true;
    }
    std::vector<std::pair<uint64_t, bool>> completed;  // (id, first of this watcher)
    size_t pos = 0;
    for (;;) {
      const auto end = w.buf.find("\n\n", pos);
      if (end == std::string::npos) break;
      std::string_view frame(w.buf.data() + pos, end - pos);
      pos = end + 2;
      uint64_t id = 0;
      bool has_id = false;
      std::string_view json;
      size_t line_start = 0;
      while (line_start <= frame.size()) {
        auto line_end = frame.find('\n', line_start);
        if (line_end == std::string_view::npos) line_end = frame.size();
        const std::string_view line = frame.substr(line_start, line_end - line_start);
        if (line.substr(0, 4) == "id: ") {
          id = std::strtoull(std::string(line.substr(4)).c_str(), nullptr, 10);
          has_id = true;
        } else if (line.substr(0, 6) == "data: ") {
          json = line.substr(6);
        }
        line_start = line_end + 1;
      }
      if (!has_id || json.empty()) continue;  // a keep-alive comment
      auto [it, inserted] = events_.try_emplace(id);
      if (inserted) {
        it->second.timestamp = parse_rfc3339(json_field(json, "timestamp"));
        it->second.status = json_field(json, "status");
      }
      completed.emplace_back(id, w.ids.empty());
      if (w.ids.empty()) ++with_first_;
      w.ids.push_back(id);
    }
    w.buf.erase(0, pos);
    for (size_t i = 0; i < completed.size(); ++i) {
      auto& [id, first] = completed[i];
      // The first event is the state on connect (a replay of the latest event), not a live one.
      if (first) continue;
      EventInfo& info = events_[id];
      info.latencies.push_back(arrival - info.timestamp);
      if (i + 1 < completed.size()) ++info.coalesced;
    }
    return true;
  }

  int count_;
  std::string request_;
  sockaddr_in addr_{};
  int epoll_ = -1;
  std::vector<Watcher> watchers_;
  std::map<uint64_t, EventInfo> events_;
  int started_ = 0;
  int open_ = 0;
  int failed_ = 0;
  int with_first_ = 0;
  bool kernel_timestamps_ = true;
};

}  // namespace

int main(int argc, char** argv) {
  int port = 0, count = 0, timeout_s = 600, batch = 500;
  std::string path;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string key = argv[i];
    const char* value = argv[i + 1];
    if (key == "--port")
      port = std::atoi(value);
    else if (key == "--path")
      path = value;
    else if (key == "--count")
      count = std::atoi(value);
    else if (key == "--timeout")
      timeout_s = std::atoi(value);
    else if (key == "--batch")
      batch = std::atoi(value);
  }
  if (port <= 0 || count <= 0 || path.empty()) {
    std::fprintf(stderr, "usage: sse_watchers --port P --path PATH --count N [--timeout S] [--batch B]\n");
    return 2;
  }
  rlimit limit{};
  getrlimit(RLIMIT_NOFILE, &limit);
  const rlim_t want = static_cast<rlim_t>(count) + 64;
  if (limit.rlim_cur < want) {
    limit.rlim_cur = std::min(want, limit.rlim_max);
    setrlimit(RLIMIT_NOFILE, &limit);
  }
  if (limit.rlim_cur < want) {
    std::fprintf(stderr, "open-file limit %llu is too low for %d watchers\n",
                 static_cast<unsigned long long>(limit.rlim_cur), count);
    return 2;
  }

  const auto deadline = Clock::now() + std::chrono::seconds(timeout_s);
  Watchers watchers(port, path, count);
  while (watchers.with_first_event() < count) {
    if (Clock::now() > deadline || watchers.failed() > 0) {
      std::printf("RESULT %s\n", watchers.result_json().c_str());
      return 1;
    }
    while (watchers.started() < count && watchers.started() - watchers.with_first_event() < batch) {
      if (!watchers.start_one()) return 1;
    }
    watchers.poll(20);
  }
  std::printf("READY\n");
  std::fflush(stdout);
  while (watchers.open() > 0 && Clock::now() < deadline) watchers.poll(100);
  watchers.close_all();
  std::printf("RESULT %s\n", watchers.result_json().c_str());
  return 0;
}
