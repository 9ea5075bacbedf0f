// LatencyWindow: the nearest-rank percentiles of the last `capacity` samples, against the
// definition computed directly (copy, sort, index) over a random stream with ties.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <deque>
#include <random>
#include <vector>

#include "daemon/service.h"

namespace recsched::daemon {
namespace {

double nearest_rank(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const size_t rank = static_cast<size_t>(std::ceil(p / 100.0 * double(v.size())));
  return v[std::clamp<size_t>(rank, 1, v.size()) - 1];
}

TEST_CASE("the latency window's percentiles are those of its last samples, ties and all") {
  for (const size_t capacity : {size_t{1}, size_t{7}, size_t{64}}) {
    CAPTURE(capacity);
    LatencyWindow w(capacity);
    CHECK(w.percentile(95) == 0);  // empty
    std::deque<double> last;
    std::mt19937 rng(42);
    std::uniform_int_distribution<int> pick(0, 20);  // few values: many ties
    for (int i = 0; i < 500; ++i) {
      const double ms = pick(rng) * 0.5;
      w.add(ms);
      last.push_back(ms);
      if (last.size() > capacity) last.pop_front();
      REQUIRE(w.size() == last.size());
      const std::vector<double> v(last.begin(), last.end());
      for (const double p : {0.0, 50.0, 95.0, 99.0, 100.0}) {
        CAPTURE(i);
        CAPTURE(p);
        REQUIRE(w.percentile(p) == nearest_rank(v, p));
      }
    }
  }
}

}  // namespace
}  // namespace recsched::daemon
