// The devices recschedd serves on, behind one interface: a CPU device (profiler::CpuRunner:
// pinned workers, queries cut into sub-batches) or a GPU (a WholeQueryRunner feeding the
// CUDA models: whole queries, one per stream). Each holds its power meter. The service
// loads every model on every device and the dispatcher picks one per query.
#pragma once

#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "core/batch.h"
#include "core/profile.h"
#include "core/status.h"
#include "engine/model.h"
#include "policies/dispatcher.h"
#include "policies/policy.h"
#include "profiler/cpu_runner.h"
#include "profiler/power.h"
#include "profiler/profiler.h"
#include "profiler/topology.h"

namespace recsched::daemon {

using DoneFn = std::function<void(Status)>;

/// Runs whole queries (no splitting) on `threads` threads, first come first served: the
/// runner for models whose forward() does its own parallelism, such as a GPU model
/// (one thread per stream). Threading and lifetime as profiler::CpuRunner.
class WholeQueryRunner {
 public:
  /// `bind` runs first on every thread (e.g. binding it near the GPU); its error is logged
  /// by the caller, never fatal. threads >= 1. `name` (the device id) names the fail point
  /// "forward.<name>" and the errors of a forward() that throws.
  WholeQueryRunner(int threads, std::function<void()> bind = {}, std::string name = "");
  ~WholeQueryRunner();  // answers every queued query, then joins
  WholeQueryRunner(const WholeQueryRunner&) = delete;
  WholeQueryRunner& operator=(const WholeQueryRunner&) = delete;

  /// As CpuRunner::submit with one whole batch: kInvalidArgument for a wrong scores
  /// size, kUnavailable when `max_queued` queries wait already or it is stopping.
  Status submit(const engine::Model& model, const BatchView& batch, std::span<float> scores,
                DoneFn done, size_t max_queued = SIZE_MAX);
  int threads() const { return static_cast<int>(threads_.size()); }
  profiler::CpuRunner::Load current_load() const;
  double busy_seconds() const;

 private:
  struct Job {
    const engine::Model* model;
    BatchView batch;
    std::span<float> scores;
    DoneFn done;
  };
  void main();

  std::string name_;
  std::vector<std::thread> threads_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Job> queue_;
  size_t in_flight_ = 0;
  int busy_ = 0;
  bool stopping_ = false;
  double busy_seconds_ = 0;
};

/// One device recschedd serves on.
class ServingDevice {
 public:
  virtual ~ServingDevice() = default;
  const std::string& id() const { return id_; }
  policies::DeviceKind kind() const { return kind_; }
  virtual int workers() const = 0;
  /// Queries waiting or running, busy workers, and awake workers (0 = all).
  virtual policies::DeviceLoad load() const = 0;
  /// Keeps n workers awake (CPUs; a GPU ignores it).
  virtual void set_active_workers(int /*n*/) {}
  virtual double busy_seconds() const = 0;
  /// Worker-seconds parked (CPUs); 0 for a device that never parks.
  virtual double parked_seconds() const { return 0; }
  virtual Result<std::unique_ptr<engine::Model>> load_model(const engine::ModelSpec& spec,
                                                            const engine::LoadOptions& lo) = 0;
  /// Queues one query (see CpuRunner::submit; a CPU serves the earliest `deadline` first,
  /// a GPU first come, first served and ignores sub_batch, workers and deadline).
  virtual Status submit(const engine::Model& model, const BatchView& batch, uint32_t sub_batch,
                        int workers, std::span<float> scores, DoneFn done, size_t max_queued,
                        std::chrono::steady_clock::time_point deadline) = 0;
  /// Measures `model` here (profiler::profile_cpu or profile_whole).
  virtual Result<std::vector<ProfilePoint>> profile(const engine::Model& model,
                                                    const profiler::ProfileOptions& o) = 0;
  /// For /v1/devices: the hardware facts.
  virtual nlohmann::json describe() const = 0;

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

/// A CPU device: a CpuRunner on the device's cores.
Result<std::unique_ptr<ServingDevice>> make_cpu_device(const profiler::Topology& topology,
                                                       const profiler::CpuDevice& device,
                                                       const profiler::PowerConfig& power);

/// Every CUDA GPU this build and host have, as "gpu0", "gpu1", ...; empty with `why` set
/// where there are none (no CUDA in this build, no driver, no device).
std::vector<std::unique_ptr<ServingDevice>> make_gpu_devices(const profiler::Topology& topology,
                                                             const profiler::PowerConfig& power,
                                                             std::string* why);

}  // namespace recsched::daemon
