#include "policies/dispatcher.h"

#include <algorithm>
#include <cstdio>

namespace recsched::policies {

Dispatcher::Dispatcher(std::vector<DeviceInfo> devices, std::unique_ptr<Policy> policy,
                       double reject_factor)
    : devices_(std::move(devices)),
      policy_(std::move(policy)),
      reject_factor_(reject_factor),
      backlog_ms_(devices_.size(), 0.0) {
  views_.reserve(devices_.size());
}

Decision Dispatcher::dispatch(const QueryInfo& query, const std::vector<DeviceLoad>& loads,
                              const ProfileTable& profiles, Clock::time_point now) {
  views_.clear();
  for (size_t i = 0; i < devices_.size(); ++i) {
    const DeviceInfo& d = devices_[i];
    const DeviceLoad load = i < loads.size() ? loads[i] : DeviceLoad{};
    views_.push_back({d.id, d.kind, d.workers, load.busy_workers, load.queued, backlog_ms_[i],
                      d.idle_w, load.active_workers});
  }
  Decision out;
  out.policy = std::string(policy_->name());
  out.generation = generation_;
  Result<Placement> placed = policy_->place(query, ClusterView{views_, profiles, now});
  if (!placed) {
    out.why = placed.status().message();
    return out;
  }
  out.placement = std::move(placed).value();
  const auto it = std::find_if(devices_.begin(), devices_.end(),
                               [&](const DeviceInfo& d) { return d.id == out.placement.device; });
  if (it == devices_.end()) {
    out.why = out.policy + " chose device '" + out.placement.device + "', which is not served";
    return out;
  }
  out.device_index = static_cast<size_t>(it - devices_.begin());
  const int awake = out.placement.active_workers > 0 ? out.placement.active_workers : it->workers;
  out.placement.workers = std::clamp(out.placement.workers, 1, std::max(1, awake));
  // A sub-batch larger than the query means "whole"; kept as the policy said (deeprecsched
  // recognises its own setting in the completions).
  out.placement.sub_batch = std::max<uint32_t>(1, out.placement.sub_batch);
  const std::string model = query.model != nullptr ? query.model->name : std::string();
  out.service_ms = predict_service_ms(profiles, model, it->id, query.items, out.placement.sub_batch,
                                      out.placement.workers)
                       .value_or(0.0);
  const double sla = query.sla_ms > 0 ? query.sla_ms : (query.model ? query.model->sla_ms : 0);
  if (sla > 0 && out.placement.predicted_ms > reject_factor_ * sla) {
    char buf[200];
    std::snprintf(buf, sizeof buf,
                  "rejected: predicted %.1f ms on %s (%zu queries queued) exceeds %g x the SLA "
                  "of %g ms",
                  out.placement.predicted_ms, it->id.c_str(), views_[out.device_index].queued,
                  reject_factor_, sla);
    out.why = buf;
    return out;
  }
  // The work this query adds: its service time on each worker it may occupy.
  const uint32_t subs =
      (query.items + out.placement.sub_batch - 1) / std::max<uint32_t>(1, out.placement.sub_batch);
  out.backlog_added_ms =
      out.service_ms * std::min<int>(out.placement.workers, static_cast<int>(std::max(1u, subs)));
  backlog_ms_[out.device_index] += out.backlog_added_ms;
  out.admitted = true;
  return out;
}

void Dispatcher::complete(const Decision& decision, const Completion& done) {
  if (!decision.admitted || decision.device_index >= backlog_ms_.size()) return;
  double& b = backlog_ms_[decision.device_index];
  b = std::max(0.0, b - decision.backlog_added_ms);
  if (decision.generation == generation_) policy_->observe(done);
}

void Dispatcher::set_policy(std::unique_ptr<Policy> policy) {
  policy_ = std::move(policy);
  ++generation_;
}

}  // namespace recsched::policies
