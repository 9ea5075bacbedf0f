// Where a query executes: the one interface every device's runner implements. A request
// in (the model, the batch, where its scores go, how it may be split, its place in the
// queue), a completion out (done, called once with the query's status), and a load
// snapshot of one type. The CPU runner (cpu_runner.h: pinned workers, sub-batches, earliest
// deadline first) and the whole-query runner (whole_query_runner.h: a GPU's feeding
// threads, earliest deadline first too) are the two; the profiler measures with them and
// recschedd serves with them.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <span>

#include "core/batch.h"
#include "core/device.h"
#include "core/status.h"
#include "engine/model.h"

namespace recsched::exec {

/// Called exactly once per submitted query, from a runner thread: OK, or the error of the
/// first part of it that failed (a forward() that threw or returned an error).
using DoneFn = std::function<void(Status)>;

/// One query for a runner. The caller keeps `model`, the batch's memory and `scores`
/// alive until `done` has been called.
struct Request {
  const engine::Model* model = nullptr;
  BatchView batch;
  std::span<float> scores;  ///< [batch_size, model outputs], filled in item order
  /// Items per sub-batch (CPU); a value >= batch_size runs it whole. A whole-query runner
  /// always runs it whole.
  uint32_t sub_batch = UINT32_MAX;
  int workers = 1;  ///< at most this many workers on it at once (CPU)
  /// Bounded waiting (CPU; the dispatcher's, policies/dispatcher.h): a piece of more than
  /// `short_items` items is long, and a long piece of this query starts only while fewer
  /// than (awake workers - `reserve`) workers run long pieces (at least one may), or once
  /// the query is urgent (from `urgent_at` on); otherwise a worker takes a short piece of
  /// it, `short_items` items, or, when that is 0, leaves it for a later query in the
  /// queue. So `reserve` workers run only pieces predicted no longer than the dispatcher's
  /// bound, or of queries more urgent than a tight one just arrived, and a tight query
  /// waits about that long at most for one. The defaults make every piece short.
  uint32_t short_items = UINT32_MAX;
  int reserve = 0;
  Clock::time_point urgent_at = Clock::time_point::max();
  // (The rule: core/pieces.h, next_piece(); a free worker looks at kMaxQueriesLooked
  // queries at most.)
  /// Its place among the queries waiting for a worker: earliest first, submission order
  /// breaking ties; nullopt means now (so queries that all pass none are served first come,
  /// first served). A whole-query runner orders its queue the same way.
  std::optional<Clock::time_point> deadline = std::nullopt;
  DoneFn done = nullptr;
  /// Where to write when its first piece (or the whole query) starts on a worker, before
  /// `done` is called; nullptr: not wanted. What the daemon measures service time from.
  Clock::time_point* started = nullptr;
  /// Where to write, before `done`, the milliseconds its pieces spent suspended while
  /// more urgent queries ran in their place (CpuRunner's cooperative preemption): summed
  /// over its pieces, divided by how many could run at once (its worker cap, at most its
  /// piece count), an estimate of what preemption added to its started-to-done time.
  /// nullptr: not wanted; a runner that never preempts writes 0 or nothing.
  double* suspended_ms = nullptr;
  /// Where to write, before `done`, the items of the pass it ran in: its own, or with GPU
  /// merging (WholeQueryRunner::set_merging) all of the merged pass's, whose time its
  /// service is. nullptr: not wanted; a runner that never merges writes nothing.
  uint32_t* pass_items = nullptr;
};

/// A runner's state at one instant.
struct Load {
  size_t queries = 0;      ///< submitted and not yet done (waiting or running)
  int busy_workers = 0;    ///< workers inside a forward pass now
  int active_workers = 0;  ///< workers kept awake, the rest parked; 0 = all
};

/// Lifecycle: submit()* -> destruction, which finishes every queued query (each gets its
/// done) and joins the threads. Threading: every method is thread-safe.
class Runner {
 public:
  virtual ~Runner() = default;
  /// Queues `request`; never blocks. On an error return `done` is not called:
  /// kInvalidArgument for a malformed request (no model, a wrong scores size, sub_batch 0,
  /// workers outside [1, workers()]), kUnavailable when `max_queued` queries are already
  /// submitted or the runner is stopping.
  virtual Status submit(Request request, size_t max_queued = SIZE_MAX) = 0;
  /// Runs `request` now on the calling thread, in an idle worker's place, where that
  /// changes only which thread runs it: it is one piece (sub_batch >= its items), no
  /// query waits for a worker (none is overtaken), an awake worker is idle (it would have
  /// started at once) and fewer than `max_queued` are in flight. The idle worker stays
  /// asleep and counted busy meanwhile, the caller running the pass on its workspace with
  /// no yield points (no other query preempts into the caller's thread); `done` is called
  /// on the calling thread before it returns true. false: nothing was run and `request`
  /// is as it was, to submit(). What it saves is the hand-off: waking a worker, about
  /// 10 us on a VM, which is most of a tiny query's time in the runner. A runner that
  /// cannot (the default) returns false.
  virtual bool run_here(Request& request, size_t max_queued = SIZE_MAX) {
    (void)request;
    (void)max_queued;
    return false;
  }
  /// Queries run_here() has run since creation.
  virtual uint64_t ran_here() const { return 0; }
  virtual int workers() const = 0;
  virtual Load load() const = 0;
  /// Worker-seconds spent inside forward passes since creation (for energy estimates).
  virtual double busy_seconds() const = 0;
  /// Worker-seconds spent parked since creation; 0 for a runner that never parks.
  virtual double parked_seconds() const { return 0; }
  /// Keeps n workers awake (clamped to [1, workers()]); a runner that never parks ignores it.
  virtual void set_active_workers(int /*n*/) {}
  /// Lets a running pass stop at its yield points for a query due sooner (CpuRunner's
  /// cooperative preemption); a runner that runs whole queries in order ignores it.
  virtual void set_preemption(bool /*on*/) {}

  /// Runs `batch` of `model` once wherever this runner's queries may run, and returns
  /// when it has (the first failure, or OK): the queries served first then find their
  /// scratch memory allocated and touched. Before serving: it adds its work to whatever is
  /// queued. The default runs it once as a query; CpuRunner on every worker, in each of
  /// its workspaces.
  virtual Status warm_up(const engine::Model& model, const BatchView& batch);

  /// submit() and wait: the query's status.
  Status run(Request request);
};

/// What every runner checks before queueing: a model, a scores buffer of the batch's size.
Status check_request(const Request& request);

}  // namespace recsched::exec
