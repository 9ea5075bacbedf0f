// Latency-bounded throughput: the search for the highest offered load that meets every
// model's tail-latency target. Pure logic over a step function, so it is tested on a
// synthetic latency curve with no daemon. Standard library only.
//
// The stopping rule. Each step runs the load for a fixed time (its warm-up excluded) and
// passes when every model's p95 (or the percentile its target bounds) is within its target
// and rejections plus errors stay within a threshold. From start_qps: while steps pass,
// multiply the load by `growth` (2) until one fails or max_qps passes; if the first step
// fails, divide by `growth` until one passes or the load falls below min_qps (result 0).
// Then bisect between the highest pass and the lowest fail until (fail - pass) <=
// tolerance x pass (5 %), or max_steps steps have run. The answer is the highest load that
// passed.
#pragma once

#include <functional>
#include <string>
#include <vector>

namespace recsched::load {

struct SearchOptions {
  double start_qps = 10;
  double min_qps = 0.5;
  double max_qps = 1e6;
  double growth = 2.0;
  double tolerance = 0.05;
  int max_steps = 24;
};

/// One step's verdict.
struct StepOutcome {
  bool pass = false;
  std::string why;  ///< e.g. "rmc1 p95 12.3 ms > 10 ms"
};

struct SearchStep {
  double qps = 0;
  StepOutcome outcome;
};

struct SearchResult {
  double max_qps = 0;      ///< the highest load that passed; 0 if none did
  double lowest_fail = 0;  ///< the lowest load that failed; 0 if none did
  bool hit_max = false;    ///< max_qps passed: the true limit may be higher
  std::vector<SearchStep> steps;
};

/// Runs the search; `step(qps)` runs one load and judges it.
SearchResult find_max_qps(const SearchOptions& options,
                          const std::function<StepOutcome(double qps)>& step);

}  // namespace recsched::load
