// send_floor: how long one thread needs to write one small frame to N
// loopback TCP sockets, and when the last of them has it: the floor under
// any SSE fan-out on this machine, measured now (bench/sse_fanout.py).
//
// A child process connects N sockets (SO_TIMESTAMPNS set) to a listener of
// the parent; the parent sends the same `--frame-bytes` frame to each, one
// send() per socket, `--rounds` times with `--gap-ms` between rounds. The
// child records the kernel arrival time of each frame on each socket. Two
// processes, so that each has its own open-file limit. With `--threads T`
// the sockets are split between T sending threads that start each round
// together (the floor of a server writing on T threads).
//
// Prints one line "RESULT {"count":N,"rounds":R,"send_loop_p50_ms":..,
// "last_arrival_p50_ms":..,"last_arrival_max_ms":..}" where last arrival is
// measured from the start of the round's send loop.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

namespace {

double now_epoch() {
  timespec ts{};
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) / 1e9;
}

double percentile(std::vector<double> v, double p) {
  if (v.empty()) return -1;
  std::sort(v.begin(), v.end());
  size_t k = static_cast<size_t>(p / 100.0 * static_cast<double>(v.size()) + 0.5);
  k = std::clamp<size_t>(k, 1, v.size()) - 1;
  return v[k];
}

bool raise_nofile(rlim_t want) {
  rlimit limit{};
  getrlimit(RLIMIT_NOFILE, &limit);
  if (limit.rlim_cur < want) {
    limit.rlim_cur = std::min(want, limit.rlim_max);
    setrlimit(RLIMIT_NOFILE, &limit);
  }
  return limit.rlim_cur >= want;
}

bool write_all(int fd, const void* data, size_t size) {
  const char* p = static_cast<const char*>(data);
  while (size > 0) {
    const ssize_t n = write(fd, p, size);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    p += n;
    size -= static_cast<size_t>(n);
  }
  return true;
}

bool read_all(int fd, void* data, size_t size) {
  char* p = static_cast<char*>(data);
  while (size > 0) {
    const ssize_t n = read(fd, p, size);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    p += n;
    size -= static_cast<size_t>(n);
  }
  return true;
}

// The child: N clients; for each round, the latest arrival over all of them.
int receive(const sockaddr_in& addr, int count, int rounds, size_t frame_bytes, int ready_fd, int result_fd) {
  std::vector<int> fds;
  const int epoll = epoll_create1(0);
  for (int i = 0; i < count; ++i) {
    const int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0 || connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0) {
      std::fprintf(stderr, "connect %d: %s\n", i, std::strerror(errno));
      return 1;
    }
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_TIMESTAMPNS, &one, sizeof one);
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u32 = static_cast<uint32_t>(i);
    epoll_ctl(epoll, EPOLL_CTL_ADD, fd, &ev);
    fds.push_back(fd);
  }
  const char ok = 1;
  if (!write_all(ready_fd, &ok, 1)) return 1;
  std::vector<size_t> got(count, 0);
  std::vector<double> last(rounds, 0);
  const size_t total = frame_bytes * static_cast<size_t>(rounds);
  size_t done = 0;
  std::vector<char> buf(frame_bytes * 4);
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(timespec))];
  while (done < static_cast<size_t>(count)) {
    epoll_event events[1024];
    const int n = epoll_wait(epoll, events, 1024, 30000);
    if (n <= 0) return 1;
    for (int e = 0; e < n; ++e) {
      const uint32_t i = events[e].data.u32;
      iovec iov{buf.data(), buf.size()};
      msghdr msg{};
      msg.msg_iov = &iov;
      msg.msg_iovlen = 1;
      msg.msg_control = control;
      msg.msg_controllen = sizeof control;
      const ssize_t r = recvmsg(fds[i], &msg, MSG_DONTWAIT);
      if (r <= 0) continue;
      double arrival = now_epoch();
      for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SO_TIMESTAMPNS) {
          timespec ts{};
          std::memcpy(&ts, CMSG_DATA(c), sizeof ts);
          arrival = static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) / 1e9;
        }
      }
      // Rounds are gapped, so a read holds bytes of one round (the latest one).
      got[i] += static_cast<size_t>(r);
      const size_t round = (got[i] - 1) / frame_bytes;
      last[round] = std::max(last[round], arrival);
      if (got[i] == total) ++done;
    }
  }
  return write_all(result_fd, last.data(), last.size() * sizeof(double)) ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  int count = 10000, rounds = 20, gap_ms = 200, threads = 1;
  size_t frame_bytes = 300;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string key = argv[i];
    const int value = std::atoi(argv[i + 1]);
    if (key == "--count") count = value;
    if (key == "--rounds") rounds = value;
    if (key == "--gap-ms") gap_ms = value;
    if (key == "--frame-bytes") frame_bytes = static_cast<size_t>(value);
    if (key == "--threads") threads = std::max(1, value);
  }
  if (!raise_nofile(static_cast<rlim_t>(count) + 64)) {
    std::fprintf(stderr, "open-file limit too low for %d sockets\n", count);
    return 2;
  }
  const int listener = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  if (bind(listener, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 || listen(listener, 4096) != 0 ||
      getsockname(listener, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    std::fprintf(stderr, "listen: %s\n", std::strerror(errno));
    return 1;
  }
  int ready[2], result[2];
  if (pipe(ready) != 0 || pipe(result) != 0) return 1;
  const pid_t child = fork();
  if (child == 0) {
    close(listener);
    _exit(receive(addr, count, rounds, frame_bytes, ready[1], result[1]));
  }
  std::vector<int> peers;
  while (static_cast<int>(peers.size()) < count) {
    const int fd = accept(listener, nullptr, nullptr);
    if (fd < 0) {
      std::fprintf(stderr, "accept: %s\n", std::strerror(errno));
      kill(child, SIGKILL);
      return 1;
    }
    peers.push_back(fd);
  }
  char ok = 0;
  if (!read_all(ready[0], &ok, 1)) return 1;
  const std::string frame(frame_bytes, 'x');
  std::vector<double> started(rounds), loop_ms(rounds);
  bool send_failed = false;
  const auto send_share = [&](int t) {
    for (size_t i = static_cast<size_t>(t); i < peers.size(); i += static_cast<size_t>(threads)) {
      if (send(peers[i], frame.data(), frame.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(frame.size())) {
        send_failed = true;
        return;
      }
    }
  };
  for (int r = 0; r < rounds; ++r) {
    started[r] = now_epoch();
    if (threads == 1) {
      send_share(0);
    } else {
      std::vector<std::thread> senders;
      for (int t = 0; t < threads; ++t) senders.emplace_back(send_share, t);
      for (auto& sender : senders) sender.join();
    }
    if (send_failed) return 1;
    loop_ms[r] = (now_epoch() - started[r]) * 1000;
    usleep(static_cast<useconds_t>(gap_ms) * 1000);
  }
  std::vector<double> last(rounds);
  if (!read_all(result[0], last.data(), last.size() * sizeof(double))) return 1;
  int status = 0;
  waitpid(child, &status, 0);
  std::vector<double> arrival_ms;
  for (int r = 0; r < rounds; ++r) arrival_ms.push_back((last[r] - started[r]) * 1000);
  std::printf(
      "RESULT {\"count\":%d,\"rounds\":%d,\"threads\":%d,\"frame_bytes\":%zu,\"send_loop_p50_ms\":%.3f,"
      "\"last_arrival_p50_ms\":%.3f,\"last_arrival_max_ms\":%.3f}\n",
      count, rounds, threads, frame_bytes, percentile(loop_ms, 50), percentile(arrival_ms, 50),
      *std::max_element(arrival_ms.begin(), arrival_ms.end()));
  return 0;
}
