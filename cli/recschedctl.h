// recschedctl: the operator's view of a running recschedd (status, topology, devices,
// models, profiles, placements, stats, policy, re-profiling) over its HTTP API. A library
// function so the tests drive the same code the binary runs. Never links the engine.
#pragma once

#include <functional>
#include <iosfwd>
#include <string>
#include <vector>

namespace recsched::cli {

/// Exit codes.
inline constexpr int kExitOk = 0;
inline constexpr int kExitFailed = 1;  ///< recschedd answered with an error, or nonsense
inline constexpr int kExitUsage = 2;   ///< bad arguments
inline constexpr int kExitUnreachable =
    3;  ///< cannot talk to recschedd (down, permission, timeout)

/// What the process hands recschedctl besides its arguments.
struct Environment {
  bool stdout_is_tty = false;
  std::string no_color;        ///< $NO_COLOR; colour only on a tty and when this is empty
  std::string token;           ///< $RECSCHED_TOKEN: the bearer token for --url
  std::function<bool()> stop;  ///< --follow polls until this says true; empty: until killed
};

/// Runs `recschedctl args...` (args excludes the program name). Data goes to `out`,
/// messages (errors: one line, saying what to do) to `err`. Returns the exit code.
int run_recschedctl(const std::vector<std::string>& args, std::ostream& out, std::ostream& err,
                    const Environment& env);

}  // namespace recsched::cli
