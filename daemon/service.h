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
#include <string>
#include <thread>
#include <vector>

#include "core/profile.h"
#include "core/status.h"
#include "daemon/config.h"
#include "daemon/http_server.h"
#include "engine/model.h"
#include "profiler/cpu_runner.h"
#include "profiler/power.h"
#include "profiler/topology.h"

namespace recsched::daemon {

/// Tail latency over the last `capacity` completed queries (DeepRecSched's window).
class LatencyWindow {
 public:
  explicit LatencyWindow(size_t capacity) : capacity_(capacity) {}
  void add(double ms);
  /// The p-th percentile (nearest rank) of the window; 0 when empty.
  double percentile(double p) const;
  size_t size() const { return samples_.size(); }

 private:
  size_t capacity_;
  std::deque<double> samples_;
};

/// One entry of the placement log.
struct Placement {
  uint64_t query_id = 0;
  std::string request_id;
  std::string model;
  uint32_t items = 0;
  std::string device;
  uint32_t sub_batch = 0;
  int workers = 0;
  double predicted_ms = 0;
  double actual_ms = 0;
  std::string policy;
  std::string reason;
  std::string outcome;  ///< "ok", or the error that ended it
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
  /// Queries admitted and not yet answered.
  uint64_t in_flight() const { return in_flight_; }

 private:
  struct ModelState;
  Service() = default;

  // Routes (routes.cc).
  void infer(const std::string& model, HttpRequest request, Responder respond);
  HttpResponse metrics() const;
  HttpResponse topology_json() const;
  HttpResponse devices_json() const;
  HttpResponse models_json() const;
  HttpResponse profiles_json() const;
  HttpResponse placements_json(size_t limit) const;
  HttpResponse stats_json() const;
  HttpResponse policy_json() const;
  HttpResponse put_policy(const std::string& body);
  HttpResponse post_profile();

  ModelState* find(const std::string& name) const;
  /// Reads the device's meter; an estimating one is first fed the runner's busy time since
  /// the last reading (serving work, which no sweep reports).
  Result<double> energy_joules() const;
  void record(Placement p);
  double predict_ms(const ModelState& m, uint32_t items) const;

  DaemonConfig config_;
  std::unique_ptr<profiler::Topology> topology_;
  profiler::Devices devices_;
  std::string device_id_;  ///< the static policy's device
  std::unique_ptr<profiler::CpuRunner> runner_;
  std::unique_ptr<profiler::PowerMeter> meter_;
  std::string meter_note_;
  std::vector<std::unique_ptr<ModelState>> models_;
  std::shared_ptr<const ProfileTable> profiles_;
  double profile_seconds_ = 0;

  mutable std::mutex mu_;  // guards stats, the placement log, config_ fields that reload changes
  std::deque<Placement> placements_;
  std::atomic<uint64_t> next_query_{1};
  std::atomic<uint64_t> in_flight_{0};
  std::atomic<bool> ready_{false};
  std::atomic<bool> profiling_{false};
  std::thread reprofile_;
  mutable std::mutex energy_mu_;
  mutable double busy_fed_s_ = 0;  // runner busy seconds already given to the estimator
};

/// Upper bounds (seconds) of the latency histogram buckets in /metrics.
const std::vector<double>& latency_buckets();

/// One served model and its statistics.
struct Service::ModelState {
  ModelConfig cfg;
  std::unique_ptr<engine::Model> model;
  std::string spec_hash;
  // Statistics, under Service::mu_.
  LatencyWindow window{64};
  uint64_t requests = 0, ok = 0, invalid = 0, rejected = 0, failed = 0, sla_violations = 0;
  uint64_t items = 0;
  std::vector<uint64_t> buckets = std::vector<uint64_t>(latency_buckets().size(), 0);
  double latency_sum_s = 0;
};

}  // namespace recsched::daemon
