// recsched-overhead: what recschedd adds to the engine's own compute, as a client sees it.
//
// For each served model and each query size, one process does, interleaved rep by rep:
//   - the engine's forward pass on that many items, on this thread (compute);
//   - the same query through each daemon given (--socket / --tcp, one keep-alive
//     connection each, KServe v2 binary tensors as Triton's clients send them), waiting for
//     the answer before the next (no queueing: the daemon's static policy runs a query
//     whole on one worker, as compute does here).
// Overhead, per daemon side by side so that two builds compare in one run on a shared
// machine, at p50 and p99:
//   - over its own service: per query, client latency - the runner's service time for that
//     very query (service_ms in /v1/placements): what serving adds (HTTP, decoding,
//     dispatch, hand-offs, the answer), whatever the compute cost on the worker's core;
//   - over compute: client latency - the median compute on this thread, which also counts
//     the worker's compute being slower than this thread's (a colder cache, another core).
// Run each daemon with policy static. First, the floor: a GET of /v2/health/live on the
// same connections (HTTP only, no worker); and per query the daemon's decoding of the body
// (kserve.cc) timed alone in this process. Each request is built before its clock starts.
//
//   recsched-overhead --socket after=/tmp/a.sock --socket before=/tmp/b.sock
//                     --items 1,164 --reps 300 [--models ncf,rmc1] [--json OUT]
#include <poll.h>
#include <unistd.h>

#include <algorithm>
#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "bench/load/client.h"
#include "bench/load/payload.h"
#include "bench/load/shm.h"
#include "core/device.h"
#include "daemon/kserve.h"
#include "daemon/shared_memory.h"
#include "engine/dense.h"
#include "engine/inputs.h"
#include "engine/model.h"

namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using nlohmann::json;
using recsched::Clock;

// One keep-alive connection to a daemon, TCP or unix socket.
class Connection {
 public:
  Connection(std::string label, const std::string& where) : label_(std::move(label)) {
    if (where.rfind("unix:", 0) == 0) {
      unix_ = std::make_unique<asio::local::stream_protocol::socket>(io_);
      unix_->connect(asio::local::stream_protocol::endpoint(where.substr(5)));
    } else {
      const size_t colon = where.rfind(':');
      tcp_ = std::make_unique<asio::ip::tcp::socket>(io_);
      tcp_->connect({asio::ip::make_address(where.substr(0, colon)),
                     static_cast<uint16_t>(std::stoi(where.substr(colon + 1)))});
      tcp_->set_option(asio::ip::tcp::no_delay(true));
    }
  }
  const std::string& label() const { return label_; }
  // Sends `req` and reads the answer; its status, and its body into `body` if given.
  // With `spin`, waits for the answer's first bytes by polling rather than sleeping, so
  // that the latency does not count this client's own wake-up (see --spin).
  unsigned send(const http::request<http::string_body>& req, std::string* body = nullptr,
                bool spin = false) {
    http::response<http::string_body> res;
    if (unix_) {
      http::write(*unix_, req);
      if (spin) wait_readable(unix_->native_handle());
      http::read(*unix_, buf_, res);
    } else {
      http::write(*tcp_, req);
      if (spin) wait_readable(tcp_->native_handle());
      http::read(*tcp_, buf_, res);
    }
    if (body != nullptr) *body = std::move(res.body());
    return res.result_int();
  }

 private:
  static void wait_readable(int fd) {
    pollfd p{fd, POLLIN, 0};
    while (::poll(&p, 1, 0) == 0) {
    }
  }

  std::string label_;
  asio::io_context io_;
  std::unique_ptr<asio::local::stream_protocol::socket> unix_;
  std::unique_ptr<asio::ip::tcp::socket> tcp_;
  beast::flat_buffer buf_;
};

// A request (a POST with `body`, or a GET when it is empty), built once, sent many times.
http::request<http::string_body> make_request(const std::string& target, const std::string& body,
                                              size_t header_length) {
  http::request<http::string_body> req(body.empty() ? http::verb::get : http::verb::post, target,
                                       11);
  req.set(http::field::host, "localhost");
  req.keep_alive(true);
  if (header_length > 0) req.set("Inference-Header-Content-Length", std::to_string(header_length));
  req.body() = body;
  req.prepare_payload();
  return req;
}

// The daemon's own times (ms, /v1/placements) of one query.
struct DaemonTimes {
  double actual = 0;   // arrival in the service to the answer handed to the HTTP layer
  double decode = 0;   // arrival to the placement: decoding and dispatch (older daemons: 0)
  double wait = 0;     // dispatched to the runner's start: the hand-off to a worker
  double service = 0;  // the runner's service time
};

// The last `count` queries of `model` in the daemon's placement log, oldest first; empty
// if the daemon does not report service_ms.
std::vector<DaemonTimes> daemon_times(Connection& conn, const std::string& model, size_t count) {
  std::string body;
  const auto req = make_request("/v1/placements?limit=" + std::to_string(count + 64), "", 0);
  if (conn.send(req, &body) != 200) return {};
  std::vector<DaemonTimes> out;
  const json log = json::parse(body, nullptr, false);
  if (!log.contains("placements")) return {};
  for (const json& p : log["placements"]) {
    if (p.value("model", "") != model || !p.contains("service_ms")) continue;
    out.push_back({p["actual_ms"].get<double>(), p.value("decode_ms", 0.0),
                   p["wait_ms"].get<double>(), p["service_ms"].get<double>()});
  }
  if (out.size() < count) return {};
  return std::vector<DaemonTimes>(out.end() - static_cast<std::ptrdiff_t>(count), out.end());
}

double percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const size_t rank = static_cast<size_t>(std::ceil(p / 100 * v.size()));
  return v[std::clamp<size_t>(rank, 1, v.size()) - 1];
}

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  for (std::string part; std::getline(ss, part, sep);) {
    if (!part.empty()) out.push_back(part);
  }
  return out;
}

constexpr const char* kUsage =
    "usage: recsched-overhead (--socket LABEL=PATH | --tcp LABEL=HOST:PORT)... [--items 1,164]\n"
    "                         [--reps 300] [--models a,b] [--int32-ids] [--spin] [--shm]\n"
    "                         [--json OUT]\n"
    "Per model and size: the engine's compute on this thread, and each daemon's client latency\n"
    "for the same query (one keep-alive connection each, binary tensors), interleaved; prints\n"
    "per daemon, at p50 and p99, the overhead over its own service (per query, latency - the\n"
    "runner's service_ms from /v1/placements) and over compute (latency - median compute).\n"
    "Run the daemons with policy static (a query whole on one worker). --spin: wait for each\n"
    "answer by polling, not sleeping, so that this client's own wake-up is not counted (on a\n"
    "VM, waking a vCPU that has idled for longer than the hypervisor polls costs far more).\n"
    "--shm: send the inputs through a shared-memory region registered with each daemon\n"
    "(Triton's system shared-memory extension; unix sockets only): each rep copies them into\n"
    "the region before its clock starts, and the request body is JSON naming where they lie.\n";

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::pair<std::string, std::string>> daemons;  // label, where
  std::vector<uint32_t> sizes = {1, 164};
  int reps = 300;
  std::vector<std::string> only;
  std::string json_out;
  bool int32_ids = false;
  bool spin = false;
  bool shm = false;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::cerr << "recsched-overhead: " << a << " needs a value\n" << kUsage;
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--socket" || a == "--tcp") {
      const std::string v = value();
      const size_t eq = v.find('=');
      if (eq == std::string::npos) {
        std::cerr << "recsched-overhead: " << a << " takes LABEL=WHERE\n";
        return 2;
      }
      daemons.push_back({v.substr(0, eq), (a == "--socket" ? "unix:" : "") + v.substr(eq + 1)});
    } else if (a == "--items") {
      sizes.clear();
      for (const std::string& s : split(value(), ',')) sizes.push_back(std::stoul(s));
    } else if (a == "--reps") {
      reps = std::stoi(value());
    } else if (a == "--models") {
      only = split(value(), ',');
    } else if (a == "--json") {
      json_out = value();
    } else if (a == "--int32-ids") {
      int32_ids = true;
    } else if (a == "--spin") {
      spin = true;
    } else if (a == "--shm") {
      shm = true;
    } else if (a == "--help" || a == "-h") {
      std::cout << kUsage;
      return 0;
    } else {
      std::cerr << "recsched-overhead: unknown argument " << a << "\n" << kUsage;
      return 2;
    }
  }
  if (daemons.empty() || reps < 10 || sizes.empty()) {
    std::cerr << kUsage;
    return 2;
  }
  recsched::load::Endpoint first;
  if (daemons[0].second.rfind("unix:", 0) == 0) {
    first.unix_path = daemons[0].second.substr(5);
  } else {
    const size_t colon = daemons[0].second.rfind(':');
    first.host = daemons[0].second.substr(0, colon);
    first.port = static_cast<uint16_t>(std::stoi(daemons[0].second.substr(colon + 1)));
  }
  std::vector<recsched::load::ModelInfo> models = recsched::load::fetch_models(first);
  if (!only.empty()) {
    std::erase_if(models, [&](const auto& m) {
      return std::find(only.begin(), only.end(), m.name) == only.end();
    });
  }
  const uint32_t max_items = *std::max_element(sizes.begin(), sizes.end());
  recsched::load::PoolOptions po;
  po.max_items = max_items;
  po.max_variants = 1;
  po.int32_ids = int32_ids;
  const recsched::load::PayloadPool pool(models, recsched::load::SizeDistribution::parse(
                                                     "fixed:" + std::to_string(max_items)),
                                         po);
  std::vector<std::unique_ptr<Connection>> conns;
  for (const auto& [label, where] : daemons) conns.push_back(std::make_unique<Connection>(label, where));
  // --shm: a region per daemon, as large as the largest query's inputs; and one registry in
  // this process, to time the daemon's decoding of such a request (its reads included).
  std::vector<std::unique_ptr<recsched::load::SharedRegion>> regions;
  recsched::daemon::SystemSharedMemory local_shm(1);
  if (shm) {
    size_t most = 0;
    for (uint32_t mi = 0; mi < models.size(); ++mi) {
      most = std::max(most, recsched::load::shared_memory_bytes(pool.encode(mi, max_items, 0)));
    }
    for (const auto& [label, where] : daemons) {
      if (where.rfind("unix:", 0) != 0) {
        std::cerr << "recsched-overhead: --shm needs unix sockets (" << label << " is TCP)\n";
        return 2;
      }
      recsched::load::Endpoint ep;
      ep.unix_path = where.substr(5);
      regions.push_back(std::make_unique<recsched::load::SharedRegion>(ep, "overhead-" + label, most));
    }
    const recsched::Status st = local_shm.register_region(regions[0]->name(), regions[0]->key(), 0, most,
                                                          static_cast<uint32_t>(::getuid()));
    if (!st.is_ok()) {
      std::cerr << "recsched-overhead: " << st.message() << "\n";
      return 1;
    }
  }
  const recsched::daemon::SystemSharedMemory::Reader local_reader(local_shm,
                                                                  static_cast<uint32_t>(::getuid()));
  recsched::engine::set_blas_threads(1);  // as a daemon worker runs

  // The floor: a GET of /v2/health/live (no decode, no worker) on each connection.
  json report = json::array();
  {
    std::vector<std::vector<double>> floor(conns.size());
    const auto live = make_request("/v2/health/live", "", 0);
    for (int r = -10; r < reps; ++r) {
      for (size_t c = 0; c < conns.size(); ++c) {
        const auto s0 = Clock::now();
        conns[c]->send(live, nullptr, spin);
        const auto s1 = Clock::now();
        if (r >= 0) floor[c].push_back(std::chrono::duration<double, std::micro>(s1 - s0).count());
      }
    }
    std::printf("GET /v2/health/live round trip (the HTTP floor):");
    json row = {{"model", "GET /v2/health/live"}};
    for (size_t c = 0; c < conns.size(); ++c) {
      std::printf(" %s p50 %.1f us, p99 %.1f us;", conns[c]->label().c_str(),
                  percentile(floor[c], 50), percentile(floor[c], 99));
      row[conns[c]->label()] = {{"latency_p50_us", percentile(floor[c], 50)},
                                {"latency_p99_us", percentile(floor[c], 99)}};
    }
    std::printf("\n");
    report.push_back(row);
  }
  std::printf("%-8s %5s %11s %11s", "model", "items", "compute p50", "decode p50");
  for (const auto& c : conns) {
    std::printf(" | %-8s service p50, overhead p50 / p99 over it; over compute (us)",
                c->label().c_str());
  }
  std::printf("\n");
  for (uint32_t mi = 0; mi < models.size(); ++mi) {
    const auto& info = models[mi];
    auto spec = recsched::engine::load_model_spec(info.spec_path);
    if (!spec) {
      std::cerr << "recsched-overhead: " << spec.status().message() << "\n";
      return 1;
    }
    auto model = recsched::engine::load_model(*spec, {});
    if (!model) {
      std::cerr << "recsched-overhead: " << model.status().message() << "\n";
      return 1;
    }
    for (uint32_t n : sizes) {
      const recsched::load::EncodedQuery q = pool.encode(mi, n, 0);
      std::string body = q.json;
      for (std::string_view s : q.sections) body.append(s);
      const recsched::Batch batch = recsched::engine::random_batch(*spec, n, 7);
      std::vector<float> scores(size_t(n) * spec->num_outputs());
      recsched::engine::Workspace ws;
      // Each daemon's request: the body, or with --shm the JSON naming its region.
      std::vector<http::request<http::string_body>> infer;
      auto shm_body = [&](size_t c) {
        return recsched::load::shared_memory_body(q, regions[c]->name(), regions[c]->data(), 0,
                                                  regions[c]->size());
      };
      for (size_t c = 0; c < conns.size(); ++c) {
        const std::string target = "/v2/models/" + info.name + "/infer";
        infer.push_back(shm ? make_request(target, shm_body(c), 0)
                            : make_request(target, body, q.header_length));
      }
      const size_t request_bytes = infer[0].body().size();
      std::vector<double> compute, decode;
      std::vector<std::vector<double>> latency(conns.size());
      for (int r = -10; r < reps; ++r) {  // 10 warm-up reps
        const auto t0 = Clock::now();
        if (!(*model)->forward(view_of(batch), ws, scores).is_ok()) return 1;
        const auto t1 = Clock::now();
        if (r >= 0) compute.push_back(std::chrono::duration<double, std::micro>(t1 - t0).count());
        // The daemon's own decoding of this body (kserve.cc), in this process: one part of
        // the overhead, timed alone.
        std::string wire = shm ? infer[0].body() : body;  // the daemon decodes the body it owns
        const auto d0 = Clock::now();
        const auto parsed = recsched::daemon::parse_infer_request_in_place(
            std::move(wire), shm ? std::nullopt : std::optional<size_t>(q.header_length), *spec,
            {}, shm ? &local_reader : nullptr);
        const auto d1 = Clock::now();
        if (!parsed) {
          std::cerr << "recsched-overhead: " << parsed.status().message() << "\n";
          return 1;
        }
        if (r >= 0) decode.push_back(std::chrono::duration<double, std::micro>(d1 - d0).count());
        // The daemons take turns in each place (rotating who goes first), so that none
        // always follows this thread's compute, or another daemon, into the caches.
        for (size_t i = 0; i < conns.size(); ++i) {
          const size_t c = (i + static_cast<size_t>(r + 10)) % conns.size();
          if (shm) shm_body(c);  // the inputs written afresh, as a client writes each query's
          const auto s0 = Clock::now();
          const unsigned status = conns[c]->send(infer[c], nullptr, spin);
          const auto s1 = Clock::now();
          if (status != 200) {
            std::cerr << "recsched-overhead: " << conns[c]->label() << " answered " << status
                      << " for " << info.name << "\n";
            return 1;
          }
          if (r >= 0) latency[c].push_back(std::chrono::duration<double, std::micro>(s1 - s0).count());
        }
      }
      const double compute_p50 = percentile(compute, 50);
      std::printf("%-8s %5u %9.1f us %8.1f us", info.name.c_str(), n, compute_p50,
                  percentile(decode, 50));
      json row = {{"model", info.name}, {"items", n}, {"compute_p50_us", compute_p50},
                  {"decode_p50_us", percentile(decode, 50)}, {"body_bytes", request_bytes},
                  {"shared_memory", shm}};
      for (size_t c = 0; c < conns.size(); ++c) {
        const double p50 = percentile(latency[c], 50) - compute_p50;
        const double p99 = percentile(latency[c], 99) - compute_p50;
        json col = {{"latency_p50_us", percentile(latency[c], 50)},
                    {"latency_p99_us", percentile(latency[c], 99)},
                    {"overhead_p50_us", p50},
                    {"overhead_p99_us", p99},
                    {"overhead_p50_of_compute", p50 / compute_p50}};
        const std::vector<DaemonTimes> times =
            daemon_times(*conns[c], info.name, latency[c].size());
        if (times.empty()) {
          std::printf(" | %-8s %9s %8s / %8s; %8.1f / %8.1f", conns[c]->label().c_str(), "n/a",
                      "n/a", "n/a", p50, p99);
        } else {
          // Where the overhead goes: outside the service (HTTP: the body's transfer and
          // parse, the answer's write, thread wake-ups), the hand-off to a worker, and the
          // rest inside the service (decoding, dispatch, finishing).
          const size_t k = times.size();
          std::vector<double> over(k), service_us(k), http(k), handoff(k), inside(k), decode(k);
          for (size_t i = 0; i < k; ++i) {
            service_us[i] = times[i].service * 1e3;
            over[i] = latency[c][i] - service_us[i];
            http[i] = latency[c][i] - times[i].actual * 1e3;
            handoff[i] = times[i].wait * 1e3;
            inside[i] = (times[i].actual - times[i].wait - times[i].service) * 1e3;
            decode[i] = times[i].decode * 1e3;
          }
          const double s50 = percentile(service_us, 50);
          std::printf(" | %-8s %9.1f %8.1f / %8.1f; %8.1f / %8.1f", conns[c]->label().c_str(), s50,
                      percentile(over, 50), percentile(over, 99), p50, p99);
          col["service_p50_us"] = s50;
          col["over_service_p50_us"] = percentile(over, 50);
          col["over_service_p99_us"] = percentile(over, 99);
          col["over_service_p50_of_service"] = percentile(over, 50) / s50;
          col["outside_service_p50_us"] = percentile(http, 50);
          col["handoff_p50_us"] = percentile(handoff, 50);
          col["decode_dispatch_finish_p50_us"] = percentile(inside, 50);
          col["decode_dispatch_p50_us"] = percentile(decode, 50);  // of that, before the placement
        }
        row[conns[c]->label()] = std::move(col);
      }
      std::printf("\n");
      report.push_back(row);
    }
  }
  if (!json_out.empty()) std::ofstream(json_out) << report.dump(2) << "\n";
  return 0;
}
