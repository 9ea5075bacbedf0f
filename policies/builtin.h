// The built-in policies (one factory each; the registry lists them).
//   static           every query whole on one worker of one device, queued first come,
//                    first served (params queue "fifo", or "edf"): the baseline
//   deeprecsched     DeepRecSched: CPU sub-batches tuned online, offload above a threshold
//   earliest-finish  every device and split: backlog + profiled service time; the earliest
//   min-energy       among placements predicted to meet the SLA with a margin, the least
//                    predicted energy; else earliest-finish
#pragma once

#include <memory>

#include "policies/policy.h"

namespace recsched::policies {

Result<std::unique_ptr<Policy>> create_static(const nlohmann::json& params);
Result<std::unique_ptr<Policy>> create_deeprecsched(const nlohmann::json& params);
Result<std::unique_ptr<Policy>> create_earliest_finish(const nlohmann::json& params);
Result<std::unique_ptr<Policy>> create_min_energy(const nlohmann::json& params);

}  // namespace recsched::policies
