// recsched-plan's command line: plans a fleet over a day (the ILP against Hercules' greedy
// baseline, optionally replayed through the simulator), and applies one slot of a plan to
// the hosts (a daemon config per co-location set, host assignments, node labels).
#pragma once

#include <iosfwd>
#include <string>
#include <vector>

namespace recsched::plan::tools {

/// Runs `recsched-plan args...`; data to `out`, messages to `err`. Exit code: 0 ok,
/// 1 failure (or, with --replay, a replayed host that missed a target), 2 bad usage.
int run_plan_cli(const std::vector<std::string>& args, std::ostream& out, std::ostream& err);

}  // namespace recsched::plan::tools
