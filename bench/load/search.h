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
//
// A load already known to pass (known_pass_qps: a step that met targets each no looser,
// e.g. the same policy's result at a tighter level of the same suite) is the search's
// lowest pass from the start: it climbs from there, and the answer is never below it. A
// looser target cannot make a measured step fail, so a later, noisier step at that load
// is not allowed to push the answer under it.
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
  double known_pass_qps = 0;  ///< a load known to pass (0: none); start_qps is then unused
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
  /// max_qps is SearchOptions::known_pass_qps, not a step of this search (none above passed)
  bool from_known_pass = false;
  std::vector<SearchStep> steps;
};

/// Runs the search; `step(qps)` runs one load and judges it.
SearchResult find_max_qps(const SearchOptions& options,
                          const std::function<StepOutcome(double qps)>& step);

}  // namespace recsched::load
