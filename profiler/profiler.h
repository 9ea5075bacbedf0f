// Profiling sweeps: how fast one model runs on one device at each batch size, and what
// it costs in energy. The CPU sweep also finds the best split of each batch across the
// device's workers (DeepRecSched's sub-batch knob).
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "core/profile.h"
#include "core/status.h"
#include "engine/model.h"
#include "exec/cpu_runner.h"
#include "profiler/power.h"

namespace recsched::profiler {

struct ProfileOptions {
  /// Batch sizes to measure (powers of two up to 1024 by default).
  std::vector<uint32_t> batch_sizes = {1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024};
  /// Timed seconds per configuration, after one warm-up run: runs stop once this much
  /// time has been measured and at least min_reps runs were made, or at max_reps.
  double seconds_per_point = 0.05;
  int min_reps = 3;
  int max_reps = 50;
  /// A short sweep for tests and `--quick`: 3 sizes, 10 ms each.
  static ProfileOptions quick();
};

/// Measures `model` on `runner`'s device. For each batch size B it times the splits of
/// B across w = 1, 2, 4, ... and all workers (sub-batches of ceil(B / w) items; w <= B)
/// and keeps the
/// fastest: its median and p95 latency, its workers and sub-batch size, and the energy
/// the meter saw (an estimating meter is fed the runner's busy time; a measuring one is
/// read over at least 0.3 s of the chosen split, which its counter can resolve).
/// Inputs are random with the spec's lookups per table, a different batch for each run
/// (from a pool sized so that no run finds its embedding rows in cache from a recent
/// one, as in serving). Errors from the model or runner.
Result<std::vector<ProfilePoint>> profile_cpu(exec::CpuRunner& runner, const engine::Model& model,
                                              PowerMeter& meter, const ProfileOptions& options);

/// The build and sweep method a profile was measured with, for the cache's key:
/// "recsched 0.1.0 gcc 12.2.0, inputs fresh".
std::string build_id();

/// The same for a model that runs whole (a GPU model): one configuration per size;
/// an estimating meter counts the time inside forward() as the device's busy time.
/// With streams > 1 (the model's forward() must take that many calls at once, as a CUDA
/// model loaded with that many streams does), each size is also run by 1, 2, ... streams
/// threads at once, each calling forward() back to back for seconds_per_point (at least
/// min_reps calls each): best_streams is the fewest that came within kStreamGain of the
/// most items per second, streams_items_per_s that rate (1 and the one-thread rate when
/// a second stream does not pay). streams == 1 leaves both 0 (not measured).
Result<std::vector<ProfilePoint>> profile_whole(const engine::Model& model, PowerMeter& meter,
                                                const ProfileOptions& options, int streams = 1);

/// A further stream is kept only if it raises items per second by at least this much
/// over the best of fewer streams (below it, the noise of a short window).
inline constexpr double kStreamGain = 0.10;

}  // namespace recsched::profiler
