// systemd's service notification protocol (sd_notify(3)), written by hand as the man page
// invites: newline-separated KEY=VALUE datagrams to the AF_UNIX socket in $NOTIFY_SOCKET,
// and the watchdog keep-alive. Depends on core and the standard library; no libsystemd.
#pragma once

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>

#include "core/status.h"

namespace recsched::daemon {

/// The environment a service manager hands a notify service.
struct NotifyEnvironment {
  std::string notify_socket;  ///< $NOTIFY_SOCKET: "/path" or "@abstract"; "" = not set
  std::string watchdog_usec;  ///< $WATCHDOG_USEC; "" = not set
  std::string watchdog_pid;   ///< $WATCHDOG_PID; "" = not set
  static NotifyEnvironment from_process();  ///< reads the three from getenv()
};

/// Sends sd_notify messages. Without $NOTIFY_SOCKET (not started by systemd) every send
/// is a successful no-op. Thread-safe: each message is one datagram on one socket.
class Notifier {
 public:
  /// kInvalidArgument if NOTIFY_SOCKET is set but is neither an absolute path nor an
  /// "@abstract" name of at most 107 bytes (e.g. systemd 254's "vsock:" form).
  static Result<Notifier> create(const NotifyEnvironment& env);
  Notifier(Notifier&& other) noexcept;
  Notifier& operator=(Notifier&& other) noexcept;
  Notifier(const Notifier&) = delete;
  Notifier& operator=(const Notifier&) = delete;
  ~Notifier();

  /// True when $NOTIFY_SOCKET was set.
  bool enabled() const { return fd_ >= 0; }
  /// Sends `state` ("READY=1", "STATUS=...\nX=Y") as one datagram. kUnavailable with the
  /// OS's reason if sendto fails (e.g. the manager's socket is gone).
  Status send(std::string_view state) const;

  Status ready() const { return send("READY=1"); }
  /// STATUS=`text`; newlines in `text` become spaces (one message, one status line).
  Status status(std::string_view text) const;
  /// RELOADING=1 with MONOTONIC_USEC (CLOCK_MONOTONIC, as systemd 253+ expects).
  Status reloading() const;
  Status stopping() const { return send("STOPPING=1"); }
  Status watchdog() const { return send("WATCHDOG=1"); }

  /// The keep-alive period: half of $WATCHDOG_USEC, when it is set to a positive number
  /// and $WATCHDOG_PID is absent or names this process; nullopt otherwise.
  std::optional<std::chrono::microseconds> watchdog_period() const { return watchdog_period_; }

 private:
  Notifier() = default;
  int fd_ = -1;
  std::string address_;  ///< sockaddr_un bytes (path or abstract), length included
  std::optional<std::chrono::microseconds> watchdog_period_;
};

/// Sends WATCHDOG=1 every `period` from its own thread, from construction until
/// destruction. It proves only that the process lives and its threads get scheduled
/// (a deadlocked or stopped daemon stops pinging); it does not probe the HTTP server.
/// `notifier` must outlive the pinger.
class WatchdogPinger {
 public:
  WatchdogPinger(const Notifier& notifier, std::chrono::microseconds period);
  ~WatchdogPinger();
  WatchdogPinger(const WatchdogPinger&) = delete;
  WatchdogPinger& operator=(const WatchdogPinger&) = delete;

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace recsched::daemon
