// What recsched-load sends and when: query-size distributions (DeepRecInfra's lognormal by
// default), the model mix, and the open-loop schedule of Poisson arrivals computed in
// advance. Deterministic in the seed. Standard library only.
#pragma once

#include <cstdint>
#include <random>
#include <string>
#include <vector>

namespace recsched::load {

/// Items per query. Every draw is rounded and clamped to [1, cap].
struct SizeDistribution {
  enum class Kind { kLognormal, kNormal, kFixed, kSamples };
  Kind kind = Kind::kLognormal;
  double a = 5.1;  ///< lognormal: mu; normal: mean; fixed: the size
  double b = 0.2;  ///< lognormal: sigma; normal: standard deviation
  uint32_t cap = 1024;
  std::vector<uint32_t> samples;  ///< kSamples: drawn uniformly

  /// Parses "lognormal[:MU,SIGMA[,CAP]]", "normal:MEAN,SD[,CAP]", "fixed:N" or "file:PATH"
  /// (whitespace-separated positive integers, e.g. DeepRecInfra's query-size traces).
  /// Throws std::invalid_argument naming what is wrong.
  static SizeDistribution parse(const std::string& text);

  uint32_t draw(std::mt19937_64& rng) const;
  /// The largest size draw() can return.
  uint32_t max_size() const;
  /// "lognormal(mu=5.1, sigma=0.2, cap=1024)" and the like.
  std::string describe() const;
};

/// One query to send: when (from the run's start), to which model, how many items, and a
/// random number that picks its payload.
struct Arrival {
  int64_t t_ns = 0;
  uint32_t model = 0;  ///< index into the mix
  uint32_t items = 0;
  uint64_t pick = 0;
};

/// Poisson arrivals at `qps` over [0, duration_s): exponential gaps with mean 1/qps,
/// summed from the start, so each send time is fixed before the run (a slow response never
/// delays the next send). Each arrival's model is drawn by `weights` (non-negative, not all
/// zero) and its size from `sizes`. Throws std::invalid_argument for qps <= 0 or bad weights.
std::vector<Arrival> make_schedule(double qps, double duration_s,
                                   const std::vector<double>& weights,
                                   const SizeDistribution& sizes, uint64_t seed);

}  // namespace recsched::load
