// The external policy plugin API: what a shared object in the daemon's plugin_dir
// exports. A plugin is C++ built against this tree's policies/policy.h (the Policy
// interface crosses the boundary, so the plugin must be built with the same compiler and
// standard library as recschedd); the entry point itself is C, so the daemon can find it
// by name and check the version before touching anything C++.
//
//   extern "C" const RecschedPolicyPlugin* recsched_policy_plugin(void);
//
// returns a pointer to a static descriptor. The daemon refuses a plugin whose
// api_version is not RECSCHED_POLICY_API_VERSION (bump it on any change to policy.h's
// types or this struct). policies/examples/round_robin.cc is a complete example.
#pragma once

#include <cstddef>
#include <cstdint>

namespace recsched::policies {
class Policy;
}

#define RECSCHED_POLICY_API_VERSION 1u
#define RECSCHED_POLICY_ENTRY_POINT "recsched_policy_plugin"

extern "C" {

struct RecschedPolicyPlugin {
  uint32_t api_version;  ///< RECSCHED_POLICY_API_VERSION when the plugin was built
  const char* name;      ///< the policy's registry name; must not clash with another
  const char* summary;   ///< one line for GET /v1/policy
  /// A new policy configured with `params_json` (a JSON object's text). On a bad
  /// parameter: nullptr, with one line in `error` (at most error_len bytes, NUL-ended).
  recsched::policies::Policy* (*create)(const char* params_json, char* error, size_t error_len);
  /// Frees a policy create() returned.
  void (*destroy)(recsched::policies::Policy* policy);
};

typedef const RecschedPolicyPlugin* (*RecschedPolicyEntry)(void);
}
