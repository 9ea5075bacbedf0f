// recsched-engine: score inputs with a model, benchmark a model, export its weights.
// A library function so tests drive the same code the binary runs.
#pragma once

#include <iosfwd>
#include <string>
#include <vector>

namespace recsched::engine::tools {

/// Runs `recsched-engine args...` (args excludes the program name). Data goes to
/// `out`, messages to `err`. Returns the process exit code: 0 ok, 1 failure,
/// 2 bad usage.
int run_engine_cli(const std::vector<std::string>& args, std::ostream& out, std::ostream& err);

}  // namespace recsched::engine::tools
