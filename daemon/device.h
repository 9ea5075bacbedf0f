// The devices recschedd serves on: each is a runner (exec/: a CPU device's exec::CpuRunner,
// pinned workers and sub-batches; a GPU's exec::WholeQueryRunner feeding the CUDA models,
// whole queries, one per stream) plus what the daemon needs around it: how to load and
// profile a model there, its power meter and its health. The service loads every model on
// every device and the dispatcher picks one per query.
#pragma once

#include <chrono>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/batch.h"
#include "core/profile.h"
#include "core/status.h"
#include "engine/model.h"
#include "exec/runner.h"
#include "hw/topology.h"
#include "policies/policy.h"
#include "profiler/power.h"
#include "profiler/profiler.h"

namespace recsched::daemon {

/// One device recschedd serves on.
class ServingDevice {
 public:
  /// The runner goes first: the queries it still finishes record their outcome here.
  virtual ~ServingDevice() { runner_.reset(); }
  const std::string& id() const { return id_; }
  policies::DeviceKind kind() const { return kind_; }
  /// Where its queries execute: submit(), load(), parking (exec/runner.h).
  exec::Runner& runner() { return *runner_; }
  const exec::Runner& runner() const { return *runner_; }
  int workers() const { return runner_->workers(); }
  virtual Result<std::unique_ptr<engine::Model>> load_model(const engine::ModelSpec& spec,
                                                            const engine::LoadOptions& lo) = 0;
  /// Measures `model` here (profiler::profile_cpu or profile_whole).
  virtual Result<std::vector<ProfilePoint>> profile(const engine::Model& model,
                                                    const profiler::ProfileOptions& o) = 0;
  /// For /v1/devices: the hardware facts.
  virtual nlohmann::json describe() const = 0;
  /// A GPU runs `measured` passes at once (core/profile.h streams_paying over its
  /// profiles; 0 where they did not measure it: its default); a CPU device ignores it.
  virtual void set_streams(uint32_t /*measured*/) {}

  /// Energy since start: the meter's reading; an estimating meter is first fed the
  /// device's busy time since the last reading (serving work, which no sweep reports)
  /// and the time its workers spent parked.
  Result<double> energy_joules();
  /// After a sweep (which fed the meter itself): count busy time from now on only.
  void mark_busy_fed();
  std::string_view power_source() const { return meter_->source(); }
  const std::string& power_note() const { return meter_note_; }
  double idle_w() const { return idle_w_; }

  /// Whether queries fail here. Input is validated before it reaches a device, so a failed
  /// query is the device's fault (an exception or CUDA error in a worker).
  struct Health {
    bool degraded = false;         ///< a query failed here within the last degraded_ms
    uint64_t failures = 0;         ///< queries failed here since start
    std::string last_error;        ///< the latest failure's message; "" if none
    double since_failure_s = -1;   ///< seconds since it; -1 if none
  };
  /// Records one answered query's outcome (any thread).
  void record_outcome(const Status& st);
  Health health(uint32_t degraded_ms) const;

 protected:
  ServingDevice(std::string id, policies::DeviceKind kind) : id_(std::move(id)), kind_(kind) {}
  std::string id_;
  policies::DeviceKind kind_;
  std::unique_ptr<exec::Runner> runner_;
  std::unique_ptr<profiler::PowerMeter> meter_;
  std::string meter_note_;
  double idle_w_ = 0;

 private:
  std::mutex energy_mu_;
  double busy_fed_s_ = 0;
  double parked_fed_s_ = 0;
  mutable std::mutex health_mu_;
  uint64_t failures_ = 0;
  std::string last_error_;
  std::chrono::steady_clock::time_point last_failure_;
};

/// A CPU device: a CpuRunner on the device's cores, its workers at nice `worker_nice`.
Result<std::unique_ptr<ServingDevice>> make_cpu_device(const hw::Topology& topology,
                                                       const hw::CpuDevice& device,
                                                       const profiler::PowerConfig& power,
                                                       int worker_nice = 0);

/// How the CUDA models run (DaemonConfig's gpu_graph_max_items and gpu_table_batched).
struct GpuRunOptions {
  uint32_t graph_max_items = 256;
  bool table_batched = true;
};

/// Every CUDA GPU this build and host have, as "gpu0", "gpu1", ...; empty with `why` set
/// where there are none (no CUDA in this build, no driver, no device).
std::vector<std::unique_ptr<ServingDevice>> make_gpu_devices(const hw::Topology& topology,
                                                             const profiler::PowerConfig& power,
                                                             const GpuRunOptions& run,
                                                             std::string* why);

}  // namespace recsched::daemon
