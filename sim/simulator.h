// The cluster-free simulator: replays a query trace through any policy on devices whose
// service times come from a profile table (this machine's, a recorded one of hardware
// we do not have, or a scaled one), with a manual clock, and reports tail latency per
// model, throughput and energy. Deterministic: the same inputs and seed give the same
// report, bit for bit.
//
// What it models, and what it does not:
// - Devices run exactly as exec::CpuRunner does: queries cut into sub-batches of the
//   placement's size; a free, awake worker takes a sub-batch of the query with the
//   earliest deadline (arrival + SLA target; or its arrival, for a placement that asks
//   for FIFO order: Placement::order) that has one left and fewer than its worker cap
//   running, ties in arrival order. GPUs have `workers` streams, each running whole
//   queries in the same queue order (as recschedd's GPU runner,
//   exec::WholeQueryRunner); with Options::gpu_batching a stream runs the first query
//   together with the queued queries of its model that core/merge.h's rule lets join,
//   one pass of the merged size.
// - A sub-batch of s items takes the profile's single-worker median at s (interpolated;
//   per item beyond the measured range), times a lognormal noise factor (mean 1,
//   sigma `noise`) drawn per sub-batch. Contention between workers (shared memory
//   bandwidth) is not modelled beyond what the profile measured.
// - Admission and placement go through policies::Dispatcher, the code recschedd runs, with
//   recschedd's admission rule and defaults (Options::admission).
// - Energy: each worker is busy (the profile's power per worker at that size), awake
//   and idle (the device's idle watts per worker) or parked (parked_w per worker), and
//   the report sums power x time per state over the run.
// Depends on core, policies and nlohmann/json.
#pragma once

#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "core/merge.h"
#include "core/profile.h"
#include "core/status.h"
#include "policies/dispatcher.h"
#include "policies/policy.h"

namespace recsched::sim {

/// One query of a trace.
struct Query {
  double arrival_ms = 0;
  std::string model;
  uint32_t items = 0;
};

/// Query sizes: DeepRecInfra's lognormal (the default), normal, or fixed.
struct SizeDistribution {
  enum class Kind { kLognormal, kNormal, kFixed } kind = Kind::kLognormal;
  double mu = 5.1, sigma = 0.2;  ///< lognormal: of log(items); normal: of items
  uint32_t fixed = 164;
  uint32_t cap = 1024;  ///< sizes are clamped to [1, cap]
};

/// A Poisson trace: exponential gaps at `qps`, a weighted model mix, sizes drawn per query.
struct TraceOptions {
  double qps = 100;
  double seconds = 10;
  std::vector<std::pair<std::string, double>> mix;  ///< (model, weight)
  SizeDistribution sizes;
  uint64_t seed = 1;
};

/// Deterministic on every platform: the generator and the distributions are our own
/// arithmetic on std::mt19937_64's output (the standard library's distributions differ
/// between implementations).
std::vector<Query> poisson_trace(const TraceOptions& options);

/// One simulated device.
struct Device {
  policies::DeviceInfo info;       ///< id (the profile table's key), kind, workers, idle watts
  double parked_w_per_worker = 0;  ///< power of a parked worker (a core in a deep C-state)
};

/// Options::outside_ms for one model: lognormal with this median and 95th percentile (each
/// query draws its own, from a generator of its own so the other draws do not move), or
/// p50_ms for every query where p95_ms is not above it.
struct OutsideLatency {
  double p50_ms = 0;
  double p95_ms = 0;
};

struct ModelTarget {
  std::string model;
  double sla_ms = 100;  ///< p95 target
};

struct Options {
  /// Admission: recschedd's rule with its defaults (policies::kDaemonAdmission; every
  /// simulated query has priority 0): a query predicted to take over reject_factor x
  /// normal_share x its target is turned away unless its device has a worker free and
  /// nothing waiting (admit_idle) or its model's tail budget has room (late_budget).
  /// Before 2026-12-05 the simulator admitted up to 2 x the target, the daemon up to 0.8 x.
  policies::Admission admission = policies::kDaemonAdmission;
  double noise = 0.1;  ///< sigma of the per-sub-batch lognormal noise; 0 = exact profile
  uint64_t seed = 7;
  /// Queries at the start whose latency is not counted (warm-up while policies tune).
  double warmup_fraction = 0.1;
  /// CPU queue order: as each placement says (kPolicy), or every query by deadline or by
  /// arrival whatever the policy says (its placements are rewritten, so the dispatcher's
  /// backlog accounting follows too), to compare the two orders.
  enum class Queue { kPolicy, kDeadline, kArrival } queue = Queue::kPolicy;
  /// Bounded waiting on CPU workers (policies::BoundedWait::fraction); 0 = off.
  double wait_bound_fraction = 0;
  /// Its lane's workers (policies::BoundedWait::lane_workers): 0 sizes it from the rates.
  int lane_workers = 0;
  /// Cooperative preemption on CPU workers (recschedd's limits.preemption, exec::CpuRunner):
  /// a query due sooner than a running piece, finding no worker free, interrupts it at its
  /// next yield point, modelled as every `yield_stretch_ms` of the piece's run (the
  /// longest stretch between points that bench/engine_breakdown measures is 0.3-2.5 ms
  /// with the engine's blocks), and the piece resumes after it; up to
  /// exec::CpuRunner::kMaxNesting pieces suspended per worker. The blocks' own cost
  /// (engine/layers.h) is not modelled.
  bool preemption = false;
  double yield_stretch_ms = 0.5;
  /// A model that has a target but received no queries fails meets_sla (true: the mix's
  /// judgement, as bench/run-suite's; false lets a target list cover models a trace omits).
  bool judge_every_target = true;
  /// Deadline-aware merging on GPUs (core/merge.h; recschedd's limits.gpu_merging): a
  /// stream's pass takes the queued queries of the first one's model that end in time with
  /// it, up to gpu_merge_max_items items, and lasts the profile's time at the merged size.
  bool gpu_batching = false;
  uint32_t gpu_merge_max_items = kMaxMergedItems;
  /// Queries admitted and not finished per device beyond which one is turned away, as
  /// recschedd's limits.max_queue does (its runner refuses it); 0 = no limit.
  size_t max_queue = 0;
  /// CPU time each query of a model costs on the first CPU device's cores outside its
  /// workers (ms): the daemon's I/O threads reading and decoding it, and a load generator
  /// sharing the host (bench/host_cost.py measures both). It lands on a core as the query
  /// arrives, ahead of the workers (they run at nice 10): on a parked or idle core if
  /// there is one (an idle worker then starts nothing until it is done), else it
  /// stretches a running piece, chosen at random, by as much. Empty: the cores are the
  /// workers' alone, as before 2026-12-07. Its power is not modelled.
  std::map<std::string, double> host_cpu_ms;
  /// Latency each query of a model spends outside the daemon's own clock: the client's
  /// send and read, the kernel's and the HTTP path before recschedd stamps its arrival,
  /// the wake-ups on the way. Added to each query's modelled latency where the report
  /// judges the target (p50/p95/p99, violations), as a live run judges what the client
  /// sees; not to what the dispatcher and the policy see (the daemon cannot see it).
  /// bench/host_cost.py measures both figures (client less daemon, at the p50 and p95).
  /// Empty: none, as before 2026-12-08.
  std::map<std::string, OutsideLatency> outside_ms;
};

struct ModelReport {
  std::string model;
  double sla_ms = 0;
  uint64_t offered = 0, completed = 0, rejected = 0;
  double p50_ms = 0, p95_ms = 0, p99_ms = 0, max_ms = 0;
  double violations = 0;  ///< fraction of completed queries slower than the SLA
};

struct Report {
  std::string policy;
  nlohmann::json policy_params;  ///< the policy's params() at the end (what it tuned)
  std::vector<ModelReport> models;
  double offered_qps = 0;
  double achieved_qps = 0;  ///< completed queries per second of trace
  /// Queries completed while the trace ran (after the warm-up), per second: the offered
  /// rate below saturation, the host's throughput past it.
  double throughput_qps = 0;
  /// The same for the mix in its proportions: the lowest of each model's completions per
  /// second over its share of the queries offered (equal to throughput_qps when every
  /// model keeps up alike).
  double mix_throughput_qps = 0;
  uint64_t preemptions = 0;  ///< pieces run at another's yield point (Options::preemption)
  /// GPU passes started with Options::gpu_batching, those of more than one query, and the
  /// queries those answered.
  uint64_t gpu_passes = 0, merged_passes = 0, merged_queries = 0;
  double energy_j = 0;      ///< over the whole run, all devices
  double energy_per_query_j = 0;
  double seconds = 0;  ///< simulated: first arrival to last completion
  std::map<std::string, uint64_t> queries_per_device;
  /// Every model's p95 within its SLA and at most 1 % of its own queries rejected; with
  /// Options::judge_every_target, a model with a target and no queries fails it.
  bool meets_sla = false;
  nlohmann::json to_json() const;
};

/// Replays `trace` through `policy`. kInvalidArgument for a model in the trace without a
/// target or devices with duplicate ids.
Result<Report> simulate(const std::vector<Query>& trace, const std::vector<Device>& devices,
                        const ProfileTable& profiles, const std::vector<ModelTarget>& targets,
                        std::unique_ptr<policies::Policy> policy, const Options& options);

/// Latency-bounded throughput: the highest offered QPS whose run meets_sla. Doubles the
/// rate from `start_qps` until a run fails, then bisects until the bracket is within 2 %;
/// every run replays a fresh trace of `trace.seconds` at the rate tried (same seed), made
/// longer where needed for the mix's rarest model to expect kMinQueriesPerModel queries
/// after the warm-up (a p95 over fewer is its largest few: at 20 q/s of an 8-model mix, 10
/// s gave 25 NCF queries, and one slow one failed the run below rates that passed), with a
/// fresh policy from the registry. Returns the best passing report (offered_qps = 0 when
/// nothing down to start_qps / 100 passes).
inline constexpr double kMinQueriesPerModel = 50;
Result<Report> find_max_qps(TraceOptions trace, const std::vector<Device>& devices,
                            const ProfileTable& profiles, const std::vector<ModelTarget>& targets,
                            const std::string& policy, const nlohmann::json& params,
                            const Options& options, double start_qps = 10);

/// Capacity: the mix's saturation throughput with no target, the most `policy` completes
/// per second of the mix in its proportions when offered more than it can serve (every
/// query admitted up to the queue bound; the rate doubled from `start_qps` until
/// completions stop growing). Its throughput_qps is the capacity (mix_throughput_qps).
Result<Report> saturation_qps(TraceOptions trace, const std::vector<Device>& devices,
                              const ProfileTable& profiles, const std::vector<std::string>& models,
                              const std::string& policy, Options options, double start_qps = 10);

/// Reads profiles from recsched-profile's JSON (`profiles`: [{model, device, points}]) or
/// the daemon's cache (`entries`: [...]). A point without p50_single_us (files written
/// before it existed) takes p50_us x best_workers, and the note says so.
Result<ProfileTable> load_profiles(const std::string& path, std::string* note);

}  // namespace recsched::sim
