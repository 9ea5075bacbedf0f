// An example external policy, built as a plugin (librecsched_policy_round_robin.so) and
// loaded by the tests: "round-robin" sends each query whole to the next device, in turn,
// that has a profile for its model. Copy this file to start a policy of your own.
#include <algorithm>
#include <cstdio>
#include <cstring>
#include <nlohmann/json.hpp>

#include "policies/plugin_api.h"
#include "policies/policy.h"

namespace {

using namespace recsched::policies;

class RoundRobin final : public Policy {
 public:
  std::string_view name() const override { return "round-robin"; }
  recsched::Result<Placement> place(const QueryInfo& q, const ClusterView& view) override {
    const size_t n = view.devices.size();
    for (size_t i = 0; i < n; ++i) {
      const DeviceView& d = view.devices[(next_ + i) % n];
      auto service = predict_service_ms(view.profiles, q.model->name, d.id, q.items, q.items, 1);
      if (!service) continue;
      next_ = (next_ + i + 1) % n;
      const int awake = d.active_workers > 0 ? d.active_workers : d.workers;
      return Placement{d.id, q.items, 1, d.backlog_ms / std::max(1, awake) + *service,
                       "round-robin: next in turn is " + d.id};
    }
    return recsched::unavailable("round-robin: no device has a profile for " + q.model->name);
  }
  nlohmann::json params() const override { return {{"start", start_}}; }
  recsched::Status configure(const nlohmann::json& p) override {
    for (const auto& [key, value] : p.items()) {
      if (key != "start") return recsched::invalid_argument("params: unknown key '" + key + "'");
      if (!value.is_number_unsigned())
        return recsched::invalid_argument("params: key 'start' must be a device index >= 0");
    }
    if (p.contains("start")) next_ = start_ = p["start"].get<size_t>();
    return recsched::Status::ok();
  }

 private:
  size_t start_ = 0, next_ = 0;
};

Policy* create(const char* params_json, char* error, size_t error_len) {
  const nlohmann::json params = nlohmann::json::parse(params_json, nullptr, false);
  auto policy = new RoundRobin();
  const recsched::Status st = params.is_object()
                                  ? policy->configure(params)
                                  : recsched::invalid_argument("params must be a JSON object");
  if (!st.is_ok()) {
    std::snprintf(error, error_len, "%s", st.message().c_str());
    delete policy;
    return nullptr;
  }
  return policy;
}

void destroy(Policy* policy) { delete policy; }

const RecschedPolicyPlugin kPlugin = {RECSCHED_POLICY_API_VERSION, "round-robin",
                                      "each query whole to the next device in turn", &create,
                                      &destroy};

}  // namespace

extern "C" const RecschedPolicyPlugin* recsched_policy_plugin(void) { return &kPlugin; }
