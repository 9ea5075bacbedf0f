// The CPU device runner: a pool of workers bound to one CPU device's cores, models whose
// tables live on the device's NUMA node, and one query run as sub-batches across a
// chosen number of workers. What the profiler measures and the daemon serves with.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
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

/// Lifecycle: create() -> submit()/run()* -> destruction, which finishes every queued
/// query (each gets its callback) and joins the workers.
/// Threading: submit() and run() are thread-safe; queries from many callers share the
/// workers. Workers take sub-batches earliest deadline first (EDF): of the queries with a
/// sub-batch left and fewer than their `workers` cap busy on them, the one whose deadline
/// is earliest, submission order breaking ties; O(log n) per pick. A query without a
/// deadline is due when submitted, so queries that all pass none (or each its arrival
/// time) are served first come, first served. Non-preemptive: a sub-batch once started
/// runs to its end.
class CpuRunner {
 public:
  using DoneFn = std::function<void(Status)>;
  using Clock = std::chrono::steady_clock;

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

  /// Queues `batch` as ceil(n / sub_batch) sub-batches of at most `sub_batch` items, run
  /// by at most `workers` workers at a time; `scores` [n, K] is filled in item order and
  /// `done` is called exactly once, from a worker thread, with the first failing
  /// sub-batch's status or OK. The caller keeps `model`, the batch's memory and `scores`
  /// alive until then. Never blocks. On an error return `done` is not called:
  /// kInvalidArgument for sub_batch 0, workers outside [1, this->workers()] or a wrong
  /// scores size; kUnavailable if `max_queued` queries are already waiting. `deadline`
  /// orders the query among the waiting ones (see the class comment); nullopt: now.
  Status submit(const Model& model, const BatchView& batch, uint32_t sub_batch, int workers,
                std::span<float> scores, DoneFn done, size_t max_queued = SIZE_MAX,
                std::optional<Clock::time_point> deadline = std::nullopt);

  /// submit() and wait: the query's status.
  Status run(const Model& model, const BatchView& batch, uint32_t sub_batch, int workers,
             std::span<float> scores);

  int workers() const { return static_cast<int>(threads_.size()); }
  /// Parks workers: only workers 0 .. n-1 take sub-batches from now on (clamped to
  /// [1, workers()]); the others finish what they run and then sleep, so their cores
  /// can enter deep idle states. All are awake at creation.
  void set_active_workers(int n);
  int active_workers() const;
  /// Worker-seconds spent parked since creation (workers() - active, over time).
  double parked_seconds() const;
  const CpuDevice& device() const { return device_; }
  /// Each worker's CPU binding as the OS reports it, read by the worker after binding.
  const std::vector<std::string>& bindings() const { return bindings_; }
  /// Worker-seconds spent running sub-batches since creation (for energy estimates).
  double busy_seconds() const;
  /// Queries waiting or running, and workers busy now.
  struct Load {
    size_t queries = 0;
    int busy_workers = 0;
  };
  Load current_load() const;

 private:
  struct Job;
  // Earliest deadline first, then submission order.
  struct EarlierDeadline {
    bool operator()(const std::shared_ptr<Job>& a, const std::shared_ptr<Job>& b) const;
  };
  CpuRunner(const Topology& topology, CpuDevice device);
  void worker_main(int index, const std::string& cpuset);
  double parked_seconds_locked() const;  // brings the parked total up to now; mu_ held

  const Topology& topology_;
  CpuDevice device_;
  std::vector<std::thread> threads_;
  std::vector<std::string> bindings_;
  std::vector<Status> bind_status_;

  mutable std::mutex mu_;
  std::condition_variable work_cv_;
  std::condition_variable started_cv_;
  // Queries a worker may take a sub-batch of now: one left and fewer than their cap busy.
  std::set<std::shared_ptr<Job>, EarlierDeadline> ready_;
  size_t untaken_ = 0;     // queries with sub-batches not yet taken (ready or at their cap)
  uint64_t next_seq_ = 0;  // submission order, the tie-break
  size_t in_flight_ = 0;   // queries submitted and not yet done
  int busy_workers_ = 0;
  int started_ = 0;
  int active_workers_ = INT32_MAX;  // clamped to workers() by set_active_workers
  mutable double parked_seconds_ = 0;
  mutable std::chrono::steady_clock::time_point parked_since_ = std::chrono::steady_clock::now();
  bool stopping_ = false;
  double busy_seconds_ = 0;
};

}  // namespace recsched::profiler
