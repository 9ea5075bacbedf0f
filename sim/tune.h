// DeepRecSched's tuning as DeepRecSys does it, before serving (Gupta et al., ISCA 2020;
// ../shared/reference/deeprecinfra.md): for each model alone, the sub-batch size b that
// gives the highest latency-bounded throughput, tried in DeepRecSys's order (512, 384,
// 256, ... 32) until one does worse; then, with an accelerator, the offload threshold,
// from "never" down through the accelerator's profiled sizes (more offload at each step)
// until one does worse. Each setting's latency-bounded throughput is found by the
// simulator on the profiles (sim::find_max_qps), so the search costs seconds of CPU, not
// minutes of serving. The result is the `models` parameter of the deeprecsched policy.
// Depends on sim and policies.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "core/profile.h"
#include "core/status.h"
#include "sim/simulator.h"

namespace recsched::sim {

struct DrsSetting {
  uint32_t sub_batch = 0;
  std::optional<uint32_t> threshold;  ///< nullopt: never offload
  double max_qps = 0;                 ///< latency-bounded throughput, the model alone
};

struct DrsModelTuning {
  std::string model;
  DrsSetting best;
  std::vector<DrsSetting> tried;  ///< in the order the search tried them
};

struct DrsTuning {
  std::vector<DrsModelTuning> models;
  /// {"models": {model: {"sub_batch": b, "threshold": t or "never"}}}: deeprecsched's params.
  nlohmann::json params() const;
};

struct DrsTuneOptions {
  SizeDistribution sizes;      ///< the query sizes to tune for (DeepRecInfra's lognormal)
  size_t queries_per_run = 1000;  ///< about this many queries per run near the capacity
  uint64_t seed = 1;
  /// A setting counts as worse than the best so far when its throughput is below
  /// (1 - tolerance) x the best. find_max_qps brackets to 2 %, and a run of 1000 queries
  /// judges a p95 on about 50 of them: at 2 % the climb stopped early on noise (DIEN on
  /// this VM's profile: 256 at 1000 queries a run, 32 at 2000); at 5 % every model chose
  /// the same size at 1000, 2000 and 4000 queries but one (RMC3: 128 or 96, 2 % apart).
  double tolerance = 0.05;
  /// Noise, admission, queue order, bounded waiting: as the runs to come; GPU merging is
  /// always off for the search (as published; see tune_deeprecsched).
  Options sim;
};

/// Tunes every model of `targets` that has a profile on a CPU device of `devices`.
/// kInvalidArgument when `devices` has no CPU.
Result<DrsTuning> tune_deeprecsched(const std::vector<Device>& devices,
                                    const ProfileTable& profiles,
                                    const std::vector<ModelTarget>& targets,
                                    const DrsTuneOptions& options);

}  // namespace recsched::sim
