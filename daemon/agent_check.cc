#include "daemon/agent_check.h"

#include <boost/asio.hpp>
#include <chrono>
#include <memory>
#include <thread>

namespace recsched::daemon {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

struct AgentCheckServer::Impl {
  asio::io_context io;
  tcp::acceptor acceptor{io};
  std::function<std::string()> reply;
  std::thread thread;

  asio::steady_timer retry{io};

  // One connection: the line written whole, our side shut, then what the agent sent
  // (agent-send) read and dropped until it closes, or for a second at most: closing a
  // socket with unread input would send a reset in place of the line's orderly end.
  struct Connection : std::enable_shared_from_this<Connection> {
    tcp::socket socket;
    asio::steady_timer deadline;
    std::string line;
    char sink[256];
    Connection(tcp::socket s, std::string l)
        : socket(std::move(s)), deadline(socket.get_executor()), line(std::move(l)) {}
    void start() {
      auto self = shared_from_this();
      deadline.expires_after(std::chrono::seconds(1));
      deadline.async_wait([self](boost::system::error_code ec) {
        if (!ec) self->close();
      });
      asio::async_write(socket, asio::buffer(line), [self](boost::system::error_code ec, size_t) {
        if (ec) return self->close();
        boost::system::error_code ignored;
        self->socket.shutdown(tcp::socket::shutdown_send, ignored);
        self->drain();
      });
    }
    void drain() {
      auto self = shared_from_this();
      socket.async_read_some(asio::buffer(sink), [self](boost::system::error_code ec, size_t) {
        if (ec) return self->close();  // the agent closed (or went away): done
        self->drain();
      });
    }
    void close() {
      boost::system::error_code ignored;
      deadline.cancel();
      socket.close(ignored);
    }
  };

  void accept() {
    acceptor.async_accept([this](boost::system::error_code ec, tcp::socket socket) {
      if (ec == asio::error::operation_aborted || !acceptor.is_open()) return;
      if (ec) {
        // Out of descriptors, say: try again shortly rather than spin.
        retry.expires_after(std::chrono::milliseconds(100));
        retry.async_wait([this](boost::system::error_code e) {
          if (!e && acceptor.is_open()) accept();
        });
        return;
      }
      std::make_shared<Connection>(std::move(socket), reply())->start();
      accept();
    });
  }
};

AgentCheckServer::AgentCheckServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Result<std::unique_ptr<AgentCheckServer>> AgentCheckServer::start(
    const std::string& host, uint16_t port, std::function<std::string()> reply) {
  auto impl = std::make_unique<Impl>();
  impl->reply = std::move(reply);
  boost::system::error_code ec;
  const asio::ip::address address = asio::ip::make_address(host, ec);
  if (ec) return unavailable("agent check: '" + host + "' is not an IP address");
  const tcp::endpoint endpoint(address, port);
  impl->acceptor.open(endpoint.protocol(), ec);
  if (!ec) impl->acceptor.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) impl->acceptor.bind(endpoint, ec);
  if (!ec) impl->acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) {
    return unavailable("agent check: cannot listen on " + host + ":" + std::to_string(port) +
                       ": " + ec.message());
  }
  impl->accept();
  Impl* raw = impl.get();
  impl->thread = std::thread([raw] { raw->io.run(); });
  return std::unique_ptr<AgentCheckServer>(new AgentCheckServer(std::move(impl)));
}

AgentCheckServer::~AgentCheckServer() {
  asio::post(impl_->io, [this] {
    boost::system::error_code ignored;
    impl_->acceptor.close(ignored);
    impl_->retry.cancel();
  });
  impl_->thread.join();
}

uint16_t AgentCheckServer::port() const {
  boost::system::error_code ec;
  return impl_->acceptor.local_endpoint(ec).port();
}

}  // namespace recsched::daemon
