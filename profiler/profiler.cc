#include "core/device.h"
#include "profiler/profiler.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <thread>

#include "engine/inputs.h"

namespace recsched::profiler {
namespace {

struct Timing {
  double p50_us = 0;
  double p95_us = 0;
  double energy_j = 0;
  double wall_s = 0;
  int reps = 0;
};

double percentile(std::vector<double> v, double p) {
  std::sort(v.begin(), v.end());
  const size_t rank = static_cast<size_t>(std::ceil(p / 100.0 * v.size()));
  return v[std::clamp<size_t>(rank, 1, v.size()) - 1];
}

// The inputs of one batch size: distinct batches taken in turn, so that every run reads
// embedding rows no recent run read, as in serving, where each query brings fresh ids.
// (With two alternating batches, as before, a small batch found its rows in cache and the
// profile came out faster than serving: RMC1 about 2x.) Enough batches that a batch's
// rows were last read at least kColdRowBytes of other rows ago, more than this machine's
// caches hold; at most kMaxPool, and at most kMaxPoolBytes of inputs (then at least two:
// a batch that large reads more rows than any cache holds by itself).
class InputPool {
 public:
  static constexpr double kColdRowBytes = 1024.0 * 1024 * 1024;
  static constexpr size_t kMaxPool = 256;
  static constexpr double kMaxPoolBytes = 256.0 * 1024 * 1024;

  InputPool(const engine::ModelSpec& spec, uint32_t batch) {
    const double lookups = double(batch) * spec.num_tables() * spec.lookups_per_table;
    const double rows = lookups * spec.embedding_dim * sizeof(float);
    const double bytes = lookups * sizeof(int64_t) +
                         double(batch) * (spec.dense_features * sizeof(float) +
                                          spec.num_tables() * sizeof(int64_t));
    size_t n = static_cast<size_t>(std::ceil(kColdRowBytes / std::max(rows, 1.0))) + 1;
    n = std::min({n, kMaxPool, static_cast<size_t>(kMaxPoolBytes / std::max(bytes, 1.0))});
    n = std::max<size_t>(n, 2);
    batches_.reserve(n);
    for (size_t i = 0; i < n; ++i) {
      batches_.push_back(engine::random_batch(spec, batch, uint64_t(batch) * kMaxPool + i));
    }
  }
  /// The next batch, round robin over the pool (every split of a size continues it).
  const Batch& next() { return batches_[next_++ % batches_.size()]; }
  /// The i-th batch, round robin (for threads that share the pool: each its own i).
  const Batch& at(size_t i) const { return batches_[i % batches_.size()]; }
  size_t size() const { return batches_.size(); }

 private:
  std::vector<Batch> batches_;
  size_t next_ = 0;
};

// Times `run` repeatedly on the pool's inputs; reads the meter around the timed runs.
// `busy` returns the device-seconds of activity so far, for an estimating meter.
// Measured counters (RAPL, NVML) update every few milliseconds to ~100 ms (NVML's
// total-energy counter on an H200: readings 50 ms apart were often equal), so energy is
// read over at least this long; an estimate needs no such window.
constexpr double kEnergyWindowSeconds = 0.3;

Result<Timing> time_runs(const std::function<Status(const Batch&)>& run, InputPool& inputs,
                         PowerMeter& meter, const std::function<double()>& busy,
                         const ProfileOptions& o, double min_wall_s = 0) {
  RECSCHED_RETURN_IF_ERROR(run(inputs.next()));  // warm-up: workspaces, code, lazy pages
  auto* estimator = dynamic_cast<EstimatedMeter*>(&meter);
  const double busy0 = busy();
  RECSCHED_ASSIGN_OR_RETURN(const double e0, meter.energy_joules());
  const auto start = Clock::now();
  std::vector<double> us;
  double timed = 0;
  auto wall = [&] { return std::chrono::duration<double>(Clock::now() - start).count(); };
  while ((static_cast<int>(us.size()) < o.max_reps &&
          (static_cast<int>(us.size()) < o.min_reps || timed < o.seconds_per_point)) ||
         wall() < min_wall_s) {
    const Batch& in = inputs.next();
    const auto t0 = Clock::now();
    RECSCHED_RETURN_IF_ERROR(run(in));
    const double dt = std::chrono::duration<double>(Clock::now() - t0).count();
    us.push_back(dt * 1e6);
    timed += dt;
  }
  Timing t;
  t.wall_s = std::chrono::duration<double>(Clock::now() - start).count();
  if (estimator != nullptr) estimator->add_busy(busy() - busy0);
  RECSCHED_ASSIGN_OR_RETURN(const double e1, meter.energy_joules());
  t.energy_j = e1 - e0;
  t.p50_us = percentile(us, 50);
  t.p95_us = percentile(us, 95);
  t.reps = static_cast<int>(us.size());
  return t;
}

ProfilePoint to_point(uint32_t batch, const Timing& t, const PowerMeter& meter, uint32_t sub,
                      int workers) {
  ProfilePoint p;
  p.batch_size = batch;
  p.p50_us = t.p50_us;
  p.p95_us = t.p95_us;
  p.items_per_s = batch / (t.p50_us * 1e-6);
  p.power_w = t.wall_s > 0 ? t.energy_j / t.wall_s : 0;
  p.energy_per_item_j = p.power_w * t.p50_us * 1e-6 / batch;
  p.power_source = std::string(meter.source());
  p.best_sub_batch = sub;
  p.best_workers = static_cast<uint32_t>(workers);
  return p;
}

}  // namespace

// The method's version too ("inputs fresh": InputPool), so that a cache written by an
// older sweep is measured again rather than trusted.
std::string build_id() {
  return std::string("recsched " RECSCHED_VERSION " gcc ") + __VERSION__ + ", inputs fresh";
}

ProfileOptions ProfileOptions::quick() {
  ProfileOptions o;
  o.batch_sizes = {1, 16, 256};
  o.seconds_per_point = 0.01;
  o.min_reps = 2;
  o.max_reps = 10;
  return o;
}

Result<std::vector<ProfilePoint>> profile_cpu(exec::CpuRunner& runner, const engine::Model& model,
                                              PowerMeter& meter, const ProfileOptions& o) {
  std::vector<ProfilePoint> points;
  const double cores = std::max<uint32_t>(1, runner.device().cores);
  const auto busy = [&] { return runner.busy_seconds() / cores; };
  for (uint32_t b : o.batch_sizes) {
    InputPool inputs(model.spec(), b);
    std::vector<float> scores(size_t(b) * model.spec().num_outputs());
    std::optional<ProfilePoint> best;
    double single_us = 0;  // w = 1: the query whole on one worker
    // Worker counts 1, 2, 4, ... and all of them: the sweep stays short on big devices.
    std::vector<int> counts;
    for (int w = 1; w < runner.workers(); w *= 2) counts.push_back(w);
    counts.push_back(runner.workers());
    for (int w : counts) {
      if (w > static_cast<int>(b)) break;
      const uint32_t sub = (b + w - 1) / w;
      auto run = [&](const Batch& in) { return runner.run(model, view_of(in), sub, w, scores); };
      RECSCHED_ASSIGN_OR_RETURN(Timing t, time_runs(run, inputs, meter, busy, o));
      if (w == 1) single_us = t.p50_us;
      if (!best || t.p50_us < best->p50_us) best = to_point(b, t, meter, sub, w);
    }
    best->p50_single_us = single_us;
    if (meter.source() != "estimated") {
      // Energy of the chosen split, over a window the counter can resolve.
      const uint32_t sub = best->best_sub_batch;
      const int w = static_cast<int>(best->best_workers);
      auto run = [&](const Batch& in) { return runner.run(model, view_of(in), sub, w, scores); };
      RECSCHED_ASSIGN_OR_RETURN(Timing t,
                                time_runs(run, inputs, meter, busy, o, kEnergyWindowSeconds));
      const ProfilePoint energy = to_point(b, t, meter, sub, w);
      best->power_w = energy.power_w;
      best->energy_per_item_j = best->power_w * best->p50_us * 1e-6 / b;
    }
    points.push_back(*best);
  }
  return points;
}

// Items per second with `streams` threads calling forward() at once on batches of size b,
// each thread on every streams-th batch of the pool (so no two read the same batch at
// once), each with its own workspace: one untimed call each (a GPU stream's first pass of
// a size captures its graph), then all start together and run back to back for
// seconds_per_point and at least min_reps calls each.
Result<double> items_per_s_with(const engine::Model& model, const InputPool& inputs, uint32_t b,
                                int streams, const ProfileOptions& o) {
  std::atomic<int> ready{0};
  std::atomic<bool> go{false};
  std::vector<Status> status(size_t(streams), Status::ok());
  std::vector<uint64_t> calls(size_t(streams), 0);
  std::vector<Clock::time_point> ended(static_cast<size_t>(streams));
  Clock::time_point start;
  std::vector<std::thread> threads;
  for (int t = 0; t < streams; ++t) {
    threads.emplace_back([&, t] {
      engine::Workspace ws;
      std::vector<float> scores(size_t(b) * model.spec().num_outputs());
      size_t next = size_t(t);
      status[t] = model.forward(view_of(inputs.at(next)), ws, scores);
      ++ready;
      while (!go.load()) std::this_thread::yield();
      const auto until = start + std::chrono::duration_cast<Clock::duration>(
                                     std::chrono::duration<double>(o.seconds_per_point));
      while (status[t].is_ok() && (Clock::now() < until || calls[t] < uint64_t(o.min_reps))) {
        next += size_t(streams);
        status[t] = model.forward(view_of(inputs.at(next)), ws, scores);
        ++calls[t];
      }
      ended[t] = Clock::now();
    });
  }
  while (ready.load() < streams) std::this_thread::yield();
  start = Clock::now();
  go = true;
  for (std::thread& th : threads) th.join();
  uint64_t total = 0;
  Clock::time_point last = start;
  for (int t = 0; t < streams; ++t) {
    RECSCHED_RETURN_IF_ERROR(status[t]);
    total += calls[t];
    last = std::max(last, ended[t]);
  }
  const double seconds = std::chrono::duration<double>(last - start).count();
  return seconds > 0 ? double(total) * b / seconds : 0.0;
}

Result<std::vector<ProfilePoint>> profile_whole(const engine::Model& model, PowerMeter& meter,
                                                const ProfileOptions& o, int streams) {
  std::vector<ProfilePoint> points;
  engine::Workspace ws;
  double busy_s = 0;
  const auto busy = [&] { return busy_s; };
  for (uint32_t b : o.batch_sizes) {
    InputPool inputs(model.spec(), b);
    std::vector<float> scores(size_t(b) * model.spec().num_outputs());
    auto run = [&](const Batch& in) {
      const auto t0 = Clock::now();
      Status st = model.forward(view_of(in), ws, scores);
      busy_s += std::chrono::duration<double>(Clock::now() - t0).count();
      return st;
    };
    const double window = meter.source() == "estimated" ? 0.0 : kEnergyWindowSeconds;
    RECSCHED_ASSIGN_OR_RETURN(Timing t, time_runs(run, inputs, meter, busy, o, window));
    points.push_back(to_point(b, t, meter, b, 1));
    ProfilePoint& p = points.back();
    p.p50_single_us = p.p50_us;
    if (streams > 1) {
      // Concurrent runs are not timed into busy_s: the estimate of energy above stands.
      std::vector<double> rate;
      for (int s = 1; s <= streams; ++s) {
        RECSCHED_ASSIGN_OR_RETURN(const double r, items_per_s_with(model, inputs, b, s, o));
        rate.push_back(r);
      }
      const double most = *std::max_element(rate.begin(), rate.end());
      size_t pick = 0;
      while (rate[pick] * (1 + kStreamGain) < most) ++pick;
      p.best_streams = static_cast<uint32_t>(pick + 1);
      p.streams_items_per_s = rate[pick];
    }
  }
  return points;
}

}  // namespace recsched::profiler
