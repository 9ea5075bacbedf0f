// recsched-sim: the policy simulator's command line. Replays a Poisson trace of the
// DeepRecInfra mix through the built-in policies on devices described by profiles, and
// prints each policy's tail latency, throughput and energy side by side.
#pragma once

#include <iosfwd>
#include <string>
#include <vector>

namespace recsched::sim::tools {

/// Runs `recsched-sim args...`; data to `out`, messages to `err`. Exit code: 0 ok,
/// 1 failure, 2 bad usage.
int run_sim_cli(const std::vector<std::string>& args, std::ostream& out, std::ostream& err);

}  // namespace recsched::sim::tools
