// The capacity facts recsched-plan plans with, from recsched's own simulator on each host
// type's recorded profile, not from a formula: each model's latency-bounded throughput
// served alone on one host (sim::find_max_qps, the same search recsched-sim --find-max
// runs), and for each co-location set of up to max_set_size models its efficiency: the
// set's latency-bounded throughput, simulated at a mix (each model's share of the host's
// time: equal, and with CapacityOptions::skewed_mixes each model in turn at 3 shares to the
// others' 1), over the harmonic prediction from the alone capacities (planner.h). Every
// figure is cached in a JSON file keyed by what determines it (the profile files'
// contents, the host's shape, the policy, the targets, the simulator's settings, the mix),
// so a plan over a day costs one simulation per (type, set, mix) once.
//
// replay() runs a plan back through the simulator, host by host: one host of each
// assignment, at its share of the slot's load, and reports whether every model it serves
// meets its target there. Depends on planner, sim.
#pragma once

#include <functional>
#include <map>
#include <string>
#include <vector>

#include "core/status.h"
#include "planner/planner.h"
#include "sim/host.h"
#include "sim/simulator.h"

namespace recsched::plan {

struct HostTypeSpec {
  std::string name;
  sim::HostOptions host;  ///< the profiles and the shape the simulator gives it
  int count = 0;
  double power_w = 0;
};

struct SimSettings {
  std::string policy = "earliest-finish";
  double seconds = 10;  ///< per simulated run (find_max_qps lengthens it for rare models)
  uint64_t seed = 1;
  sim::Options options;  ///< recschedd's admission and defaults
};

struct CapacityOptions {
  SimSettings sim;
  /// The plan's utilisation: every figure is checked by one more run at this share of it
  /// (a second trace, twice as long, another seed) and lowered 5 % at a time until that
  /// run meets every target refusing at most 0.5 % of each model's queries, so that near
  /// the bound a lucky pass of the search is not what the plan counts on.
  double utilisation = 0.9;
  int max_set_size = 2;    ///< co-location sets of 2..max_set_size models (1 = none)
  /// Besides equal shares, each model of a set at 3 shares to the others' 1: a set of k
  /// models is simulated at k + 1 mixes, so the plan can follow loads that are not equal.
  bool skewed_mixes = true;
  std::string cache_path;  ///< empty = no cache
  unsigned threads = 0;    ///< 0 = the machine's
  /// Called once per simulation run that was not in the cache (progress for the tool).
  std::function<void(const std::string& what)> on_simulated;
};

/// The capacity facts of every type, for these targets. kInvalidArgument for a model
/// without a target or without a profile on a type; errors of the profile files as read.
Result<std::vector<HostType>> measure_capacity(const std::vector<HostTypeSpec>& types,
                                               const std::vector<sim::ModelTarget>& targets,
                                               const CapacityOptions& options,
                                               size_t* simulated = nullptr);

struct ReplayResult {
  size_t slot = 0;
  std::string type;
  std::vector<std::string> models;
  std::map<std::string, double> qps_per_host;
  bool meets_sla = false;
  std::map<std::string, double> p95_ms;
  std::map<std::string, double> rejected;  ///< fraction of the model's queries
};

/// One simulation per (slot, assignment) of `plans` (slot i is plans[i]), of at least three
/// times settings.seconds (longer where the rarest model needs it for 200 queries, within
/// 300,000 queries in all).
Result<std::vector<ReplayResult>> replay(const std::vector<HostTypeSpec>& types,
                                         const std::vector<sim::ModelTarget>& targets,
                                         const std::vector<SlotPlan>& plans,
                                         const SimSettings& settings, unsigned threads = 0);

}  // namespace recsched::plan
