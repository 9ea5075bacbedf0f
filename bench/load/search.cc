#include "bench/load/search.h"

#include <algorithm>
#include <stdexcept>

namespace recsched::load {

SearchResult find_max_qps(const SearchOptions& o,
                          const std::function<StepOutcome(double qps)>& step) {
  if (!(o.start_qps > 0) || !(o.min_qps > 0) || !(o.max_qps >= o.min_qps) || !(o.growth > 1) ||
      !(o.tolerance > 0) || !(o.known_pass_qps >= 0))
    throw std::invalid_argument("find-max-qps: bad search options");
  SearchResult r;
  auto run = [&](double qps) {
    StepOutcome out = step(qps);
    r.steps.push_back({qps, out});
    return out.pass;
  };
  double lo = 0, hi = 0;  // highest pass, lowest fail (0 = none yet)
  double q = std::clamp(o.start_qps, o.min_qps, o.max_qps);
  const bool known = o.known_pass_qps > 0;
  if (known || run(q)) {
    lo = known ? std::min(o.known_pass_qps, o.max_qps) : q;
    while (int(r.steps.size()) < o.max_steps) {
      if (lo >= o.max_qps) {
        r.hit_max = true;
        break;
      }
      q = std::min(lo * o.growth, o.max_qps);
      if (run(q)) {
        lo = q;
      } else {
        hi = q;
        break;
      }
    }
  } else {
    hi = q;
    while (int(r.steps.size()) < o.max_steps) {
      q = hi / o.growth;
      if (q < o.min_qps) break;
      if (run(q)) {
        lo = q;
        break;
      }
      hi = q;
    }
  }
  if (lo > 0 && hi > 0) {
    while (hi - lo > o.tolerance * lo && int(r.steps.size()) < o.max_steps) {
      const double mid = (lo + hi) / 2;
      if (run(mid)) {
        lo = mid;
      } else {
        hi = mid;
      }
    }
  }
  r.max_qps = lo;
  r.lowest_fail = hi;
  r.from_known_pass = known && lo == std::min(o.known_pass_qps, o.max_qps);
  return r;
}

}  // namespace recsched::load
