// How many queries per second of each model this host can take within the model's target,
// and how many it takes now: what recschedd exports to load balancers and fleet tools
// (GET /v1/capacity, the HAProxy agent, ORCA load reports, Node Feature Discovery).
// A model from the profiles, not a measurement: each device's rate is its workers'
// throughput at the model's recent query size, in the cheapest configuration the
// admission bound allows, times a utilisation ceiling that leaves room for queueing.
// Standard library and core only.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "core/profile.h"
#include "policies/dispatcher.h"

namespace recsched::policies {

/// One served model as the capacity model sees it.
struct ModelDemand {
  std::string model;
  double target_ms = 0;   ///< its SLA
  double items = 164;     ///< its recent mean query size (kDefaultItems before any query)
  double offered_qps = 0;  ///< arrivals, whatever became of them
  double served_qps = 0;   ///< answered with scores
};

/// DeepRecInfra's median query size (lognormal mu 5.1, sigma 0.2): the size assumed for a
/// model that has had no query yet.
inline constexpr double kDefaultItems = 164;

struct CapacityOptions {
  /// The share of the target a query's predicted service may use: admission's bound for a
  /// priority-0 query (reject_factor x normal_priority_share).
  double bound_share = 0.8;
  /// The fraction of the devices' throughput counted as capacity: the rest is left to
  /// queueing, so that waiting does not push queries past their target.
  double max_utilisation = 0.8;
};

/// One device's part in a model's capacity.
struct DeviceCapacity {
  std::string device;
  double capacity_qps = 0;  ///< 0 if no configuration fits the bound, or degraded
  double service_ms = 0;    ///< predicted service time in the configuration chosen
  int workers_per_query = 0;  ///< workers one query uses in it (0: none fits)
  bool degraded = false;
};

struct ModelCapacity {
  std::string model;
  double target_ms = 0;
  double items = 0;
  double capacity_qps = 0;  ///< sum over the devices
  double offered_qps = 0;
  double served_qps = 0;
  /// What more of this model the host could take now: capacity x (1 - host utilisation).
  double headroom_qps = 0;
  std::vector<DeviceCapacity> devices;
};

struct HostCapacity {
  std::vector<ModelCapacity> models;
  /// Sum over models of served / capacity: the share of the host the traffic uses, if the
  /// models share the devices in proportion to their work. > 1 when overloaded; a model
  /// served with no capacity at all counts as 1 by itself.
  double utilisation = 0;
  /// The host's capacity for the traffic's current mix (its served shares; before any
  /// traffic, an even split over the models with capacity), in q/s of all models together.
  double mix_capacity_qps = 0;
  double served_qps = 0;
  /// mix_capacity x max(0, 1 - utilisation).
  double headroom_qps = 0;
};

/// One device's rate for `model` at `items` per query: over every way of running a query
/// (whole on one worker, or split evenly over w = 2..workers workers), the one that uses
/// the fewest worker-milliseconds while its predicted service is within `bound_ms`;
/// capacity = max_utilisation x workers x 1000 / (w x service_ms). Zero (workers_per_query
/// 0) when none fits or the device has no profile for the model.
DeviceCapacity device_capacity(const ProfileTable& profiles, const DeviceInfo& device,
                               std::string_view model, double items, double bound_ms,
                               double max_utilisation);

/// Every model's capacity on `devices` (degraded[i] true: device i counts 0), and the
/// host's utilisation and headroom for the demand given.
HostCapacity host_capacity(const ProfileTable& profiles, const std::vector<DeviceInfo>& devices,
                           const std::vector<bool>& degraded,
                           const std::vector<ModelDemand>& demand, const CapacityOptions& options);

/// An event rate (per second) with exponential forgetting over `tau_s` seconds: each
/// event adds 1/tau, and the sum decays by exp(-dt/tau). Not thread-safe.
class RateMeter {
 public:
  explicit RateMeter(double tau_s = 10) : tau_s_(tau_s) {}
  void add(double now_s, double count = 1);
  double rate(double now_s) const;

 private:
  double tau_s_;
  double value_ = 0;    ///< the rate at last_s_
  double last_s_ = 0;
};

}  // namespace recsched::policies
