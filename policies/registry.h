// The one list of built-in policies (adding one is a one-line diff in registry.cc).
// Depends on policies/policy.h.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "policies/policy.h"

namespace recsched::policies {

/// Builds the policy registered as `name`, configured with `params` (an object).
/// kNotFound, listing the known names, for an unknown one (a caller with policies of its
/// own, plugins, tells that case by its code); kInvalidArgument naming a bad key.
Result<std::unique_ptr<Policy>> create_policy(const std::string& name,
                                              const nlohmann::json& params);
/// Every registered name, in registry order.
std::vector<std::string> policy_names();

}  // namespace recsched::policies
