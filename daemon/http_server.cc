#include "daemon/http_server.h"

#include <pthread.h>
#include <sched.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <optional>
#include <thread>

namespace recsched::daemon {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using local = asio::local::stream_protocol;

}  // namespace

// What stop() needs of a session of any stream type.
struct SessionBase {
  virtual ~SessionBase() = default;
  /// Closes the connection from its own executor (a kept-alive or half-read one).
  virtual void close_soon() = 0;
  /// Closes the connection now; only once no I/O thread runs.
  virtual void close_now() = 0;
};

struct HttpServer::Impl {
  ServerOptions options;
  Handler handler;
  // One io_context per I/O thread, each connection on one of them (round-robin as they
  // are accepted): a connection's reads and writes stay on one thread. One io_context run
  // by two threads handed each connection's events between them through its scheduler's
  // lock: the HTTP floor (a keep-alive GET) took 42 us p50, 25 us on one thread.
  std::vector<std::unique_ptr<asio::io_context>> ios;
  std::vector<asio::executor_work_guard<asio::io_context::executor_type>> work;
  size_t next_io = 0;  // the context the next accepted connection goes to (accepts are serial)
  std::unique_ptr<tcp::acceptor> tcp_acceptor;
  std::unique_ptr<local::acceptor> unix_acceptor;
  std::string unix_path;
  std::vector<std::thread> threads;
  std::atomic<uint32_t> open{0};
  std::atomic<uint32_t> pending{0};  // requests handed to the handler, not yet answered
  std::atomic<bool> stopping{false};
  std::atomic<bool> draining{false};  // answers close their connections
  std::atomic<bool> stopped{false};  // I/O threads joined: no request is handed on any more
  std::shared_ptr<IoCounters> counters = std::make_shared<IoCounters>();  // io_counters()
  std::function<bool()> poll_gate;    // set before start(); see set_poll_gate()
  std::mutex mu;
  std::condition_variable idle;
  std::vector<std::weak_ptr<SessionBase>> sessions;  // under mu

  std::vector<std::shared_ptr<SessionBase>> live_sessions() {
    std::lock_guard<std::mutex> lock(mu);
    std::vector<std::shared_ptr<SessionBase>> out;
    for (const auto& w : sessions) {
      if (auto s = w.lock()) out.push_back(std::move(s));
    }
    return out;
  }

  void track(std::weak_ptr<SessionBase> s) {
    std::lock_guard<std::mutex> lock(mu);
    std::erase_if(sessions, [](const auto& w) { return w.expired(); });
    sessions.push_back(std::move(s));
  }

  // Wakes stop(); taking the lock first means no wake-up falls between its check and wait.
  void notify() {
    { std::lock_guard<std::mutex> lock(mu); }
    idle.notify_all();
  }

  template <class Protocol>
  void accept(asio::basic_socket_acceptor<Protocol>& acceptor, bool is_unix);

  // An I/O thread's loop: runs `io` until it stops. With options.idle_poll_us, a thread
  // that has run out of ready work polls its sockets (epoll with no timeout, through
  // poll()) for its PollWindow before it blocks in run_one(): a request, or a completion
  // posted by a worker, that arrives meanwhile is taken at once. On a host whose idle
  // cores halt (a VM without guest halt-polling: the one of docs/benchmarks.md), a
  // wake-up through the scheduler costs 50-70 us, more than a 1-item query's own work.
  // Between polls the thread yields, so a runnable thread on its core goes first; but a
  // polling core does not look idle to the kernel, which then places other threads'
  // wake-ups behind busy ones: recschedd's gate (set_poll_gate) allows a poll only while
  // no query is in flight, when its workers sleep. The trade Seastar's reactor makes with
  // --idle-poll-time-us (200 us), with the window adapted so that sparse traffic does not
  // pay it.
  void run_io(asio::io_context& io) {
    if (options.idle_poll_us == 0) {
      io.run();
      return;
    }
    using steady = std::chrono::steady_clock;
    PollWindow window(std::chrono::microseconds(options.idle_poll_us));
    while (!io.stopped()) {
      if (io.poll() > 0) continue;
      bool found = false;
      // A sleep that begins with the gate closed waits out a query in flight, not a gap
      // between requests: it must not teach the window (a 1 ms query after every request
      // halved it each time, so that 100 us gaps between them were never polled).
      const bool may_poll = !poll_gate || poll_gate();
      const auto until = steady::now() + (may_poll ? window.get() : steady::duration(0));
      while (!io.stopped() && steady::now() < until) {
        ::sched_yield();
        if (io.poll() > 0) {
          found = true;
          break;
        }
      }
      if (found) {
        counters->polled.fetch_add(1, std::memory_order_relaxed);
        continue;
      }
      const auto t0 = steady::now();
      io.run_one();
      counters->slept.fetch_add(1, std::memory_order_relaxed);
      if (may_poll) window.slept(steady::now() - t0);
    }
  }
};

namespace {

// One connection: read a request, hand it to the handler, write its answer, repeat while
// kept alive. All I/O errors end the session through fail().
template <class Stream>
class Session : public SessionBase, public std::enable_shared_from_this<Session<Stream>> {
 public:
  void close_now() override { close(); }
  void close_soon() override {
    asio::post(stream_.get_executor(), [self = this->shared_from_this()] { self->close(); });
  }

  Session(typename Stream::socket_type socket, HttpServer::Impl& server, bool is_unix)
      : stream_(std::move(socket)),
        server_(server),
        is_unix_(is_unix),
        timer_(stream_.get_executor()) {
    if (is_unix_) {
      // Who is at the other end, as the kernel saw it at connect(): for routes that act
      // for a local user (shared memory).
      ucred cred{};
      socklen_t len = sizeof cred;
      if (::getsockopt(stream_.socket().native_handle(), SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0) {
        peer_uid_ = cred.uid;
      }
    }
  }

  // Called by the acceptor, on the acceptor's thread: counted and tracked (so stop() can
  // close it) at once, and everything else on the session's own strand, where close_soon()
  // runs too. (Starting the first read here raced a stop()'s close on another thread.)
  void start() {
    ++server_.open;
    server_.track(this->weak_from_this());
    asio::dispatch(stream_.get_executor(), [self = this->shared_from_this()] { self->run(); });
  }

 private:
  void run() {
    if (server_.open > server_.options.max_connections) {
      reject(503, "too many connections (limit " + std::to_string(server_.options.max_connections) +
                      ")");
      return;
    }
    read(server_.options.idle_timeout_ms);
  }

 public:
  ~Session() {
    --server_.open;
    server_.notify();
  }

 private:
  // The first byte of a request may take idle_timeout; from then on the headers must
  // arrive within header_timeout and the whole request within read_timeout, so a slow
  // client cannot hold a connection (or the server's memory) for long.
  void read(uint32_t idle_ms) {
    parser_.emplace();
    parser_->body_limit(server_.options.max_body_bytes);
    parser_->header_limit(server_.options.max_header_bytes);
    // Room for 64 KiB reads: Beast sizes each read by the buffer's free capacity, and an
    // empty flat_buffer took a 5 MiB body in small reads: 76.7 ms, now 4.4 ms (unix socket).
    buffer_.reserve(1 << 16);
    if (buffer_.size() > 0) {
      // A pipelined request already here: parsed from the executor, not from this stack
      // (the answer before it may have been written right here, and so on, request after
      // request: a client pipelining thousands would overflow the stack).
      return asio::post(stream_.get_executor(),
                        [self = this->shared_from_this()] { self->read_header(); });
    }
    stream_.expires_after(std::chrono::milliseconds(idle_ms));
    stream_.async_read_some(
        buffer_.prepare(1 << 16),
        [self = this->shared_from_this()](beast::error_code ec, size_t n) {
          if (ec) return self->on_error(ec);
          self->buffer_.commit(n);
          self->read_header();
        });
  }

  // The header and body deadlines: a timer that cancels the read rather than the stream's
  // own timeout, which would close the socket before the 408 could be written.
  // A deadline that fired just as its read completed must not cancel what comes next (the
  // response's write): each arming has a number, and only the current one may fire.
  void arm(std::chrono::steady_clock::duration after) {
    timed_out_ = false;
    const uint64_t armed = ++deadline_;
    timer_.expires_after(after);
    timer_.async_wait([self = this->shared_from_this(), armed](beast::error_code ec) {
      if (ec || armed != self->deadline_) return;  // disarmed
      self->timed_out_ = true;
      beast::error_code ignored;
      self->stream_.socket().cancel(ignored);
    });
  }

  void read_header() {
    first_byte_ = std::chrono::steady_clock::now();
    stream_.expires_never();
    // A header already whole in the buffer (a small request arrives in one read) is parsed
    // here: no deadline armed, no read started. Beast's parser takes a header in one piece
    // or none (need_more, nothing consumed), and checks the header limits as it parses.
    if (buffer_.size() > 0) {
      beast::error_code ec;
      const size_t n = parser_->put(buffer_.data(), ec);
      if (ec != http::error::need_more) {
        buffer_.consume(n);
        if (ec) return on_error(ec);
        return on_header({}, 0);
      }
    }
    arm(std::chrono::milliseconds(
        std::min(server_.options.header_timeout_ms, server_.options.read_timeout_ms)));
    http::async_read_header(
        stream_, buffer_, *parser_,
        beast::bind_front_handler(&Session::on_header, this->shared_from_this()));
  }

  void on_header(beast::error_code ec, size_t) {
    if (ec) return on_error(ec);
    const auto& msg = parser_->get();
    if (static_cast<size_t>(std::distance(msg.begin(), msg.end())) > server_.options.max_headers) {
      return reject(431, "more than " + std::to_string(server_.options.max_headers) +
                             " header fields");
    }
    // A body of known length is read straight into the string the handler gets, in reads
    // as large as the socket has data for: Beast's body reader reads 64 KiB at a time into
    // buffer_ and copies each into the body (a 5 MB request: 80 reads and a second copy).
    // Beast has checked the length against max_body_bytes with the header. A chunked body
    // (no length) takes Beast's way. A request with no body, or its body all buffered,
    // needs no deadline.
    const auto length = parser_->content_length();
    const bool sized = length && !parser_->chunked();
    if (parser_->is_done() || (sized && buffer_.size() >= *length)) {
      disarm();
      if (sized) return read_body(static_cast<size_t>(*length));
      return deliver(std::move(parser_->get().body()));
    }
    const auto left = std::chrono::milliseconds(server_.options.read_timeout_ms) -
                      (std::chrono::steady_clock::now() - first_byte_);
    if (left <= std::chrono::milliseconds(0)) return reject(408, "request not received in time");
    arm(left);
    if (sized) return read_body(static_cast<size_t>(*length));
    http::async_read(stream_, buffer_, *parser_,
                     beast::bind_front_handler(&Session::on_read, this->shared_from_this()));
  }

  void read_body(size_t length) {
    body_.resize(length);
    // What came in with the header, then the rest from the socket.
    const size_t have = std::min(buffer_.size(), length);
    if (have > 0) {
      std::memcpy(body_.data(), static_cast<const char*>(buffer_.data().data()), have);
      buffer_.consume(have);
    }
    if (have == length) return on_body({}, 0);
    // Each read asks for all that is still missing. Asio's own conditions (transfer_all,
    // transfer_exactly) ask for at most 64 KiB a read: RMC1's 929 KB request took 15
    // reads, each through the reactor, handed between the I/O threads.
    const size_t missing = length - have;
    asio::async_read(stream_, asio::buffer(body_.data() + have, missing),
                     [missing](const beast::error_code& ec, size_t done) -> size_t {
                       return ec ? 0 : missing - done;
                     },
                     beast::bind_front_handler(&Session::on_body, this->shared_from_this()));
  }

  void on_body(beast::error_code ec, size_t) {
    if (ec) return on_error(ec);
    disarm();
    deliver(std::move(body_));
  }

  // An error while reading: answer what HTTP lets us answer, drop the rest.
  void disarm() {
    ++deadline_;
    timer_.cancel();
  }

  void on_error(beast::error_code ec) {
    disarm();
    if (timed_out_ && ec == asio::error::operation_aborted) {
      return reject(408, "request not received in time");
    }
    if (ec == http::error::body_limit) {
      return reject(
          413, "request body exceeds " + std::to_string(server_.options.max_body_bytes) + " bytes");
    }
    if (ec == http::error::header_limit) {
      return reject(431, "request headers exceed " +
                             std::to_string(server_.options.max_header_bytes) + " bytes");
    }
    if (ec == beast::error::timeout) return fail(ec);  // idle keep-alive: just close
    if (ec == http::error::bad_target || ec == http::error::bad_method ||
        ec == http::error::bad_version || ec == http::error::bad_field ||
        ec == http::error::bad_value || ec == http::error::bad_content_length ||
        ec == http::error::bad_chunk) {
      return reject(400, "malformed HTTP request: " + ec.message());
    }
    fail(ec);
  }

  void on_read(beast::error_code ec, size_t) {
    if (ec) return on_error(ec);
    disarm();
    deliver(std::move(parser_->get().body()));
  }

  // A whole request is in (its header in parser_, its body given): to the handler.
  void deliver(std::string body) {
    if (server_.stopped) return close();  // stop() is sweeping up: too late to serve
    auto& msg = parser_->get();
    keep_alive_ = msg.keep_alive();
    version_ = msg.version();
    HttpRequest req;
    req.method = std::string(msg.method_string());
    req.target = std::string(msg.target());
    for (const auto& field : msg) {
      std::string name(field.name_string());
      std::transform(name.begin(), name.end(), name.begin(), ::tolower);
      req.headers[name] = std::string(field.value());
    }
    req.body = std::move(body);
    req.via_unix_socket = is_unix_;
    req.peer_uid = peer_uid_;
    stream_.expires_never();  // the handler may take as long as the query does
    ++server_.pending;
    server_.handler(std::move(req), [self = this->shared_from_this()](HttpResponse res) {
      self->write(std::move(res));
    });
  }

  // An answer on its way out: the serialized header and the body, and how much is sent.
  struct Outgoing {
    std::string head;
    std::string body;
    size_t sent = 0;
    bool failed = false;  // the socket refused it (the peer is gone)
    bool closing = false;
    size_t size() const { return head.size() + body.size(); }
  };

  // Writes the answer from the thread that has it, usually the worker that ran the query:
  // one non-blocking sendmsg, so the client does not wait for an I/O thread to wake (a
  // cross-CPU wake-up costs ~20 us on a VM). What the socket does not take at once is
  // written asynchronously on the session's executor, where the next read starts too.
  // While an answer is owed the session has no other I/O outstanding, so only close()
  // can touch the socket meanwhile: socket_mu_ keeps the two apart (and a send from
  // reaching a descriptor number that close() freed and an accept reused).
  void write(HttpResponse r) {
    auto out = std::make_shared<Outgoing>();
    out->closing = !keep_alive_ || server_.stopping || server_.draining;
    http::response<http::string_body> res(static_cast<http::status>(r.status), version_);
    res.set(http::field::server, "recschedd");
    res.set(http::field::content_type, r.content_type);
    for (const auto& [k, v] : r.headers) res.set(k, v);
    res.keep_alive(!out->closing);
    res.body() = std::move(r.body);
    res.prepare_payload();
    http::response_serializer<http::string_body> sr(res);
    sr.split(true);
    beast::error_code ec;
    while (!ec && !sr.is_header_done()) {
      sr.next(ec, [&](beast::error_code&, const auto& buffers) {
        for (const auto b : beast::buffers_range_ref(buffers)) {
          out->head.append(static_cast<const char*>(b.data()), b.size());
        }
        sr.consume(beast::buffer_bytes(buffers));
      });
    }
    out->body = std::move(res.body());
    {
      std::lock_guard<std::mutex> lock(socket_mu_);
      if (!closed_) send_now(*out);
    }
    asio::dispatch(stream_.get_executor(),
                   [self = this->shared_from_this(), out] { self->after_send(out); });
  }

  // As much of `out` as the socket takes now, without blocking; socket_mu_ held.
  void send_now(Outgoing& out) {
    const int fd = stream_.socket().native_handle();
    while (out.sent < out.size()) {
      iovec iov[2];
      int n = 0;
      if (out.sent < out.head.size()) {
        iov[n++] = {out.head.data() + out.sent, out.head.size() - out.sent};
      }
      const size_t body_from = out.sent > out.head.size() ? out.sent - out.head.size() : 0;
      if (body_from < out.body.size()) {
        iov[n++] = {out.body.data() + body_from, out.body.size() - body_from};
      }
      msghdr msg{};
      msg.msg_iov = iov;
      msg.msg_iovlen = static_cast<size_t>(n);
      const ssize_t k = ::sendmsg(fd, &msg, MSG_DONTWAIT | MSG_NOSIGNAL);
      if (k >= 0) {
        out.sent += static_cast<size_t>(k);
      } else if (errno != EINTR) {
        out.failed = errno != EAGAIN && errno != EWOULDBLOCK;
        return;
      }
    }
  }

  // On the session's executor: the rest of the answer, then the next request.
  void after_send(const std::shared_ptr<Outgoing>& out) {
    bool gone;
    {
      std::lock_guard<std::mutex> lock(socket_mu_);
      gone = closed_ || out->failed;
    }
    if (gone || out->sent == out->size()) {
      return on_write(gone ? beast::error_code(asio::error::broken_pipe) : beast::error_code(),
                      out->closing);
    }
    std::array<asio::const_buffer, 2> rest{};
    if (out->sent < out->head.size()) {
      rest[0] = asio::buffer(out->head) + out->sent;
      rest[1] = asio::buffer(out->body);
    } else {
      rest[1] = asio::buffer(out->body) + (out->sent - out->head.size());
    }
    stream_.expires_after(std::chrono::milliseconds(server_.options.read_timeout_ms));
    asio::async_write(stream_, rest,
                      [self = this->shared_from_this(), out](beast::error_code ec, size_t) {
                        self->on_write(ec, out->closing);
                      });
  }

  void on_write(beast::error_code ec, bool closing) {
    if (--server_.pending == 0) server_.notify();
    if (ec) return fail(ec);
    if (closing) return linger_close();
    read(server_.options.idle_timeout_ms);
  }

  // Closes after the response: stop sending, then read and drop what the client still
  // sends (an oversized body, say) for up to a second. Closing with unread data would
  // reset the connection and could destroy the response before the client reads it.
  void linger_close() {
    beast::error_code ignored;
    stream_.socket().shutdown(Stream::socket_type::shutdown_send, ignored);
    stream_.expires_after(std::chrono::seconds(1));
    drain();
  }

  void drain() {
    stream_.async_read_some(asio::buffer(drain_buf_),
                            [self = this->shared_from_this()](beast::error_code ec, size_t) {
                              if (ec) return self->close();
                              self->drain();
                            });
  }

  // Answers an error the HTTP layer found, then closes: the stream's state is unknown.
  void reject(unsigned status, const std::string& why) {
    keep_alive_ = false;
    ++server_.pending;
    HttpResponse r;
    r.status = status;
    r.body = std::string("{\"error\": \"") + why + "\"}";
    write(std::move(r));
  }

  void fail(beast::error_code) { close(); }  // peer gone or timed out: nothing to answer

  void close() {
    disarm();
    std::lock_guard<std::mutex> lock(socket_mu_);
    closed_ = true;
    beast::error_code ignored;
    stream_.socket().shutdown(Stream::socket_type::shutdown_send, ignored);
    stream_.socket().close(ignored);
  }

  Stream stream_;
  HttpServer::Impl& server_;
  bool is_unix_;
  std::optional<uint32_t> peer_uid_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  std::string body_;  // a body of known length, read straight in (read_body())
  bool keep_alive_ = true;
  bool timed_out_ = false;  // the header or body deadline cancelled the read
  uint64_t deadline_ = 0;   // the current arming's number (see arm())
  std::chrono::steady_clock::time_point first_byte_;
  asio::steady_timer timer_;
  unsigned version_ = 11;
  char drain_buf_[4096];
  std::mutex socket_mu_;  // a write from another thread vs close() (see write())
  bool closed_ = false;   // under socket_mu_
};

}  // namespace

template <class Protocol>
void HttpServer::Impl::accept(asio::basic_socket_acceptor<Protocol>& acceptor, bool is_unix) {
  asio::io_context& io = *ios[next_io++ % ios.size()];
  acceptor.async_accept(
      asio::make_strand(io),
      [this, &acceptor, is_unix](beast::error_code ec, typename Protocol::socket socket) {
        if (stopping) return;
        if (!ec) {
          using Stream = beast::basic_stream<Protocol, asio::any_io_executor>;
          std::make_shared<Session<Stream>>(std::move(socket), *this, is_unix)->start();
        }
        accept(acceptor, is_unix);
      });
}

HttpServer::HttpServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

std::unique_ptr<HttpServer> HttpServer::create(ServerOptions options, Handler handler) {
  auto impl = std::make_unique<Impl>();
  impl->options = options;
  for (int i = 0; i < std::max(1, options.io_threads); ++i) {
    impl->ios.push_back(std::make_unique<asio::io_context>(1));
    impl->work.emplace_back(impl->ios.back()->get_executor());
  }
  impl->handler = std::move(handler);
  return std::unique_ptr<HttpServer>(new HttpServer(std::move(impl)));
}

HttpServer::~HttpServer() { stop(0); }

Status HttpServer::listen_tcp(const std::string& host, uint16_t port) {
  beast::error_code ec;
  const auto address = asio::ip::make_address(host, ec);
  if (ec) return invalid_argument("bad listen address '" + host + "': " + ec.message());
  // Each acceptor has its own strand: its accept handler (which re-arms it) and stop()'s
  // close run on it, never at once on two I/O threads (TSan found that race).
  auto acceptor = std::make_unique<tcp::acceptor>(asio::make_strand(*impl_->ios[0]));
  const tcp::endpoint endpoint(address, port);
  acceptor->open(endpoint.protocol(), ec);
  if (!ec) acceptor->set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) acceptor->bind(endpoint, ec);
  if (!ec) acceptor->listen(asio::socket_base::max_listen_connections, ec);
  if (ec) {
    return unavailable("cannot listen on " + host + ":" + std::to_string(port) + ": " +
                       ec.message());
  }
  impl_->tcp_acceptor = std::move(acceptor);
  return Status::ok();
}

Status HttpServer::listen_unix(const std::string& path, std::optional<uint32_t> gid) {
  // A socket file left by a daemon that died is stale; anything else is not ours to remove.
  struct stat st {};
  if (::lstat(path.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode)) {
      return unavailable("cannot listen on " + path + ": it exists and is not a socket");
    }
    ::unlink(path.c_str());
  }
  beast::error_code ec;
  auto acceptor = std::make_unique<local::acceptor>(asio::make_strand(*impl_->ios[0]));
  const local::endpoint endpoint(path);
  acceptor->open(endpoint.protocol(), ec);
  if (!ec) acceptor->bind(endpoint, ec);
  if (!ec) acceptor->listen(asio::socket_base::max_listen_connections, ec);
  if (ec) return unavailable("cannot listen on " + path + ": " + ec.message());
  // Who may connect is who may change the daemon: the owner and the group only.
  if (::chmod(path.c_str(), 0660) != 0 ||
      (gid && ::chown(path.c_str(), static_cast<uid_t>(-1), static_cast<gid_t>(*gid)) != 0)) {
    const std::string why = std::strerror(errno);
    ::unlink(path.c_str());
    return unavailable("cannot set the owner or mode of " + path + ": " + why);
  }
  impl_->unix_acceptor = std::move(acceptor);
  impl_->unix_path = path;
  return Status::ok();
}

uint16_t HttpServer::tcp_port() const {
  if (!impl_->tcp_acceptor) return 0;
  beast::error_code ec;
  return impl_->tcp_acceptor->local_endpoint(ec).port();
}

uint32_t HttpServer::connections() const { return impl_->open; }

void HttpServer::set_poll_gate(std::function<bool()> gate) { impl_->poll_gate = std::move(gate); }

uint64_t HttpServer::polled() const {
  return impl_->counters->polled.load(std::memory_order_relaxed);
}
std::shared_ptr<const IoCounters> HttpServer::io_counters() const { return impl_->counters; }

void HttpServer::set_draining() { impl_->draining = true; }

void HttpServer::start() {
  if (impl_->tcp_acceptor) impl_->accept(*impl_->tcp_acceptor, false);
  if (impl_->unix_acceptor) impl_->accept(*impl_->unix_acceptor, true);
  for (const auto& io : impl_->ios) {
    const std::string name = "http-io" + std::to_string(impl_->threads.size());
    impl_->threads.emplace_back([impl = impl_.get(), &ctx = *io, name] {
      pthread_setname_np(pthread_self(), name.substr(0, 15).c_str());  // top -H, perf, /proc
      impl->run_io(ctx);
    });
  }
}

void HttpServer::stop(uint32_t grace_ms) {
  if (impl_->stopping.exchange(true) && impl_->threads.empty()) return;
  // Closed on each acceptor's own strand, where its accept handler runs.
  if (impl_->tcp_acceptor) {
    asio::post(impl_->tcp_acceptor->get_executor(), [this] {
      beast::error_code ignored;
      impl_->tcp_acceptor->close(ignored);
    });
  }
  if (impl_->unix_acceptor) {
    asio::post(impl_->unix_acceptor->get_executor(), [this] {
      beast::error_code ignored;
      impl_->unix_acceptor->close(ignored);
    });
  }
  {
    // In-flight requests are answered (their connections then close after the write).
    std::unique_lock<std::mutex> lock(impl_->mu);
    impl_->idle.wait_for(lock, std::chrono::milliseconds(grace_ms),
                         [&] { return impl_->pending == 0; });
  }
  // Connections still open are idle or half-read: close them, so no client waits on a
  // server that has stopped reading.
  for (const auto& s : impl_->live_sessions()) s->close_soon();
  {
    std::unique_lock<std::mutex> lock(impl_->mu);
    impl_->idle.wait_for(lock, std::chrono::milliseconds(1000), [&] { return impl_->open == 0; });
  }
  impl_->work.clear();
  for (const auto& io : impl_->ios) io->stop();
  for (std::thread& t : impl_->threads) t.join();
  impl_->threads.clear();
  impl_->stopped = true;
  // The acceptors' close was posted above; io may have stopped before it ran (nothing was
  // in flight, so nothing was waited for). Close them here, no I/O thread running, so the
  // connections in the backlog are refused rather than left waiting on a server that will
  // never accept them.
  {
    beast::error_code ignored;
    if (impl_->tcp_acceptor) impl_->tcp_acceptor->close(ignored);
    if (impl_->unix_acceptor) impl_->unix_acceptor->close(ignored);
  }
  // A session accepted just as stop() began may have escaped the sweep above, and its
  // handlers will never run now: close what is left, so its client sees the end.
  for (const auto& s : impl_->live_sessions()) s->close_now();
  // Handlers queued when io stopped (an accept that completed but was not yet given a
  // session, say) still hold their sockets: run what is ready, on this thread; each sees
  // the server stopped, hands nothing on, and closes.
  for (const auto& io : impl_->ios) {
    io->restart();
    io->poll();
  }
  if (!impl_->unix_path.empty()) ::unlink(impl_->unix_path.c_str());
  impl_->unix_path.clear();
}

}  // namespace recsched::daemon
