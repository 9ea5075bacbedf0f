#include "daemon/agent_check.h"

#include <boost/asio.hpp>
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

  void accept() {
    acceptor.async_accept([this](boost::system::error_code ec, tcp::socket socket) {
      if (ec == asio::error::operation_aborted || !acceptor.is_open()) return;
      if (!ec) {
        auto s = std::make_shared<tcp::socket>(std::move(socket));
        auto line = std::make_shared<std::string>(reply());
        // Written whole, then closed: HAProxy reads until the close or the newline.
        asio::async_write(*s, asio::buffer(*line), [s, line](boost::system::error_code, size_t) {
          boost::system::error_code ignored;
          s->shutdown(tcp::socket::shutdown_both, ignored);
          s->close(ignored);
        });
      }
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
  });
  impl_->thread.join();
}

uint16_t AgentCheckServer::port() const {
  boost::system::error_code ec;
  return impl_->acceptor.local_endpoint(ec).port();
}

}  // namespace recsched::daemon
