// The HTTP/1.1 server of recschedd (Boost.Beast): a unix socket and a TCP listener,
// keep-alive, a request body limit, read and idle timeouts, a bounded number of
// connections. Sessions only do I/O; what a request means is the handler's business.
// Boost stays out of this header.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/status.h"

namespace recsched::daemon {

struct HttpRequest {
  std::string method;                          ///< "GET", "POST", ...
  std::string target;                          ///< path and query, "/v1/placements?limit=5"
  std::map<std::string, std::string> headers;  ///< names lower-cased
  std::string body;
  bool via_unix_socket = false;  ///< the unix socket is trusted for mutations
  std::optional<uint32_t> peer_uid;  ///< the unix socket's client process's uid (SO_PEERCRED)
};

struct HttpResponse {
  unsigned status = 200;
  std::string content_type = "application/json";
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;  ///< extra headers
};

/// Called once per request, from an I/O thread; must not block. `respond` must be called
/// exactly once, from any thread, now or later (the connection waits for it); it writes
/// what the socket takes at once on the calling thread (a non-blocking send, no wait),
/// and leaves the rest and the next read to an I/O thread.
using Responder = std::function<void(HttpResponse)>;
using Handler = std::function<void(HttpRequest, Responder)>;

/// Limits on what a client may send and how slowly; each breach is answered (413, 431,
/// 408, 503) and the connection closed, except an idle keep-alive, which just closes.
struct ServerOptions {
  uint64_t max_body_bytes = 64u << 20;
  uint32_t max_header_bytes = 32 * 1024;  ///< request line and header fields together
  uint32_t max_headers = 100;             ///< header fields per request
  uint32_t max_connections = 256;
  uint32_t header_timeout_ms = 5000;  ///< from a request's first byte to its headers' end
  uint32_t read_timeout_ms = 10000;   ///< from a request's first byte to its body's end
  uint32_t idle_timeout_ms = 60000;   ///< a kept-alive connection may wait this long
  int io_threads = 2;  ///< each runs its own io_context; a connection stays on one
  /// The most an I/O thread with nothing ready polls its sockets before it sleeps
  /// (PollWindow adapts it below this): a request that arrives meanwhile is read without a
  /// wake-up. 0: sleep at once.
  uint32_t idle_poll_us = 200;

  friend bool operator==(const ServerOptions&, const ServerOptions&) = default;
};

/// How long an I/O thread polls before it sleeps, below ServerOptions::idle_poll_us,
/// adapted as Linux's guest halt-polling adapts its own (cpuidle's haltpoll governor):
/// grown (from kStart, doubling) after a sleep that a longer poll would have cut short,
/// halved (to 0 below kStart) after one longer than the most it may poll. Back-to-back
/// traffic is then read by polling, and sparse traffic (gaps past the most) costs none:
/// a poll that keeps its core busy is paid only where it finds work. Only sleeps that a
/// poll might have cut short teach it: not one taken while the poll gate was closed.
class PollWindow {
 public:
  static constexpr std::chrono::nanoseconds kStart = std::chrono::microseconds(10);

  explicit PollWindow(std::chrono::microseconds most) : most_(most) {}
  /// How long to poll now (0: sleep at once).
  std::chrono::nanoseconds get() const { return window_; }
  /// After polling get() in vain: the thread then slept this long before work came.
  void slept(std::chrono::nanoseconds how_long) {
    if (window_ + how_long <= most_) {
      window_ = std::min<std::chrono::nanoseconds>(most_, window_.count() > 0 ? 2 * window_
                                                                              : kStart);
    } else {
      window_ /= 2;
      if (window_ < kStart) window_ = std::chrono::nanoseconds(0);
    }
  }

 private:
  std::chrono::nanoseconds most_;
  std::chrono::nanoseconds window_{0};
};

/// What the I/O threads did each time they ran out of work, with polling on
/// (ServerOptions::idle_poll_us > 0): found more by polling (a wake-up saved), or slept.
/// Shared, so that a reader (recschedd's /v1/stats) may outlive the server.
struct IoCounters {
  std::atomic<uint64_t> polled{0};  ///< polls that found work before the thread slept
  std::atomic<uint64_t> slept{0};   ///< sleeps until work came (with polling off: not counted)
};

/// Lifecycle: create -> listen_*() -> start() -> stop() (stops accepting, lets in-flight
/// requests finish and be answered, then closes) -> destruction.
class HttpServer {
 public:
  static std::unique_ptr<HttpServer> create(ServerOptions options, Handler handler);
  ~HttpServer();

  /// Binds TCP; port 0 picks a free one (see tcp_port()). kUnavailable with the OS's reason.
  Status listen_tcp(const std::string& host, uint16_t port);
  /// Binds a unix socket at `path`, replacing a stale socket file; mode 0660, owned by
  /// group `gid` when given (kUnavailable with the OS's reason if that chown fails).
  Status listen_unix(const std::string& path, std::optional<uint32_t> gid = std::nullopt);
  uint16_t tcp_port() const;

  /// Before start(): the I/O threads poll (ServerOptions::idle_poll_us) only while `gate`
  /// says so, asked as each poll begins (thread-safe, cheap). Without one they always may.
  void set_poll_gate(std::function<bool()> gate);

  void start();
  /// Stops accepting, waits up to `grace_ms` for in-flight requests to be answered, closes.
  void stop(uint32_t grace_ms = 30000);

  /// Draining (before stop()): every answer from now on closes its connection, so a
  /// balancer's pooled connections end cleanly, each after an answer.
  void set_draining();

  /// Connections open now (for metrics).
  uint32_t connections() const;
  /// Times an I/O thread found work while polling before sleep (ServerOptions::idle_poll_us).
  uint64_t polled() const;
  /// The I/O threads' counters (polled() among them), for as long as the caller holds them.
  std::shared_ptr<const IoCounters> io_counters() const;

  struct Impl;  ///< the Asio state; opaque outside http_server.cc

 private:
  explicit HttpServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace recsched::daemon
