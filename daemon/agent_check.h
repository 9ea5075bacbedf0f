// The listener HAProxy's agent check connects to (fleet.agent_check): on each connection
// it writes one line, the answer of `reply` at that moment (see agent_reply in fleet.h),
// and closes; what the agent sends (agent-send) is not read. One thread of its own, so a
// busy HTTP server does not delay the balancer's view of this host. Boost stays out of
// this header.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "core/status.h"

namespace recsched::daemon {

class AgentCheckServer {
 public:
  /// Binds host:port (port 0: a free one, see port()) and starts answering. kUnavailable
  /// with the OS's reason if it cannot bind.
  static Result<std::unique_ptr<AgentCheckServer>> start(const std::string& host, uint16_t port,
                                                         std::function<std::string()> reply);
  ~AgentCheckServer();  ///< stops: closes the listener, joins the thread

  uint16_t port() const;

  struct Impl;

 private:
  explicit AgentCheckServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace recsched::daemon
