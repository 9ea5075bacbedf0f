// wake_floor: what a request/response over a unix socket costs on this host when the
// server does nothing but the query's time: the floor under recschedd's overhead
// (bench/overhead.sh), measured the same way, so that what the daemon adds can be told
// apart from what the host charges any server.
//
// Two processes over a socketpair, no library in between. Per request the server
// busy-waits the query's service time T (its "compute"), then answers 700 bytes; the
// client, like recsched-overhead, busy-waits T between requests (it computes the same
// query itself there) and then sends 400 bytes. Reported: the client's latency less T.
//   --server poll   the server spins on poll() between requests (a polling I/O thread);
//   --server block  it sleeps in read() (an I/O thread past its poll window): each
//                   request then wakes it, on the other vCPU while the client computes;
//   --client spin   the client spins for the answer (recsched-overhead --spin);
//   --client block  it sleeps in read();
//   --gap-ms G      the client sleeps G ms before each request instead of computing (5 q/s:
//                   200), and the request path (its write to the server's read) and the
//                   answer's path (the server's write to the client's read) are reported
//                   apart; both processes share CLOCK_MONOTONIC.
// Written by hand, not a library: the point is that nothing else runs.
#include <poll.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace {

constexpr size_t kRequestBytes = 400;   // a shared-memory request's JSON, about
constexpr size_t kAnswerBytes = 700;    // 164 scores and their header, about

int64_t now_ns() {
  timespec t{};
  clock_gettime(CLOCK_MONOTONIC, &t);
  return int64_t{t.tv_sec} * 1000000000 + t.tv_nsec;
}

void busy_for(int64_t ns) {
  const int64_t until = now_ns() + ns;
  volatile double x = 1;
  while (now_ns() < until) {
    for (int i = 0; i < 64; ++i) x = x * 1.0000001;
  }
}

void wait_readable(int fd) {
  pollfd p{fd, POLLIN, 0};
  while (::poll(&p, 1, 0) == 0) {
  }
}

// All n bytes through `io` (::read or ::write), retried on EINTR; false at an error or EOF.
template <class Buf, class Io>
bool all_of(int fd, Buf* buf, size_t n, Io io) {
  size_t done = 0;
  while (done < n) {
    const ssize_t k = io(fd, buf + done, n - done);
    if (k < 0 && errno == EINTR) continue;
    if (k <= 0) return false;
    done += static_cast<size_t>(k);
  }
  return true;
}

bool read_all(int fd, char* buf, size_t n) { return all_of(fd, buf, n, ::read); }
bool write_all(int fd, const char* buf, size_t n) { return all_of(fd, buf, n, ::write); }

double percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[static_cast<size_t>(p / 100 * static_cast<double>(v.size() - 1))];
}

// What the server tells the client about each request: when it had read it and when it
// began to write the answer.
struct Stamps {
  int64_t read_at;
  int64_t write_at;
};

// The server: read a request (its first 4 bytes are T in us), wait T, answer, and report
// its stamps on `stamps_fd`; until the client closes.
int serve(int fd, int stamps_fd, bool poll_first) {
  char buf[kAnswerBytes] = {};
  for (;;) {
    if (poll_first) wait_readable(fd);
    if (!read_all(fd, buf, kRequestBytes)) return 0;
    const int64_t read_at = now_ns();
    int32_t service_us = 0;
    std::memcpy(&service_us, buf, sizeof service_us);
    busy_for(int64_t{service_us} * 1000);
    const Stamps s{read_at, now_ns()};
    if (!write_all(fd, buf, kAnswerBytes)) return 1;
    if (!write_all(stamps_fd, reinterpret_cast<const char*>(&s), sizeof s)) return 1;
  }
}

constexpr const char* kUsage =
    "usage: recsched-wake-floor [--service-us 0,10,30,100,350,1400] [--server poll|block]\n"
    "                           [--client spin|block] [--gap-ms G] [--reps 400]\n"
    "A bare request/response over a unix socket between two processes, the server busy for\n"
    "each query's service time T: the client's latency less T, p50/p90/p99 (us). The floor\n"
    "under recschedd's overhead on this host (see the file's header).\n";

}  // namespace

int main(int argc, char** argv) {
  std::vector<int> services = {0, 10, 30, 100, 350, 1400};
  bool server_polls = true, client_spins = true;
  int gap_ms = 0, reps = 400;
  for (int i = 1; i < argc; ++i) {
    const std::string_view a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "recsched-wake-floor: %s needs a value\n%s", argv[i], kUsage);
        std::exit(2);
      }
      return argv[++i];
    };
    try {
      if (a == "--service-us") {
        services.clear();
        const std::string list = value();
        for (size_t from = 0; from <= list.size();) {
          const size_t comma = std::min(list.find(',', from), list.size());
          const int us = std::stoi(list.substr(from, comma - from));
          if (us < 0 || us > 1000000) throw std::invalid_argument("--service-us: 0 to 1000000");
          services.push_back(us);
          from = comma + 1;
        }
      } else if (a == "--server") {
        const std::string v = value();
        if (v != "poll" && v != "block") throw std::invalid_argument("--server: poll or block");
        server_polls = v == "poll";
      } else if (a == "--client") {
        const std::string v = value();
        if (v != "spin" && v != "block") throw std::invalid_argument("--client: spin or block");
        client_spins = v == "spin";
      } else if (a == "--gap-ms") {
        gap_ms = std::stoi(value());
        if (gap_ms < 0 || gap_ms > 10000) throw std::invalid_argument("--gap-ms: 0 to 10000");
      } else if (a == "--reps") {
        reps = std::stoi(value());
        if (reps < 10) throw std::invalid_argument("--reps: at least 10");
      } else if (a == "--help" || a == "-h") {
        std::fputs(kUsage, stdout);
        return 0;
      } else {
        throw std::invalid_argument("unknown argument " + std::string(a));
      }
    } catch (const std::exception& e) {
      std::fprintf(stderr, "recsched-wake-floor: %s\n%s", e.what(), kUsage);
      return 2;
    }
  }

  int sv[2], stamps[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0 || ::pipe(stamps) != 0) {
    std::perror("recsched-wake-floor: socketpair/pipe");
    return 1;
  }
  const pid_t pid = ::fork();
  if (pid < 0) {
    std::perror("recsched-wake-floor: fork");
    return 1;
  }
  if (pid == 0) {
    ::close(sv[0]);
    ::close(stamps[0]);
    return serve(sv[1], stamps[1], server_polls);
  }
  ::close(sv[1]);
  ::close(stamps[1]);
  const int fd = sv[0];

  const std::string between = gap_ms > 0
                                  ? "a " + std::to_string(gap_ms) + " ms sleep before each request"
                                  : "the client busy for T between requests";
  std::printf("server %s, client %s, %s; latency less the service time T, us\n",
              server_polls ? "polls" : "sleeps in read()",
              client_spins ? "spins for the answer" : "sleeps in read()", between.c_str());
  int rc = 0;
  char buf[kAnswerBytes] = {};
  for (const int service_us : services) {
    std::vector<double> over, request_path, answer_path;
    for (int r = -20; r < reps && rc == 0; ++r) {  // 20 warm-up requests
      if (gap_ms > 0) {
        ::usleep(static_cast<useconds_t>(gap_ms) * 1000);
      } else {
        busy_for(int64_t{service_us} * 1000);
      }
      std::memcpy(buf, &service_us, sizeof service_us);
      const int64_t t0 = now_ns();
      if (!write_all(fd, buf, kRequestBytes)) rc = 1;
      if (client_spins) wait_readable(fd);
      if (!read_all(fd, buf, kAnswerBytes)) rc = 1;
      const int64_t t1 = now_ns();
      Stamps s{};
      if (!read_all(stamps[0], reinterpret_cast<char*>(&s), sizeof s)) rc = 1;
      if (r < 0 || rc != 0) continue;
      over.push_back(static_cast<double>(t1 - t0) / 1e3 - service_us);
      request_path.push_back(static_cast<double>(s.read_at - t0) / 1e3);
      answer_path.push_back(static_cast<double>(t1 - s.write_at) / 1e3);
    }
    if (rc != 0) {
      std::fprintf(stderr, "recsched-wake-floor: the server went away\n");
      break;
    }
    std::printf("T %6d us: %7.1f / %7.1f / %7.1f (p50 / p90 / p99)", service_us,
                percentile(over, 50), percentile(over, 90), percentile(over, 99));
    if (gap_ms > 0) {
      std::printf("; request path p50 %.1f, answer path p50 %.1f", percentile(request_path, 50),
                  percentile(answer_path, 50));
    }
    std::printf("\n");
  }
  ::close(fd);
  int status = 0;
  ::waitpid(pid, &status, 0);
  return rc;
}
