// The placement policy interface: given one query and a read-only snapshot of the devices,
// their load and the profiles, choose a device, a sub-batch size and a worker count.
// Policies see no threads, sockets or hwloc; they are tested with a manual clock.
// Depends on core and nlohmann/json only.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "core/device.h"
#include "core/profile.h"
#include "core/status.h"

namespace recsched::policies {

using recsched::Clock;
using recsched::DeviceId;
using recsched::DeviceKind;

/// One device as a policy sees it at one instant.
struct DeviceView {
  std::string id;  ///< "cpu0", "gpu0": the profile table's device key
  DeviceKind kind = DeviceKind::kCpu;
  int workers = 1;  ///< CPU: pinned workers; GPU: streams
  int busy_workers = 0;
  size_t queued = 0;       ///< queries waiting or running
  double backlog_ms = 0;   ///< predicted time to finish what is queued (see Dispatcher)
  double idle_w = 0;       ///< power it draws idle (for min-energy), whole device
  int active_workers = 0;  ///< workers kept awake (the rest parked); 0 = all
  /// A GPU that merges queued queries of one model into one pass (core/merge.h;
  /// Dispatcher::set_gpu_merging): merge_max_items > 0, and merge_items of the query's
  /// model are admitted there and not finished. A query's service there is then what its
  /// items add to those passes (predict_merged_ms); 0 everywhere else.
  uint32_t merge_max_items = 0;
  uint64_t merge_items = 0;
};

/// Per-model facts a policy may use.
struct ModelView {
  std::string name;
  double sla_ms = 100;       ///< tail-latency target
  double recent_p95_ms = 0;  ///< over the daemon's sliding window; 0 when nothing completed
  double sla_percentile = 95;  ///< which percentile sla_ms bounds (Admission::late_budget)
};

/// Read-only snapshot given to place(); valid only during that call.
struct ClusterView {
  std::span<const DeviceView> devices;
  const ProfileTable& profiles;
  Clock::time_point now;
};

/// One query to place.
struct QueryInfo {
  uint64_t id = 0;
  const ModelView* model = nullptr;
  uint32_t items = 0;
  double sla_ms = 0;  ///< this query's target (the model's unless the request set one)
};

/// How a device's runner orders a query among those waiting for a worker.
enum class QueueOrder : uint8_t {
  kDeadline,  ///< by deadline, arrival + the query's SLA target: earliest first (EDF)
  kArrival,   ///< by arrival: first come, first served (DeepRecSys's baseline)
};

/// Where and how a query runs.
struct Placement {
  std::string device;       ///< an id from the view
  uint32_t sub_batch = 0;   ///< items per sub-batch; >= items means whole
  int workers = 1;          ///< at most this many workers on it at once
  double predicted_ms = 0;  ///< the policy's estimate, for the placement log and admission
  std::string reason;       ///< one short line for the placement log
  /// Workers of `device` to keep awake from now on, the rest parked (they take no work,
  /// so their cores can sleep); 0 leaves the device as it is. Only min-energy parks.
  int active_workers = 0;
  /// Its place in the runner's queue, on every device (the GPU's whole-query runner orders
  /// by deadline too). Every built-in policy but static orders by deadline.
  QueueOrder order = QueueOrder::kDeadline;
};

/// A finished query, fed back to the policy that placed it.
struct Completion {
  uint64_t id = 0;
  std::string model;
  uint32_t items = 0;
  Placement placement;
  double latency_ms = 0;
  bool ok = true;
};

/// Decides which device runs each query. Threading: the dispatcher calls every method
/// from one thread at a time, never concurrently on one instance. place() must not block
/// and must use only `view` for device state, never a cached copy.
class Policy {
 public:
  virtual ~Policy() = default;
  /// The registry key: config value, log field, metric label.
  virtual std::string_view name() const = 0;
  /// kUnavailable: an expected rejection (no device can take the query now, or the view
  /// is empty). Any other error means the policy is broken.
  virtual Result<Placement> place(const QueryInfo& query, const ClusterView& view) = 0;
  /// Feedback from every completion; default: ignore.
  virtual void observe(const Completion& /*done*/) {}
  /// The knobs, for GET /v1/policy.
  virtual nlohmann::json params() const = 0;
  /// Whether admission may judge this policy's GPU placements by the wait the GPU's runner
  /// gives, and move a query it would refuse to a GPU where it is on time that way
  /// (Dispatcher::dispatch). Default false: every placement stands as placed and is judged
  /// by the policy's own prediction (static and deeprecsched keep their published forms);
  /// earliest-finish and min-energy, which look for a device that meets the target, say
  /// true.
  virtual bool admission_may_move() const { return false; }
  /// Re-tunes from PUT /v1/policy's params; kInvalidArgument naming the key, and the
  /// policy is then unchanged.
  virtual Status configure(const nlohmann::json& params) = 0;
};

/// Predicted service time of `items` of `model` on `device` run as sub-batches of
/// `sub_batch` over `workers` workers, from the profile: each sub-batch's time at its size
/// (interpolated; extrapolated per item beyond the largest measured size), the sub-batches
/// spread over the workers in rounds. nullopt when the device has no profile for the model.
std::optional<double> predict_service_ms(const ProfileTable& profiles, std::string_view model,
                                         std::string_view device, uint32_t items,
                                         uint32_t sub_batch, int workers);
/// A GPU that merges (DeviceView::merge_max_items): what `items` add to the passes of
/// `in_flight` items of the same model, as passes of at most `max_items` each at the
/// profile's time for its size; at least 0. With nothing in flight, one pass's time.
double predict_merged_ms(const std::vector<ProfilePoint>& points, uint64_t in_flight,
                         uint32_t items, uint32_t max_items);
/// The same on one (model, device)'s points, which must be non-empty, with items >= 1.
double predict_service_ms(const std::vector<ProfilePoint>& points, uint32_t items,
                          uint32_t sub_batch, int workers);

/// Power (W) of one worker busy on a sub-batch of `sub_batch` items: the profile's power at
/// that size (interpolated; the nearest end outside the measured range) over the workers
/// it was measured with. What min-energy predicts with and the simulator charges.
/// `points` must be non-empty.
double busy_w_per_worker(const std::vector<ProfilePoint>& points, uint32_t sub_batch);

}  // namespace recsched::policies
