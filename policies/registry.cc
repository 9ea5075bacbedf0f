#include "policies/registry.h"

#include "policies/builtin.h"

namespace recsched::policies {
namespace {

using Factory = Result<std::unique_ptr<Policy>> (*)(const nlohmann::json&);

struct Entry {
  const char* name;
  Factory create;
};

// The only list of policies.
constexpr Entry kRegistry[] = {
    {"static", &create_static},
    {"deeprecsched", &create_deeprecsched},
    {"earliest-finish", &create_earliest_finish},
    {"min-energy", &create_min_energy},
};

}  // namespace

Result<std::unique_ptr<Policy>> create_policy(const std::string& name,
                                              const nlohmann::json& params) {
  if (!params.is_object()) return invalid_argument("policy params must be an object");
  for (const Entry& e : kRegistry) {
    if (name == e.name) return e.create(params);
  }
  std::string known;
  for (const Entry& e : kRegistry) known += (known.empty() ? "" : ", ") + std::string(e.name);
  return Status(StatusCode::kNotFound, "unknown policy '" + name + "' (known: " + known + ")");
}

std::vector<std::string> policy_names() {
  std::vector<std::string> out;
  for (const Entry& e : kRegistry) out.push_back(e.name);
  return out;
}

}  // namespace recsched::policies
