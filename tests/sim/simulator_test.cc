// The simulator: its traces, its runner semantics and energy, exactly, on hand-made
// profiles; determinism; and the policies' relative behaviour it is used to show.
#include "sim/simulator.h"
#include "sim/tune.h"

#include <doctest/doctest.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "policies/registry.h"
#include "sim/tools/sim_cli.h"
#include "tests/policies/contract.h"

namespace recsched::sim {
namespace {

using policies::cpu_gpu_table;
using policies::DeviceKind;

std::unique_ptr<policies::Policy> make(const std::string& name, const nlohmann::json& p = {}) {
  return std::move(
      policies::create_policy(name, p.is_null() ? nlohmann::json::object() : p).value());
}

Device cpu(int workers, double idle_w_per_worker = 1.5, double parked = 0.2) {
  return {{"cpu0", DeviceKind::kCpu, workers, idle_w_per_worker * workers}, parked};
}

// One model `m`, every query `items` items, Poisson at `qps` for `seconds`.
TraceOptions fixed_trace(const std::string& m, uint32_t items, double seconds, double qps = 100) {
  TraceOptions t;
  t.qps = qps;
  t.seconds = seconds;
  t.mix = {{m, 1}};
  t.sizes.kind = SizeDistribution::Kind::kFixed;
  t.sizes.fixed = items;
  return t;
}

Options exact() {
  Options o;
  o.noise = 0;
  o.warmup_fraction = 0;
  o.admission.reject_factor = 1000;
  return o;
}

TEST_CASE("Poisson traces are deterministic and have the asked rate, sizes and mix") {
  TraceOptions o;
  o.qps = 1000;
  o.seconds = 20;
  o.mix = {{"a", 3}, {"b", 1}};
  const auto t = poisson_trace(o);
  CHECK(t.size() == poisson_trace(o).size());
  CHECK(t[100].arrival_ms == poisson_trace(o)[100].arrival_ms);
  CHECK(std::abs(double(t.size()) / 20000 - 1) < 0.03);
  double log_sum = 0, log_sq = 0;
  size_t as = 0;
  for (const Query& q : t) {
    REQUIRE(q.items >= 1);
    REQUIRE(q.items <= 1024);
    log_sum += std::log(q.items);
    log_sq += std::log(q.items) * std::log(q.items);
    as += q.model == "a";
  }
  const double mean = log_sum / t.size();
  CHECK(mean == doctest::Approx(5.1).epsilon(0.005));
  CHECK(std::sqrt(log_sq / t.size() - mean * mean) == doctest::Approx(0.2).epsilon(0.05));
  CHECK(double(as) / t.size() == doctest::Approx(0.75).epsilon(0.03));
  // Gaps are exponential: the fraction longer than the mean is 1/e.
  size_t longer = 0;
  for (size_t i = 1; i < t.size(); ++i) longer += t[i].arrival_ms - t[i - 1].arrival_ms > 1.0;
  CHECK(double(longer) / t.size() == doctest::Approx(std::exp(-1.0)).epsilon(0.05));
  o.sizes.kind = SizeDistribution::Kind::kFixed;
  o.sizes.fixed = 5000;
  CHECK(poisson_trace(o)[0].items == 1024);  // capped
  o.seed = 2;
  CHECK(poisson_trace(o)[0].arrival_ms != t[0].arrival_ms);
}

TEST_CASE("a single worker serves queries first come, first served, at the profile's time") {
  // cpu_gpu_table's CPU: 0.05 + 0.1 n ms for n items on one worker, 20 W busy.
  const ProfileTable table = cpu_gpu_table();
  const std::vector<Query> trace = {{0.0, "m", 10}, {0.1, "m", 10}, {5.0, "m", 20}};
  auto r = simulate(trace, {cpu(1)}, table, {{"m", 100}}, make("static"), exact());
  REQUIRE_MESSAGE(r.has_value(), r.status().to_string());
  REQUIRE(r->models.size() == 1);
  const ModelReport& m = r->models[0];
  CHECK(m.completed == 3);
  // Latencies: 1.05; waits until 1.05 then 1.05 more: 2.0; alone: 2.05.
  CHECK(m.max_ms == doctest::Approx(2.05));
  CHECK(m.p50_ms == doctest::Approx(2.0));
  CHECK(r->seconds == doctest::Approx(7.05 / 1e3));
  // Energy: busy 1.05 + 1.05 + 2.05 ms at 20 W, idle the rest of 7.05 ms at 1.5 W.
  const double busy = 4.15, idle = 7.05 - busy;
  CHECK(r->energy_j == doctest::Approx((20 * busy + 1.5 * idle) / 1e3));
  CHECK(r->energy_per_query_j == doctest::Approx(r->energy_j / 3));
  CHECK(r->meets_sla);
}

TEST_CASE("host CPU per query takes an idle core as it arrives, else stretches a running piece") {
  // cpu_gpu_table's CPU: 0.05 + 0.1 n ms for n items on one worker; each query of m costs
  // 0.5 ms of host CPU (the I/O threads, a generator) on the same core.
  const ProfileTable table = cpu_gpu_table();
  Options o = exact();
  o.host_cpu_ms = {{"m", 0.5}};
  auto latencies = [&](const std::vector<Query>& trace) {
    auto r = simulate(trace, {cpu(1)}, table, {{"m", 100}}, make("static"), o);
    REQUIRE_MESSAGE(r.has_value(), r.status().to_string());
    REQUIRE(r->models[0].completed == trace.size());
    return std::make_pair(r->models[0].p50_ms, r->models[0].max_ms);
  };
  // The core idle: the host work first (to 0.5), then the query (1.05): 1.55. A second
  // query at 0.1 finds the core still in host work: its own 0.5 queues behind (to 1.0),
  // so the first starts at 1.0 (2.05) and the second after it (3.1, from 0.1: 3.0).
  auto [p50, worst] = latencies({{0.0, "m", 10}, {0.1, "m", 10}});
  CHECK(worst == doctest::Approx(3.0));
  CHECK(p50 == doctest::Approx(2.05));
  // Busy: a query at 0.7 stretches the running piece (0.5 -> 1.55) to 2.05, then runs to 3.1.
  std::tie(p50, worst) = latencies({{0.0, "m", 10}, {0.7, "m", 10}});
  CHECK(p50 == doctest::Approx(2.05));
  CHECK(worst == doctest::Approx(3.1 - 0.7));
  // Without it, the cores are the workers' alone: 1.05 each.
  o.host_cpu_ms.clear();
  std::tie(p50, worst) = latencies({{0.0, "m", 10}, {5.0, "m", 10}});
  CHECK(worst == doctest::Approx(1.05));
}

TEST_CASE("latency outside the daemon is added to what the report judges, not to what the policy sees") {
  // cpu_gpu_table's CPU: 10 items take 1.05 ms on one worker; a target of 1.3 ms.
  const ProfileTable table = cpu_gpu_table();
  const std::vector<Query> trace = {{0.0, "m", 10}, {5.0, "m", 10}, {10.0, "m", 10}};
  auto run = [&](double outside) {
    Options o = exact();
    if (outside > 0) o.outside_ms = {{"m", {outside, outside}}};
    auto r = simulate(trace, {cpu(1)}, table, {{"m", 1.3}}, make("static"), o);
    REQUIRE_MESSAGE(r.has_value(), r.status().to_string());
    return *r;
  };
  const Report inside = run(0);
  CHECK(inside.models[0].p95_ms == doctest::Approx(1.05));
  CHECK(inside.models[0].violations == 0);
  CHECK(inside.meets_sla);
  // 0.5 ms outside: the client sees 1.55 ms, over the target, so the run fails; the
  // dispatcher admitted every query all the same (its predictions are the daemon's).
  const Report seen = run(0.5);
  CHECK(seen.models[0].p50_ms == doctest::Approx(1.55));
  CHECK(seen.models[0].p95_ms == doctest::Approx(1.55));
  CHECK(seen.models[0].violations == 1.0);
  CHECK(seen.models[0].rejected == 0);
  CHECK(seen.models[0].completed == 3);
  CHECK_FALSE(seen.meets_sla);
}

TEST_CASE("latency outside the daemon with a spread: each query draws its own, with the given median and p95") {
  // Queries 5 ms apart never meet: each takes 1.05 ms inside; outside, lognormal with a
  // median of 1 ms and a p95 of 3 ms.
  const ProfileTable table = cpu_gpu_table();
  std::vector<Query> trace;
  for (int i = 0; i < 4000; ++i) trace.push_back({5.0 * i, "m", 10});
  Options o = exact();
  o.outside_ms = {{"m", {1.0, 3.0}}};
  auto r = simulate(trace, {cpu(1)}, table, {{"m", 100}}, make("static"), o);
  REQUIRE_MESSAGE(r.has_value(), r.status().to_string());
  const ModelReport& m = r->models[0];
  CHECK(m.p50_ms == doctest::Approx(1.05 + 1.0).epsilon(0.05));
  CHECK(m.p95_ms == doctest::Approx(1.05 + 3.0).epsilon(0.08));
  // The same seed gives the same draws; the draws leave the rest of the run alone.
  auto again = simulate(trace, {cpu(1)}, table, {{"m", 100}}, make("static"), o);
  REQUIRE(again.has_value());
  CHECK(again->models[0].p95_ms == m.p95_ms);
}

TEST_CASE("workers take the earliest deadline first, static is FIFO unless asked") {
  // m (target 100 ms) and t (target 5 ms) with cpu_gpu_table's CPU profile on one worker:
  // 100 items take 10.05 ms, 1 item 0.15 ms.
  ProfileTable table = cpu_gpu_table();
  const std::vector<ProfilePoint> points = table.points("m", "cpu0");
  for (const ProfilePoint& p : points) table.add("t", "cpu0", p);
  const std::vector<Query> trace = {{0.0, "m", 100}, {0.1, "m", 100}, {0.2, "t", 1}};
  const std::vector<ModelTarget> targets = {{"m", 100}, {"t", 5}};
  auto latency = [&](const std::string& model, const nlohmann::json& params,
                     Options::Queue queue) {
    Options o = exact();
    o.queue = queue;
    auto r = simulate(trace, {cpu(1)}, table, targets, make("static", params), o);
    REQUIRE_MESSAGE(r.has_value(), r.status().to_string());
    for (const ModelReport& m : r->models) {
      if (m.model == model) return m.max_ms;
    }
    FAIL("no report for " << model);
    return 0.0;
  };
  // FIFO (static's default): t waits for both m queries, 20.25 - 0.2 ms.
  CHECK(latency("t", {}, Options::Queue::kPolicy) == doctest::Approx(20.05));
  CHECK(latency("m", {}, Options::Queue::kPolicy) == doctest::Approx(20.0));
  // By deadline (static's "edf", or the simulator's override): t (due at 5.2 ms) overtakes
  // the second m (due at 100.1 ms) once the first is done; the second m finishes later.
  CHECK(latency("t", {{"queue", "edf"}}, Options::Queue::kPolicy) == doctest::Approx(10.0));
  CHECK(latency("m", {{"queue", "edf"}}, Options::Queue::kPolicy) == doctest::Approx(20.15));
  CHECK(latency("t", {}, Options::Queue::kDeadline) == doctest::Approx(10.0));
  CHECK(latency("t", {{"queue", "edf"}}, Options::Queue::kArrival) == doctest::Approx(20.05));
}

TEST_CASE("a GPU that merges runs one model's waiting queries in one pass, never past a deadline") {
  // cpu_gpu_table's GPU: 1 + 0.0125 n ms, plus 6 ms up to 64 items. Four 16-item queries
  // at once: one at a time each pass is 7.2 ms; the first runs alone (nothing waits yet),
  // then the three waiting join one pass of 48 items (7.6 ms).
  const ProfileTable table = cpu_gpu_table();
  const std::vector<Query> trace = {{0.0, "m", 16}, {0.1, "m", 16}, {0.2, "m", 16}, {0.3, "m", 16}};
  const Device gpu{{"gpu0", DeviceKind::kGpu, 1, 70.0}, 0};
  Options o = exact();
  for (const bool merge : {false, true}) {
    CAPTURE(merge);
    o.gpu_batching = merge;
    auto r = simulate(trace, {gpu}, table, {{"m", 100}}, make("earliest-finish"), o);
    REQUIRE_MESSAGE(r.has_value(), r.status().to_string());
    CHECK(r->models[0].completed == 4);
    // Latencies: 7.2 alone; then merged, all three end at 7.2 + 7.6 = 14.8 ms.
    CHECK(r->models[0].max_ms == doctest::Approx(merge ? 14.8 - 0.1 : 4 * 7.2 - 0.3));
    CHECK(r->merged_passes == (merge ? 1u : 0u));
    CHECK(r->merged_queries == (merge ? 3u : 0u));
  }
  // A 14.55 ms target: at 7.2 ms the first waiting query is due in 7.45 ms, which a pass
  // of 32 items meets (7.4) and one of 48 (7.6) does not, so the last query stays out of it
  // (and runs after it, late: the rule keeps the deadlines that can still be met).
  o.gpu_batching = true;
  auto tight = simulate(trace, {gpu}, table, {{"m", 14.55}}, make("earliest-finish"), o);
  REQUIRE(tight.has_value());
  CHECK(tight->merged_passes == 1);
  CHECK(tight->merged_queries == 2);
  CHECK(tight->models[0].completed == 4);
  CHECK(tight->models[0].max_ms == doctest::Approx(7.2 + 7.4 + 7.2 - 0.3));
}

TEST_CASE("a GPU pass beside another takes as long as the profile's measured streams rate gives") {
  // cpu_gpu_table's GPU runs 16 items in 7.2 ms. Two streams, two 16-item queries 0.1 ms
  // apart, merging off: the first starts alone (7.2 ms), the second beside it, stretched
  // by 2 x items_per_s / streams_items_per_s.
  const std::vector<Query> trace = {{0.0, "m", 16}, {0.1, "m", 16}};
  const Device gpu{{"gpu0", DeviceKind::kGpu, 2, 70.0}, 0};
  Options o = exact();
  auto latest = [&](double streams_gain) {
    ProfileTable table = cpu_gpu_table();
    ProfileTable with;
    for (const auto& [model, device] : table.keys()) {
      for (ProfilePoint p : table.points(model, device)) {
        if (streams_gain > 0) {
          p.best_streams = 2;
          p.streams_items_per_s = streams_gain * p.items_per_s;
        }
        with.add(model, device, p);
      }
    }
    auto r = simulate(trace, {gpu}, with, {{"m", 100}}, make("earliest-finish"), o);
    REQUIRE_MESSAGE(r.has_value(), r.status().to_string());
    REQUIRE(r->models[0].completed == 2);
    return r->models[0].max_ms;
  };
  CHECK(latest(2.0) == doctest::Approx(7.2));         // two at once are twice as fast: no stretch
  CHECK(latest(1.0) == doctest::Approx(2 * 7.2));     // a second stream gains nothing
  CHECK(latest(1.6) == doctest::Approx(7.2 * 2 / 1.6));
  CHECK(latest(0) == doctest::Approx(7.2));           // not measured: as alone, as before
}

TEST_CASE("a query split over workers runs its sub-batches side by side") {
  const ProfileTable table = cpu_gpu_table();
  // earliest-finish on an idle 4-worker CPU, against a 5 ms target that the whole query
  // (6.45 ms) misses, splits 64 items 4 ways: 16 items each, 1.65 ms.
  auto r =
      simulate({{0.0, "m", 64}}, {cpu(4)}, table, {{"m", 5}}, make("earliest-finish"), exact());
  REQUIRE(r.has_value());
  CHECK(r->models[0].max_ms == doctest::Approx(1.65));
  // static keeps it whole: 6.45 ms.
  r = simulate({{0.0, "m", 64}}, {cpu(4)}, table, {{"m", 100}}, make("static"), exact());
  CHECK(r->models[0].max_ms == doctest::Approx(6.45));
}

// A tight model (0.01 ms/item + 0.05: 16 items in 0.21 ms) beside a heavy one (0.1 ms/item
// + `heavy_fixed_ms` per piece) on two workers.
ProfileTable tight_and_heavy(double heavy_fixed_ms) {
  ProfileTable t;
  for (uint32_t b : {1u, 4u, 16u, 64u, 256u}) {
    t.add("tight", "cpu0", policies::point(b, 0.05 + 0.01 * b));
    t.add("heavy", "cpu0", policies::point(b, heavy_fixed_ms + 0.1 * b));
  }
  return t;
}

TEST_CASE("bounded waiting: a tight query behind two long ones waits at most its bound") {
  const ProfileTable table = tight_and_heavy(0);  // heavy: 64 items in 6.4 ms
  const std::vector<ModelTarget> targets = {{"tight", 1.0}, {"heavy", 100.0}};
  // A tight query teaches its slack (1 - 0.21 = 0.79 ms: bound 0.395 ms at 0.5); two heavy
  // ones arrive and would take both workers for 6.4 ms; the second tight query comes
  // while they run.
  const std::vector<Query> trace = {
      {0.0, "tight", 16}, {0.5, "heavy", 64}, {0.6, "heavy", 64}, {2.0, "tight", 16}};
  auto run = [&](double fraction) {
    Options o = exact();
    o.wait_bound_fraction = fraction;
    auto r = simulate(trace, {cpu(2)}, table, targets, make("static", {{"queue", "edf"}}), o);
    REQUIRE(r.has_value());
    return *r;
  };
  const Report off = run(0), on = run(0.5);
  auto worst = [](const Report& r, const std::string& m) {
    for (const ModelReport& x : r.models) {
      if (x.model == m) return x.max_ms;
    }
    FAIL("no model " << m);
    return 0.0;
  };
  // Off: both workers run a whole 6.4 ms heavy query (from 0.5 and 0.6), so the tight one
  // waits until 6.9: 4.9 ms of wait plus its own 0.21.
  CHECK(worst(off, "tight") == doctest::Approx(6.9 - 2.0 + 0.21));
  // On: the second heavy query may not take the reserved worker whole; it runs there in
  // pieces of at most 3 items (0.3 ms <= 0.395), so the tight query waits for at most one
  // of them.
  CHECK(worst(on, "tight") <= 0.21 + 0.395 + 1e-9);
  CHECK(worst(on, "tight") >= 0.21);
  // The heavy queries still meet their (loose) target; all four complete.
  CHECK(worst(on, "heavy") < 100.0);
  uint64_t completed = 0;
  for (const ModelReport& x : on.models) completed += x.completed;
  CHECK(completed == 4);
}

TEST_CASE("preemption: a tight query behind two long ones waits for one yield stretch") {
  const ProfileTable table = tight_and_heavy(0);  // heavy: 64 items in 6.4 ms
  const std::vector<ModelTarget> targets = {{"tight", 1.0}, {"heavy", 100.0}};
  const std::vector<Query> trace = {
      {0.0, "tight", 16}, {0.5, "heavy", 64}, {0.6, "heavy", 64}, {2.0, "tight", 16}};
  auto run = [&](bool preemption, const char* queue) {
    Options o = exact();
    o.preemption = preemption;
    o.yield_stretch_ms = 0.25;
    auto r = simulate(trace, {cpu(2)}, table, targets, make("static", {{"queue", queue}}), o);
    REQUIRE(r.has_value());
    return *r;
  };
  auto worst = [](const Report& r, const std::string& m) {
    for (const ModelReport& x : r.models) {
      if (x.model == m) return x.max_ms;
    }
    FAIL("no model " << m);
    return 0.0;
  };
  const Report off = run(false, "edf"), on = run(true, "edf");
  // Off: it waits for a whole heavy query (to 6.9).
  CHECK(worst(off, "tight") == doctest::Approx(6.9 - 2.0 + 0.21));
  CHECK(off.preemptions == 0);
  // On: the heavy query due latest (started at 0.6) stops at its next yield point, 0.6 +
  // 6 x 0.25 = 2.1; the tight query runs to 2.31, and the heavy one resumes with its 4.9 ms
  // left, ending at 7.21 instead of 7.0.
  CHECK(on.preemptions == 1);
  CHECK(worst(on, "tight") == doctest::Approx(0.1 + 0.21));
  CHECK(worst(on, "heavy") == doctest::Approx(7.21 - 0.6));
  uint64_t completed = 0;
  for (const ModelReport& x : on.models) completed += x.completed;
  CHECK(completed == 4);
  // First come, first served, nobody is due before a running piece: nothing is interrupted.
  const Report fifo = run(true, "fifo");
  CHECK(fifo.preemptions == 0);
  CHECK(worst(fifo, "tight") == doctest::Approx(worst(run(false, "fifo"), "tight")));
}

TEST_CASE("min-energy parks no query behind busy workers: it wakes one instead") {
  // Heavy queries (6.4 ms) at 0, 0.1 and 0.2 ms build the rate that lets min-energy keep
  // two of eight workers awake, and both run heavy work from 0.2 on. A tight query (0.21 ms
  // of service, target 0.5: 0.29 ms of slack) arrives at 1.21. With two awake it would wait
  // for the latest-due heavy piece's next yield point, 1.7 (every 0.5 ms from 0.2), and be
  // late: the dispatcher predicts no such wait under preemption, so the policy itself
  // keeps a worker free for the query it places, and it starts at once.
  const ProfileTable table = tight_and_heavy(0);
  const std::vector<ModelTarget> targets = {{"tight", 0.5}, {"heavy", 100.0}};
  const std::vector<Query> trace = {
      {0.0, "heavy", 64}, {0.1, "heavy", 64}, {0.2, "heavy", 64}, {1.21, "tight", 16}};
  Options o = exact();
  o.preemption = true;
  o.yield_stretch_ms = 0.5;
  auto r = simulate(trace, {cpu(8)}, table, targets, make("min-energy"), o);
  REQUIRE(r.has_value());
  for (const ModelReport& x : r->models) {
    CAPTURE(x.model);
    CHECK(x.completed == (x.model == "tight" ? 1u : 3u));
    if (x.model == "tight") CHECK(x.max_ms == doctest::Approx(0.21));
  }
  CHECK(r->preemptions == 0);
}

TEST_CASE("bounded waiting: a loose query takes the reserved worker once it is urgent") {
  // A heavy query with a target close to its own service time (64 items in 6.9 ms, target
  // 10 ms; no piece of it fits the 0.395 ms bound: 0.5 ms per piece) is loose next to the
  // tight model's 0.79 ms slack only while its laxity lasts: it waits for the long lane
  // behind another heavy query, then, urgent, takes the reserved worker and meets its
  // target.
  const ProfileTable table = tight_and_heavy(0.5);
  const std::vector<ModelTarget> targets = {{"tight", 1.0}, {"heavy", 10.0}};
  // Slack 10 - 6.9 = 3.1 > 2 x 0.79: heavy is loose. Urgent after 10 - 6.9 x 1.25 - 0.79
  // = 0.585 ms.
  const std::vector<Query> trace = {{0.0, "tight", 16}, {0.5, "heavy", 64}, {0.6, "heavy", 64}};
  Options o = exact();
  o.wait_bound_fraction = 0.5;
  auto r = simulate(trace, {cpu(2)}, table, targets, make("static", {{"queue", "edf"}}), o);
  REQUIRE(r.has_value());
  for (const ModelReport& x : r->models) {
    if (x.model != "heavy") continue;
    // The second starts whole on the reserved worker once urgent, at 0.6 + 0.585, and ends
    // at 8.085: 7.485 ms. Left for the long lane it would end at 0.5 + 6.9 + 6.9 (13.7 ms).
    CHECK(x.completed == 2);
    CHECK(x.max_ms == doctest::Approx(0.585 + 6.9));
  }
}

TEST_CASE("a run is judged per model: each one's rejections, and a model with no queries fails") {
  const ProfileTable table = tight_and_heavy(0);
  const TraceOptions t = fixed_trace("heavy", 16, 4, 50);  // 1.6 ms on one of two workers
  std::vector<Query> trace = poisson_trace(t);
  REQUIRE(trace.size() > 150);
  Options o = exact();
  o.admission = {.reject_factor = 1};  // rejections by the prediction alone (see the end)
  auto run = [&](const std::vector<Query>& tr, const std::vector<ModelTarget>& targets,
                 const Options& opts) {
    auto r = simulate(tr, {cpu(2)}, table, targets, make("earliest-finish"), opts);
    REQUIRE(r.has_value());
    return *r;
  };
  CHECK(run(trace, {{"heavy", 100}}, o).meets_sla);
  // A target for "tight", which the trace never sends: nothing shows it was met.
  CHECK_FALSE(run(trace, {{"heavy", 100}, {"tight", 1}}, o).meets_sla);
  Options lenient = o;
  lenient.judge_every_target = false;
  CHECK(run(trace, {{"heavy", 100}, {"tight", 1}}, lenient).meets_sla);
  // One "tight" query with a target it cannot meet (0.21 ms of work, 0.1 ms target) is
  // rejected: under 1 % of all queries, but all of that model's.
  trace.push_back({trace.back().arrival_ms + 1, "tight", 16});
  const Report r = run(trace, {{"heavy", 100}, {"tight", 0.1}}, o);
  uint64_t rejected = 0, offered = 0;
  for (const ModelReport& m : r.models) rejected += m.rejected, offered += m.offered;
  CHECK(rejected == 1);
  CHECK(rejected < 0.01 * offered);
  CHECK_FALSE(r.meets_sla);
  // recschedd's rule: a worker is free and nothing waits, so the query is admitted (turning
  // it away would shorten no one's wait); it is late, and the run fails on its p95.
  o.admission.admit_idle = true;
  const Report d = run(trace, {{"heavy", 100}, {"tight", 0.1}}, o);
  for (const ModelReport& m : d.models) {
    CHECK(m.rejected == 0);
    if (m.model == "tight") CHECK(m.p95_ms > 0.1);
  }
  CHECK_FALSE(d.meets_sla);
}

TEST_CASE("capacity: the saturation throughput, offered past it with no target") {
  // One worker, 16-item queries of 1.65 ms: at most 606 q/s, whatever is offered.
  const ProfileTable table = cpu_gpu_table();
  TraceOptions t = fixed_trace("m", 16, 5);
  Options o = exact();
  o.warmup_fraction = 0.1;
  auto r = saturation_qps(t, {cpu(1)}, table, {"m"}, "static", o);
  REQUIRE(r.has_value());
  CHECK(r->throughput_qps == doctest::Approx(1000 / 1.65).epsilon(0.02));
  CHECK(r->offered_qps > r->throughput_qps);
  // Below saturation the throughput is what is offered.
  t.qps = 200;
  auto below = simulate(poisson_trace(t), {cpu(1)}, table, {{"m", 1e9}}, make("static"), o);
  REQUIRE(below.has_value());
  CHECK(below->throughput_qps == doctest::Approx(below->offered_qps).epsilon(0.02));

  // A mix is counted in its proportions: "a" runs only on the CPU (606 q/s), "b" only on
  // the GPU (10 ms, 100 q/s). Half of the queries are b's, so the mix is served at 200 q/s,
  // not at the 706 completions per second the two devices make together.
  ProfileTable two;
  for (uint32_t b : {1u, 16u, 64u}) {
    two.add("a", "cpu0", policies::point(b, 0.05 + 0.1 * b));
    two.add("b", "gpu0", policies::point(b, 10.0));
  }
  TraceOptions mix = fixed_trace("a", 16, 5);
  mix.mix = {{"a", 1}, {"b", 1}};
  const Device gpu{{"gpu0", DeviceKind::kGpu, 1, 70}, 0};
  auto m = saturation_qps(mix, {cpu(1), gpu}, two, {"a", "b"}, "earliest-finish", o);
  REQUIRE(m.has_value());
  CHECK(m->throughput_qps == doctest::Approx(200).epsilon(0.05));
  CHECK(m->mix_throughput_qps == m->throughput_qps);
}

TEST_CASE("simulations are deterministic, noise included") {
  const ProfileTable table = cpu_gpu_table();
  TraceOptions t;
  t.qps = 300;
  t.seconds = 5;
  t.mix = {{"m", 1}};
  const auto trace = poisson_trace(t);
  Options o;
  auto a = simulate(trace, {cpu(4)}, table, {{"m", 50}}, make("deeprecsched"), o);
  auto b = simulate(trace, {cpu(4)}, table, {{"m", 50}}, make("deeprecsched"), o);
  REQUIRE(a.has_value());
  CHECK(a->to_json() == b->to_json());
  CHECK(simulate(trace, {cpu(4)}, table, {}, make("static"), o).status().code() ==
        StatusCode::kInvalidArgument);  // no target for m
  CHECK(simulate(trace, {cpu(4), cpu(2)}, table, {{"m", 50}}, make("static"), o).status().code() ==
        StatusCode::kInvalidArgument);  // cpu0 twice
}

TEST_CASE("size-aware policies send small queries to the CPU and large ones to the GPU") {
  const ProfileTable table = cpu_gpu_table();  // the GPU wins above 64 items
  const std::vector<Device> devices = {cpu(1), {{"gpu0", DeviceKind::kGpu, 1, 70}, 0}};
  for (const char* policy : {"earliest-finish", "deeprecsched"}) {
    CAPTURE(policy);
    auto small = simulate({{0.0, "m", 16}}, devices, table, {{"m", 100}}, make(policy), exact());
    auto large = simulate({{0.0, "m", 512}}, devices, table, {{"m", 100}}, make(policy), exact());
    REQUIRE(small.has_value());
    CHECK(small->queries_per_device.at("cpu0") == 1);
    CHECK(large->queries_per_device.at("gpu0") == 1);
  }
}

TEST_CASE("splitting raises latency-bounded throughput over static, and parking saves energy") {
  const ProfileTable table = cpu_gpu_table();
  TraceOptions t = fixed_trace("m", 128, 10);  // 12.85 ms whole; 3.25 ms split 4 ways
  const std::vector<ModelTarget> targets = {{"m", 8.0}};
  Options o;
  auto st = find_max_qps(t, {cpu(4)}, table, targets, "static", {}, o);
  auto ef = find_max_qps(t, {cpu(4)}, table, targets, "earliest-finish", {}, o);
  REQUIRE(st.has_value());
  REQUIRE(ef.has_value());
  CHECK(st->offered_qps == 0);  // a whole query misses 8 ms even on an idle machine
  CHECK(ef->offered_qps > 100);
  CHECK(ef->meets_sla);

  // At low load (2 q/s of 1.65 ms: under 1 % of one worker, so min-energy may keep one
  // awake), min-energy with parking draws less than without, meeting the SLA.
  t.sizes.fixed = 16;
  t.qps = 2;
  t.seconds = 60;
  const auto trace = poisson_trace(t);
  auto parked = simulate(trace, {cpu(4)}, table, {{"m", 20}}, make("min-energy"), o);
  auto awake =
      simulate(trace, {cpu(4)}, table, {{"m", 20}}, make("min-energy", {{"park", false}}), o);
  REQUIRE(parked.has_value());
  CHECK(parked->meets_sla);
  CHECK(awake->meets_sla);
  CHECK(parked->energy_j < 0.5 * awake->energy_j);
}

TEST_CASE("deeprecsched hill-climbs its sub-batch size in the simulator") {
  const ProfileTable table = cpu_gpu_table();
  // 40 q/s: 20480 items/s on 4 workers of 10000 items/s each.
  const TraceOptions t = fixed_trace("m", 512, 30, 40);
  // A 4-worker CPU: 512-item sub-batches leave 3 workers idle; the climber moves on.
  auto r = simulate(poisson_trace(t), {cpu(4)}, table, {{"m", 100}},
                    make("deeprecsched", {{"window", 32}}), Options{});
  REQUIRE(r.has_value());
  auto whole = simulate(poisson_trace(t), {cpu(4)}, table, {{"m", 100}},
                        make("deeprecsched", {{"tune", false}}), Options{});
  // The climb is greedy on a noisy p95 (32 queries a window): it settles somewhere
  // below 512, and the tail is clearly better than never splitting.
  CHECK(r->policy_params["models"]["m"]["settled"] == true);
  CHECK(r->policy_params["models"]["m"]["sub_batch"] < 512);
  CHECK(r->models[0].p95_ms < 0.8 * whole->models[0].p95_ms);
}

// Checks a tuning's search: DeepRecSys's candidate order, the best throughput kept, and a
// stop at the first setting that did worse (or the end of the list).
void check_search(const DrsModelTuning& m) {
  const std::vector<uint32_t> order = {512, 384, 256, 192, 128, 96, 64, 32};
  double best = 0;
  size_t i = 0;
  for (; i < m.tried.size() && !m.tried[i].threshold; ++i) {
    CHECK(m.tried[i].sub_batch == order[i]);
    best = std::max(best, m.tried[i].max_qps);
  }
  for (const DrsSetting& s : m.tried) best = std::max(best, s.max_qps);
  CHECK(m.best.max_qps == best);
  const DrsSetting& last = i == m.tried.size() ? m.tried.back() : m.tried[i - 1];
  CHECK((i == order.size() || last.max_qps < 0.95 * best));
}

TEST_CASE("deeprecsched tuned before serving: the sub-batch, then the threshold, for throughput") {
  // 2 ms per sub-batch plus 0.1 ms per item on a CPU worker: splitting costs work.
  ProfileTable t;
  for (uint32_t b : {1u, 16u, 64u, 256u, 1024u}) {
    t.add("m", "cpu0", policies::point(b, 2 + 0.1 * b, 20.0));
    t.add("slow-gpu", "cpu0", policies::point(b, 2 + 0.1 * b, 20.0));
    t.add("m", "gpu0", policies::point(b, 1 + 0.0125 * b, 150.0));
    t.add("slow-gpu", "gpu0", policies::point(b, 10 + 0.5 * b, 150.0));
  }
  DrsTuneOptions o;
  o.sizes.kind = SizeDistribution::Kind::kFixed;
  o.sizes.fixed = 512;
  o.queries_per_run = 1000;
  const Device gpu{{"gpu0", DeviceKind::kGpu, 1, 70}, 0};

  SUBCASE("a loose target: whole queries do the least work") {
    auto r = tune_deeprecsched({cpu(4)}, t, {{"m", 200}}, o);
    REQUIRE(r.has_value());
    REQUIRE(r->models.size() == 1);
    check_search(r->models[0]);
    CHECK(r->models[0].best.sub_batch == 512);
    CHECK_FALSE(r->models[0].best.threshold);  // no accelerator: never
    CHECK(r->params()["models"]["m"]["threshold"] == "never");
  }
  SUBCASE("a target a whole query cannot meet: the search goes on to sizes that can") {
    auto r = tune_deeprecsched({cpu(4)}, t, {{"m", 30}}, o);  // whole: 53.2 ms
    REQUIRE(r.has_value());
    check_search(r->models[0]);
    CHECK(r->models[0].tried[0].max_qps == 0);
    CHECK(r->models[0].best.sub_batch <= 256);
    CHECK(r->models[0].best.max_qps > 0);
    // What it found holds in the simulator, and beats static (whole queries: nothing).
    Options sim;
    auto tuned = find_max_qps(fixed_trace("m", 512, 10), {cpu(4)}, t, {{"m", 30}},
                              "deeprecsched", r->params(), sim);
    auto st = find_max_qps(fixed_trace("m", 512, 10), {cpu(4)}, t, {{"m", 30}}, "static", {}, sim);
    REQUIRE(tuned.has_value());
    CHECK(tuned->offered_qps > 0.8 * r->models[0].best.max_qps);
    CHECK(st->offered_qps == 0);
  }
  SUBCASE("with an accelerator: a threshold where it pays, never where it does not") {
    auto r = tune_deeprecsched({cpu(4), gpu}, t, {{"m", 200}, {"slow-gpu", 200}}, o);
    REQUIRE(r.has_value());
    REQUIRE(r->models.size() == 2);
    for (const DrsModelTuning& m : r->models) {
      CAPTURE(m.model);
      check_search(m);
    }
    const DrsModelTuning& fast = r->models[0].model == "m" ? r->models[0] : r->models[1];
    const DrsModelTuning& slow = r->models[0].model == "m" ? r->models[1] : r->models[0];
    REQUIRE(fast.best.threshold);
    CHECK(*fast.best.threshold <= 512);  // the 512-item queries go to the GPU
    double cpu_only = 0;
    for (const DrsSetting& s : fast.tried) {
      if (!s.threshold) cpu_only = std::max(cpu_only, s.max_qps);
    }
    CHECK(fast.best.max_qps > 1.5 * cpu_only);  // 7.4 ms on the GPU vs 53.2 on a worker
    CHECK_FALSE(slow.best.threshold);           // 266 ms on the GPU: never worth it
  }
  CHECK(tune_deeprecsched({gpu}, t, {{"m", 200}}, o).status().code() ==
        StatusCode::kInvalidArgument);
}

TEST_CASE("recsched-sim: help, usage errors and a run from a profile file") {
  std::ostringstream out, err;
  CHECK(tools::run_sim_cli({"--help"}, out, err) == 0);
  CHECK(out.str().find("--find-max") != std::string::npos);
  CHECK(tools::run_sim_cli({"--qps", "10"}, out, err) == 2);
  CHECK(err.str().find("--profiles FILE is required") != std::string::npos);
  CHECK(tools::run_sim_cli({"--bogus"}, out, err) == 2);
  CHECK(tools::run_sim_cli({"--profiles", "/nonexistent.json", "--qps", "1"}, out, err) == 1);

  const std::string path =
      std::filesystem::temp_directory_path() / ("sim_profiles_" + std::to_string(getpid()));
  {
    nlohmann::json profiles = nlohmann::json::array();
    const ProfileTable t = cpu_gpu_table();
    for (const auto& [model, device] : t.keys()) {
      nlohmann::json pts = nlohmann::json::array();
      for (const ProfilePoint& p : t.points(model, device)) {
        pts.push_back({{"batch_size", p.batch_size},
                       {"p50_us", p.p50_us},
                       {"p50_single_us", p.p50_single_us},
                       {"power_w", p.power_w},
                       {"best_workers", p.best_workers}});
      }
      profiles.push_back({{"model", model}, {"device", device}, {"points", pts}});
    }
    std::ofstream(path) << nlohmann::json{
        {"devices", {{{"id", "cpu0"}, {"cores", 4}}}},
        {"profiles", profiles}}.dump();
  }
  std::ostringstream o2, e2;
  CHECK(tools::run_sim_cli(
            {"--profiles", path, "--qps", "50", "--seconds", "2", "--targets", "m=20", "--json"},
            o2, e2) == 0);
  const auto doc = nlohmann::json::parse(o2.str());
  CHECK(doc["devices"][0]["workers"] == 4);
  CHECK(doc["devices"][1]["kind"] == "gpu");
  CHECK(doc["devices"][1]["workers"] == 1);  // the profile did not measure streams
  CHECK(doc["runs"].size() == policies::policy_names().size());
  CHECK(tools::run_sim_cli({"--profiles", path, "--qps", "5", "--policies", "psychic"}, o2, e2) ==
        2);
  CHECK(doc["queue"] == "policy");
  std::ostringstream o3, e3;
  CHECK(tools::run_sim_cli({"--profiles", path, "--qps", "50", "--seconds", "1", "--queue",
                            "fifo", "--targets", "m=20", "--json"},
                           o3, e3) == 0);
  CHECK(nlohmann::json::parse(o3.str())["queue"] == "fifo");
  CHECK(tools::run_sim_cli({"--profiles", path, "--qps", "5", "--queue", "lifo"}, o3, e3) == 2);
  // GPU merging is on by default (recschedd's), and says so; only on or off are taken.
  CHECK(nlohmann::json::parse(o3.str())["gpu_batching"] == true);
  std::ostringstream og, eg;
  CHECK(tools::run_sim_cli({"--profiles", path, "--qps", "50", "--seconds", "1", "--targets",
                            "m=20", "--gpu-batching", "off", "--json"},
                           og, eg) == 0);
  CHECK(nlohmann::json::parse(og.str())["gpu_batching"] == false);
  // Host CPU per query: said in the output, and only m=ms pairs are taken.
  std::ostringstream oh, eh;
  CHECK(tools::run_sim_cli({"--profiles", path, "--qps", "50", "--seconds", "1", "--targets",
                            "m=20", "--host-cpu-ms", "m=0.25", "--json"},
                           oh, eh) == 0);
  CHECK(nlohmann::json::parse(oh.str())["host_cpu_ms"]["m"] == 0.25);
  CHECK(nlohmann::json::parse(og.str())["host_cpu_ms"].empty());
  CHECK(tools::run_sim_cli({"--profiles", path, "--qps", "5", "--host-cpu-ms", "m"}, oh, eh) == 2);
  CHECK(eh.str().find("--host-cpu-ms: 'm' is not m=ms") != std::string::npos);
  // Latency outside the daemon likewise; a model not in the mix is named, not ignored.
  std::ostringstream oo, eo;
  CHECK(tools::run_sim_cli({"--profiles", path, "--qps", "50", "--seconds", "1", "--targets",
                            "m=20", "--outside-ms", "m=0.4:1.5", "--json"},
                           oo, eo) == 0);
  CHECK(nlohmann::json::parse(oo.str())["outside_ms"]["m"]["p50_ms"] == 0.4);
  CHECK(nlohmann::json::parse(oo.str())["outside_ms"]["m"]["p95_ms"] == 1.5);
  CHECK(tools::run_sim_cli({"--profiles", path, "--qps", "5", "--outside-ms", "m=2:1"}, oo, eo) == 2);
  CHECK(eo.str().find("--outside-ms: m's p95 1 is below its p50") != std::string::npos);
  CHECK(nlohmann::json::parse(oh.str())["outside_ms"].empty());
  CHECK(tools::run_sim_cli({"--profiles", path, "--qps", "5", "--outside-ms", "ncf=0.4"}, oo, eo) ==
        2);
  CHECK(eo.str().find("--outside-ms: no model 'ncf' in the mix (m)") != std::string::npos);
  CHECK(tools::run_sim_cli({"--profiles", path, "--qps", "5", "--host-cpu-ms", "x=1"}, oo, eo) == 2);
  CHECK(eo.str().find("--host-cpu-ms: no model 'x' in the mix") != std::string::npos);
  CHECK(tools::run_sim_cli({"--profiles", path, "--qps", "5", "--gpu-batching", "yes"}, og, eg) ==
        2);
  CHECK(eg.str().find("--gpu-batching takes on or off") != std::string::npos);
  // A GPU runs as many passes at once as its profile found paying, unless told.
  {
    nlohmann::json file = nlohmann::json::parse(std::ifstream(path));
    for (auto& e : file["profiles"]) {
      if (e["device"] != "gpu0") continue;
      for (auto& p : e["points"]) {
        p["best_streams"] = p["batch_size"] == 16 ? 3 : 1;
        p["streams_items_per_s"] = 1000.0;
      }
    }
    const std::string streamed = path + ".streams";
    std::ofstream(streamed) << file.dump();
    std::ostringstream os, es;
    CHECK(tools::run_sim_cli({"--profiles", streamed, "--qps", "5", "--seconds", "1",
                              "--policies", "static", "--json"},
                             os, es) == 0);
    CHECK(nlohmann::json::parse(os.str())["devices"][1]["workers"] == 3);
    std::ostringstream ot, et;
    CHECK(tools::run_sim_cli({"--profiles", streamed, "--qps", "5", "--seconds", "1",
                              "--policies", "static", "--gpu-streams", "1", "--json"},
                             ot, et) == 0);
    CHECK(nlohmann::json::parse(ot.str())["devices"][1]["workers"] == 1);
    std::filesystem::remove(streamed);
  }
  // --wait-bound takes a fraction in [0, 1]; --find-max reports the capacity beside each
  // policy's latency-bounded throughput, which cannot exceed it by more than noise.
  std::ostringstream o4, e4;
  CHECK(tools::run_sim_cli({"--profiles", path, "--qps", "5", "--wait-bound", "2"}, o4, e4) == 2);
  CHECK(e4.str().find("--wait-bound") != std::string::npos);
  {
    // --lane-workers: a count of workers, 0 (sized from the rates) or more.
    std::ostringstream ol, el;
    CHECK(tools::run_sim_cli({"--profiles", path, "--qps", "5", "--lane-workers", "-1"}, ol,
                             el) == 2);
    CHECK(el.str().find("--lane-workers") != std::string::npos);
    // A count is whole: 1.5 workers is refused, not cut to 1.
    for (const char* flag : {"--lane-workers", "--cpu-workers", "--gpu-streams", "--seed"}) {
      CAPTURE(flag);
      std::ostringstream of, ef;
      CHECK(tools::run_sim_cli({"--profiles", path, "--qps", "5", flag, "1.5"}, of, ef) == 2);
      CHECK(ef.str().find(std::string(flag) + " takes a whole number") != std::string::npos);
    }
    CHECK(tools::run_sim_cli({"--profiles", path, "--qps", "5", "--seconds", "1", "--no-gpu",
                              "--wait-bound", "0.5", "--lane-workers", "2", "--preemption",
                              "off"},
                             ol, el) == 0);
  }
  CHECK(tools::run_sim_cli({"--profiles", path, "--find-max", "--seconds", "2", "--no-gpu",
                            "--policies", "static,earliest-finish", "--targets", "m=20",
                            "--wait-bound", "0", "--json"},
                           o4, e4) == 0);
  const auto fm = nlohmann::json::parse(o4.str());
  // The default sizes average about 167 items: 16.75 ms of work on one worker (0.05 +
  // 0.1 ms per item, however it is split), so at most about 4 / 16.75 ms = 239 q/s on the
  // four workers.
  const double capacity = fm["capacity_qps"];
  CHECK(capacity > 100);
  CHECK(capacity < 260);
  for (const auto& r : fm["runs"]) CHECK(r["offered_qps"].get<double>() <= 1.1 * capacity);
  // deeprecsched is tuned before serving by default: its runs get the tuned settings, and
  // the search is in the report; --drs-tuning online leaves it to hill-climb.
  std::ostringstream o5, e5;
  CHECK(tools::run_sim_cli({"--profiles", path, "--qps", "20", "--seconds", "2", "--policies",
                            "deeprecsched", "--targets", "m=20", "--json"},
                           o5, e5) == 0);
  const auto drs = nlohmann::json::parse(o5.str());
  REQUIRE(drs["deeprecsched_tuning"].size() == 1);
  CHECK(drs["deeprecsched_tuning"].begin().value()[0]["tried"].size() >= 2);
  CHECK(drs["runs"][0]["policy_params"]["models"]["m"]["given"] == true);
  std::ostringstream o6, e6;
  CHECK(tools::run_sim_cli({"--profiles", path, "--qps", "20", "--seconds", "2", "--policies",
                            "deeprecsched", "--targets", "m=20", "--drs-tuning", "online",
                            "--json"},
                           o6, e6) == 0);
  const auto online = nlohmann::json::parse(o6.str());
  CHECK_FALSE(online.contains("deeprecsched_tuning"));
  CHECK_FALSE(online["runs"][0]["policy_params"]["models"]["m"].contains("given"));
  CHECK(tools::run_sim_cli({"--profiles", path, "--qps", "5", "--drs-tuning", "never"}, o6, e6) ==
        2);
  CHECK(e6.str().find("--drs-tuning") != std::string::npos);
  // Admission: recschedd's rule by default, the prediction alone on request.
  CHECK(drs["admission"] == "daemon");
  CHECK(tools::run_sim_cli({"--profiles", path, "--qps", "5", "--admission", "maybe"}, o6, e6) ==
        2);
  CHECK(e6.str().find("--admission") != std::string::npos);
  std::filesystem::remove(path);
}

}  // namespace
}  // namespace recsched::sim
