// The CPU device runner: a pool of workers bound to one CPU device's cores, models whose
// tables live on the device's NUMA node, and one query run as sub-batches across a
// chosen number of workers. What the profiler measures and the daemon serves with.
#pragma once

#include <atomic>
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
#include "core/pieces.h"
#include "core/status.h"
#include "engine/model.h"
#include "exec/runner.h"
#include "hw/topology.h"

namespace recsched::exec {

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
/// time) are served first come, first served. Request::short_items and reserve bound how
/// long a piece may hold a reserved worker (bounded waiting).
///
/// Cooperative preemption (set_preemption, off at creation): a running forward pass
/// offers its worker at every yield point (engine/model.h: between tables, layers and
/// recurrent steps). There, when a queued query is due before the running one and no
/// awake worker is free to take it, the worker runs a piece of it on another workspace
/// and then resumes the interrupted pass, state intact: a tight query waits one step of
/// the running pass, not the rest of it. Up to kMaxNesting passes suspended per worker
/// (kMaxNesting + 1 running one inside another).
/// Queries that all pass no deadline are due in arrival order, so none preempts another.
class CpuRunner final : public Runner {
 public:
  /// Starts `workers` threads (0: one per core of the device). Worker w binds itself to
  /// core w % cores of the device (all of that core's PUs) before anything else; a failed
  /// bind fails create() with the OS's reason, it is never ignored. With `nice` > 0 each
  /// worker then lowers its own scheduling priority to that nice value (0-19; a thread
  /// already at a higher one keeps it), so that the threads that read requests and write
  /// answers on the same cores run as soon as they wake instead of waiting out a worker's
  /// time slice; failing that fails create() too.
  /// kInvalidArgument if `topology` is not this machine's or `nice` is outside [0, 19].
  static Result<std::unique_ptr<CpuRunner>> create(const hw::Topology& topology,
                                                   const hw::CpuDevice& device, int workers = 0,
                                                   int nice = 0);
  ~CpuRunner() override;
  CpuRunner(const CpuRunner&) = delete;
  CpuRunner& operator=(const CpuRunner&) = delete;

  /// Loads a model with its tables allocated on the device's NUMA node (the loading
  /// thread's memory is bound there, and pages are placed as they are first written).
  Result<std::unique_ptr<Model>> load(const ModelSpec& spec, const LoadOptions& options) const;

  /// Queues the request's batch, taken in order as pieces of sub_batch items (the last
  /// smaller; short_items ones where the long lanes are full), run by at most `workers`
  /// workers at a time; `done` gets the first failing piece's status or OK. See
  /// Runner::submit for the errors.
  Status submit(Request request, size_t max_queued = SIZE_MAX) override;
  /// See Runner::run_here: lends the calling thread the lowest-numbered idle awake
  /// worker's state; that worker takes no work until the pass is done.
  bool run_here(Request& request, size_t max_queued = SIZE_MAX) override;
  uint64_t ran_here() const override;
  using Runner::run;
  /// run() with the request's fields: synchronous, for the profiler and tests.
  Status run(const Model& model, const BatchView& batch, uint32_t sub_batch, int workers,
             std::span<float> scores);

  /// On every worker, parked or not, in each of its workspaces (one per level of
  /// preemption), with no fail point (it serves no query); one call at a time (a second
  /// waits). On this VM a model's first pass on a worker ran 10-25x its steady time
  /// (DIN, 164 items: 96 ms against 7), which made the first second of traffic late.
  Status warm_up(const Model& model, const BatchView& batch) override;

  int workers() const override { return static_cast<int>(threads_.size()); }
  /// Turns cooperative preemption on or off (see the class comment); takes effect at the
  /// next yield point.
  void set_preemption(bool on) override { preemption_.store(on, std::memory_order_relaxed); }
  bool preemption() const { return preemption_.load(std::memory_order_relaxed); }
  /// Passes that may be suspended on one worker at once, each for a more urgent one.
  static constexpr int kMaxNesting = kMaxSuspended;
  /// Pieces run at a yield point, in another pass's place, since creation.
  uint64_t preemptions() const;
  /// Parks workers: only workers 0 .. n-1 take sub-batches from now on (clamped to
  /// [1, workers()]); the others finish what they run and then sleep, so their cores
  /// can enter deep idle states. All are awake at creation.
  void set_active_workers(int n) override;
  int active_workers() const;
  /// Worker-seconds spent parked since creation (workers() - active, over time).
  double parked_seconds() const override;
  const hw::CpuDevice& device() const { return device_; }
  /// Each worker's CPU binding as the OS reports it, read by the worker after binding.
  const std::vector<std::string>& bindings() const { return bindings_; }
  /// Worker-seconds spent running sub-batches since creation (for energy estimates).
  double busy_seconds() const override;
  /// Queries waiting or running, workers busy now, and awake workers (0 = all).
  Load load() const override;

 private:
  struct Job;
  struct Taken;
  class Worker;
  static uint32_t piece(const Job& job, int long_busy, int awake, Clock::time_point now,
                        bool* is_long);
  // Earliest deadline first, then submission order.
  static bool earlier(const Job& a, const Job& b);
  struct EarlierDeadline {
    bool operator()(const std::shared_ptr<Job>& a, const std::shared_ptr<Job>& b) const {
      return earlier(*a, *b);
    }
  };
  CpuRunner(const hw::Topology& topology, hw::CpuDevice device);
  // A query as a Job, all but its done (moved in by the caller once it is queued or run).
  static std::shared_ptr<Job> make_job(const Request& request);
  void worker_main(int index, const std::string& cpuset, int nice);
  // The three steps of running a piece, the same for a worker's own loop and for a piece
  // run at a yield point (`nested`). take_locked: the first query in queue order (only
  // those due before `before`, when given) with a piece this worker may take now; false
  // if none, with *wake the earliest time a waiting query becomes urgent. mu_ held.
  bool take_locked(int index, const Job* before, bool nested, Taken* out, Clock::time_point* wake);
  // Runs the piece on the worker's workspace for its current depth; mu_ not held.
  // *busy: its own seconds; *suspended: those of the passes run at its yield points.
  Status run_taken(Worker& worker, const Taken& taken, double* busy, double* suspended);
  // Counts the piece done and, for its query's last piece, calls done (mu_ released
  // around it). mu_ held through `lock`.
  void settle_locked(std::unique_lock<std::mutex>& lock, int index, const Taken& taken,
                     const Status& st, double busy, double suspended);
  // A running pass's yield point on `worker`: runs more urgent pieces, if any, then returns.
  void preempt_at(Worker& worker);
  // Publishes the earliest deadline in ready_ for the yield points' lock-free check. mu_ held.
  void ready_changed_locked();
  double parked_seconds_locked() const;  // brings the parked total up to now; mu_ held

  const hw::Topology& topology_;
  hw::CpuDevice device_;
  std::vector<std::thread> threads_;
  std::vector<std::string> bindings_;
  std::vector<Status> bind_status_;

  // Wakes waiting workers, as many as the ready queries can use now (not counting
  // `self`, a worker that is about to look again itself; -1 for none); every waiting
  // worker once stopping. mu_ held.
  void wake_for_work(int self);

  mutable std::mutex mu_;
  // Each worker waits on its own condition variable, so that a query wakes only the
  // workers it can use: one notify for all woke every worker of the device per query,
  // all but one to find nothing and sleep again.
  struct Sleeper {
    std::condition_variable cv;
    bool waiting = false;  // (under mu_) in wait, and not yet sent a wake-up
    // (under mu_) its state is lent to a run_here() caller: it takes no work, runs no
    // chore and is not woken for work until the caller is done with it.
    bool lent = false;
    // (under mu_) run by the worker before it next takes work: warm_up()'s passes.
    std::function<void(Worker&)> chore;
  };
  std::mutex warm_mu_;  // one warm_up() at a time
  std::vector<std::unique_ptr<Sleeper>> sleepers_;  // one per worker, made before they start
  std::vector<std::unique_ptr<Worker>> worker_state_;  // one per worker, made before they start
  std::atomic<bool> preemption_{false};
  // ready_'s first deadline (ns since the clock's epoch; max when empty), read without mu_
  // at every yield point, so that a pass with nothing more urgent queued pays one load.
  std::atomic<int64_t> earliest_ready_{INT64_MAX};
  uint64_t preemptions_ = 0;  // (under mu_)
  uint64_t ran_here_ = 0;     // (under mu_)
  std::condition_variable started_cv_;
  // Queries a worker may take a sub-batch of now: one left and fewer than their cap busy.
  std::set<std::shared_ptr<Job>, EarlierDeadline> ready_;
  size_t untaken_ = 0;     // queries with sub-batches not yet taken (ready or at their cap)
  uint64_t next_seq_ = 0;  // submission order, the tie-break
  size_t in_flight_ = 0;   // queries submitted and not yet done
  int busy_workers_ = 0;
  int long_busy_ = 0;  // workers running a long piece (see Request::short_items)
  // workers(), for the workers themselves: set before they start, never changed (threads_
  // is still growing while the first ones run).
  int num_workers_ = 0;
  int started_ = 0;
  int active_workers_ = INT32_MAX;  // clamped to workers() by set_active_workers
  mutable double parked_seconds_ = 0;
  mutable std::chrono::steady_clock::time_point parked_since_ = std::chrono::steady_clock::now();
  bool stopping_ = false;
  double busy_seconds_ = 0;
};

}  // namespace recsched::exec
