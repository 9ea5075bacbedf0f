// Profiles: what each model costs on each device at each batch size. Filled by the
// profiler, read by policies. Standard library only.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace recsched {

/// Measured cost of one query of `batch_size` items of one model on one device.
struct ProfilePoint {
  uint32_t batch_size = 0;
  double p50_us = 0;         ///< median latency of one query (with the best split)
  double p50_single_us = 0;  ///< median latency run whole on one worker (one GPU stream)
  double p95_us = 0;
  double items_per_s = 0;        ///< batch_size / p50
  double power_w = 0;            ///< mean power drawn while it ran (the device's share)
  double energy_per_item_j = 0;  ///< power_w * p50 / batch_size
  std::string power_source;      ///< "rapl", "nvml" or "estimated": never unlabelled
  uint32_t best_sub_batch = 0;   ///< sub-batch size that gave p50 (DeepRecSched's knob)
  uint32_t best_workers = 0;     ///< workers that gave p50
  /// Whole-query devices (GPUs): how many passes of this size in flight at once gave the
  /// most items per second (1 where a second stream did not pay), and that rate. 0 where
  /// not measured: CPU points, and GPU profiles from before 2026-12-06.
  uint32_t best_streams = 0;
  double streams_items_per_s = 0;
};

/// Profile points keyed by (model, device id such as "cpu0"), sorted by batch size.
/// Immutable once published; the daemon swaps in a new table after re-profiling.
class ProfileTable {
 public:
  /// Adds or replaces the point for (model, device, point.batch_size).
  void add(std::string_view model, std::string_view device, ProfilePoint point);

  /// The point at batch_size: the measured one if there is one, else interpolated
  /// linearly (in batch size) between the two nearest measured sizes, every numeric
  /// field (best_sub_batch and best_workers from the nearer point; power_source from
  /// the lower). nullopt if (model, device) was never profiled or batch_size lies
  /// outside the measured range.
  std::optional<ProfilePoint> estimate(std::string_view model, std::string_view device,
                                       uint32_t batch_size) const;

  /// The measured points of (model, device), by increasing batch size; empty if none.
  const std::vector<ProfilePoint>& points(std::string_view model, std::string_view device) const;

  /// Every (model, device) pair that has points, sorted.
  std::vector<std::pair<std::string, std::string>> keys() const;

  bool empty() const { return points_.empty(); }

 private:
  std::map<std::pair<std::string, std::string>, std::vector<ProfilePoint>, std::less<>> points_;
};

/// How many passes a whole-query device (a GPU) should run at once: the most best_streams
/// of any of its points, over every model. 0 when none of its points measured it (a
/// profile from before 2026-12-06, or a CPU device): the caller keeps its default.
uint32_t streams_paying(const ProfileTable& table, std::string_view device);

}  // namespace recsched
