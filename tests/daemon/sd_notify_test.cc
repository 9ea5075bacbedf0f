// sd_notify: the Notifier against datagram sockets this test owns (a path and an abstract
// name), the watchdog rules; and the recschedd binary under a fake service manager:
// READY=1 only once the API answers, WATCHDOG=1 at half of WATCHDOG_USEC, RELOADING=1
// then READY=1 on SIGHUP, STOPPING=1 on SIGTERM.
#include "core/device.h"
#include "daemon/sd_notify.h"

#include <doctest/doctest.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <chrono>
#include <cstddef>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace recsched::daemon {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

// The service manager's end: a datagram socket at a path or an abstract name.
class ManagerSocket {
 public:
  explicit ManagerSocket(const std::string& where) : where_(where) {
    fd_ = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    REQUIRE(fd_ >= 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    REQUIRE(where.size() < sizeof(addr.sun_path));
    std::memcpy(addr.sun_path, where.data(), where.size());
    socklen_t len = offsetof(sockaddr_un, sun_path) + where.size();
    if (where[0] == '@') {
      addr.sun_path[0] = '\0';
    } else {
      ::unlink(where.c_str());
      len += 1;
    }
    REQUIRE_MESSAGE(::bind(fd_, reinterpret_cast<sockaddr*>(&addr), len) == 0,
                    std::strerror(errno));
  }
  ~ManagerSocket() {
    ::close(fd_);
    if (where_[0] == '/') ::unlink(where_.c_str());
  }

  /// The next datagram, or nullopt after `timeout`.
  std::optional<std::string> receive(std::chrono::milliseconds timeout) const {
    pollfd p{fd_, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(timeout.count())) != 1) return std::nullopt;
    char buf[4096];
    const ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
    if (n < 0) return std::nullopt;
    return std::string(buf, size_t(n));
  }

 private:
  std::string where_;
  int fd_ = -1;
};

NotifyEnvironment env_of(std::string socket, std::string usec = "", std::string pid = "") {
  NotifyEnvironment e;
  e.notify_socket = std::move(socket);
  e.watchdog_usec = std::move(usec);
  e.watchdog_pid = std::move(pid);
  return e;
}

std::string temp_path(const std::string& name) {
  return (fs::temp_directory_path() / (name + "_" + std::to_string(getpid()))).string();
}

TEST_CASE("without NOTIFY_SOCKET the notifier is off and every send succeeds") {
  auto n = Notifier::create(NotifyEnvironment{});
  REQUIRE(n.has_value());
  CHECK_FALSE(n->enabled());
  CHECK(n->ready().is_ok());
  CHECK(n->status("x").is_ok());
  CHECK_FALSE(n->watchdog_period().has_value());
}

TEST_CASE("messages reach a socket at a path and at an abstract name") {
  for (const std::string& where : std::vector<std::string>{
           temp_path("sd_notify_path.sock"), "@recsched_sd_notify_" + std::to_string(getpid())}) {
    CAPTURE(where);
    ManagerSocket manager(where);
    auto n = Notifier::create(env_of(where));
    REQUIRE_MESSAGE(n.has_value(), n.status().to_string());
    CHECK(n->enabled());
    REQUIRE(n->ready().is_ok());
    CHECK(manager.receive(2s) == "READY=1");
    // One status line per message: newlines would start new assignments.
    REQUIRE(n->status("profiling rmc1\n(1/8)").is_ok());
    CHECK(manager.receive(2s) == "STATUS=profiling rmc1 (1/8)");
    REQUIRE(n->stopping().is_ok());
    CHECK(manager.receive(2s) == "STOPPING=1");
  }
}

TEST_CASE("RELOADING=1 carries MONOTONIC_USEC, the CLOCK_MONOTONIC time it was sent") {
  const std::string where = temp_path("sd_notify_reload.sock");
  ManagerSocket manager(where);
  auto n = Notifier::create(env_of(where));
  REQUIRE(n.has_value());
  timespec before{}, after{};
  clock_gettime(CLOCK_MONOTONIC, &before);
  REQUIRE(n->reloading().is_ok());
  clock_gettime(CLOCK_MONOTONIC, &after);
  const std::optional<std::string> got = manager.receive(2s);
  REQUIRE(got.has_value());
  const std::string prefix = "RELOADING=1\nMONOTONIC_USEC=";
  REQUIRE(got->rfind(prefix, 0) == 0);
  const uint64_t usec = std::stoull(got->substr(prefix.size()));
  auto micros = [](const timespec& t) { return uint64_t(t.tv_sec) * 1000000 + t.tv_nsec / 1000; };
  CHECK(usec >= micros(before));
  CHECK(usec <= micros(after));
}

TEST_CASE("a NOTIFY_SOCKET that is neither a path nor an abstract name is refused") {
  const std::vector<std::string> bad_sockets = {"relative/path", "vsock:2:1234", "@",
                                                "/" + std::string(200, 'x')};
  for (const std::string& bad : bad_sockets) {
    CAPTURE(bad);
    auto n = Notifier::create(env_of(bad));
    REQUIRE_FALSE(n.has_value());
    CHECK(n.status().code() == StatusCode::kInvalidArgument);
  }
}

TEST_CASE("sending to a manager socket that is gone fails with the OS's reason") {
  auto n = Notifier::create(env_of(temp_path("sd_notify_nobody.sock")));
  REQUIRE(n.has_value());
  const Status st = n->ready();
  CHECK(st.code() == StatusCode::kUnavailable);
  CHECK(st.message().find("sd_notify") != std::string::npos);
}

TEST_CASE("the watchdog period is half of WATCHDOG_USEC, for this process only") {
  const std::string sock = temp_path("sd_notify_wd.sock");
  const std::string me = std::to_string(getpid());
  struct Case {
    const char* usec;
    std::string pid;
    std::optional<std::chrono::microseconds> want;
  };
  const std::vector<Case> cases = {
      {"", "", std::nullopt},        {"200000", "", 100000us},
      {"200000", me, 100000us},      {"200000", "1", std::nullopt},  // another process's watchdog
      {"200000", "x", std::nullopt}, {"0", "", std::nullopt},
      {"-5", "", std::nullopt},      {"12abc", "", std::nullopt},
  };
  for (const Case& c : cases) {
    CAPTURE(c.usec);
    CAPTURE(c.pid);
    auto n = Notifier::create(env_of(sock, c.usec, c.pid));
    REQUIRE(n.has_value());
    CHECK(n->watchdog_period() == c.want);
  }
}

TEST_CASE("the watchdog pinger pings from its start until it is destroyed") {
  const std::string where = temp_path("sd_notify_ping.sock");
  ManagerSocket manager(where);
  auto n = Notifier::create(env_of(where));
  REQUIRE(n.has_value());
  {
    WatchdogPinger pinger(*n, 10ms);
    for (int i = 0; i < 3; ++i) CHECK(manager.receive(5s) == "WATCHDOG=1");
  }
  // Drain what was sent before destruction finished; then nothing more comes.
  while (manager.receive(50ms)) {
  }
  CHECK_FALSE(manager.receive(100ms).has_value());
}

#if defined(RECSCHED_DAEMON_BINARY)

std::string golden(const std::string& name) {
  return std::string(RECSCHED_SOURCE_DIR) + "/tests/fixtures/golden/" + name;
}

// GET on the unix socket, one attempt: the status, or 0 if the connection failed.
unsigned get_status(const std::string& socket, const std::string& target) {
  namespace asio = boost::asio;
  namespace http = boost::beast::http;
  try {
    asio::io_context io;
    asio::local::stream_protocol::socket s(io);
    s.connect(asio::local::stream_protocol::endpoint(socket));
    http::request<http::string_body> req(http::verb::get, target, 11);
    req.set(http::field::host, "localhost");
    http::write(s, req);
    boost::beast::flat_buffer buf;
    http::response<http::string_body> res;
    http::read(s, buf, res);
    return res.result_int();
  } catch (const std::exception&) {
    return 0;
  }
}

struct Message {
  Clock::time_point at;
  std::string text;
};

// recschedd with NOTIFY_SOCKET (and WATCHDOG_USEC) pointing at a socket this test owns.
TEST_CASE(
    "recschedd under a service manager: STATUS while starting, READY=1 once the API "
    "answers, watchdog pings, RELOADING=1 on SIGHUP, STOPPING=1 on SIGTERM") {
  const fs::path dir = temp_path("recschedd_notify");
  fs::remove_all(dir);
  fs::create_directories(dir);
  const std::string api = (dir / "api.sock").string();
  const std::string notify = (dir / "notify.sock").string();
  const nlohmann::json cfg = {{"listen", {{"socket", api}, {"tcp", ""}}},
                              {"models", {golden("dot.model.json")}},
                              {"state_dir", (dir / "state").string()},
                              {"gpus", false},
                              {"profile", {{"quick", true}}}};
  std::ofstream(dir / "cfg.json") << cfg.dump();
  ManagerSocket manager(notify);
  constexpr uint64_t kWatchdogUsec = 200000;  // pings every 100 ms
  const std::string log = (dir / "log.txt").string();
  const pid_t pid = fork();
  if (pid == 0) {
    if (freopen(log.c_str(), "w", stderr) == nullptr) _exit(126);
    setenv("NOTIFY_SOCKET", notify.c_str(), 1);
    setenv("WATCHDOG_USEC", std::to_string(kWatchdogUsec).c_str(), 1);
    unsetenv("WATCHDOG_PID");
    execl(RECSCHED_DAEMON_BINARY, "recschedd", "--config", (dir / "cfg.json").c_str(), nullptr);
    _exit(127);
  }
  REQUIRE(pid > 0);
  auto log_text = [&] {
    std::ifstream in(log);
    return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  };

  // Start-up: everything up to READY=1.
  std::vector<Message> before_ready;
  bool ready = false;
  const auto deadline = Clock::now() + 120s;
  while (!ready && Clock::now() < deadline) {
    auto m = manager.receive(1s);
    if (!m) continue;
    if (*m == "READY=1") {
      ready = true;
      // The instant READY=1 arrives the API must answer, on the first try.
      CHECK(get_status(api, "/v2/health/ready") == 200);
    } else {
      before_ready.push_back({Clock::now(), *m});
    }
  }
  REQUIRE_MESSAGE(ready, log_text());
  std::vector<std::string> statuses;
  for (const Message& m : before_ready) {
    if (m.text.rfind("STATUS=", 0) == 0) statuses.push_back(m.text);
  }
  CAPTURE(log_text());
  REQUIRE(statuses.size() >= 3);
  CHECK(statuses.front().rfind("STATUS=reading ", 0) == 0);
  // Service::create's progress lines, forwarded (their wording is the service's).
  auto has = [&](const std::string& prefix) {
    return std::any_of(statuses.begin(), statuses.end(),
                       [&](const std::string& s) { return s.rfind(prefix, 0) == 0; });
  };
  CHECK(has("STATUS=discovering topology"));
  CHECK(has("STATUS=loading golden_dot"));
  CHECK(has("STATUS=profiling golden_dot"));

  // The watchdog: WATCHDOG_USEC/2 apart. The period the daemon chose is in its log; the
  // pings themselves may come late on a loaded or sanitized build but never early, so only
  // a lower bound on their gap is checked (the period's arithmetic is tested exactly above).
  std::vector<Clock::time_point> pings;
  while (pings.size() < 11 && Clock::now() < deadline) {
    auto m = manager.receive(2s);
    REQUIRE(m.has_value());
    if (*m == "WATCHDOG=1") pings.push_back(Clock::now());
  }
  REQUIRE(pings.size() == 11);
  const double mean_ms =
      std::chrono::duration<double, std::milli>(pings.back() - pings.front()).count() / 10;
  CHECK(mean_ms > 50);
  CHECK(log_text().find("watchdog: WATCHDOG=1 every 100 ms") != std::string::npos);

  // SIGHUP: RELOADING=1 (with MONOTONIC_USEC), then READY=1 again.
  REQUIRE(kill(pid, SIGHUP) == 0);
  std::vector<std::string> after_hup;
  while (Clock::now() < deadline) {
    auto m = manager.receive(5s);
    REQUIRE(m.has_value());
    if (*m == "WATCHDOG=1") continue;
    after_hup.push_back(*m);
    if (*m == "READY=1") break;
  }
  REQUIRE(after_hup.size() >= 2);
  CHECK(after_hup.front().rfind("RELOADING=1\nMONOTONIC_USEC=", 0) == 0);
  CHECK(after_hup.back() == "READY=1");
  CHECK(get_status(api, "/v2/health/ready") == 200);

  // SIGTERM: STOPPING=1, then a clean exit.
  REQUIRE(kill(pid, SIGTERM) == 0);
  bool stopping = false;
  while (!stopping && Clock::now() < deadline) {
    auto m = manager.receive(5s);
    REQUIRE(m.has_value());
    stopping = *m == "STOPPING=1";
  }
  CHECK(stopping);
  int status = 0;
  REQUIRE(waitpid(pid, &status, 0) == pid);
  CHECK(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
  fs::remove_all(dir);
}

TEST_CASE("recschedd that cannot start says why in STATUS= and never sends READY=1") {
  const fs::path dir = temp_path("recschedd_notify_bad");
  fs::remove_all(dir);
  fs::create_directories(dir);
  std::ofstream(dir / "cfg.json") << R"({"models": [], "colour": 1})";
  const std::string notify = (dir / "notify.sock").string();
  ManagerSocket manager(notify);
  const pid_t pid = fork();
  if (pid == 0) {
    if (freopen("/dev/null", "w", stderr) == nullptr) _exit(126);
    setenv("NOTIFY_SOCKET", notify.c_str(), 1);
    unsetenv("WATCHDOG_USEC");
    execl(RECSCHED_DAEMON_BINARY, "recschedd", "--config", (dir / "cfg.json").c_str(), nullptr);
    _exit(127);
  }
  REQUIRE(pid > 0);
  int status = 0;
  REQUIRE(waitpid(pid, &status, 0) == pid);
  CHECK(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 1);
  std::vector<std::string> got;
  while (auto m = manager.receive(100ms)) got.push_back(*m);
  REQUIRE_FALSE(got.empty());
  CHECK(std::find(got.begin(), got.end(), "READY=1") == got.end());
  CHECK(got.back().rfind("STATUS=failed: config ", 0) == 0);
  fs::remove_all(dir);
}

#endif

}  // namespace
}  // namespace recsched::daemon
