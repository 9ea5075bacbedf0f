// The find-max-qps search on a synthetic latency curve (no daemon): an M/M/1-like p95 that
// grows without bound as the load nears a capacity, so the true answer is known.
#include "bench/load/search.h"

#include <doctest/doctest.h>

#include <cmath>

namespace recsched::load {
namespace {

// p95(q) = base / (1 - q / cap); meets `target` iff q <= cap (1 - base / target).
struct Curve {
  double base_ms, cap_qps;
  double p95(double q) const { return q >= cap_qps ? 1e9 : base_ms / (1 - q / cap_qps); }
  double limit(double target) const { return cap_qps * (1 - base_ms / target); }
};

TEST_CASE("find-max-qps ends within the tolerance below the true limit") {
  for (const auto& [curve, target, start] :
       {std::tuple{Curve{2, 1000}, 8.0, 10.0}, std::tuple{Curve{2, 1000}, 8.0, 5000.0},
        std::tuple{Curve{0.5, 37}, 4.0, 1.0}, std::tuple{Curve{10, 50000}, 11.0, 300.0}}) {
    const double truth = curve.limit(target);
    CAPTURE(truth);
    SearchOptions o;
    o.start_qps = start;
    int calls = 0;
    const SearchResult r = find_max_qps(o, [&](double q) {
      ++calls;
      return StepOutcome{curve.p95(q) <= target, ""};
    });
    CHECK(r.max_qps <= truth);
    CHECK(r.max_qps >= truth / (1 + o.tolerance));
    CHECK(r.lowest_fail > truth);
    CHECK(r.lowest_fail - r.max_qps <= o.tolerance * r.max_qps);
    CHECK(calls == int(r.steps.size()));
    CHECK(calls <= 20);
    CHECK_FALSE(r.hit_max);
  }
}

TEST_CASE("find-max-qps reports 0 when nothing passes and hit_max when everything does") {
  SearchOptions o;
  o.start_qps = 100;
  o.min_qps = 1;
  const SearchResult none = find_max_qps(o, [](double) { return StepOutcome{false, "slow"}; });
  CHECK(none.max_qps == 0);
  CHECK(none.steps.back().qps >= 1);
  CHECK(none.steps.size() == 7);  // 100, 50, ..., 1.5625

  o.max_qps = 1000;
  const SearchResult all = find_max_qps(o, [](double) { return StepOutcome{true, ""}; });
  CHECK(all.max_qps == 1000);
  CHECK(all.hit_max);

  o.max_steps = 3;
  const SearchResult capped = find_max_qps(o, [](double q) { return StepOutcome{q < 700, ""}; });
  CHECK(capped.steps.size() == 3);
  CHECK(capped.max_qps == 400);

  o.growth = 1;
  CHECK_THROWS(find_max_qps(o, [](double) { return StepOutcome{}; }));
}

TEST_CASE("a noisy step is handled by bisection, which keeps the highest pass") {
  // Fails once at a load below the limit (a noisy step): the answer stays a load that passed.
  SearchOptions o;
  o.start_qps = 50;
  const SearchResult r = find_max_qps(o, [](double q) {
    return StepOutcome{q <= 600 && std::abs(q - 400) > 1e-9, ""};
  });
  CHECK(r.max_qps >= 200);
  CHECK(r.max_qps <= 600);
  int found = 0;  // the answer is a step that was run, and it passed
  for (const SearchStep& s : r.steps) {
    if (s.qps == r.max_qps) {
      CHECK(s.outcome.pass);
      ++found;
    }
  }
  CHECK(found >= 1);
}

TEST_CASE("a load known to pass is the search's floor: it climbs from there and never answers less") {
  SearchOptions o;
  o.start_qps = 5;  // unused once a pass is known
  o.known_pass_qps = 300;
  // The limit (750) is above the known pass: found as from a pass at 300 (600 passes, 1200
  // fails, then bisection).
  const Curve curve{2, 1000};
  const double truth = curve.limit(8.0);  // 750
  const SearchResult up = find_max_qps(o, [&](double q) {
    return StepOutcome{curve.p95(q) <= 8.0, ""};
  });
  CHECK(up.steps.front().qps == doctest::Approx(600));  // 300 x growth 2: nothing at or below 300
  CHECK(up.max_qps <= truth);
  CHECK(up.max_qps >= truth / (1 + o.tolerance));
  CHECK_FALSE(up.from_known_pass);
  for (const SearchStep& st : up.steps) CHECK(st.qps > 300);

  // Every step above fails (a noisy host, or the known pass is the limit): the answer is the
  // known pass, and says so; bisection ran between it and the first failure.
  const SearchResult flat = find_max_qps(o, [](double) { return StepOutcome{false, "slow"}; });
  CHECK(flat.max_qps == 300);
  CHECK(flat.from_known_pass);
  CHECK(flat.lowest_fail > 300);
  CHECK(flat.lowest_fail - flat.max_qps <= o.tolerance * flat.max_qps);

  // Known to pass at or above max_qps: nothing to search.
  o.max_qps = 200;
  const SearchResult capped = find_max_qps(o, [](double) { return StepOutcome{true, ""}; });
  CHECK(capped.steps.empty());
  CHECK(capped.max_qps == 200);
  CHECK(capped.hit_max);

  o.known_pass_qps = -1;
  CHECK_THROWS(find_max_qps(o, [](double) { return StepOutcome{}; }));
}

}  // namespace
}  // namespace recsched::load
