// The serving core of recschedd: the models loaded on their device, profiles, admission,
// placement, the runner, statistics, the placement log; and the routes (routes.cc) that
// expose them over HTTP. Built once at start (config -> topology -> models -> profiles);
// the HTTP server calls handle() for every request.
#pragma once

#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "core/profile.h"
#include "core/status.h"
#include "daemon/config.h"
#include "daemon/cpu_latency.h"
#include "daemon/device.h"
#include "daemon/fleet.h"
#include "daemon/http_server.h"
#include "daemon/shared_memory.h"
#include "engine/model.h"
#include "policies/capacity.h"
#include "policies/correction.h"
#include "policies/dispatcher.h"
#include "policies/plugin.h"
#include "hw/topology.h"

namespace recsched::daemon {

/// Tail latency over the last `capacity` completed queries (DeepRecSched's window).
/// Read on every dispatch (the policies' recent p95), so the samples are also kept sorted:
/// a percentile is one index, an add a binary search and a move of at most the window.
/// (It copied and sorted the window on every read, under the service's lock.)
class LatencyWindow {
 public:
  explicit LatencyWindow(size_t capacity) : capacity_(capacity) {}
  void add(double ms);
  /// The p-th percentile (nearest rank) of the window; 0 when empty.
  double percentile(double p) const;
  size_t size() const { return samples_.size(); }

 private:
  size_t capacity_;
  std::deque<double> samples_;  // in arrival order: the oldest leaves first
  std::vector<double> sorted_;  // the same samples, ascending
};

/// One entry of the placement log: the query, the policy's placement as it decided it,
/// and how it ended.
struct PlacementRecord {
  uint64_t query_id = 0;
  std::string request_id;
  std::string model;
  uint32_t items = 0;
  std::string policy;
  policies::Placement placement;
  double actual_ms = 0;  ///< arrival to answer; 0 if it never ran
  double decode_ms = 0;  ///< arrival to the placement: decoding, validation, dispatch
  double wait_ms = 0;    ///< dispatched to its first piece's start (queueing); 0 if never ran
  double service_ms = 0;  ///< first piece's start to last piece's end on the runner
  double suspended_ms = 0;  ///< of service_ms, suspended while more urgent queries ran
  std::string outcome;   ///< "ok", or the error that ended it
};

class Service {
 public:
  /// Builds everything the config asks for; `progress` gets one line per step ("loading
  /// rmc1", "profiling 3/8 models") for logs and systemd's STATUS=.
  static Result<std::unique_ptr<Service>> create(DaemonConfig config,
                                                 std::function<void(const std::string&)> progress);
  ~Service();

  /// Routes one request (see routes.cc); never blocks on a query.
  void handle(HttpRequest request, Responder respond);

  /// Takes a reloaded config: SLA targets, limits and policy parameters change now;
  /// listeners, models and devices need a restart (the return says which were ignored).
  std::string reload(const DaemonConfig& config);

  bool ready() const { return ready_; }
  /// Leaving the fleet (SIGTERM with fleet.drain_ms): /v2/health/ready answers 503 and the
  /// balancer's agent `drain`, while queries are still served.
  void set_draining(bool on) { draining_ = on; }
  bool draining() const { return draining_; }
  /// Each model's capacity at its target and the host's headroom now (policies/capacity.h),
  /// from the corrected profiles and the offered and served rates of the last ~10 s.
  policies::HostCapacity capacity() const;
  FleetState fleet_state() const;
  /// The line HAProxy's agent check gets now (agent_reply in fleet.h).
  std::string agent_status() const;
  const FleetConfig& fleet_config() const { return config_.fleet; }
  /// Queries admitted and not yet answered.
  uint64_t in_flight() const { return in_flight_; }
  /// Queries answered with scores since start (every model): systemd's STATUS= line.
  uint64_t answered() const { return answered_; }
  /// The server's I/O counters, shown by /v1/stats ("io"), with the idle_poll_us it runs
  /// with (create_server calls it, before the server starts).
  void watch_io(std::shared_ptr<const IoCounters> counters, uint32_t idle_poll_us) {
    io_counters_ = std::move(counters);
    io_poll_us_ = idle_poll_us;
  }

 private:
  struct ModelState;
  Service() = default;

  // The serving path (serving.cc): one request from decode to answer.
  struct InFlight;
  void infer(const std::string& model, HttpRequest request, Responder respond);
  /// Settles `q` on every path: the dispatcher's backlog (if admitted), the model's counts,
  /// the placement log (if it was placed), and the answer: scores, or `st` as HTTP.
  void finish(const std::shared_ptr<InFlight>& q, Status st);
  /// An answered query's service time on the runner and its time outside it, learnt against
  /// the profile (correction_); republishes profiles_ every kPublishEvery.
  void learn(const InFlight& q, Clock::time_point finished);
  /// Each served device's runner load and health, in devices_'s order.
  std::vector<policies::DeviceLoad> device_loads(uint32_t degraded_ms) const;

  // Routes (routes.cc).
  HttpResponse metrics() const;
  HttpResponse topology_json() const;
  HttpResponse devices_json() const;
  HttpResponse models_json() const;
  HttpResponse profiles_json() const;
  HttpResponse placements_json(size_t limit) const;
  HttpResponse stats_json() const;
  HttpResponse policy_json() const;
  HttpResponse capacity_response() const;
  HttpResponse put_policy(const std::string& body);
  HttpResponse post_profile();
  /// /v2/systemsharedmemory[/region/{name}]/{status,register,unregister} (p: the path's
  /// parts after "v2"): Triton's system shared-memory extension, over the unix socket.
  HttpResponse shared_memory_route(const std::vector<std::string>& p, const HttpRequest& req);

  // Start-up steps, in create()'s order (service.cc).
  using Progress = std::function<void(const std::string&)>;
  /// limits.cpu_latency_us, if set: held from before profiling (the profiles then measure
  /// what serving sees) to the end. One that cannot be held is logged and reported by
  /// /v1/stats; the daemon serves without it.
  void hold_cpu_latency();
  Status discover_topology(const Progress& progress);
  void load_policy_plugins();
  Status open_devices(const Progress& progress);
  Status load_models(const Progress& progress);
  Status load_or_measure_profiles(const Progress& progress);
  void warm_up(const Progress& progress);
  /// fleet.nfd_feature_file, from the capacity at rest (no traffic); a failure is logged.
  void write_nfd_features() const;
  void start_dispatcher(std::unique_ptr<policies::Policy> policy);
  /// The served devices as the dispatcher and the simulator see them.
  std::vector<policies::DeviceInfo> device_infos() const;

  ModelState* find(const std::string& name) const;
  /// [{device, kernels}] for each device holding `m`.
  nlohmann::json served_on(const ModelState& m) const;
  /// A new policy instance by name: a built-in or a loaded plugin.
  Result<std::unique_ptr<policies::Policy>> make_policy(const std::string& name,
                                                        const nlohmann::json& params) const;
  /// Switches to `name` (or re-tunes it if it is the active one); the error names why not.
  Status set_policy(const std::string& name, const nlohmann::json& params);
  /// `params`, with deeprecsched's `models` tuned before serving (sim::tune_deeprecsched
  /// on the measured profiles, each model alone at its target) when the policy is
  /// deeprecsched and they give neither `models` nor `tune: false`; else unchanged.
  nlohmann::json with_tuning(const std::string& name, nlohmann::json params) const;
  std::vector<std::string> policy_names() const;
  std::shared_ptr<const ProfileTable> profiles() const;

  DaemonConfig config_;
  std::unique_ptr<hw::Topology> topology_;
  hw::Devices hardware_;  ///< every device the topology has, served or not
  policies::Plugins plugins_;   ///< before the dispatcher: its policy may come from one
  std::vector<policies::Plugins::Outcome> plugin_outcomes_;
  std::vector<std::unique_ptr<ServingDevice>> devices_;  ///< the served ones
  std::vector<std::unique_ptr<ModelState>> models_;
  /// What the dispatcher and policies predict with: the measured profile corrected by what
  /// serving measured (policies::ServiceCorrection), republished every kPublishEvery
  /// learnt queries. Under mu_.
  std::shared_ptr<const ProfileTable> profiles_;
  std::shared_ptr<const ProfileTable> measured_profiles_;  ///< as the profiler measured it
  /// deeprecsched's last tuning (with_tuning), reused while the measured profiles, the
  /// targets, the devices and the admission limits it was found for stay the same.
  struct DrsTuningCache {
    std::shared_ptr<const ProfileTable> table;
    std::string key;
    nlohmann::json models;
  };
  mutable std::mutex tuning_mu_;
  mutable DrsTuningCache tuning_;
  policies::ServiceCorrection correction_;                  ///< under mu_
  uint64_t learnt_since_publish_ = 0;                       ///< under mu_
  static constexpr uint64_t kPublishEvery = 16;
  /// The batch each model is warmed up with before serving (warm_up; capped by
  /// limits.max_items).
  static constexpr uint32_t kWarmUpItems = 1024;
  /// Sets the measured profile (start-up, re-profiling) and forgets what was learnt
  /// against the previous one. mu_ held.
  void set_measured_profiles(std::shared_ptr<const ProfileTable> table);
  /// limits.gpu_merging onto every GPU's runner, its predictions from the measured
  /// profiles. mu_ held.
  void apply_gpu_merging();
  double profile_seconds_ = 0;

  /// Registered shared-memory regions (limits.max_shm_regions, fixed at start).
  std::unique_ptr<SystemSharedMemory> shm_;
  /// limits.cpu_latency_us's request while it is held; else why not ("" if none asked).
  CpuLatencyHold cpu_latency_;
  /// The HTTP server's I/O counters (watch_io); null until a server is attached.
  std::shared_ptr<const IoCounters> io_counters_;
  uint32_t io_poll_us_ = 0;

  mutable std::mutex dispatch_mu_;  // guards dispatcher_ (and the policy inside it)
  std::unique_ptr<policies::Dispatcher> dispatcher_;

  mutable std::mutex mu_;  // guards stats, the placement log, config_ fields that reload changes
  std::deque<PlacementRecord> placements_;
  /// Inference requests arriving, all models (mu_): limits.inline_idle_max_ms's rate test.
  policies::RateMeter arrivals_{1.0};
  std::atomic<uint64_t> next_query_{1};
  std::atomic<uint64_t> in_flight_{0};
  std::atomic<uint64_t> answered_{0};
  std::atomic<bool> ready_{false};
  std::atomic<bool> profiling_{false};
  std::atomic<bool> draining_{false};
  std::atomic<bool> closing_{false};  ///< ~Service has begun: devices_ is being cleared
  const Clock::time_point started_ = Clock::now();
  /// Seconds since start, the rate meters' clock.
  double seconds(Clock::time_point t) const {
    return std::chrono::duration<double>(t - started_).count();
  }
  /// The ORCA report is built from a capacity snapshot at most this old.
  static constexpr std::chrono::milliseconds kCapacityCacheFor{200};
  mutable std::mutex capacity_mu_;
  mutable std::pair<Clock::time_point, std::string> orca_cache_;  // under capacity_mu_
  std::string orca_header() const;
  std::thread reprofile_;
};

/// The HTTP server's limits from the config's.
ServerOptions server_options(const LimitsConfig& limits);

/// The HTTP server in front of `svc` (which must outlive its stop()): every request to
/// Service::handle, and the I/O threads polling before they sleep only while no query is
/// in flight (then no worker needs a core, and a poll takes only one that would idle).
std::unique_ptr<HttpServer> create_server(Service& svc, const LimitsConfig& limits);

/// Upper bounds (seconds) of the latency histogram buckets in /metrics.
const std::vector<double>& latency_buckets();

/// One served model and its statistics.
struct Service::ModelState {
  ModelConfig cfg;
  /// The model loaded on each served device (Service::devices_'s order); null where it
  /// could not be (e.g. too large for a GPU's memory): the policy never sees that device's
  /// profile for it, so never places it there.
  std::vector<std::unique_ptr<engine::Model>> on;
  std::string spec_hash;
  // Statistics, under Service::mu_.
  LatencyWindow window{64};
  uint64_t requests = 0, ok = 0, invalid = 0, rejected = 0, failed = 0, sla_violations = 0;
  uint64_t items = 0;
  std::vector<uint64_t> buckets = std::vector<uint64_t>(latency_buckets().size(), 0);
  double latency_sum_s = 0;
  std::vector<uint64_t> per_device;  ///< queries placed on each served device
  // What the capacity model sees (policies::ModelDemand), under Service::mu_.
  policies::RateMeter offered, served, errors;
  double mean_items = policies::kDefaultItems;  ///< exponentially weighted, decoded queries
  bool sized = false;                           ///< mean_items has seen a query
};

}  // namespace recsched::daemon
