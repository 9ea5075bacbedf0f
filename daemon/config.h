// recschedd's configuration: the JSON file (/etc/recsched/recschedd.json), read and fully
// validated at start, and the command-line overrides. Depends on core, engine (model specs),
// profiler (partition, profiling and power options) and nlohmann/json.
//
// The keys. Only "models" is required. An unknown key anywhere is an error, and so is a key
// given twice in one object. Relative paths are taken against the config file's directory.
// systemd/recschedd.json writes out every key with its default. Key, meaning; default; range:
//
// listen.socket               unix socket path, "" = none; "/run/recsched/recschedd.sock"; <= 107 B
// listen.tcp                  "HOST:PORT" or "[IPV6]:PORT", "" = none; "127.0.0.1:8000"; port
//                             in [0, 65535], 0 = any free port. socket and tcp may not both be "".
// listen.socket_group         group that owns the socket (mode 0660: its members may change
//                             the daemon), "" = the daemon's own group; ""; a group of this host
// models                      required; array of spec paths or of objects (keys below); >= 1 entry
// models[i].spec              model spec file (models/*.json), loaded and validated; required; its
//                             model name must differ from every other model's
// models[i].weights           safetensors weights, "" = the spec's seeded weights; ""; a file
// models[i].sla_ms            tail-latency target, ms; default_sla_ms(name) or 100; (0, 3600000]
// models[i].sla_percentile    the percentile sla_ms bounds; 95; (0, 100)
// partition                   how the CPUs are cut into devices; "numa"; numa, l3, core-kind, core
// policy.name                 placement policy (the registry checks it later); "static"; non-empty
// policy.params               the policy's own arguments (the policy checks them); {}; an object
// policy.plugin_dir           directory of external policy plugins (*.so), "" = none; ""; a
//                             directory owned by root or the daemon's user, writable by no one else
// devices                     device ids to serve on ("cpu0", "gpu0"; see recsched-profile
//                             topology), [] = every CPU device of the partition and, with
//                             gpus, every GPU; []; ids of this host, each once
// state_dir                   profile cache and state; "/var/lib/recsched"; a non-empty path
// token                       bearer token for state-changing routes over TCP, "" = none (they then
//                             need the unix socket); ""; RFC 6750 characters A-Za-z0-9-._~+/ then =
// gpus                        serve on CUDA GPUs too; true; true or false
// gpu_graph_max_items         GPU passes of up to this many items replay a CUDA graph
//                             (engine/cuda/cuda_model.h), 0 = none; 256; [0, 1048576]
// gpu_table_batched           every embedding table of a GPU model pooled in one launch
//                             (false: a launch per table); true; true or false
// profile.batch_sizes         batch sizes profiled; 1, 2, 4 ... 1024; distinct, in [1, 1048576]
// profile.seconds_per_point   timed seconds per batch size and split; 0.05; (0, 60]
// profile.quick               quick sweep (3 sizes, 10 ms each) in place of the two above; false
// power.cpu_active_w_per_core estimated busy watts per core; 8; [0, 10000], >= the idle watts
// power.cpu_idle_w_per_core   estimated idle watts per core; 1.5; [0, 10000]
// power.cpu_parked_w_per_core estimated watts of a parked core (min-energy); 0.2; [0, idle]
// power.gpu_active_w          estimated busy watts per GPU; 400; [0, 10000], >= the idle watts
// power.gpu_idle_w            estimated idle watts per GPU; 70; [0, 10000]
// power.powercap_root         where the RAPL zones are; "/sys/class/powercap"; a non-empty path
// limits.max_body_bytes       largest request body; 67108864 (64 MiB); [1024, 1073741824]
// limits.max_header_bytes     request line and headers together; 32768; [1024, 1048576]
// limits.max_headers          header fields per request; 100; [1, 10000]
// limits.max_connections      open connections; 256; [1, 65536]
// limits.header_timeout_ms    from a request's first byte to the end of its headers; 5000;
//                             [1, 3600000]
// limits.read_timeout_ms      from a request's first byte to the end of its body; 10000;
//                             [1, 3600000]
// limits.idle_timeout_ms      keep-alive idle time before closing; 60000; [1, 3600000]
// limits.io_threads           threads that read requests and write what a worker did not,
//                             a connection on one of them; 2; [1, 64]; needs a restart
// limits.idle_poll_us         the most an I/O thread with nothing to do polls its sockets
//                             (yielding its core to runnable threads) before it sleeps, so
//                             that a request arriving meanwhile costs no wake-up; the
//                             window adapts below it (daemon::PollWindow: none under
//                             sparse traffic); 200; [0, 10000]; 0 = never; needs a restart
// limits.cpu_latency_us       hold the kernel's CPU latency QoS at this many us while
//                             running (daemon/cpu_latency.h): no idle core sleeps deeper
//                             than it wakes in that time, so a request or a hand-off that
//                             finds a thread asleep wakes it sooner, for more idle power;
//                             null (none); [0, 100000]; 0 = idle cores poll; needs
//                             /dev/cpu_dma_latency writable (root, or the udev rule
//                             systemd/60-recsched-cpu-latency.rules); needs a restart
// limits.max_queue            queries waiting per device; 1024; [1, 1048576]
// limits.inline_max_ms        a query predicted to run in at most this long (ms) runs on
//                             the I/O thread that read it when a worker of its CPU device
//                             is idle and no query waits (exec::Runner::run_here): no
//                             worker wake-up; that thread reads nothing else meanwhile;
//                             0.1; [0, 10]; 0 = never
// limits.inline_idle_max_ms   the same bound when no other query is in flight in the daemon
//                             and requests arrive slowly enough that at most 1 % of them
//                             would come during such a pass (LimitsConfig::inline_bound_ms):
//                             at light load a worker's wake-up from an idle core is most
//                             of what the hand-off costs; 1.0; [0, 10]; 0 = only
//                             inline_max_ms
// limits.max_items            items per query; 4096; [1, 1048576]
// limits.max_elements         tensor elements per request, all inputs; 67108864; [1, 4294967296]
// limits.max_json_depth       nesting depth of a request's JSON; 32; [2, 1000]
// limits.max_shm_regions      system shared-memory regions registered at once by one
//                             user (Triton's extension, daemon/shared_memory.h: clients on
//                             the unix socket send inputs by region; each user's counted
//                             apart); 16; [0, 4096]; 0 = the extension off; needs a restart
// limits.reject_factor        admit a query while its predicted completion (on the profiles
//                             corrected by what serving measured) is at most factor x SLA x
//                             its priority's share, or its device is idle; 1; [0.1, 1000]
// limits.normal_priority_share  the share for priority 0 (the default); 0.8; (0, 1]
// limits.low_priority_share   the share for priority < 0 (priority > 0 has 1); 0.5;
//                             (0, normal_priority_share]
// limits.late_budget          the fraction of each model's tail (100 - sla_percentile, in
//                             %) admission may spend on queries predicted past the bound
//                             above: such a query is admitted while the model's recent
//                             late answers leave room (policies::Admission); 0.5; [0, 1]
// limits.wait_bound_fraction  bounded waiting on CPU workers (policies::BoundedWait): a
//                             lane (sized from the tight models' rates) runs only pieces of
//                             at most this fraction of the tightest live slack; 0 turns it
//                             off; 0 (preemption bounds
//                             the wait instead, docs/policies.md); [0, 1]
// limits.preemption           CPU workers stop a running pass at its next yield point
//                             (between tables, layers, recurrent steps) for a query due
//                             sooner (exec::CpuRunner); true; true or false
// limits.gpu_merging          a GPU stream that frees runs the query due first together
//                             with the queued queries of its model that still end by
//                             their deadlines, one pass of the merged size (core/merge.h,
//                             exec::WholeQueryRunner); admission and the policies count
//                             what a query adds to those passes; true; true or false
// limits.worker_nice          the CPU workers' nice value (lower priority than the threads
//                             that read requests and write answers on the same cores); 10;
//                             [0, 19]; needs a restart
// limits.degraded_ms          a device whose query failed is avoided this long; 10000;
//                             [0, 3600000]
// limits.window               completed queries in the tail-latency window; 64; [1, 1048576]
// limits.placement_log        placements kept for /v1/placements; 4096; [0, 1048576]
// fleet.agent_check           HAProxy agent-check listener "HOST:PORT" ("[IPV6]:PORT"), "" =
//                             none; ""; as listen.tcp, port 1-65535; needs a restart
// fleet.agent_weight_qps      the host headroom (q/s) the agent reports as weight 100 %; set
//                             the same on every host behind one balancer so weights compare
//                             (up to 256 %); 0 = this host's own capacity (the weight is then
//                             its free fraction, 1-100 %); 0; [0, 1e9]
// fleet.max_utilisation       the fraction of the devices' throughput counted as capacity
//                             (policies::CapacityOptions); 0.8; (0, 1]
// fleet.drain_ms              on SIGTERM: report not ready and `drain`, close connections
//                             after each answer, keep serving this long, then stop (keep it
//                             and the answers in flight within systemd's TimeoutStopSec,
//                             60 s in the unit, or Kubernetes' grace period); 0;
//                             [0, 3600000]
// fleet.nfd_feature_file      Node Feature Discovery local feature file written at start
//                             and after re-profiling, "" = none; ""; a path
// fleet.orca_load_report      add an ORCA `endpoint-load-metrics` header (TEXT) to every
//                             inference answer, for Envoy's client-side weighted round
//                             robin; false; true or false
#pragma once

#include <algorithm>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/status.h"
#include "engine/model_spec.h"
#include "profiler/power.h"
#include "profiler/profiler.h"
#include "hw/topology.h"

namespace recsched::daemon {

/// Where the HTTP API listens.
struct ListenConfig {
  std::string socket = "/run/recsched/recschedd.sock";  ///< "" = no unix socket
  std::string tcp = "127.0.0.1:8000";  ///< "HOST:PORT", "" = no TCP; port 0 = any free port
  std::string socket_group;            ///< owns the socket; "" = the daemon's group

  friend bool operator==(const ListenConfig&, const ListenConfig&) = default;
};

/// One served model.
struct ModelConfig {
  std::string spec_path;       ///< resolved (relative paths against the config file's directory)
  std::string weights_path;    ///< resolved; "" = the spec's seeded weights
  engine::ModelSpec spec;      ///< loaded and validated at config load
  double sla_ms = 0;           ///< the tail-latency target; default_sla_ms(name), else 100
  double sla_percentile = 95;  ///< which percentile sla_ms bounds, in (0, 100)
};

/// Admission and connection limits.
struct LimitsConfig {
  uint64_t max_body_bytes = uint64_t{64} << 20;
  uint32_t max_header_bytes = 32 * 1024;  ///< request line and headers
  uint32_t max_headers = 100;             ///< header fields
  uint32_t max_connections = 256;
  uint32_t header_timeout_ms = 5000;  ///< first byte to the end of the headers
  uint32_t read_timeout_ms = 10000;   ///< first byte to the end of the body
  uint32_t idle_timeout_ms = 60000;   ///< keep-alive idle
  uint32_t io_threads = 2;            ///< ServerOptions::io_threads
  uint32_t idle_poll_us = 200;        ///< ServerOptions::idle_poll_us
  std::optional<uint32_t> cpu_latency_us;  ///< CpuLatencyRequest held while running; none
  uint32_t max_queue = 1024;          ///< queries waiting per device
  double inline_max_ms = 0.1;         ///< run on the reading thread up to this (ms); 0 = never
  double inline_idle_max_ms = 1.0;    ///< ... up to this when nothing else is in flight
  uint32_t max_items = 4096;          ///< items per query
  uint64_t max_elements = uint64_t{64} << 20;  ///< tensor elements per request
  uint32_t max_json_depth = 32;                ///< nesting depth of a request's JSON
  uint32_t max_shm_regions = 16;               ///< SystemSharedMemory's limit; 0 = off
  double reject_factor = 1.0;  ///< admit while predicted completion <= factor x SLA x share
  double normal_priority_share = 0.8;  ///< priority 0's share of the admission bound
  double low_priority_share = 0.5;     ///< priority < 0's share (priority > 0: 1)
  double late_budget = 0.5;            ///< policies::Admission::late_budget; 0 = off
  double wait_bound_fraction = 0;      ///< policies::BoundedWait::fraction; 0 = off
  bool preemption = true;              ///< cooperative preemption on CPU workers
  bool gpu_merging = true;             ///< deadline-aware merging on GPUs (core/merge.h)
  uint32_t worker_nice = 10;           ///< CPU workers' nice value (exec::CpuRunner::create)
  uint32_t degraded_ms = 10000;        ///< how long a device whose query failed is avoided
  uint32_t window = 64;  ///< sliding window of completed queries for tail latency (DeepRecSched)
  uint32_t placement_log = 4096;  ///< placements kept for /v1/placements

  /// The share of requests that may arrive while a query admitted by inline_idle_max_ms
  /// runs on an I/O thread (and wait for it there, unseen by the daemon's own clock).
  static constexpr double kIdleInlineShare = 0.01;

  /// The most a query may be predicted to take and still run on the thread that read it:
  /// inline_max_ms; with no other query in flight, up to inline_idle_max_ms as long as at
  /// most kIdleInlineShare of requests would arrive during it at `arrivals_per_s` (the
  /// rate allows 2 ms at 5 q/s, 0.15 at 68 q/s): at light load only, where it saves a
  /// worker's wake-up from an idle core and costs nothing that a tail target sees.
  double inline_bound_ms(uint64_t others_in_flight, double arrivals_per_s) const {
    if (others_in_flight != 0) return inline_max_ms;
    const double by_rate =
        arrivals_per_s > 0 ? 1000.0 * kIdleInlineShare / arrivals_per_s : inline_idle_max_ms;
    return std::max(inline_max_ms, std::min(inline_idle_max_ms, by_rate));
  }

  friend bool operator==(const LimitsConfig&, const LimitsConfig&) = default;
};

/// How recschedd fits into a fleet: capacity export, the balancer's agent, draining.
struct FleetConfig {
  std::string agent_check;       ///< HAProxy agent "HOST:PORT"; "" = none
  double agent_weight_qps = 0;   ///< headroom reported as weight 100 %; 0 = own capacity
  double max_utilisation = 0.8;  ///< policies::CapacityOptions::max_utilisation
  uint32_t drain_ms = 0;         ///< serving on after SIGTERM while the balancer drains
  std::string nfd_feature_file;  ///< "" = none
  bool orca_load_report = false;

  friend bool operator==(const FleetConfig&, const FleetConfig&) = default;
};

/// The placement policy: its registry name (not checked here) and its own arguments.
struct PolicyConfig {
  std::string name = "static";
  nlohmann::json params = nlohmann::json::object();  ///< always an object
  std::string plugin_dir;                            ///< "" = no external policies

  friend bool operator==(const PolicyConfig&, const PolicyConfig&) = default;
};

/// The whole validated configuration (the keys: see the top of this file).
struct DaemonConfig {
  std::string path;  ///< where it was read from
  ListenConfig listen;
  std::vector<ModelConfig> models;  ///< at least one; names unique
  hw::Partition partition = hw::Partition::kNuma;
  PolicyConfig policy;
  std::vector<std::string> devices;  ///< empty = every CPU device (and GPU, with gpus)
  std::string state_dir = "/var/lib/recsched";
  /// Bearer token for state-changing routes over TCP; "" = none (they then need the socket).
  std::string token;
  bool gpus = true;
  /// How the CUDA models run (engine::cuda::CudaOptions): graphs for passes up to this many
  /// items, and every table in one launch. Both were written without a GPU at hand
  /// (issue 18); these turn them off on a host where they misbehave.
  uint32_t gpu_graph_max_items = 256;
  bool gpu_table_batched = true;
  profiler::ProfileOptions profile;  ///< min_reps, max_reps: the defaults, or quick()'s
  profiler::PowerConfig power;
  LimitsConfig limits;
  FleetConfig fleet;
};

/// Reads and validates the config at `path`; relative paths in it are taken against its
/// directory (made absolute). kNotFound "config PATH: cannot open file" if it cannot be
/// opened; kInvalidArgument, one line "config PATH: key 'K': what is wrong" (K a key path
/// such as "limits.window" or "models[2].sla_ms"), for anything else: not JSON, not an
/// object, an unknown or repeated key, a wrong type, a value out of range, a model spec
/// that is missing or invalid (K = "models[i]"), a weights path that is not a readable file.
Result<DaemonConfig> load_config(const std::string& path);

/// Parses a config from JSON text. `base_dir` resolves relative paths; `path_for_errors`
/// starts each message and becomes DaemonConfig::path. Fails as load_config, never with
/// kNotFound.
Result<DaemonConfig> parse_config(std::string_view text, const std::string& base_dir,
                                  const std::string& path_for_errors);

/// Applies the command-line overrides --tcp HOST:PORT, --socket PATH and --state-dir DIR,
/// checked as their keys are ("" turns a listener off); relative paths are made absolute
/// against the current directory. kInvalidArgument "--OPTION: what is wrong" for a bad
/// value, or if both listeners end up off; `config` is then unchanged.
Status apply_overrides(DaemonConfig& config, const std::optional<std::string>& tcp,
                       const std::optional<std::string>& socket,
                       const std::optional<std::string>& state_dir);

/// Splits "HOST:PORT" or "[IPV6]:PORT" into the host (brackets removed) and the port.
/// kInvalidArgument unless the host is non-empty (with no space, control character, '/',
/// '[' or ']'), an IPv6 address and only that is bracketed, and the port is a decimal
/// number in 0-65535 (0: the OS picks a free port).
Result<std::pair<std::string, uint16_t>> split_host_port(const std::string& text);

/// The id of the group named `name` on this host (getgrnam_r); nullopt if there is none.
std::optional<uint32_t> group_id(const std::string& name);

/// DeepRecSys's tail-latency targets (ms) by model name: rmc1 100, rmc2 400, rmc3 100,
/// ncf 5, wnd 25, mtwnd 25, din 100, dien 35; nullopt for any other name.
std::optional<double> default_sla_ms(std::string_view model_name);

}  // namespace recsched::daemon
