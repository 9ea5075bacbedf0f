// The whole-query runner: queries run whole (no splitting) on `threads` threads, earliest
// deadline first. The runner for models whose forward() does its own parallelism, such as
// a GPU model (one feeding thread per stream). With merging on (set_merging), a thread
// that frees runs the query first in queue order together with the queued queries of the
// same model that core/merge.h's rule lets join: one forward pass over their items, the
// scores split back to each query in item order (issue 18: an accelerator's fixed cost
// per pass paid once for several queries).
#pragma once

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "core/merge.h"
#include "exec/runner.h"

namespace recsched::exec {

class WholeQueryRunner final : public Runner {
 public:
  /// Merging queued queries of one model into one pass. `service_ms(model, items)`
  /// predicts one pass (the profile of the merged size); merging is off without it.
  struct Merging {
    bool on = false;
    uint32_t max_items = kMaxMergedItems;  ///< the largest merged pass
    std::function<double(const engine::Model&, uint32_t)> service_ms;
  };
  /// Passes run and the queries they answered, since creation.
  struct Passes {
    uint64_t passes = 0;
    uint64_t queries = 0;
    uint64_t merged = 0;  ///< passes of more than one query
  };

  /// `bind` runs first on every thread (e.g. binding it near the GPU); its error is the
  /// caller's to log, never fatal. threads >= 1. `name` (the device id) names the fail
  /// point "forward.<name>" and the errors of a forward() that throws.
  WholeQueryRunner(int threads, std::function<void()> bind = {}, std::string name = "");
  ~WholeQueryRunner() override;  // answers every queued query, then joins
  WholeQueryRunner(const WholeQueryRunner&) = delete;
  WholeQueryRunner& operator=(const WholeQueryRunner&) = delete;

  /// Queues the request whole, by its deadline (none: its submission time), ties in
  /// submission order; sub_batch and workers are not used. See Runner::submit for the
  /// errors.
  Status submit(Request request, size_t max_queued = SIZE_MAX) override;
  /// The passes that may run at once (set_streams; at first every thread).
  int workers() const override;
  Load load() const override;
  double busy_seconds() const override;

  /// Takes effect from the next pass a thread starts.
  void set_merging(Merging merging);
  /// At most n passes at once (clamped to [1, threads]): a GPU runs as many as its profile
  /// found paying (streams_paying in core/profile.h), the other threads wait. Passes
  /// already running finish; the limit applies from the next pass a thread starts.
  void set_streams(int n);
  Passes passes() const;

 private:
  using Key = std::pair<Clock::time_point, uint64_t>;  // (deadline, submission number)
  using Queue = std::map<Key, Request>;

  void main();
  // Under mu_: the head's pass, with the queries that join it (core/merge.h), out of queue_.
  std::vector<Request> take_pass_locked(Clock::time_point now);

  std::string name_;
  std::vector<std::thread> threads_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  Queue queue_;
  uint64_t submitted_ = 0;
  size_t in_flight_ = 0;
  int busy_ = 0;
  const int thread_count_;  // threads_.size(), readable while the constructor still adds them
  int streams_;             // passes at once: at most thread_count_
  bool stopping_ = false;
  double busy_seconds_ = 0;
  Merging merging_;
  Passes passes_;
};

}  // namespace recsched::exec
