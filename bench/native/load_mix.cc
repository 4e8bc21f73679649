// load_mix: an open-loop HTTP/1.1 load generator for bench/chaos/load.py.
//
// Requests are scheduled at a fixed rate (request i is due at start + i/rate)
// whatever the server does, and sent over a pool of keep-alive connections on
// one epoll loop. A request that finds no idle connection waits in a backlog;
// its latency is measured from the moment it was DUE, not from when it could
// be sent, so a server that falls behind shows its real delay (no coordinated
// omission). The "service" latency (sent -> response complete) is reported
// beside it. Requests more than --max-behind seconds overdue are not sent and
// are counted as "skipped": the achieved rate is reported, never assumed.
//
// The mix (per-mille weights, --mix health=200,get=300,...):
//   health   GET /health
//   get      GET /api/v1/jobs/{id}           (ids: --ids, then every job this run submitted)
//   list     GET /api/v1/jobs?limit=20        (follows next_cursor up to 5 pages, then starts over;
//                                             every other chain filters status=queued)
//   workers  GET /api/v1/workers/status
//   metrics  GET /metrics
//   submit   POST /api/v1/jobs                (--input-url, --preset, --storage; output path load/<n>.mp4)
//   cancel   POST /api/v1/jobs/{id}/cancel    (the oldest job this run submitted and did not cancel yet;
//                                             an already cancelled one when there is none)
//
// Prints one line "RESULT <json>": per route the count, the status codes, the
// connection errors, latency percentiles; and completions per 10 s.
//
// Usage: load_mix --port P --rate R --seconds S [--connections C] [--mix SPEC] [--ids a,b]
//                 [--input-url U] [--preset P] [--storage S] [--max-behind S]
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <map>
#include <random>
#include <string>
#include <string_view>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;

enum Route { kHealth, kGet, kList, kWorkers, kMetrics, kSubmit, kCancel, kRoutes };
constexpr std::array<const char*, kRoutes> kRouteNames = {"health",  "get",    "list",  "workers",
                                                          "metrics", "submit", "cancel"};

struct Pending {
  Route route = kHealth;
  double due = 0;  // seconds since start
  std::string target;
};

struct Conn {
  int fd = -1;
  bool connected = false;
  bool busy = false;
  Pending req;
  double sent = 0;
  std::string out;
  size_t out_off = 0;
  std::string in;
};

struct RouteStats {
  uint64_t count = 0;
  uint64_t conn_errors = 0;
  std::map<int, uint64_t> statuses;
  std::vector<float> latency_ms;  // due -> complete
  std::vector<float> service_ms;  // sent -> complete
};

double percentile(std::vector<float>& v, double p) {
  if (v.empty()) return -1;
  const size_t k =
      std::clamp<size_t>(static_cast<size_t>(p / 100.0 * static_cast<double>(v.size()) + 0.5), 1, v.size()) - 1;
  std::nth_element(v.begin(), v.begin() + static_cast<long>(k), v.end());
  return v[k];
}

std::string json_string_field(std::string_view body, std::string_view name) {
  const std::string key = "\"" + std::string(name) + "\":\"";
  const auto at = body.find(key);
  if (at == std::string_view::npos) return "";
  const auto start = at + key.size();
  const auto end = body.find('"', start);
  return end == std::string_view::npos ? "" : std::string(body.substr(start, end - start));
}

std::string percent_encode(std::string_view text) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (unsigned char ch : text) {
    if (std::isalnum(ch) || ch == '-' || ch == '_' || ch == '.' || ch == '~') {
      out += static_cast<char>(ch);
    } else {
      out += '%';
      out += kHex[ch >> 4];
      out += kHex[ch & 0xF];
    }
  }
  return out;
}

class Generator {
 public:
  Generator(int port, double rate, double seconds, int connections, std::array<int, kRoutes> weights)
      : rate_(rate), seconds_(seconds), weights_(weights), conns_(static_cast<size_t>(connections)) {
    addr_.sin_family = AF_INET;
    addr_.sin_port = htons(static_cast<uint16_t>(port));
    addr_.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    host_ = "127.0.0.1:" + std::to_string(port);
    epoll_ = epoll_create1(EPOLL_CLOEXEC);
    for (int w : weights_) total_weight_ += w;
  }

  std::vector<std::string> ids;
  std::string input_url, preset = "480p_h264", storage = "local";
  double max_behind = 5.0;

  int run() {
    start_ = Clock::now();
    for (size_t i = 0; i < conns_.size(); ++i) open_conn(i);
    uint64_t next = 0;
    const auto total = static_cast<uint64_t>(rate_ * seconds_);
    for (;;) {
      const double now = elapsed();
      while (next < total && static_cast<double>(next) / rate_ <= now) {
        backlog_.push_back(make_request(static_cast<double>(next) / rate_));
        ++next;
      }
      while (!backlog_.empty() && now - backlog_.front().due > max_behind) {
        ++skipped_;
        backlog_.pop_front();
      }
      // Round robin over the connections, so that none idles long enough
      // for the server's keep-alive idle timeout to close it under a request.
      for (size_t k = 0; k < conns_.size() && !backlog_.empty(); ++k) {
        const size_t i = (next_conn_ + k) % conns_.size();
        Conn& c = conns_[i];
        if (c.fd < 0) open_conn(i);
        if (c.connected && !c.busy) {
          send_request(i, std::move(backlog_.front()));
          backlog_.pop_front();
          next_conn_ = i + 1;
        }
      }
      bool inflight = !backlog_.empty();
      for (auto& c : conns_) inflight = inflight || c.busy;
      if (next >= total && !inflight) break;
      if (now > seconds_ + 30) break;  // stragglers: counted as connection errors below
      const double until_next = next < total ? static_cast<double>(next) / rate_ - now : 0.05;
      poll(std::clamp(static_cast<int>(until_next * 1000), 0, 50));
    }
    for (auto& c : conns_) {
      if (c.busy) {
        ++stats_[c.req.route].conn_errors;
        ++stats_[c.req.route].count;
      }
    }
    duration_ = elapsed();
    return 0;
  }

  std::string result_json() {
    std::string routes;
    uint64_t done = 0;
    for (int r = 0; r < kRoutes; ++r) {
      RouteStats& s = stats_[r];
      done += s.latency_ms.size();
      std::string codes;
      for (auto& [code, n] : s.statuses) {
        codes += (codes.empty() ? "" : ",") + std::string("\"") + std::to_string(code) + "\":" + std::to_string(n);
      }
      char row[1024];
      const double lat50 = percentile(s.latency_ms, 50), lat90 = percentile(s.latency_ms, 90),
                   lat99 = percentile(s.latency_ms, 99), lat999 = percentile(s.latency_ms, 99.9);
      const double latmax = s.latency_ms.empty() ? -1 : *std::max_element(s.latency_ms.begin(), s.latency_ms.end());
      const double svc50 = percentile(s.service_ms, 50), svc99 = percentile(s.service_ms, 99);
      const double svcmax = s.service_ms.empty() ? -1 : *std::max_element(s.service_ms.begin(), s.service_ms.end());
      std::snprintf(row, sizeof row,
                    "%s\"%s\":{\"count\":%llu,\"conn_errors\":%llu,\"statuses\":{%s},\"p50_ms\":%.3f,"
                    "\"p90_ms\":%.3f,\"p99_ms\":%.3f,\"p999_ms\":%.3f,\"max_ms\":%.3f,\"service_p50_ms\":%.3f,"
                    "\"service_p99_ms\":%.3f,\"service_max_ms\":%.3f}",
                    routes.empty() ? "" : ",", kRouteNames[static_cast<size_t>(r)],
                    static_cast<unsigned long long>(s.count), static_cast<unsigned long long>(s.conn_errors),
                    codes.c_str(), lat50, lat90, lat99, lat999, latmax, svc50, svc99, svcmax);
      routes += row;
    }
    std::string buckets;
    for (uint64_t n : per_10s_) buckets += (buckets.empty() ? "" : ",") + std::to_string(n);
    char head[512];
    std::snprintf(head, sizeof head,
                  "{\"target_rate\":%.1f,\"seconds\":%.3f,\"scheduled\":%llu,\"skipped\":%llu,\"completed\":%llu,"
                  "\"achieved_rate\":%.2f,\"reconnects\":%llu,\"submitted_ids\":%zu,",
                  rate_, duration_, static_cast<unsigned long long>(scheduled_),
                  static_cast<unsigned long long>(skipped_), static_cast<unsigned long long>(done),
                  static_cast<double>(done) / std::max(seconds_, 1e-9), static_cast<unsigned long long>(reconnects_),
                  own_.size());
    return std::string(head) + "\"conn_error_notes\":[" + error_notes_ + "],\"per_10s\":[" + buckets +
           "],\"routes\":{" + routes + "}}";
  }

 private:
  double elapsed() const { return std::chrono::duration<double>(Clock::now() - start_).count(); }

  Pending make_request(double due) {
    ++scheduled_;
    Pending p;
    p.due = due;
    int pick = static_cast<int>(rng_() % static_cast<uint64_t>(total_weight_));
    int r = 0;
    while (pick >= weights_[static_cast<size_t>(r)]) pick -= weights_[static_cast<size_t>(r++)];
    p.route = static_cast<Route>(r);
    return p;
  }

  // Targets are chosen when the request is sent, so that they see the newest ids.
  std::string build(Pending& p) {
    std::string line;
    std::string body;
    switch (p.route) {
      case kHealth:
        line = "GET /health";
        break;
      case kMetrics:
        line = "GET /metrics";
        break;
      case kWorkers:
        line = "GET /api/v1/workers/status";
        break;
      case kGet:
        if (ids.empty()) {
          p.route = kHealth;
          return build(p);
        }
        // The newest ids are the likeliest to be asked about.
        p.target = ids[ids.size() - 1 - std::min<size_t>(ids.size() - 1, rng_() % 1000)];
        line = "GET /api/v1/jobs/" + p.target;
        break;
      case kList:
        if (list_pages_ >= 5 || (list_pages_ > 0 && list_cursor_.empty())) {
          list_pages_ = 0;
          list_cursor_.clear();
          ++list_chains_;
        }
        line = "GET /api/v1/jobs?limit=20";
        if (list_chains_ % 2 == 1) line += "&status=queued";
        if (!list_cursor_.empty()) line += "&cursor=" + percent_encode(list_cursor_);
        ++list_pages_;
        break;
      case kSubmit: {
        const std::string n = std::to_string(submit_seq_++);
        body = "{\"input_url\":\"" + input_url + "\",\"preset\":\"" + preset + "\",\"output\":{\"storage\":\"" +
               storage + "\",\"path\":\"load/" + n + ".mp4\"}}";
        line = "POST /api/v1/jobs";
        break;
      }
      case kCancel:
        if (cancel_next_ < own_.size()) {
          p.target = own_[cancel_next_++];
        } else if (!own_.empty()) {
          p.target = own_[rng_() % own_.size()];
        } else {
          p.route = kHealth;
          return build(p);
        }
        line = "POST /api/v1/jobs/" + p.target + "/cancel";
        break;
      default:
        break;
    }
    std::string req = line + " HTTP/1.1\r\nHost: " + host_ + "\r\n";
    if (line.rfind("POST", 0) == 0) {
      req += "Content-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) + "\r\n";
    }
    return req + "\r\n" + body;
  }

  void open_conn(size_t i) {
    Conn& c = conns_[i];
    c = Conn{};
    c.fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c.fd < 0) return;
    int one = 1;
    setsockopt(c.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(c.fd, reinterpret_cast<sockaddr*>(&addr_), sizeof addr_) != 0 && errno != EINPROGRESS) {
      ::close(c.fd);
      c.fd = -1;
      return;
    }
    epoll_event ev{};
    ev.events = EPOLLOUT | EPOLLIN;
    ev.data.u64 = i;
    epoll_ctl(epoll_, EPOLL_CTL_ADD, c.fd, &ev);
  }

  void fail_conn(size_t i, const char* why) {
    Conn& c = conns_[i];
    if (c.busy) {
      ++stats_[c.req.route].conn_errors;
      ++stats_[c.req.route].count;
      if (error_notes_.size() < 20) {
        char note[160];
        std::snprintf(note, sizeof note, "%s\"%.3f s: %s %s after %.1f ms, %zu response bytes\"",
                      error_notes_.empty() ? "" : ",", elapsed(), kRouteNames[c.req.route], why,
                      (elapsed() - c.sent) * 1000, c.in.size());
        error_notes_ += note;
      }
    }
    epoll_ctl(epoll_, EPOLL_CTL_DEL, c.fd, nullptr);
    ::close(c.fd);
    c.fd = -1;
    c.busy = false;
    ++reconnects_;
  }

  void send_request(size_t i, Pending p) {
    Conn& c = conns_[i];
    c.out = build(p);
    c.out_off = 0;
    c.req = std::move(p);
    c.busy = true;
    c.sent = elapsed();
    c.in.clear();
    flush(i);
  }

  void flush(size_t i) {
    Conn& c = conns_[i];
    while (c.out_off < c.out.size()) {
      const ssize_t n = send(c.fd, c.out.data() + c.out_off, c.out.size() - c.out_off, MSG_NOSIGNAL);
      if (n < 0) {
        if (errno == EAGAIN) break;
        fail_conn(i, std::strerror(errno));
        return;
      }
      c.out_off += static_cast<size_t>(n);
    }
    epoll_event ev{};
    ev.events = c.out_off < c.out.size() ? (EPOLLIN | EPOLLOUT) : EPOLLIN;
    ev.data.u64 = i;
    epoll_ctl(epoll_, EPOLL_CTL_MOD, c.fd, &ev);
  }

  void poll(int wait_ms) {
    epoll_event events[256];
    const int n = epoll_wait(epoll_, events, 256, wait_ms);
    for (int k = 0; k < n; ++k) {
      const size_t i = events[k].data.u64;
      Conn& c = conns_[i];
      if (c.fd < 0) continue;
      if (!c.connected && (events[k].events & (EPOLLOUT | EPOLLERR | EPOLLHUP))) {
        int err = 0;
        socklen_t len = sizeof err;
        getsockopt(c.fd, SOL_SOCKET, SO_ERROR, &err, &len);
        if (err != 0) {
          fail_conn(i, std::strerror(err));
          continue;
        }
        c.connected = true;
        epoll_event ev{};
        ev.events = EPOLLIN;
        ev.data.u64 = i;
        epoll_ctl(epoll_, EPOLL_CTL_MOD, c.fd, &ev);
        continue;
      }
      if ((events[k].events & EPOLLOUT) && c.busy) flush(i);
      if (c.fd >= 0 && (events[k].events & (EPOLLIN | EPOLLHUP | EPOLLERR))) read_conn(i);
    }
  }

  void read_conn(size_t i) {
    Conn& c = conns_[i];
    char buf[65536];
    for (;;) {
      const ssize_t n = recv(c.fd, buf, sizeof buf, 0);
      if (n < 0) {
        if (errno == EAGAIN) break;
        fail_conn(i, std::strerror(errno));
        return;
      }
      if (n == 0) {  // closed by the server: an error only with a request in flight
        fail_conn(i, "closed by the server");
        return;
      }
      if (!c.busy) continue;  // nothing asked: ignore
      c.in.append(buf, static_cast<size_t>(n));
    }
    if (!c.busy) return;
    const auto head_end = c.in.find("\r\n\r\n");
    if (head_end == std::string::npos) return;
    size_t length = 0;
    bool close_after = false;
    std::string head = c.in.substr(0, head_end);
    for (auto& ch : head) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
    if (auto at = head.find("\r\ncontent-length:"); at != std::string::npos) {
      length = std::strtoull(head.c_str() + at + 17, nullptr, 10);
    }
    if (head.find("\r\nconnection: close") != std::string::npos) close_after = true;
    if (c.in.size() < head_end + 4 + length) return;
    const int status = std::atoi(c.in.c_str() + 9);
    const std::string_view body(c.in.data() + head_end + 4, length);
    const double now = elapsed();
    RouteStats& s = stats_[c.req.route];
    ++s.count;
    ++s.statuses[status];
    s.latency_ms.push_back(static_cast<float>((now - c.req.due) * 1000));
    s.service_ms.push_back(static_cast<float>((now - c.sent) * 1000));
    const auto bucket = static_cast<size_t>(now / 10);
    if (per_10s_.size() <= bucket) per_10s_.resize(bucket + 1);
    ++per_10s_[bucket];
    if (c.req.route == kSubmit && status == 202) {
      if (std::string id = json_string_field(body, "job_id"); !id.empty()) {
        own_.push_back(id);
        ids.push_back(id);
      }
    } else if (c.req.route == kList && status == 200) {
      list_cursor_ = json_string_field(body, "next_cursor");
    }
    c.busy = false;
    c.in.clear();
    if (close_after) {
      epoll_ctl(epoll_, EPOLL_CTL_DEL, c.fd, nullptr);
      ::close(c.fd);
      c.fd = -1;
      ++reconnects_;
    }
  }

  double rate_, seconds_;
  std::array<int, kRoutes> weights_;
  int total_weight_ = 0;
  std::vector<Conn> conns_;
  sockaddr_in addr_{};
  std::string host_;
  int epoll_ = -1;
  Clock::time_point start_;
  double duration_ = 0;
  std::deque<Pending> backlog_;
  std::mt19937_64 rng_{42};
  std::array<RouteStats, kRoutes> stats_;
  std::vector<uint64_t> per_10s_;
  std::vector<std::string> own_;
  size_t cancel_next_ = 0;
  size_t next_conn_ = 0;
  std::string error_notes_;  // the first few connection errors, as JSON strings
  uint64_t submit_seq_ = 0;
  std::string list_cursor_;
  int list_pages_ = 0;
  int list_chains_ = 0;
  uint64_t scheduled_ = 0, skipped_ = 0, reconnects_ = 0;
};

}  // namespace

int main(int argc, char** argv) {
  int port = 0, connections = 64;
  double rate = 1000, seconds = 60, max_behind = 5;
  std::string mix = "health=200,get=300,list=100,workers=100,metrics=50,submit=125,cancel=125";
  std::string ids, input_url, preset = "480p_h264", storage = "local";
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string key = argv[i];
    const std::string value = argv[i + 1];
    if (key == "--port")
      port = std::atoi(value.c_str());
    else if (key == "--rate")
      rate = std::atof(value.c_str());
    else if (key == "--seconds")
      seconds = std::atof(value.c_str());
    else if (key == "--connections")
      connections = std::atoi(value.c_str());
    else if (key == "--mix")
      mix = value;
    else if (key == "--ids")
      ids = value;
    else if (key == "--input-url")
      input_url = value;
    else if (key == "--preset")
      preset = value;
    else if (key == "--storage")
      storage = value;
    else if (key == "--max-behind")
      max_behind = std::atof(value.c_str());
  }
  std::array<int, kRoutes> weights{};
  size_t pos = 0;
  while (pos < mix.size()) {
    size_t end = mix.find(',', pos);
    if (end == std::string::npos) end = mix.size();
    const std::string item = mix.substr(pos, end - pos);
    const auto eq = item.find('=');
    bool known = false;
    for (int r = 0; r < kRoutes && eq != std::string::npos; ++r) {
      if (item.substr(0, eq) == kRouteNames[static_cast<size_t>(r)]) {
        weights[static_cast<size_t>(r)] = std::atoi(item.c_str() + eq + 1);
        known = true;
      }
    }
    if (!known) {
      std::fprintf(stderr, "unknown mix item: %s\n", item.c_str());
      return 2;
    }
    pos = end + 1;
  }
  int total = 0;
  for (int w : weights) total += w;
  if (port <= 0 || rate <= 0 || seconds <= 0 || connections <= 0 || total <= 0 ||
      (weights[kSubmit] > 0 && input_url.empty())) {
    std::fprintf(stderr,
                 "usage: load_mix --port P --rate R --seconds S [--connections C] [--mix SPEC] [--ids a,b] "
                 "[--input-url U] [--preset P] [--storage S] [--max-behind S]\n");
    return 2;
  }
  Generator gen(port, rate, seconds, connections, weights);
  gen.input_url = input_url;
  gen.preset = preset;
  gen.storage = storage;
  gen.max_behind = max_behind;
  for (size_t p = 0; p < ids.size();) {
    size_t end = ids.find(',', p);
    if (end == std::string::npos) end = ids.size();
    if (end > p) gen.ids.push_back(ids.substr(p, end - p));
    p = end + 1;
  }
  gen.run();
  std::printf("RESULT %s\n", gen.result_json().c_str());
  return 0;
}
