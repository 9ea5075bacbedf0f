#include "daemon/sd_notify.h"

#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstddef>
#include <cstdlib>
#include <cstring>

namespace recsched::daemon {

namespace {

std::optional<uint64_t> parse_unsigned(const std::string& text) {
  uint64_t v = 0;
  const char* end = text.data() + text.size();
  auto [p, ec] = std::from_chars(text.data(), end, v);
  if (text.empty() || ec != std::errc() || p != end) return std::nullopt;
  return v;
}

// sd_watchdog_enabled(3): WATCHDOG_USEC a positive number; WATCHDOG_PID, when set, this
// process (systemd sets it so that children forked by the service do not ping).
std::optional<std::chrono::microseconds> watchdog_period_of(const NotifyEnvironment& env) {
  if (env.watchdog_usec.empty()) return std::nullopt;
  const std::optional<uint64_t> usec = parse_unsigned(env.watchdog_usec);
  if (!usec || *usec == 0) return std::nullopt;
  if (!env.watchdog_pid.empty()) {
    const std::optional<uint64_t> pid = parse_unsigned(env.watchdog_pid);
    if (!pid || *pid != static_cast<uint64_t>(getpid())) return std::nullopt;
  }
  return std::chrono::microseconds(*usec / 2);
}

}  // namespace

NotifyEnvironment NotifyEnvironment::from_process() {
  auto get = [](const char* name) {
    const char* v = std::getenv(name);
    return std::string(v == nullptr ? "" : v);
  };
  return {get("NOTIFY_SOCKET"), get("WATCHDOG_USEC"), get("WATCHDOG_PID")};
}

Result<Notifier> Notifier::create(const NotifyEnvironment& env) {
  Notifier n;
  if (env.notify_socket.empty()) return n;
  const std::string& where = env.notify_socket;
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if ((where[0] != '/' && where[0] != '@') || where.size() < 2 ||
      where.size() > sizeof(addr.sun_path) - 1) {
    return invalid_argument("NOTIFY_SOCKET '" + where +
                            "' is not an absolute path or an @abstract socket name of at most " +
                            std::to_string(sizeof(addr.sun_path) - 1) + " bytes");
  }
  std::memcpy(addr.sun_path, where.data(), where.size());
  // An abstract socket's name starts with a NUL byte and has no terminating one: its
  // length is the address length.
  socklen_t len = offsetof(sockaddr_un, sun_path) + where.size();
  if (where[0] == '@') {
    addr.sun_path[0] = '\0';
  } else {
    len += 1;  // include the path's NUL, as systemd's own client does
  }
  n.fd_ = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (n.fd_ < 0) return unavailable(std::string("socket(AF_UNIX): ") + std::strerror(errno));
  n.address_.assign(reinterpret_cast<const char*>(&addr), len);
  n.watchdog_period_ = watchdog_period_of(env);
  return n;
}

Notifier::Notifier(Notifier&& other) noexcept
    : fd_(other.fd_),
      address_(std::move(other.address_)),
      watchdog_period_(other.watchdog_period_) {
  other.fd_ = -1;
}

Notifier& Notifier::operator=(Notifier&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = other.fd_;
    address_ = std::move(other.address_);
    watchdog_period_ = other.watchdog_period_;
    other.fd_ = -1;
  }
  return *this;
}

Notifier::~Notifier() {
  if (fd_ >= 0) ::close(fd_);
}

Status Notifier::send(std::string_view state) const {
  if (fd_ < 0) return Status::ok();
  const ssize_t sent =
      ::sendto(fd_, state.data(), state.size(), MSG_NOSIGNAL,
               reinterpret_cast<const sockaddr*>(address_.data()), address_.size());
  if (sent < 0) return unavailable(std::string("sd_notify: ") + std::strerror(errno));
  if (static_cast<size_t>(sent) != state.size()) return unavailable("sd_notify: short send");
  return Status::ok();
}

Status Notifier::status(std::string_view text) const {
  std::string msg = "STATUS=";
  for (char c : text) msg += (c == '\n' || c == '\r') ? ' ' : c;
  return send(msg);
}

Status Notifier::reloading() const {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  const uint64_t usec = uint64_t(ts.tv_sec) * 1000000 + uint64_t(ts.tv_nsec) / 1000;
  return send("RELOADING=1\nMONOTONIC_USEC=" + std::to_string(usec));
}

WatchdogPinger::WatchdogPinger(const Notifier& notifier, std::chrono::microseconds period) {
  thread_ = std::thread([this, &notifier, period] {
    std::unique_lock<std::mutex> lock(mu_);
    while (!stop_) {
      // A failed ping is not worth a log line every few seconds: systemd will say it.
      (void)notifier.watchdog();
      cv_.wait_for(lock, period, [this] { return stop_; });
    }
  });
}

WatchdogPinger::~WatchdogPinger() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

}  // namespace recsched::daemon
