// A plugin built for another policy API version: recschedd must refuse it.
#include "policies/plugin_api.h"

namespace {
const RecschedPolicyPlugin kPlugin = {RECSCHED_POLICY_API_VERSION + 41, "from-the-future", "",
                                      nullptr, nullptr};
}  // namespace

extern "C" const RecschedPolicyPlugin* recsched_policy_plugin(void) { return &kPlugin; }
