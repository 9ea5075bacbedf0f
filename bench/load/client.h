// recsched-load's client side: the daemon's address, one-off control calls (model metadata,
// metrics, the policy), and the open-loop run itself on Asio: one I/O thread sends each
// query at its scheduled time on a pool of keep-alive connections (a new connection when
// none is idle, up to a cap; past the cap the query waits for one, and its wait counts in
// its latency), and times it from its scheduled send time, so a slow daemon cannot hold
// the load back (no coordinated omission). Depends on Boost.Asio/Beast and nlohmann/json.
#pragma once

#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "bench/load/histogram.h"
#include "bench/load/payload.h"
#include "bench/load/workload.h"

namespace recsched::load {

/// Where recschedd listens: a unix socket path, or TCP host and port.
struct Endpoint {
  std::string unix_path;  ///< used when non-empty
  std::string host = "127.0.0.1";
  uint16_t port = 0;
  std::string token;  ///< bearer token for state-changing routes over TCP
  std::string describe() const;
};

struct HttpReply {
  unsigned status = 0;
  std::string body;
};

/// One request on a fresh connection (control routes, metrics). Throws std::runtime_error
/// if the daemon cannot be reached or answers malformed HTTP.
HttpReply http_call(const Endpoint& ep, const std::string& method, const std::string& target,
                    const std::string& body = "");

/// GET /v1/models and each GET /v2/models/{m}; lookups per table from each spec file when
/// readable (else 1, with a warning on stderr; `lookups` overrides by model name).
std::vector<ModelInfo> fetch_models(const Endpoint& ep,
                                    const std::map<std::string, int32_t>& lookups = {});

/// The daemon's energy counter: recsched_energy_joules_total summed over devices.
struct EnergyReading {
  double joules = 0;
  std::string source;  ///< the source labels seen, joined with '+': "rapl", "estimated", ...
  bool ok = false;
};
/// Parses Prometheus text for recsched_energy_joules_total (exposed for tests).
EnergyReading parse_energy(const std::string& metrics_text);
EnergyReading read_energy(const Endpoint& ep);

/// PUT /v1/policy {"name", "params"}; throws std::runtime_error with the daemon's answer
/// unless it says 200.
void set_policy(const Endpoint& ep, const std::string& name, const nlohmann::json& params);

/// One open-loop run.
struct RunOptions {
  double qps = 100;
  double duration_s = 10;       ///< of the schedule, warm-up included
  double warmup_s = 0;          ///< queries scheduled before this are sent but not counted
  double drain_timeout_s = 10;  ///< after the last send, wait this long for answers
  uint32_t max_connections = 128;
  std::vector<double> weights;  ///< per model in the pool; empty = equal
  SizeDistribution sizes;
  uint64_t seed = 1;
  /// Per-model targets for SLA-violation rates (by name); a model not here uses ModelInfo's.
  std::map<std::string, double> sla_ms;
  bool progress = false;  ///< a line each second on stderr
  bool energy = true;     ///< read /metrics at the measured window's start and end
  /// Ceiling mode: GET this path (e.g. /v2/health/live) instead of inferring.
  std::string trivial_path;
  /// Send inputs through a shared-memory region registered for the run (Triton's system
  /// shared-memory extension; the daemon's unix socket, binary payloads): a slot per
  /// connection, each query's inputs written there and the body only JSON naming them.
  bool shared_memory = false;
  /// Stay awake (polling the sockets) for this long before each scheduled send, rather
  /// than sleeping until it: a sleeping thread's timer wakes late (0.1-0.4 ms on a VM whose
  /// idle vCPUs halt), and an open-loop generator charges its own lateness to the server.
  /// At most a twentieth of the mean gap between sends (5 % of the run's time on the
  /// generator's thread). 0 sleeps until each send.
  uint32_t spin_before_send_us = 0;
};

/// Counts and latencies of one model (or of all).
struct ModelResult {
  std::string name;
  uint64_t sent = 0, ok = 0, rejected = 0, errors = 0, items = 0;
  uint64_t sla_violations = 0;  ///< ok queries slower than the target
  double sla_ms = 0;
  double sla_percentile = 95;  ///< the percentile sla_ms bounds (find-max-qps judges it)
  Histogram latency_ns;        ///< ok queries, from the scheduled send time to the last byte
  /// The same from the moment the request's first byte was handed to the socket: without
  /// the generator's own lag in sending (its timer's wake-up, its other sends), which
  /// latency_ns counts (open loop). Reported beside it, never judged.
  Histogram from_send_ns;
};

struct RunResult {
  RunOptions options;
  Histogram rejected_ns;  ///< 503 answers, from the scheduled send time: how fast shedding is
  double measured_s = 0;  ///< the measured window: duration - warmup
  double offered_qps = 0, achieved_qps = 0;
  uint64_t scheduled = 0;  ///< queries in the measured window
  std::vector<ModelResult> models;
  ModelResult all;
  std::map<std::string, uint64_t> rejections;  ///< 503s by reason: admission, queue, connections
  std::map<std::string, uint64_t> errors;      ///< everything else by kind
  // Energy over the measured window (and the drain).
  std::optional<double> energy_joules;
  std::string energy_source;
  double energy_seconds = 0;
  // The generator's own health: a late send means it could not keep up.
  Histogram send_lag_ns;
  Histogram write_ns;  ///< from the send to the request's last byte written
  uint32_t connections_opened = 0;
  /// Queries sent again on a new connection because the pooled keep-alive one they were
  /// written to had been closed by the server (idle timeout, a proxy's client timeout)
  /// before any byte of an answer: scoring has no side effect, so a retry is safe.
  uint32_t retried_on_new_connection = 0;
  uint32_t max_waiting = 0;  ///< most queries waiting for a free connection at once
  double wall_s = 0;         ///< first send to last answer
  uint64_t completed_total = 0;
  uint64_t scheduled_total = 0;  ///< every query of the schedule, warm-up included
  /// This process's CPU time over the run (every thread; the payload pool is built
  /// before): what the generator takes from a host it shares with the daemon.
  double cpu_s = 0;

  /// Answered over the ones sent, and the SLA criterion find-max-qps uses.
  double reject_rate() const;
  double error_rate() const;
  nlohmann::json to_json() const;
  std::string summary() const;
};

/// Runs the schedule against the daemon. Throws std::runtime_error only for setup failures
/// (bad endpoint); every per-query failure is counted in the result.
RunResult run_load(const Endpoint& ep, const PayloadPool& pool, const RunOptions& options);

}  // namespace recsched::load
