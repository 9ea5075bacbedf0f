// The CPU device runner: a pool of workers bound to one CPU device's cores, models whose
// tables live on the device's NUMA node, and one query run as sub-batches across a
// chosen number of workers. What the profiler measures and the daemon serves with.
#pragma once

#include <condition_variable>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "core/batch.h"
#include "core/status.h"
#include "engine/model.h"
#include "profiler/topology.h"

namespace recsched::profiler {

using engine::LoadOptions;
using engine::Model;
using engine::ModelSpec;

/// Lifecycle: create() -> run()* -> destruction joins the workers.
/// Threading: run() may be called from several threads; calls are served one at a time.
class CpuRunner {
 public:
  /// Starts `workers` threads (0: one per core of the device). Worker w binds itself to
  /// core w % cores of the device (all of that core's PUs) before anything else; a failed
  /// bind fails create() with the OS's reason, it is never ignored. kInvalidArgument if
  /// `topology` is not this machine's.
  static Result<std::unique_ptr<CpuRunner>> create(const Topology& topology,
                                                   const CpuDevice& device, int workers = 0);
  ~CpuRunner();
  CpuRunner(const CpuRunner&) = delete;
  CpuRunner& operator=(const CpuRunner&) = delete;

  /// Loads a model with its tables allocated on the device's NUMA node (the loading
  /// thread's memory is bound there, and pages are placed as they are first written).
  Result<std::unique_ptr<Model>> load(const ModelSpec& spec, const LoadOptions& options) const;

  /// Scores `batch` as ceil(n / sub_batch) sub-batches of at most `sub_batch` items,
  /// taken in order by the first `workers` workers from a shared queue; `scores`
  /// [n, K] comes back in item order. Blocks until every sub-batch is done.
  /// kInvalidArgument if sub_batch is 0, workers is outside [1, this->workers()] or
  /// scores has the wrong size; otherwise the first failing sub-batch's status.
  Status run(const Model& model, const BatchView& batch, uint32_t sub_batch, int workers,
             std::span<float> scores);

  int workers() const { return static_cast<int>(threads_.size()); }
  const CpuDevice& device() const { return device_; }
  /// Each worker's CPU binding as the OS reports it, read by the worker after binding.
  const std::vector<std::string>& bindings() const { return bindings_; }
  /// Worker-seconds spent running sub-batches since creation (for energy estimates).
  double busy_seconds() const;

 private:
  CpuRunner(const Topology& topology, CpuDevice device);
  void worker_main(int index, const std::string& cpuset);

  struct Job {
    const Model* model = nullptr;
    BatchView batch;
    uint32_t sub_batch = 0;
    uint32_t num_subs = 0;
    int workers = 0;
    std::span<float> scores;
    uint32_t next = 0;  // next sub-batch to take (under mu_)
    int active = 0;     // workers still on this job
    Status first_error;
    uint64_t generation = 0;
  };

  const Topology& topology_;
  CpuDevice device_;
  std::vector<std::thread> threads_;
  std::vector<std::string> bindings_;
  std::vector<Status> bind_status_;

  std::mutex run_mu_;  // serialises run()
  mutable std::mutex mu_;
  std::condition_variable work_cv_;
  std::condition_variable done_cv_;
  Job job_;
  int started_ = 0;
  bool stopping_ = false;
  double busy_seconds_ = 0;
};

}  // namespace recsched::profiler
