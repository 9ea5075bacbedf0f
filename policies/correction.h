// Predictions that hold: what serving measures, learnt online against what the profile
// predicted. The profiler times compute back to back on an idle machine; a live query also
// meets caches its predecessor did not warm, idle gaps, other processes on the cores and the
// daemon's own decoding and encoding. This learns, per (device, model, size range), the
// ratio of a query's measured service time (its first piece's start to its last piece's
// end, on the runner) to the profile's prediction for the same placement, and per (model,
// size range) the time a query spends outside the runner (decoding before dispatch,
// encoding after). apply() gives the profile table the dispatcher and the policies predict
// with: each measured point times its range's ratio. The daemon publishes both in
// GET /v1/profiles. Standard library and nlohmann/json only; not thread-safe (the caller
// locks).
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <utility>

#include "core/profile.h"

namespace recsched::policies {

class ServiceCorrection {
 public:
  /// Size ranges: [1, 4), [4, 16), [16, 64), [64, 256), [256, 1024), [1024, inf) items.
  static constexpr size_t kRanges = 6;
  static size_t range(uint32_t items);
  /// A range's ratio is used once it has this many samples (1 before).
  static constexpr uint64_t kMinSamples = 8;
  /// Exponential weight of each new sample: about the last 20 count.
  static constexpr double kAlpha = 0.05;
  /// Ratios are clamped to this range: a single stall must not make a model look 100x
  /// slower, and nothing real runs 4x faster than its profile.
  static constexpr double kMinRatio = 0.25, kMaxRatio = 10;

  /// One completed query: its service time on the runner and the profile's prediction of
  /// it (both ms; ignored unless both are positive).
  void learn_service(std::string_view device, std::string_view model, uint32_t items,
                     double measured_ms, double predicted_ms);
  /// One completed query's time outside the runner (ms).
  void learn_overhead(std::string_view model, uint32_t items, double ms);

  struct Estimate {
    double value = 0;  ///< the ratio (1 when unlearnt) or the overhead in ms (0 when unlearnt)
    uint64_t samples = 0;
  };
  Estimate ratio(std::string_view device, std::string_view model, uint32_t items) const;
  Estimate overhead_ms(std::string_view model, uint32_t items) const;
  /// The ratio apply() scales a point of `batch_size` items by (see there).
  double point_ratio(std::string_view device, std::string_view model, uint32_t batch_size) const;

  /// The table to predict with: every point of `measured` with p50_us, p50_single_us and
  /// p95_us times a ratio (items_per_s and energy_per_item_j follow), other fields as
  /// measured. The ratio is its own range's where that one is applied, else the nearest
  /// applied range's of the same (device, model) (the smaller on a tie), else 1: queries
  /// fall between profiled sizes, and a prediction interpolates between two points.
  ProfileTable apply(const ProfileTable& measured) const;

  /// {"service": [{device, model, ranges: [{from, to, ratio, samples}]}],
  ///  "overhead": [{model, ranges: [{from, to, ms, samples}]}]}: learnt ranges only.
  nlohmann::json to_json() const;

 private:
  struct Ewma {
    double value = 0;
    uint64_t samples = 0;
    void add(double x);
  };
  using Ranges = std::array<Ewma, kRanges>;
  std::map<std::pair<std::string, std::string>, Ranges> service_;  // (device, model)
  std::map<std::string, Ranges, std::less<>> overhead_;                          // by model
};

}  // namespace recsched::policies
