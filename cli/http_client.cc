#include "cli/http_client.h"

#include <grp.h>
#include <sys/stat.h>

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <charconv>
#include <optional>

namespace recsched::cli {

namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using boost::system::error_code;

constexpr uint64_t kMaxReplyBytes = uint64_t{256} << 20;

std::string seconds_text(std::chrono::milliseconds t) {
  const double s = double(t.count()) / 1000.0;
  std::string text = std::to_string(s);
  text.erase(text.find_last_not_of('0') + 1);
  if (!text.empty() && text.back() == '.') text.pop_back();
  return text + " s";
}

// "group 'recsched'" for the socket file's group, or "" when it cannot be told.
std::string socket_group(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return "";
  const group* g = ::getgrgid(st.st_gid);
  return g == nullptr ? "group " + std::to_string(st.st_gid)
                      : "group '" + std::string(g->gr_name) + "'";
}

// The one line an operator reads when the connection fails, with what to do about it.
std::string connect_failure(const Endpoint& ep, const error_code& ec) {
  const std::string where = ep.describe();
  if (ep.kind == Endpoint::Kind::kUnixSocket) {
    if (ec == asio::error::no_permission || ec == asio::error::access_denied) {
      const std::string group = socket_group(ep.socket_path);
      return "permission denied on " + where + ": run as root or as a member of " +
             (group.empty() ? "the socket's group" : group) +
             " (or use --url with the daemon's TCP listener)";
    }
    if (ec == boost::system::errc::no_such_file_or_directory) {
      return "cannot connect to " + where +
             ": no such socket (is recschedd running? try 'systemctl status recschedd', or "
             "--socket PATH for another socket)";
    }
    if (ec == asio::error::connection_refused) {
      return "cannot connect to " + where +
             ": nothing is listening (is recschedd running? try 'systemctl status recschedd')";
    }
  } else if (ec == asio::error::connection_refused) {
    return "cannot connect to " + where +
           ": connection refused (is recschedd running and listening there? see listen.tcp in "
           "its config)";
  } else if (ec == asio::error::host_not_found || ec == asio::error::host_not_found_try_again) {
    return "cannot resolve the host of " + where + " (check --url)";
  }
  return "cannot connect to " + where + ": " + ec.message();
}

// One request/response exchange on a connected stream; the caller runs the io_context.
template <class Stream>
struct Exchange {
  Stream& stream;
  http::request<http::string_body> request;
  http::response_parser<http::string_body> parser;
  beast::flat_buffer buffer;
  std::optional<error_code> result;
  const char* stage = "sending the request";

  explicit Exchange(Stream& s) : stream(s) { parser.body_limit(kMaxReplyBytes); }

  void start() {
    http::async_write(stream, request, [this](error_code ec, size_t) {
      if (ec) {
        result = ec;
        return;
      }
      stage = "reading the reply";
      http::async_read(stream, buffer, parser, [this](error_code ec2, size_t) { result = ec2; });
    });
  }
};

}  // namespace

std::string Endpoint::describe() const {
  if (kind == Kind::kUnixSocket) return socket_path;
  const bool v6 = host.find(':') != std::string::npos;
  return "http://" + (v6 ? "[" + host + "]" : host) + ":" + std::to_string(port);
}

Result<Endpoint> parse_url(std::string_view url) {
  const std::string text(url);
  constexpr std::string_view kScheme = "http://";
  if (url.rfind("https://", 0) == 0) {
    return invalid_argument("--url " + text +
                            ": recschedd speaks plain HTTP; use http:// (behind TLS, use the "
                            "unix socket on the host)");
  }
  if (url.rfind(kScheme, 0) != 0) {
    return invalid_argument("--url " + text + ": expected http://HOST:PORT");
  }
  std::string_view rest = url.substr(kScheme.size());
  if (!rest.empty() && rest.back() == '/') rest.remove_suffix(1);
  if (rest.find('/') != std::string_view::npos) {
    return invalid_argument("--url " + text + ": give only http://HOST:PORT, no path");
  }
  Endpoint ep;
  ep.kind = Endpoint::Kind::kTcp;
  std::string_view port_text;
  if (!rest.empty() && rest.front() == '[') {
    const size_t close = rest.find(']');
    if (close == std::string_view::npos) {
      return invalid_argument("--url " + text + ": unclosed '[' in an IPv6 address");
    }
    ep.host = std::string(rest.substr(1, close - 1));
    std::string_view after = rest.substr(close + 1);
    if (!after.empty()) {
      if (after.front() != ':')
        return invalid_argument("--url " + text + ": expected ':PORT' after ']'");
      port_text = after.substr(1);
    }
  } else {
    const size_t colon = rest.rfind(':');
    if (colon != std::string_view::npos && rest.find(':') != colon) {
      return invalid_argument("--url " + text + ": write an IPv6 address in brackets, [::1]:8000");
    }
    ep.host = std::string(rest.substr(0, colon));
    if (colon != std::string_view::npos) {
      port_text = rest.substr(colon + 1);
      if (port_text.empty()) return invalid_argument("--url " + text + ": empty port");
    }
  }
  if (ep.host.empty()) return invalid_argument("--url " + text + ": no host");
  ep.port = 80;
  if (!port_text.empty()) {
    unsigned port = 0;
    auto [p, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
    if (ec != std::errc() || p != port_text.data() + port_text.size() || port == 0 ||
        port > 65535) {
      return invalid_argument("--url " + text + ": the port must be a number in 1-65535");
    }
    ep.port = static_cast<uint16_t>(port);
  }
  return ep;
}

Result<HttpReply> http_request(const Endpoint& ep, std::string_view method, std::string_view target,
                               std::string_view body, std::chrono::milliseconds timeout) {
  asio::io_context io;
  http::request<http::string_body> req(http::string_to_verb(method), std::string(target), 11);
  req.set(http::field::host, ep.kind == Endpoint::Kind::kTcp ? ep.host : "localhost");
  req.set(http::field::user_agent, "recschedctl");
  req.set(http::field::accept, "application/json");
  if (!body.empty()) {
    req.set(http::field::content_type, "application/json");
    req.body() = std::string(body);
  }
  if (ep.kind == Endpoint::Kind::kTcp && !ep.token.empty()) {
    req.set(http::field::authorization, "Bearer " + ep.token);
  }
  req.prepare_payload();

  std::optional<error_code> connected;
  asio::local::stream_protocol::socket unix_socket(io);
  asio::ip::tcp::socket tcp_socket(io);
  asio::ip::tcp::resolver resolver(io);
  if (ep.kind == Endpoint::Kind::kUnixSocket) {
    unix_socket.async_connect(asio::local::stream_protocol::endpoint(ep.socket_path),
                              [&](error_code ec) { connected = ec; });
  } else {
    resolver.async_resolve(
        ep.host, std::to_string(ep.port),
        [&](error_code ec, asio::ip::tcp::resolver::results_type results) {
          if (ec) {
            connected = ec;
            return;
          }
          asio::async_connect(
              tcp_socket, results,
              [&](error_code ec2, const asio::ip::tcp::endpoint&) { connected = ec2; });
        });
  }
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  auto timed_out = [&] {
    return unavailable("no reply from " + ep.describe() + " within " + seconds_text(timeout) +
                       " (is recschedd overloaded or stuck? --timeout SECONDS waits longer)");
  };
  io.run_until(deadline);
  if (!connected) return timed_out();
  if (*connected) return unavailable(connect_failure(ep, *connected));

  auto finish = [&](auto& exchange) -> Result<HttpReply> {
    exchange.request = std::move(req);
    exchange.start();
    io.restart();
    io.run_until(deadline);
    if (!exchange.result) return timed_out();
    if (*exchange.result) {
      return unavailable("recschedd at " + ep.describe() + " broke off while " + exchange.stage +
                         ": " + exchange.result->message());
    }
    auto& res = exchange.parser.get();
    return HttpReply{res.result_int(), std::string(res.reason()), std::move(res.body())};
  };
  if (ep.kind == Endpoint::Kind::kUnixSocket) {
    Exchange<asio::local::stream_protocol::socket> exchange(unix_socket);
    return finish(exchange);
  }
  Exchange<asio::ip::tcp::socket> exchange(tcp_socket);
  return finish(exchange);
}

}  // namespace recsched::cli
