// recsched-plan's integer program against the optimum found by enumeration on small
// fleets, the greedy baseline on hand-worked cases, the day's traces, and the capacity
// facts from the simulator (cache, replay).
#include "planner/planner.h"

#include <doctest/doctest.h>

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

// The most of model b a set of configurations can serve once a's load is served, exactly:
// a's load goes first to the configurations that give up the least of b per unit of a
// (a fractional exchange, exact for two models). -1 when a's load does not fit.
struct Conf {
  size_t type;
  bool a, b;
  double ca, cb;  // a host's capacity for a alone and for b alone in this configuration
  int n;
};

double max_b_after_a(std::vector<Conf> cs, double load_a) {
  std::sort(cs.begin(), cs.end(), [](const Conf& x, const Conf& y) {
    const double rx = x.b ? x.cb / x.ca : 0, ry = y.b ? y.cb / y.ca : 0;
    return rx < ry;
  });
  double rest = load_a, b = 0;
  for (const Conf& c : cs) {
    if (c.n == 0) continue;
    if (!c.a) {
      b += c.n * c.cb;
      continue;
    }
    const double take = std::min(rest, c.n * c.ca);
    rest -= take;
    if (c.b) b += (c.n - take / c.ca) * c.cb;
  }
  return rest > 1e-9 ? -1 : b;
}

// The least power of any integer choice of hosts that serves both loads, by enumeration.
double optimum_by_enumeration(const Problem& p, double la, double lb) {
  std::vector<Conf> cs;
  for (size_t t = 0; t < p.types.size(); ++t) {
    const HostType& h = p.types[t];
    const double ca = h.alone_qps.at("a") * p.utilisation, cb = h.alone_qps.at("b") * p.utilisation;
    const double eff = h.set_efficiency.at("a+b");
    cs.push_back({t, true, false, ca, 0, 0});
    cs.push_back({t, false, true, 0, cb, 0});
    cs.push_back({t, true, true, ca * eff, cb * eff, 0});
  }
  double best = std::numeric_limits<double>::infinity();
  std::function<void(size_t)> walk = [&](size_t i) {
    if (i == cs.size()) {
      std::vector<int> used(p.types.size(), 0);
      double power = 0;
      for (const Conf& c : cs) {
        used[c.type] += c.n;
        power += c.n * p.types[c.type].power_w;
      }
      for (size_t t = 0; t < used.size(); ++t)
        if (used[t] > p.types[t].count) return;
      if (power < best && max_b_after_a(cs, la) >= lb - 1e-9) best = power;
      return;
    }
    for (int n = 0; n <= p.types[cs[i].type].count; ++n) {
      cs[i].n = n;
      walk(i + 1);
    }
    cs[i].n = 0;
  };
  walk(0);
  return best;
}

// Every assignment within its hosts' capacity, every model's load served or reported.
void check_plan(const Problem& p, const std::map<std::string, double>& load, const SlotPlan& plan) {
  std::map<std::string, double> served;
  std::map<std::string, int> used;
  for (const Assignment& a : plan.assignments) {
    const HostType& h = *std::find_if(p.types.begin(), p.types.end(),
                                      [&](const HostType& x) { return x.name == a.type; });
    const double eff = a.models.size() > 1 ? h.set_efficiency.at(set_key(a.models)) : 1.0;
    double work = 0;
    for (const auto& [m, q] : a.qps) {
      CHECK(std::find(a.models.begin(), a.models.end(), m) != a.models.end());
      work += q / h.alone_qps.at(m);
      served[m] += q;
    }
    CHECK(work <= eff * p.utilisation * a.hosts * (1 + 1e-6) + 1e-9);
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
    h.set_efficiency = {{"a+b", std::round(eff(rng) * 100) / 100}};
    p.types.push_back(h);
  }
  return p;
}

TEST_CASE("plan_slot finds the least power that enumeration finds, on small fleets") {
  std::mt19937_64 rng(42);
  std::uniform_real_distribution<double> load(0, 500);
  int checked = 0, feasible = 0, colocated = 0;
  for (int trial = 0; trial < 60; ++trial) {
    const Problem p = two_models(rng);
    const double la = std::round(load(rng)), lb = std::round(load(rng));
    CAPTURE(trial);
    const double best = optimum_by_enumeration(p, la, lb);
    auto plan = plan_slot(p, {{"a", la}, {"b", lb}}, {0.0, 10000});
    REQUIRE(plan.has_value());
    check_plan(p, {{"a", la}, {"b", lb}}, *plan);
    ++checked;
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
  CHECK(checked == 60);
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
  // With a+b offered on y (efficiency 1) the optimum is one host of each: x takes 100 of
  // a, y the other 250 and all of b (250/300 + 100/600 = 1): 700 W.
  p.types[1].set_efficiency["a+b"] = 1.0;
  auto best = plan_slot(p, {{"a", 350}, {"b", 100}}, {0.0, 10000});
  REQUIRE(best.has_value());
  CHECK(best->power_w == doctest::Approx(100 + 600));
  CHECK(best->hosts == 2);
  // More load than the fleet: greedy and the program both say what is left.
  auto over = greedy_slot(p, {{"a", 5000}, {"b", 0}});
  REQUIRE(over.has_value());
  CHECK(over->unserved_qps.at("a") == doctest::Approx(5000 - 300 - 600));
  auto over_ilp = plan_slot(p, {{"a", 5000}, {"b", 0}});
  REQUIRE(over_ilp.has_value());
  CHECK(over_ilp->unserved_qps.at("a") == doctest::Approx(5000 - 300 - 600));
  CHECK(over_ilp->hosts == 5);
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

TEST_CASE("set keys are sorted and round-trip") {
  CHECK(set_key({"rmc2", "ncf", "din"}) == "din+ncf+rmc2");
  CHECK(set_models("din+ncf+rmc2") == std::vector<std::string>{"din", "ncf", "rmc2"});
  CHECK(set_models("ncf") == std::vector<std::string>{"ncf"});
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
  const auto path = std::filesystem::temp_directory_path() / ("planner_test_" + name);
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
  o.cache_path = (std::filesystem::temp_directory_path() / "planner_test_cache.json").string();
  std::filesystem::remove(o.cache_path);
  size_t ran = 0;
  auto facts = measure_capacity({small_host("fast", 1), small_host("slow", 2)}, targets, o, &ran);
  REQUIRE(facts.has_value());
  CHECK(ran == 2 * 2 + 2 * 1);  // each model alone and the one pair, per type
  const HostType& fast = (*facts)[0];
  const HostType& slow = (*facts)[1];
  CHECK(fast.alone_qps.at("ncf") > 0);
  CHECK(fast.alone_qps.at("wnd") > 0);
  // A host twice as slow serves less (latency-bounded, not exactly half: queueing).
  CHECK(slow.alone_qps.at("ncf") < fast.alone_qps.at("ncf"));
  CHECK(slow.alone_qps.at("wnd") < fast.alone_qps.at("wnd"));
  const double eff = fast.set_efficiency.at("ncf+wnd");
  CHECK(eff > 0.2);
  CHECK(eff < 2.0);
  // Cached: the same facts, nothing simulated.
  size_t again = 99;
  auto cached = measure_capacity({small_host("fast", 1), small_host("slow", 2)}, targets, o, &again);
  REQUIRE(cached.has_value());
  CHECK(again == 0);
  CHECK((*cached)[0].alone_qps == fast.alone_qps);
  CHECK((*cached)[0].set_efficiency == fast.set_efficiency);
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
                  p.assignments.push_back({"nosuch", {"ncf"}, 1, {{"ncf", 1}}, 0});
                  return p;
                }()},
                o.sim)
             .has_value());
}

}  // namespace
}  // namespace recsched::plan
