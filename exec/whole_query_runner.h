// The whole-query runner: queries run whole (no splitting) on `threads` threads, first
// come first served. The runner for models whose forward() does its own parallelism, such
// as a GPU model (one feeding thread per stream).
#pragma once

#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "exec/runner.h"

namespace recsched::exec {

class WholeQueryRunner final : public Runner {
 public:
  /// `bind` runs first on every thread (e.g. binding it near the GPU); its error is the
  /// caller's to log, never fatal. threads >= 1. `name` (the device id) names the fail
  /// point "forward.<name>" and the errors of a forward() that throws.
  WholeQueryRunner(int threads, std::function<void()> bind = {}, std::string name = "");
  ~WholeQueryRunner() override;  // answers every queued query, then joins
  WholeQueryRunner(const WholeQueryRunner&) = delete;
  WholeQueryRunner& operator=(const WholeQueryRunner&) = delete;

  /// Queues the request whole, in submission order (sub_batch, workers and deadline are
  /// not used). See Runner::submit for the errors.
  Status submit(Request request, size_t max_queued = SIZE_MAX) override;
  int workers() const override { return static_cast<int>(threads_.size()); }
  Load load() const override;
  double busy_seconds() const override;

 private:
  void main();

  std::string name_;
  std::vector<std::thread> threads_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Request> queue_;
  size_t in_flight_ = 0;
  int busy_ = 0;
  bool stopping_ = false;
  double busy_seconds_ = 0;
};

}  // namespace recsched::exec
