// recschedctl's HTTP/1.1 client (Boost.Beast, kept out of this header): one request per
// connection to recschedd over its unix socket or over TCP. Depends on core only.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

#include "core/status.h"

namespace recsched::cli {

/// Where recschedd listens, as the operator named it.
struct Endpoint {
  enum class Kind : uint8_t { kUnixSocket, kTcp };
  Kind kind = Kind::kUnixSocket;
  std::string socket_path = "/run/recsched/recschedd.sock";  ///< kUnixSocket
  std::string host;   ///< kTcp: a name or an address (IPv6 without brackets)
  uint16_t port = 0;  ///< kTcp
  std::string token;  ///< kTcp: sent as "Authorization: Bearer TOKEN" when non-empty

  /// "/run/recsched/recschedd.sock" or "http://127.0.0.1:8000".
  std::string describe() const;
};

/// Parses "http://HOST:PORT" (an optional trailing "/"; IPv6 as "[::1]"; the port may be
/// left out: 80). kInvalidArgument naming what is wrong, e.g. for https:// (not spoken).
Result<Endpoint> parse_url(std::string_view url);

struct HttpReply {
  unsigned status = 0;
  std::string reason;  ///< "Bad Request"
  std::string body;
};

/// Sends one request and reads the whole reply within `timeout`. Every failure is one
/// line phrased for an operator, with what to do:
///   kUnavailable: cannot connect (no socket file, nothing listening: "is recschedd
///                 running?"), permission denied on the socket (who may use it), the
///                 timeout, or a broken reply.
/// Any HTTP status is a successful reply: the caller judges it.
Result<HttpReply> http_request(const Endpoint& endpoint, std::string_view method,
                               std::string_view target, std::string_view body,
                               std::chrono::milliseconds timeout);

}  // namespace recsched::cli
