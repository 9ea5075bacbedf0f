// recsched-profile: the profiler's own tool (as Triton's Model Analyzer is Triton's):
// prints the devices this host has, and profiles models on them.
#pragma once

#include <iosfwd>
#include <string>
#include <vector>

namespace recsched::profiler::tools {

/// Runs `recsched-profile args...`; data to `out`, messages to `err`. Returns the exit
/// code: 0 ok, 1 failure, 2 bad usage.
int run_profile_cli(const std::vector<std::string>& args, std::ostream& out, std::ostream& err);

}  // namespace recsched::profiler::tools
