#include "policies/capacity.h"

#include <algorithm>
#include <cmath>

#include "policies/policy.h"

namespace recsched::policies {

DeviceCapacity device_capacity(const ProfileTable& profiles, const DeviceInfo& device,
                               std::string_view model, double items, double bound_ms,
                               double max_utilisation) {
  DeviceCapacity out;
  out.device = device.id;
  const std::vector<ProfilePoint>& points = profiles.points(model, device.id);
  if (points.empty()) return out;
  const auto n = static_cast<uint32_t>(std::max(1.0, std::round(items)));
  const int workers = std::max(1, device.workers);
  double best_worker_ms = 0;
  for (int w = 1; w <= workers && static_cast<uint32_t>(w) <= n; ++w) {
    const uint32_t sub = (n + static_cast<uint32_t>(w) - 1) / static_cast<uint32_t>(w);
    const double ms = predict_service_ms(points, n, sub, w);
    if (ms > bound_ms) continue;
    const double worker_ms = w * ms;
    if (out.workers_per_query == 0 || worker_ms < best_worker_ms) {
      best_worker_ms = worker_ms;
      out.workers_per_query = w;
      out.service_ms = ms;
    }
  }
  if (out.workers_per_query > 0 && best_worker_ms > 0) {
    out.capacity_qps = max_utilisation * workers * 1000.0 / best_worker_ms;
  } else if (out.workers_per_query == 0) {
    // None fits: report the fastest it could be, for the operator.
    out.service_ms = predict_service_ms(points, n, (n + workers - 1) / workers, workers);
  }
  return out;
}

HostCapacity host_capacity(const ProfileTable& profiles, const std::vector<DeviceInfo>& devices,
                           const std::vector<bool>& degraded,
                           const std::vector<ModelDemand>& demand, const CapacityOptions& options) {
  HostCapacity host;
  // Before any traffic: an even split over the models the host can serve at all.
  double inverse_even = 0;
  int servable = 0;
  for (const ModelDemand& d : demand) {
    ModelCapacity m;
    m.model = d.model;
    m.target_ms = d.target_ms;
    m.items = d.items;
    m.offered_qps = d.offered_qps;
    m.served_qps = d.served_qps;
    for (size_t i = 0; i < devices.size(); ++i) {
      if (profiles.points(d.model, devices[i].id).empty()) continue;  // not served there
      DeviceCapacity c = device_capacity(profiles, devices[i], d.model, d.items,
                                         options.bound_share * d.target_ms,
                                         options.max_utilisation);
      if (i < degraded.size() && degraded[i]) {
        c.degraded = true;
        c.capacity_qps = 0;
      }
      m.capacity_qps += c.capacity_qps;
      m.devices.push_back(std::move(c));
    }
    host.served_qps += d.served_qps;
    if (m.capacity_qps > 0) {
      host.utilisation += d.served_qps / m.capacity_qps;
      inverse_even += 1.0 / m.capacity_qps;
      ++servable;
    } else if (d.served_qps > 0) {
      host.utilisation += 1;
    }
    host.models.push_back(std::move(m));
  }
  if (host.served_qps > 0 && host.utilisation > 0) {
    host.mix_capacity_qps = host.served_qps / host.utilisation;
  } else if (servable > 0) {
    host.mix_capacity_qps = servable / inverse_even;
  }
  const double free = std::max(0.0, 1.0 - host.utilisation);
  host.headroom_qps = host.mix_capacity_qps * free;
  for (ModelCapacity& m : host.models) m.headroom_qps = m.capacity_qps * free;
  return host;
}

void RateMeter::add(double now_s, double count) {
  // Threads stamp their events a little out of order: one a few microseconds older than
  // the last counts as if at the last.
  now_s = std::max(now_s, last_s_);
  value_ = rate(now_s) + count / tau_s_;
  last_s_ = now_s;
}

double RateMeter::rate(double now_s) const {
  if (value_ == 0) return 0;
  const double dt = std::max(0.0, now_s - last_s_);
  return value_ * std::exp(-dt / tau_s_);
}

}  // namespace recsched::policies
