#include "bench/load/client.h"

#include "bench/load/shm.h"
#include "core/device.h"

#include <netinet/in.h>
#include <unistd.h>
#include <netinet/tcp.h>
#include <sys/resource.h>
#include <sys/socket.h>

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <deque>
#include <iostream>
#include <memory>
#include <set>
#include <sstream>
#include <thread>

namespace recsched::load {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using GenericEndpoint = asio::generic::stream_protocol::endpoint;
using Socket = asio::generic::stream_protocol::socket;
using nlohmann::json;

namespace {

GenericEndpoint resolve(const Endpoint& ep, asio::io_context& io) {
  if (!ep.unix_path.empty()) return asio::local::stream_protocol::endpoint(ep.unix_path);
  asio::ip::tcp::resolver r(io);
  auto results = r.resolve(ep.host, std::to_string(ep.port));
  if (results.empty()) throw std::runtime_error("cannot resolve " + ep.host);
  return results.begin()->endpoint();
}

void set_nodelay(Socket& s, const Endpoint& ep) {
  if (!ep.unix_path.empty()) return;
  int one = 1;
  ::setsockopt(s.native_handle(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

// The reason a 503 gives, coarsely (the daemon's messages carry numbers).
std::string rejection_kind(const std::string& body) {
  if (body.find("predicted") != std::string::npos) return "admission";
  if (body.find("queue") != std::string::npos) return "queue full";
  if (body.find("connection") != std::string::npos) return "connections";
  if (body.find("ready") != std::string::npos) return "not ready";
  return "other";
}

// Errors by kind: the operation and the system's message, without numbers that vary.
std::string error_kind(const char* op, const boost::system::error_code& ec) {
  return std::string(op) + ": " + ec.message();
}

double ms(double ns) { return ns / 1e6; }

std::string fixed2(double v) {
  char b[32];
  std::snprintf(b, sizeof b, "%.2f", v);
  return b;
}

}  // namespace

std::string Endpoint::describe() const {
  return unix_path.empty() ? host + ":" + std::to_string(port) : "unix:" + unix_path;
}

HttpReply http_call(const Endpoint& ep, const std::string& method, const std::string& target,
                    const std::string& body) {
  try {
    asio::io_context io;
    Socket s(io);
    s.connect(resolve(ep, io));
    std::string req = method + " " + target + " HTTP/1.1\r\nHost: localhost\r\n";
    if (!ep.token.empty()) req += "Authorization: Bearer " + ep.token + "\r\n";
    if (!body.empty() || method == "PUT" || method == "POST") {
      req += "Content-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) +
             "\r\n";
    }
    req += "Connection: close\r\n\r\n";
    req += body;
    asio::write(s, asio::buffer(req));
    beast::flat_buffer buf;
    http::response_parser<http::string_body> p;
    p.body_limit(uint64_t{1} << 30);
    http::read(s, buf, p);
    return {p.get().result_int(), p.get().body()};
  } catch (const boost::system::system_error& e) {
    throw std::runtime_error(method + " " + target + " on " + ep.describe() + ": " +
                             e.code().message());
  }
}

std::vector<ModelInfo> fetch_models(const Endpoint& ep,
                                    const std::map<std::string, int32_t>& lookups) {
  const HttpReply r = http_call(ep, "GET", "/v1/models");
  if (r.status != 200) throw std::runtime_error("GET /v1/models: " + std::to_string(r.status));
  const json list = json::parse(r.body)["models"];
  std::vector<ModelInfo> out;
  for (const json& m : list) {
    const std::string name = m.at("name");
    const HttpReply meta = http_call(ep, "GET", "/v2/models/" + name);
    if (meta.status != 200)
      throw std::runtime_error("GET /v2/models/" + name + ": " + std::to_string(meta.status));
    int32_t l = 1;
    if (auto it = lookups.find(name); it != lookups.end()) {
      l = it->second;
    } else if (auto from_spec = read_spec_lookups(m.value("spec", ""))) {
      l = *from_spec;
    } else {
      std::cerr << "recsched-load: " << name << ": cannot read lookups_per_table from its spec ("
                << m.value("spec", "?") << "); sending 1 id per bag (--lookups " << name
                << "=L overrides)\n";
    }
    out.push_back(model_info_from_json(m, json::parse(meta.body), l));
  }
  return out;
}

EnergyReading parse_energy(const std::string& text) {
  EnergyReading e;
  std::set<std::string> sources;
  std::istringstream in(text);
  std::string line;
  const std::string name = "recsched_energy_joules_total";
  while (std::getline(in, line)) {
    if (line.rfind(name, 0) != 0) continue;
    if (line.size() > name.size() && line[name.size()] != '{' && line[name.size()] != ' ') continue;
    const size_t src = line.find("source=\"");
    if (src != std::string::npos) {
      const size_t end = line.find('"', src + 8);
      sources.insert(line.substr(src + 8, end - src - 8));
    }
    const size_t space = line.rfind(' ');
    try {
      e.joules += std::stod(line.substr(space + 1));
      e.ok = true;
    } catch (const std::exception&) {
    }
  }
  for (const std::string& s : sources) e.source += (e.source.empty() ? "" : "+") + s;
  return e;
}

EnergyReading read_energy(const Endpoint& ep) {
  try {
    const HttpReply r = http_call(ep, "GET", "/metrics");
    if (r.status != 200) return {};
    return parse_energy(r.body);
  } catch (const std::exception&) {
    return {};
  }
}

void set_policy(const Endpoint& ep, const std::string& name, const json& params) {
  const HttpReply r =
      http_call(ep, "PUT", "/v1/policy", json{{"name", name}, {"params", params}}.dump());
  if (r.status != 200)
    throw std::runtime_error("PUT /v1/policy " + name + ": " + std::to_string(r.status) + " " +
                             r.body);
}

namespace {

// One open-loop run on one I/O thread (every member is touched from it only, except the
// options and pool, which are read-only).
class Runner {
 public:
  Runner(const Endpoint& ep, const PayloadPool& pool, const RunOptions& o,
         std::vector<Arrival> schedule, RunResult& result, const SharedRegion* shm = nullptr,
         size_t shm_slot_bytes = 0)
      : ep_(ep),
        pool_(pool),
        shm_(shm),
        shm_slot_bytes_(shm_slot_bytes),
        o_(o),
        schedule_(std::move(schedule)),
        r_(result),
        gep_(resolve(ep, io_)),
        timer_(io_),
        progress_timer_(io_),
        drain_timer_(io_),
        wake_timer_(io_),
        state_(schedule_.size(), kPending),
        sent_at_(schedule_.size()),
        retried_(schedule_.size(), false) {
    warmup_ns_ = int64_t(o_.warmup_s * 1e9);
    for (const ModelInfo& m : pool_.models()) {
      paths_.push_back("/v2/models/" + m.name + "/infer");
      ModelResult mr;
      mr.name = m.name;
      auto it = o_.sla_ms.find(m.name);
      mr.sla_ms = it != o_.sla_ms.end() ? it->second : m.sla_ms;
      mr.sla_percentile = m.sla_percentile;
      r_.models.push_back(std::move(mr));
    }
    r_.all.name = "all";
    // One slot of the shared-memory region per connection (one query in flight on each).
    for (uint32_t k = o_.max_connections; k > 0; --k) free_slots_.push_back(k - 1);
  }

  void run(Clock::time_point t0) {
    t0_ = t0;
    arm();
    if (o_.progress) arm_progress();
    if (schedule_.empty()) finish_run();
    if (o_.spin_before_send_us == 0) {
      io_.run();
      return;
    }
    // Asleep until spin_before_send_us before the next send, then polling: answers are
    // taken as they come, and the send goes when the clock says, not when the timer's
    // interrupt arrives (on this VM that is late by ~0.2 ms even on an awake vCPU). The
    // timer then fires for a query already sent and only re-arms.
    //
    // The window is at most a twentieth of the mean gap between sends: the generator
    // shares the host's cores with what it measures, and polls no more than 5 % of the
    // run's time.
    const auto spin = std::min<Clock::duration>(
        std::chrono::microseconds(o_.spin_before_send_us),
        std::chrono::duration_cast<Clock::duration>(
            std::chrono::duration<double>(0.05 / std::max(o_.qps, 1e-9))));
    while (!io_.stopped()) {
      const bool sending = !stopping_ && next_ < schedule_.size();
      if (sending && Clock::now() >= at(next_) - spin) {
        io_.poll();
        if (!stopping_) send_due();
      } else if (sending) {
        // Woken by a timer of its own: run_one_until waits on epoll in whole milliseconds,
        // which would sleep through the window.
        const Clock::time_point wake = at(next_) - spin;
        if (wake_at_ != wake) {
          wake_at_ = wake;
          wake_timer_.expires_at(wake);
          wake_timer_.async_wait([](const boost::system::error_code&) {});
        }
        io_.run_one();
      } else {
        io_.run_one();
      }
    }
  }

 private:
  enum State : uint8_t { kPending, kInFlight, kDone };
  struct Conn {
    explicit Conn(asio::io_context& io) : sock(io) {}
    Socket sock;
    beast::flat_buffer buf;
    std::optional<http::response_parser<http::string_body>> parser;
    std::string head;
    EncodedQuery query;
    std::vector<asio::const_buffer> bufs;
    uint32_t sends = 0;  // queries written on it: more than one = a pooled keep-alive
    uint32_t slot = 0;   // its part of the shared-memory region (RunOptions::shared_memory)
    std::string shm_body;  // the JSON naming its inputs there
  };
  using ConnPtr = std::shared_ptr<Conn>;

  Clock::time_point at(size_t i) const { return t0_ + std::chrono::nanoseconds(schedule_[i].t_ns); }
  bool measured(size_t i) const { return schedule_[i].t_ns >= warmup_ns_; }

  void arm() {
    if (next_ >= schedule_.size()) return;
    timer_.expires_at(at(next_));
    timer_.async_wait([this](const boost::system::error_code& ec) {
      if (ec || stopping_) return;
      send_due();
      if (next_ < schedule_.size()) {
        arm();
      } else {
        drain_timer_.expires_after(std::chrono::duration_cast<Clock::duration>(
            std::chrono::duration<double>(o_.drain_timeout_s)));
        drain_timer_.async_wait([this](const boost::system::error_code& e) {
          if (!e) drain_timeout();
        });
        check_done();
      }
    });
  }

  // Every query whose scheduled time has come.
  void send_due() {
    const auto now = Clock::now();
    while (next_ < schedule_.size() && at(next_) <= now) dispatch(next_++);
  }

  void arm_progress() {
    progress_timer_.expires_after(std::chrono::seconds(1));
    progress_timer_.async_wait([this](const boost::system::error_code& ec) {
      if (ec || stopping_) return;
      ++progress_s_;
      std::fprintf(stderr,
                   "[%4ds] offered %.0f/s  sent %llu  answered/s %llu  in flight %llu  "
                   "waiting %zu  conns %u  p95(1s) %.2f ms  rejected %llu  errors %llu\n",
                   progress_s_, o_.qps, (unsigned long long)next_,
                   (unsigned long long)(completed_ - last_completed_),
                   (unsigned long long)outstanding_, waiting_.size(), open_,
                   ms(interval_.percentile(95)), (unsigned long long)rejected_total_,
                   (unsigned long long)errors_total_);
      last_completed_ = completed_;
      interval_.reset();
      arm_progress();
    });
  }

  void dispatch(size_t i) {
    ++outstanding_;
    state_[i] = kInFlight;
    if (measured(i)) {
      ++r_.scheduled;
      ++r_.models[schedule_[i].model].sent;
      ++r_.all.sent;
    }
    start(i);
  }

  // Sends query i on an idle connection, a new one, or queues it for the next free one;
  // `fresh`: never on an idle one (a retry after a pooled connection turned out closed).
  void start(size_t i, bool fresh = false) {
    if (!idle_.empty() && !fresh) {
      ConnPtr c = std::move(idle_.back());
      idle_.pop_back();
      return send(c, i);
    }
    if (open_ < o_.max_connections) {
      ++open_;
      ++r_.connections_opened;
      auto c = std::make_shared<Conn>(io_);
      c->slot = free_slots_.back();  // open_ <= max_connections: one is free
      free_slots_.pop_back();
      conns_.insert(c);
      c->sock.async_connect(gep_, [this, c, i](const boost::system::error_code& ec) {
        if (ec) return fail(c, i, error_kind("connect", ec));
        set_nodelay(c->sock, ep_);
        send(c, i);
      });
      return;
    }
    waiting_.push_back(i);
    r_.max_waiting = std::max<uint32_t>(r_.max_waiting, uint32_t(waiting_.size()));
  }

  void send(const ConnPtr& c, size_t i) {
    if (stopping_ || state_[i] != kInFlight) return release(c);
    const Arrival& a = schedule_[i];
    const auto now = Clock::now();
    if (measured(i)) r_.send_lag_ns.record(uint64_t(std::max<int64_t>(0, (now - at(i)).count())));
    if (first_send_ == Clock::time_point{}) first_send_ = now;
    c->bufs.clear();
    if (!o_.trivial_path.empty()) {
      c->head = "GET " + o_.trivial_path + " HTTP/1.1\r\nHost: localhost\r\n\r\n";
      c->bufs.emplace_back(asio::buffer(c->head));
    } else {
      c->query = pool_.encode(a.model, a.items, a.pick);
      c->head = "POST " + paths_[a.model] + " HTTP/1.1\r\nHost: localhost\r\n";
      if (shm_ != nullptr) {
        // The inputs into this connection's slot, the body only JSON that names them.
        const size_t from = size_t(c->slot) * shm_slot_bytes_;
        c->shm_body = shared_memory_body(c->query, shm_->name(), shm_->data(), from,
                                         from + shm_slot_bytes_);
        c->head += "Content-Type: application/json\r\nContent-Length: " +
                   std::to_string(c->shm_body.size()) + "\r\n\r\n";
        c->bufs.emplace_back(asio::buffer(c->head));
        c->bufs.emplace_back(asio::buffer(c->shm_body));
      } else if (c->query.header_length > 0) {
        c->head += "Content-Type: application/octet-stream\r\nInference-Header-Content-Length: " +
                   std::to_string(c->query.header_length) + "\r\n";
      } else {
        c->head += "Content-Type: application/json\r\n";
      }
      if (shm_ == nullptr) {
        c->head += "Content-Length: " + std::to_string(c->query.body_bytes) + "\r\n\r\n";
        c->bufs.emplace_back(asio::buffer(c->head));
        c->bufs.emplace_back(asio::buffer(c->query.json));
        for (std::string_view s : c->query.sections) c->bufs.emplace_back(s.data(), s.size());
      }
    }
    sent_at_[i] = now;
    ++c->sends;
    // Each write offers all that is left: Asio's default offers 64 KiB at a time, so a
    // 5 MB request took 80 writes on this one thread while other queries waited to be sent.
    const size_t total = asio::buffer_size(c->bufs);
    asio::async_write(c->sock, c->bufs,
                      [total](const boost::system::error_code& ec, size_t done) -> size_t {
                        return ec ? 0 : total - done;
                      },
                      [this, c, i, now](const boost::system::error_code& ec, size_t) {
                        if (ec) return retry_or_fail(c, i, error_kind("write", ec));
                        if (measured(i)) r_.write_ns.record(uint64_t((Clock::now() - now).count()));
                        c->parser.emplace();
                        c->parser->body_limit(uint64_t{1} << 30);
                        http::async_read(c->sock, c->buf, *c->parser,
                                         [this, c, i](const boost::system::error_code& e, size_t) {
                                           if (e && c->parser->got_some())
                                             return fail(c, i, error_kind("read", e));
                                           if (e) return retry_or_fail(c, i, error_kind("read", e));
                                           complete(c, i);
                                         });
                      });
  }

  void complete(const ConnPtr& c, size_t i) {
    if (state_[i] != kInFlight) return close(c);
    const auto now = Clock::now();
    const auto& res = c->parser->get();
    const unsigned status = res.result_int();
    const Arrival& a = schedule_[i];
    std::string error;
    if (status == 200 && o_.trivial_path.empty() && c->query.header_length > 0) {
      // Binary scores: the JSON header then N x K floats.
      const auto it = res.find("Inference-Header-Content-Length");
      const size_t k = size_t(pool_.models()[a.model].outputs);
      if (it == res.end() ||
          res.body().size() != std::stoull(std::string(it->value())) + c->query.items * k * 4)
        error = "bad response: scores missing or of the wrong size";
    }
    const uint64_t ns = uint64_t(std::max<int64_t>(0, (now - at(i)).count()));
    if (status == 503) {
      record_rejection(i, rejection_kind(res.body()), ns);
    } else if (status != 200) {
      record_error(i, "http " + std::to_string(status));
    } else if (!error.empty()) {
      record_error(i, error);
    } else {
      interval_.record(ns);
      if (measured(i)) {
        ModelResult& m = r_.models[a.model];
        for (ModelResult* x : {&m, &r_.all}) {
          ++x->ok;
          x->items += c->query.items;
          x->latency_ns.record(ns);
          x->from_send_ns.record(uint64_t(std::max<int64_t>(0, (now - sent_at_[i]).count())));
        }
        if (m.sla_ms > 0 && double(ns) > m.sla_ms * 1e6) {
          ++m.sla_violations;
          ++r_.all.sla_violations;
        }
      }
    }
    done(i, now);
    if (res.keep_alive()) {
      release(c);
    } else {
      close(c);
    }
  }

  // A pooled keep-alive connection the server closed while it sat idle fails the next
  // query written to it before any byte of an answer (a write error, or end of stream /
  // reset on the read): as HTTP clients do, the query goes once more on a new connection.
  // Anything else, or a second failure, is an error.
  void retry_or_fail(const ConnPtr& c, size_t i, const std::string& kind) {
    if (c->sends <= 1 || stopping_ || state_[i] != kInFlight || retried_[i]) return fail(c, i, kind);
    retried_[i] = true;
    ++r_.retried_on_new_connection;
    // The closed connection's place goes to this query, not to one waiting.
    if (conns_.erase(c) != 0) {
      boost::system::error_code ignored;
      c->sock.close(ignored);
      --open_;
      free_slots_.push_back(c->slot);
    }
    start(i, /*fresh=*/true);
  }

  void fail(const ConnPtr& c, size_t i, const std::string& kind) {
    if (state_[i] == kInFlight) {
      record_error(i, kind);
      done(i, Clock::now());
    }
    close(c);
  }

  void record_rejection(size_t i, const std::string& kind, uint64_t ns) {
    ++rejected_total_;
    if (!measured(i)) return;
    r_.rejected_ns.record(ns);
    ++r_.rejections[kind];
    ++r_.models[schedule_[i].model].rejected;
    ++r_.all.rejected;
  }

  void record_error(size_t i, const std::string& kind) {
    ++errors_total_;
    if (!measured(i)) return;
    ++r_.errors[kind];
    ++r_.models[schedule_[i].model].errors;
    ++r_.all.errors;
  }

  void done(size_t i, Clock::time_point now) {
    state_[i] = kDone;
    --outstanding_;
    ++completed_;
    last_answer_ = now;
  }

  // A connection is free again: the oldest waiting query takes it.
  void release(const ConnPtr& c) {
    if (stopping_) return close(c);
    while (!waiting_.empty()) {
      const size_t j = waiting_.front();
      waiting_.pop_front();
      if (state_[j] == kInFlight) return send(c, j);
    }
    idle_.push_back(c);
    check_done();
  }

  void close(const ConnPtr& c) {
    if (conns_.erase(c) == 0) return;
    boost::system::error_code ignored;
    c->sock.close(ignored);
    --open_;
    free_slots_.push_back(c->slot);
    // A closed connection makes room: start a waiting query on a new one.
    while (!stopping_ && !waiting_.empty() && open_ < o_.max_connections) {
      const size_t j = waiting_.front();
      waiting_.pop_front();
      if (state_[j] == kInFlight) {
        start(j);
        break;
      }
    }
    check_done();
  }

  void drain_timeout() {
    for (size_t i = 0; i < schedule_.size(); ++i) {
      if (state_[i] == kInFlight) {
        record_error(i, "timeout: no answer within the drain time");
        done(i, Clock::now());
      }
    }
    waiting_.clear();
    finish_run();
  }

  void check_done() {
    if (!stopping_ && next_ == schedule_.size() && outstanding_ == 0) finish_run();
  }

  void finish_run() {
    if (stopping_) return;
    stopping_ = true;
    timer_.cancel();
    progress_timer_.cancel();
    drain_timer_.cancel();
    wake_timer_.cancel();
    idle_.clear();
    std::vector<ConnPtr> all(conns_.begin(), conns_.end());
    for (const ConnPtr& c : all) close(c);
    r_.completed_total = completed_;
    if (first_send_ != Clock::time_point{} && last_answer_ > first_send_)
      r_.wall_s = std::chrono::duration<double>(last_answer_ - first_send_).count();
  }

  const Endpoint& ep_;
  const PayloadPool& pool_;
  const SharedRegion* shm_;  // RunOptions::shared_memory; else null
  size_t shm_slot_bytes_;
  std::vector<uint32_t> free_slots_;
  const RunOptions& o_;
  std::vector<Arrival> schedule_;
  RunResult& r_;
  asio::io_context io_;
  GenericEndpoint gep_;
  asio::steady_timer timer_, progress_timer_, drain_timer_;
  asio::steady_timer wake_timer_;  // --spin-us: ends the sleep before a send
  Clock::time_point wake_at_{};
  std::vector<State> state_;
  std::vector<Clock::time_point> sent_at_;  // when each query's first byte went to the socket
  std::vector<bool> retried_;               // sent again on a new connection (retry_or_fail)
  std::vector<std::string> paths_;
  Clock::time_point t0_, first_send_{}, last_answer_{};
  int64_t warmup_ns_ = 0;
  size_t next_ = 0;
  uint64_t outstanding_ = 0, completed_ = 0, last_completed_ = 0;
  uint64_t rejected_total_ = 0, errors_total_ = 0;
  uint32_t open_ = 0;
  int progress_s_ = 0;
  bool stopping_ = false;
  std::vector<ConnPtr> idle_;
  std::set<ConnPtr> conns_;
  std::deque<size_t> waiting_;
  Histogram interval_;
};

}  // namespace

namespace {

// This process's CPU time so far, user and system, every thread (seconds).
double process_cpu_s() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return double(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
         1e-6 * double(u.ru_utime.tv_usec + u.ru_stime.tv_usec);
}

}  // namespace

RunResult run_load(const Endpoint& ep, const PayloadPool& pool, const RunOptions& options) {
  RunResult result;
  result.options = options;
  std::vector<double> weights = options.weights;
  if (weights.empty()) weights.assign(pool.models().size(), 1.0);
  if (weights.size() != pool.models().size())
    throw std::invalid_argument("one weight per model needed");
  std::vector<Arrival> schedule =
      make_schedule(options.qps, options.duration_s, weights, options.sizes, options.seed);
  result.measured_s = std::max(1e-9, options.duration_s - options.warmup_s);
  // Shared memory: a slot per connection, as large as the largest query's inputs (the
  // object's pages are allocated only where written).
  std::unique_ptr<SharedRegion> shm;
  size_t slot_bytes = 0;
  if (options.shared_memory) {
    if (ep.unix_path.empty()) {
      throw std::invalid_argument("shared memory needs the daemon's unix socket (--socket)");
    }
    if (pool.format() != PayloadFormat::kBinary) {
      throw std::invalid_argument("shared memory sends binary tensors (not with --json-payload)");
    }
    for (uint32_t m = 0; m < pool.models().size(); ++m) {
      slot_bytes = std::max(slot_bytes, shared_memory_bytes(pool.encode(m, UINT32_MAX, 0)));
    }
    slot_bytes = (slot_bytes + 4095) & ~size_t{4095};
    shm = std::make_unique<SharedRegion>(ep, "load-" + std::to_string(::getpid()),
                                         slot_bytes * options.max_connections);
  }
  result.scheduled_total = schedule.size();
  Runner runner(ep, pool, result.options, std::move(schedule), result, shm.get(), slot_bytes);
  const double cpu0 = process_cpu_s();

  // Start a little ahead so the first sends are not late; energy is read at the measured
  // window's start from this thread, so the I/O thread never blocks on it.
  const auto t0 = Clock::now() + std::chrono::milliseconds(20);
  std::thread io([&] { runner.run(t0); });
  const bool energy = options.energy && options.trivial_path.empty();
  EnergyReading e0;
  Clock::time_point e0_at;
  if (energy) {
    std::this_thread::sleep_until(t0 + std::chrono::duration_cast<Clock::duration>(
                                           std::chrono::duration<double>(options.warmup_s)));
    e0 = read_energy(ep);
    e0_at = Clock::now();
  }
  io.join();
  result.cpu_s = process_cpu_s() - cpu0;
  if (energy) {
    const EnergyReading e1 = read_energy(ep);
    if (e0.ok && e1.ok) {
      result.energy_joules = e1.joules - e0.joules;
      result.energy_source = e1.source;
      result.energy_seconds = std::chrono::duration<double>(Clock::now() - e0_at).count();
    }
  }
  result.offered_qps = double(result.scheduled) / result.measured_s;
  result.achieved_qps = double(result.all.ok) / result.measured_s;
  return result;
}

double RunResult::reject_rate() const {
  return all.sent ? double(all.rejected) / double(all.sent) : 0.0;
}

double RunResult::error_rate() const {
  return all.sent ? double(all.errors) / double(all.sent) : 0.0;
}

namespace {

json model_json(const ModelResult& m, double measured_s) {
  const Histogram& h = m.latency_ns;
  json j = {{"sent", m.sent},
            {"ok", m.ok},
            {"rejected", m.rejected},
            {"errors", m.errors},
            {"achieved_qps", double(m.ok) / measured_s},
            {"items_mean", m.ok ? double(m.items) / double(m.ok) : 0.0},
            {"p50_ms", ms(h.percentile(50))},
            {"p95_ms", ms(h.percentile(95))},
            {"p99_ms", ms(h.percentile(99))},
            {"max_ms", ms(double(h.max()))},
            {"mean_ms", ms(h.mean())},
            {"p50_from_send_ms", ms(m.from_send_ns.percentile(50))},
            {"p95_from_send_ms", ms(m.from_send_ns.percentile(95))},
            {"sla_violations", m.sla_violations},
            {"sla_violation_rate", m.ok ? double(m.sla_violations) / double(m.ok) : 0.0},
            // Answered within the target, over all sent (rejections and errors are misses).
            {"sla_attainment", m.sent ? double(m.ok - m.sla_violations) / double(m.sent) : 0.0}};
  if (m.name != "all") {
    j["sla_ms"] = m.sla_ms;
    j["sla_percentile"] = m.sla_percentile;
    j["sla_percentile_ms"] = ms(h.percentile(m.sla_percentile));
  }
  return j;
}

}  // namespace

json RunResult::to_json() const {
  json models_j = json::object();
  for (const ModelResult& m : models) models_j[m.name] = model_json(m, measured_s);
  json out = {{"offered_qps_target", options.qps},
              {"duration_s", options.duration_s},
              {"warmup_s", options.warmup_s},
              {"measured_s", measured_s},
              {"sizes", options.sizes.describe()},
              {"seed", options.seed},
              {"shared_memory", options.shared_memory},
              {"spin_before_send_us", options.spin_before_send_us},
              {"offered_qps", offered_qps},
              {"achieved_qps", achieved_qps},
              {"scheduled", scheduled},
              {"all", model_json(all, measured_s)},
              {"models", models_j},
              {"reject_rate", reject_rate()},
              {"error_rate", error_rate()},
              {"rejections", rejections},
              {"rejected_latency",
               {{"count", rejected_ns.count()},
                {"p50_ms", ms(rejected_ns.percentile(50))},
                {"p95_ms", ms(rejected_ns.percentile(95))},
                {"max_ms", ms(double(rejected_ns.max()))}}},
              {"errors", errors},
              {"generator",
               {{"send_lag_p50_ms", ms(send_lag_ns.percentile(50))},
                {"send_lag_p99_ms", ms(send_lag_ns.percentile(99))},
                {"send_lag_max_ms", ms(double(send_lag_ns.max()))},
                {"write_p50_ms", ms(write_ns.percentile(50))},
                {"write_p99_ms", ms(write_ns.percentile(99))},
                {"connections_opened", connections_opened},
                {"retried_on_new_connection", retried_on_new_connection},
                {"max_waiting_for_connection", max_waiting},
                {"wall_s", wall_s},
                {"answered", completed_total},
                {"cpu_s", cpu_s},
                {"cpu_ms_per_query", scheduled_total > 0 ? 1e3 * cpu_s / double(scheduled_total) : 0.0},
                {"histogram_relative_error", all.latency_ns.relative_error()}}}};
  if (energy_joules) {
    const double answered = double(all.ok);
    out["energy"] = {{"joules", *energy_joules},
                     {"seconds", energy_seconds},
                     {"watts", energy_seconds > 0 ? *energy_joules / energy_seconds : 0.0},
                     {"j_per_query", answered > 0 ? *energy_joules / answered : 0.0},
                     {"source", energy_source},
                     {"measured", energy_source.find("estimated") == std::string::npos}};
  }
  return out;
}

std::string RunResult::summary() const {
  std::ostringstream o;
  char line[512];
  std::snprintf(line, sizeof line,
                "offered %.1f q/s (target %.1f), achieved %.1f q/s over %.1f s; rejected %.2f%%, "
                "errors %.2f%%\n",
                offered_qps, options.qps, achieved_qps, measured_s, 100 * reject_rate(),
                100 * error_rate());
  o << line;
  std::snprintf(line, sizeof line, "%-16s %7s %7s %6s %6s %6s %8s %8s %8s %8s %8s %7s\n", "MODEL",
                "SENT", "OK", "REJ", "ERR", "ITEMS", "P50_MS", "P95_MS", "P99_MS", "MAX_MS",
                "SLA_MS", "VIOL%");
  o << line;
  auto row = [&](const ModelResult& m) {
    const Histogram& h = m.latency_ns;
    std::snprintf(line, sizeof line,
                  "%-16s %7llu %7llu %6llu %6llu %6.0f %8.2f %8.2f %8.2f %8.2f %8s %7.2f\n",
                  m.name.c_str(), (unsigned long long)m.sent, (unsigned long long)m.ok,
                  (unsigned long long)m.rejected, (unsigned long long)m.errors,
                  m.ok ? double(m.items) / double(m.ok) : 0.0, ms(h.percentile(50)),
                  ms(h.percentile(95)), ms(h.percentile(99)), ms(double(h.max())),
                  m.name == "all" ? "-" : fixed2(m.sla_ms).c_str(),
                  m.ok ? 100.0 * double(m.sla_violations) / double(m.ok) : 0.0);
    o << line;
  };
  for (const ModelResult& m : models) row(m);
  row(all);
  for (const auto& [k, v] : rejections) o << "  rejected (" << k << "): " << v << "\n";
  for (const auto& [k, v] : errors) o << "  error (" << k << "): " << v << "\n";
  if (energy_joules) {
    std::snprintf(line, sizeof line, "energy: %.1f J over %.1f s (%.1f W), %.4f J/query [%s]\n",
                  *energy_joules, energy_seconds,
                  energy_seconds > 0 ? *energy_joules / energy_seconds : 0.0,
                  all.ok ? *energy_joules / double(all.ok) : 0.0, energy_source.c_str());
    o << line;
  }
  std::snprintf(line, sizeof line,
                "generator: send lag p99 %.3f ms (max %.3f), writing a request p50 %.3f ms, %u "
                "connections (%u queries retried on a new one), at most %u waiting for one\n",
                ms(send_lag_ns.percentile(99)), ms(double(send_lag_ns.max())),
                ms(write_ns.percentile(50)), connections_opened, retried_on_new_connection,
                max_waiting);
  o << line;
  return o.str();
}

}  // namespace recsched::load
