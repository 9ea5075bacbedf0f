// Fail points: named places in the serving path where a fault can be injected on purpose,
// so that the fault handling (a worker whose forward() throws, a device that fails) is
// exercised by tests and can be reproduced on a live daemon. Inert unless configured:
// the check on the hot path is one relaxed atomic load.
//
// Configured programmatically (tests) or from the environment at start:
//   RECSCHED_FAILPOINTS="forward.cpu1=throw;forward.gpu0=3*error"
// Actions: "throw" (a std::runtime_error), "error" (an internal-error Status), "off";
// "N*action" fires the first N times only (throw and error). "pause" holds each thread
// that reaches the point until release() grants it a permit or the point is cleared: a
// test's explicit synchronisation ("these queries are inside forward() now"), in place of
// a sleep. Names in use:
//   forward.<device id>   before each sub-batch (CPU) or query (GPU) a device's worker runs
#pragma once

#include <string>
#include <string_view>

#include "core/status.h"

namespace recsched::failpoint {

/// Sets (or with "off" clears) one fail point; kInvalidArgument for an unknown action.
Status set(std::string_view name, std::string_view action);
/// Parses "name=action;name=action" (RECSCHED_FAILPOINTS' format) and sets each.
Status set_from_spec(std::string_view spec);
/// Clears every fail point.
void clear();

/// Whether any fail point is set: the fast check before building a name.
bool any();
/// Fires `name` if it is set: throws for "throw", returns an error for "error", waits for
/// a permit for "pause", else OK.
Status hit(std::string_view name);

/// Threads held at the "pause" point `name` now.
int paused(std::string_view name);
/// Waits until at least `n` threads are held at `name`, or `timeout_ms` pass; whether
/// they are.
bool wait_paused(std::string_view name, int n, int timeout_ms);
/// Lets `n` of the threads held at `name` (now or later) go on.
void release(std::string_view name, int n);

}  // namespace recsched::failpoint
