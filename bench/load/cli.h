// recsched-load's command line: options parsed into a plan, and the modes (one run,
// --find-max-qps, --sweep, --ceiling). A library so that tests drive the whole tool.
// Depends on the rest of bench/load.
#pragma once

#include <string>
#include <vector>

#include "bench/load/client.h"
#include "bench/load/search.h"

namespace recsched::load {

/// Whether a step met every model's target: each model that was sent queries answered
/// some, its tail (the percentile its target bounds, p95 unless the daemon's config says
/// otherwise) is within its target, and rejections plus errors are at most `max_reject` of
/// what was sent.
StepOutcome judge(const RunResult& result, double max_reject);

/// recsched-load's main; returns the exit status (0 ok, 1 failure, 2 bad usage).
int load_main(const std::vector<std::string>& args);

}  // namespace recsched::load
