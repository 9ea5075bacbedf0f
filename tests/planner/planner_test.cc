// recsched-plan's integer program against the optimum found by enumeration on small
// fleets, the greedy baseline on hand-worked cases, the day's traces, and the capacity
// facts from the simulator (cache, replay).
#include "planner/planner.h"

#include <doctest/doctest.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <random>

#include "planner/host_capacity.h"
#include "planner/trace.h"

namespace recsched::plan {
namespace {

// Whether an integer choice of hosts serves both loads, exactly. Hosts serving one model
// add up to capacities sa and sb; the hosts of type t serving the pair serve a and b only
// in the simulated proportion: a share f_t in [0, 1] of their full (pa_t, pb_t). So the
// loads fit when some (f_x, f_y) in the unit square leaves 0 <= la - sum f pa <= sa and
// 0 <= lb - sum f pb <= sb: a polygon, nonempty exactly when one of the intersections of
// its boundary lines lies in it.
bool serves(double la, double lb, double sa, double sb, const double pa[2], const double pb[2]) {
  struct Line {
    double u, v, w;  // u f_x + v f_y = w
  };
  const std::vector<Line> lines = {{1, 0, 0},          {1, 0, 1},          {0, 1, 0},
                                   {0, 1, 1},          {pa[0], pa[1], la}, {pa[0], pa[1], la - sa},
                                   {pb[0], pb[1], lb}, {pb[0], pb[1], lb - sb}};
  auto inside = [&](double fx, double fy) {
    const double eps = 1e-7;
    const double ra = la - fx * pa[0] - fy * pa[1], rb = lb - fx * pb[0] - fy * pb[1];
    return fx >= -eps && fx <= 1 + eps && fy >= -eps && fy <= 1 + eps && ra >= -eps * (1 + la) &&
           ra <= sa + eps * (1 + la) && rb >= -eps * (1 + lb) && rb <= sb + eps * (1 + lb);
  };
  for (size_t i = 0; i < lines.size(); ++i) {
    for (size_t j = i + 1; j < lines.size(); ++j) {
      const Line &a = lines[i], &b = lines[j];
      const double det = a.u * b.v - a.v * b.u;
      if (std::fabs(det) < 1e-12) continue;
      if (inside((a.w * b.v - a.v * b.w) / det, (a.u * b.w - a.w * b.u) / det)) return true;
    }
  }
  return false;
}

// The least power of any integer choice of hosts that serves both loads, by enumeration
// of every count of hosts per (type, set).
double optimum_by_enumeration(const Problem& p, double la, double lb) {
  REQUIRE(p.types.size() == 2);
  double best = std::numeric_limits<double>::infinity();
  const HostType &x = p.types[0], &y = p.types[1];
  const double u = p.utilisation;
  for (int xa = 0; xa <= x.count; ++xa)
    for (int xb = 0; xa + xb <= x.count; ++xb)
      for (int xab = 0; xa + xb + xab <= x.count; ++xab)
        for (int ya = 0; ya <= y.count; ++ya)
          for (int yb = 0; ya + yb <= y.count; ++yb)
            for (int yab = 0; ya + yb + yab <= y.count; ++yab) {
              const double power = (xa + xb + xab) * x.power_w + (ya + yb + yab) * y.power_w;
              if (power >= best) continue;
              const double sa = u * (xa * x.alone_qps.at("a") + ya * y.alone_qps.at("a"));
              const double sb = u * (xb * x.alone_qps.at("b") + yb * y.alone_qps.at("b"));
              // A pair host's time split at the set's shares.
              const HostType::Set &sx = x.sets.at(0), &sy = y.sets.at(0);
              const double fx = u * xab * sx.efficiency, fy = u * yab * sy.efficiency;
              const double pa[2] = {fx * sx.shares[0] * x.alone_qps.at("a"),
                                    fy * sy.shares[0] * y.alone_qps.at("a")};
              const double pb[2] = {fx * sx.shares[1] * x.alone_qps.at("b"),
                                    fy * sy.shares[1] * y.alone_qps.at("b")};
              if (serves(la, lb, sa, sb, pa, pb)) best = power;
            }
  return best;
}

// Every assignment within its hosts' capacity, every model's load served or reported.
void check_plan(const Problem& p, const std::map<std::string, double>& load, const SlotPlan& plan) {
  std::map<std::string, double> served;
  std::map<std::string, int> used;
  for (const Assignment& a : plan.assignments) {
    const HostType& h = *std::find_if(p.types.begin(), p.types.end(),
                                      [&](const HostType& x) { return x.name == a.type; });
    const double eff = a.efficiency;
    double work = 0;
    for (const auto& [m, q] : a.qps) {
      CHECK(std::find(a.models.begin(), a.models.end(), m) != a.models.end());
      work += q / h.alone_qps.at(m);
      served[m] += q;
    }
    CHECK(work <= eff * p.utilisation * a.hosts * (1 + 1e-6) + 1e-9);
    // A set's hosts serve its models in the simulated proportion: their shares of time.
    for (size_t i = 0; i < a.models.size() && a.models.size() > 1; ++i) {
      const std::string& m = a.models[i];
      const double share = a.qps.count(m) ? a.qps.at(m) / h.alone_qps.at(m) : 0;
      CHECK(share == doctest::Approx(work * a.shares.at(i)).epsilon(1e-6));
    }
    used[a.type] += a.hosts;
  }
  for (const HostType& h : p.types) CHECK(used[h.name] <= h.count);
  for (const auto& [m, q] : load) {
    const double unserved = plan.unserved_qps.count(m) ? plan.unserved_qps.at(m) : 0;
    CHECK(served[m] + unserved == doctest::Approx(q).epsilon(1e-6));
  }
}

Problem two_models(std::mt19937_64& rng) {
  std::uniform_real_distribution<double> cap(50, 400), eff(0.7, 1.3), power(100, 900);
  std::uniform_int_distribution<int> count(1, 3);
  Problem p;
  p.models = {"a", "b"};
  p.utilisation = 0.9;
  for (const char* name : {"x", "y"}) {
    HostType h;
    h.name = name;
    h.count = count(rng);
    h.power_w = std::round(power(rng));
    h.alone_qps = {{"a", std::round(cap(rng))}, {"b", std::round(cap(rng))}};
    // Equal shares or a skewed mix, as recsched-plan measures them.
    const bool skewed = rng() % 2 == 0;
    h.sets = {{{"a", "b"}, skewed ? std::vector<double>{0.75, 0.25} : std::vector<double>{0.5, 0.5},
               std::round(eff(rng) * 100) / 100}};
    p.types.push_back(h);
  }
  return p;
}

TEST_CASE("plan_slot finds the least power that enumeration finds, on small fleets") {
  std::mt19937_64 rng(42);
  std::uniform_real_distribution<double> load(0, 500);
  int feasible = 0, colocated = 0;
  for (int trial = 0; trial < 60; ++trial) {
    const Problem p = two_models(rng);
    const double la = std::round(load(rng)), lb = std::round(load(rng));
    CAPTURE(trial);
    const double best = optimum_by_enumeration(p, la, lb);
    auto plan = plan_slot(p, {{"a", la}, {"b", lb}}, {0.0, 10000});
    REQUIRE(plan.has_value());
    check_plan(p, {{"a", la}, {"b", lb}}, *plan);
    if (std::isinf(best)) {
      CHECK(!plan->unserved_qps.empty());  // the fleet cannot serve it: the plan says so
      continue;
    }
    ++feasible;
    CHECK(plan->unserved_qps.empty());
    CHECK(plan->power_w == doctest::Approx(best));
    CHECK(plan->status == "optimal");
    for (const Assignment& a : plan->assignments) colocated += a.models.size() > 1;
    // Hercules' greedy never does better than the optimum.
    auto g = greedy_slot(p, {{"a", la}, {"b", lb}});
    REQUIRE(g.has_value());
    check_plan(p, {{"a", la}, {"b", lb}}, *g);
    if (g->unserved_qps.empty()) CHECK(g->power_w >= plan->power_w - 1e-6);
  }
  CHECK(feasible >= 30);   // the draw exercises both outcomes
  CHECK(colocated >= 5);   // and plans that co-locate
}

TEST_CASE("greedy: each model to its most efficient type first-fit, one model per host") {
  Problem p;
  p.models = {"a", "b"};
  p.utilisation = 1.0;
  // a: x gives 100/100 = 1 q/s per W, y 300/600 = 0.5. b: x 50/100 = 0.5, y 600/600 = 1.
  p.types = {{"x", 3, 100, {{"a", 100}, {"b", 50}}, {}}, {"y", 2, 600, {{"a", 300}, {"b", 600}}, {}}};
  // a (the larger load first): 3 hosts of x (300 q/s), then 1 of y for the last 50.
  // b: y has 1 host left (600 q/s) for 100.
  auto g = greedy_slot(p, {{"a", 350}, {"b", 100}});
  REQUIRE(g.has_value());
  REQUIRE(g->assignments.size() == 3);
  CHECK(g->assignments[0].type == "x");
  CHECK(g->assignments[0].hosts == 3);
  CHECK(g->assignments[0].qps.at("a") == doctest::Approx(300));
  CHECK(g->assignments[1].type == "y");
  CHECK(g->assignments[1].hosts == 1);
  CHECK(g->assignments[1].qps.at("a") == doctest::Approx(50));
  CHECK(g->assignments[2].type == "y");
  CHECK(g->assignments[2].models == std::vector<std::string>{"b"});
  CHECK(g->power_w == doctest::Approx(3 * 100 + 2 * 600));
  CHECK(g->powered.at("x") == 3);
  CHECK(g->unserved_qps.empty());
  // With a+b offered on y (efficiency 1.2), in its simulated proportion (equal time:
  // 300 a to 600 b, up to 0.6 x 300 = 180 of a and 360 of b per host): one y host takes b's
  // 100 with 50 of a, three x hosts the other 300 of a: 900 W, where greedy needed 1500.
  p.types[1].sets = {{{"a", "b"}, {0.5, 0.5}, 1.2}};
  auto best = plan_slot(p, {{"a", 350}, {"b", 100}}, {0.0, 10000});
  REQUIRE(best.has_value());
  CHECK(best->power_w == doctest::Approx(3 * 100 + 600));
  CHECK(best->hosts == 4);
  check_plan(p, {{"a", 350}, {"b", 100}}, *best);
  // More load than the fleet: greedy and the program both say what is left.
  auto over = greedy_slot(p, {{"a", 5000}, {"b", 0}});
  REQUIRE(over.has_value());
  CHECK(over->unserved_qps.at("a") == doctest::Approx(5000 - 300 - 600));
  auto over_ilp = plan_slot(p, {{"a", 5000}, {"b", 0}});
  REQUIRE(over_ilp.has_value());
  CHECK(over_ilp->unserved_qps.at("a") == doctest::Approx(5000 - 300 - 600));
  CHECK(over_ilp->hosts == 5);
}

TEST_CASE("plan_slot: the last fraction of a q/s gets a host while one is spare") {
  Problem p;
  p.models = {"a"};
  p.types = {{"x", 4, 100, {{"a", 100}}, {}}};
  for (const double load : {0.09, 90.05, 180.2}) {
    CAPTURE(load);
    auto plan = plan_slot(p, {{"a", load}});
    REQUIRE(plan.has_value());
    CHECK(plan->unserved_qps.empty());
    CHECK(plan->hosts == int(std::ceil(load / 90)));
    check_plan(p, {{"a", load}}, *plan);
  }
  // No time for the search: the dive's plan, not a failure.
  auto rushed = plan_slot(p, {{"a", 250}}, {0.0, 1});
  REQUIRE(rushed.has_value());
  CHECK(rushed->unserved_qps.empty());
  CHECK(rushed->hosts == 3);
  CHECK(plan_slot(p, {{"a", 1}}, {-1, 10}).status().code() == StatusCode::kInvalidArgument);
  CHECK(plan_slot(p, {{"a", 1}}, {0.0, 0}).status().code() == StatusCode::kInvalidArgument);
  Problem none;
  CHECK(plan_slot(none, {}).status().code() == StatusCode::kInvalidArgument);
}

TEST_CASE("plan_slot: a model no type can serve is unserved, bad loads are refused") {
  Problem p;
  p.models = {"a", "b"};
  p.types = {{"x", 4, 100, {{"a", 100}, {"b", 0}}, {}}};
  auto plan = plan_slot(p, {{"a", 150}, {"b", 10}});
  REQUIRE(plan.has_value());
  CHECK(plan->hosts == 2);
  CHECK(plan->unserved_qps.at("b") == doctest::Approx(10));
  CHECK(plan_slot(p, {{"zzz", 1}}).status().code() == StatusCode::kInvalidArgument);
  CHECK(plan_slot(p, {{"a", -1}}).status().code() == StatusCode::kInvalidArgument);
  CHECK(greedy_slot(p, {{"a", std::nan("")}}).status().code() == StatusCode::kInvalidArgument);
  // Nothing to serve: nothing powered.
  auto idle = plan_slot(p, {{"a", 0}, {"b", 0}});
  REQUIRE(idle.has_value());
  CHECK(idle->hosts == 0);
  CHECK(idle->power_w == 0);
}

TEST_CASE("diurnal trace: the cosine between trough and peak, its mean and its peak hour") {
  auto t = diurnal_trace({{"a", 1000, 20}, {"b", 100, 8}}, 15, 0.4);
  REQUIRE(t.has_value());
  REQUIRE(t->slots.size() == 96);
  double sum = 0, top = 0;
  size_t top_slot = 0;
  for (size_t s = 0; s < t->slots.size(); ++s) {
    sum += t->slots[s].at("a");
    if (t->slots[s].at("a") > top) top = t->slots[s].at("a"), top_slot = s;
    CHECK(t->slots[s].at("a") >= 400 - 1e-9);
  }
  CHECK(sum / 96 == doctest::Approx(700));  // (trough + 1) / 2 of the peak
  CHECK(t->start_minute(top_slot) / 60 == doctest::Approx(19.75));  // the slot centred nearest 20:00
  CHECK(top > 999);
  CHECK(t->slots[32].at("b") > t->slots[80].at("b"));  // b peaks at 8:00
  CHECK(!diurnal_trace({{"a", 1, 0}}, 7).has_value());
  CHECK(!diurnal_trace({{"a", 1, 0}}, 15, 1.5).has_value());
  CHECK(!diurnal_trace({{"a", -1, 0}}).has_value());
}

std::string write(const std::string& name, const std::string& text) {
  const auto path =
      std::filesystem::temp_directory_path() / ("planner_test_" + std::to_string(::getpid()) + "_" + name);
  std::ofstream(path) << text;
  return path.string();
}

TEST_CASE("trace files: the slots as written, and errors that name the line") {
  auto t = read_trace_csv(write("ok.csv", "# a day in two slots\nminute,a,b\n0,10,20\n720, 30 ,40\n"));
  REQUIRE(t.has_value());
  CHECK(t->slot_minutes == 720);
  CHECK(t->models == std::vector<std::string>{"a", "b"});
  CHECK(t->slots[1].at("a") == 30);
  const std::pair<const char*, const char*> bad[] = {
      {"minutes,a\n0,1\n", ":1: the header"},
      {"minute,a,a\n0,1,1\n", "twice"},
      {"minute,a\n0,1,2\n", ":2: 3 cells"},
      {"minute,a\n0,-1\n", "not a load"},
      {"minute,a\n0,x\n", "not a load"},
      {"minute,a\n0,1\n0,1\n", "increase"},
      {"minute,a\n0,1\n60,1\n180,1\n", "equally spaced"},
      {"minute,a\n60,1\n", "minute 0"},
      {"minute,a\n", "no slots"},
  };
  for (const auto& [text, why] : bad) {
    CAPTURE(text);
    auto r = read_trace_csv(write("bad.csv", text));
    REQUIRE(!r.has_value());
    CHECK(r.status().message().find(why) != std::string::npos);
  }
  CHECK(read_trace_csv("/nonexistent/trace.csv").status().code() == StatusCode::kNotFound);
}

std::string profile() { return std::string(RECSCHED_SOURCE_DIR) + "/docs/profile-2026-11-26/profile.json"; }

HostTypeSpec small_host(const std::string& name, double speed) {
  HostTypeSpec t;
  t.name = name;
  t.host.profiles = profile();
  t.host.cpu_workers = 2;
  t.host.speed = speed;
  t.count = 4;
  t.power_w = 100;
  return t;
}

TEST_CASE("capacity facts from the simulator: alone, sets, the cache and a replay") {
  const std::vector<sim::ModelTarget> targets = {{"ncf", 5}, {"wnd", 25}};
  CapacityOptions o;
  o.sim.seconds = 5;
  o.cache_path = (std::filesystem::temp_directory_path() /
                  ("planner_test_cache_" + std::to_string(::getpid()) + ".json"))
                     .string();
  std::filesystem::remove(o.cache_path);
  size_t ran = 0;
  auto facts = measure_capacity({small_host("fast", 1), small_host("slow", 2)}, targets, o, &ran);
  REQUIRE(facts.has_value());
  CHECK(ran == 2 * 2 + 2 * 3);  // per type: each model alone, the pair at 3 mixes
  const HostType& fast = (*facts)[0];
  const HostType& slow = (*facts)[1];
  CHECK(fast.alone_qps.at("ncf") > 0);
  CHECK(fast.alone_qps.at("wnd") > 0);
  // A host twice as slow serves less (latency-bounded, not exactly half: queueing).
  CHECK(slow.alone_qps.at("ncf") < fast.alone_qps.at("ncf"));
  CHECK(slow.alone_qps.at("wnd") < fast.alone_qps.at("wnd"));
  REQUIRE(fast.sets.size() == 3);
  CHECK(fast.sets[0].models == std::vector<std::string>{"ncf", "wnd"});
  CHECK(fast.sets[0].shares == std::vector<double>{0.5, 0.5});
  CHECK(fast.sets[1].shares == std::vector<double>{0.75, 0.25});
  CHECK(fast.sets[2].shares == std::vector<double>{0.25, 0.75});
  const double eff = fast.sets[0].efficiency;
  for (const HostType::Set& s : fast.sets) {
    CHECK(s.efficiency > 0.2);
    CHECK(s.efficiency < 2.0);
  }
  // Cached: the same facts, nothing simulated.
  size_t again = 99;
  auto cached = measure_capacity({small_host("fast", 1), small_host("slow", 2)}, targets, o, &again);
  REQUIRE(cached.has_value());
  CHECK(again == 0);
  CHECK((*cached)[0].alone_qps == fast.alone_qps);
  REQUIRE((*cached)[0].sets.size() == fast.sets.size());
  for (size_t i = 0; i < fast.sets.size(); ++i)
    CHECK((*cached)[0].sets[i].efficiency == fast.sets[i].efficiency);
  // A model without a target or a profile is refused.
  CHECK(!measure_capacity({small_host("fast", 1)}, {{"nosuch", 5}}, o).has_value());

  // Replay: a host at half its planned capacity meets the targets; at 3x it cannot.
  auto at = [&](double share) {
    SlotPlan plan;
    Assignment a;
    a.type = "fast";
    a.models = {"ncf", "wnd"};
    a.hosts = 2;
    a.qps = {{"ncf", share * eff * fast.alone_qps.at("ncf")},
             {"wnd", share * eff * fast.alone_qps.at("wnd")}};  // half of the host's time each
    plan.assignments.push_back(a);
    return plan;
  };
  auto r = replay({small_host("fast", 1)}, targets, {at(0.5), at(3.0)}, o.sim);
  REQUIRE(r.has_value());
  REQUIRE(r->size() == 2);
  CHECK((*r)[0].meets_sla);
  CHECK((*r)[0].qps_per_host.at("ncf") == doctest::Approx(0.25 * eff * fast.alone_qps.at("ncf")));
  CHECK(!(*r)[1].meets_sla);
  CHECK(!replay({small_host("fast", 1)}, targets, {[] {
                  SlotPlan p;
                  Assignment a;
                  a.type = "nosuch";
                  a.models = {"ncf"};
                  a.hosts = 1;
                  a.qps = {{"ncf", 1}};
                  p.assignments.push_back(a);
                  return p;
                }()},
                o.sim)
             .has_value());
}

}  // namespace
}  // namespace recsched::plan
