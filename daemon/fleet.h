// What recschedd tells the fleet around it, from one capacity snapshot
// (policies::HostCapacity): GET /v1/capacity's JSON, HAProxy's agent-check answer, the ORCA
// load report Envoy reads, and Node Feature Discovery's local feature file. Pure functions
// of their inputs; the listener that answers HAProxy is AgentCheckServer (agent_check.h).
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/status.h"
#include "policies/capacity.h"

namespace recsched::daemon {

/// The host's state beside its capacity.
struct FleetState {
  bool ready = false;     ///< profiles loaded, serving
  bool draining = false;  ///< SIGTERM received with fleet.drain_ms: leaving the fleet
  int devices = 0;
  int degraded_devices = 0;  ///< devices avoided after a failed query
  bool degraded() const { return devices > 0 && degraded_devices == devices; }
};

/// GET /v1/capacity: {"host": {...}, "models": [{model, target_ms, items, capacity_qps,
/// offered_qps, served_qps, headroom_qps, devices: [...]}]}.
nlohmann::json capacity_json(const policies::HostCapacity& capacity, const FleetState& state,
                             double max_utilisation);

/// The weight HAProxy gets, in percent of the server's configured weight: the host's
/// headroom over `weight_qps` (the headroom worth 100 %; 0 = the host's own mix capacity,
/// so the weight is its free fraction), rounded, within [1, 256] (HAProxy's largest
/// weight; 0 would mean drain, which is said in words).
int agent_weight_percent(const policies::HostCapacity& capacity, double weight_qps);

/// The line HAProxy's agent check reads (with its "\n"): "drain" while draining or with
/// every device degraded, "down" before the service is ready, else "up ready W%".
std::string agent_reply(const policies::HostCapacity& capacity, const FleetState& state,
                        double weight_qps);

/// The `endpoint-load-metrics` header's value in ORCA's TEXT form: application_utilization
/// (the host's, capped at 1), rps_fractional (served q/s), eps (refused and failed q/s),
/// and named_metrics.headroom_qps.
std::string orca_load_report(const policies::HostCapacity& capacity, double errors_per_s);

/// Node Feature Discovery's local feature file: one `name=value` per line, names under
/// recsched.io/ (the cpu and gpu device counts, and per model its capacity class: high
/// >= 1000 q/s, medium >= 100, low > 0, none), led by a comment line.
std::string nfd_features(const policies::HostCapacity& capacity, int cpu_devices, int gpu_devices);

/// Writes `text` to `path` atomically (a hidden temporary file beside it, ".NAME.tmp",
/// then rename), creating no directories. kUnavailable with the OS's reason.
Status write_file_atomically(const std::string& path, const std::string& text);

}  // namespace recsched::daemon
