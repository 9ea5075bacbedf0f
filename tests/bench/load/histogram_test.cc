// The log-linear histogram: exact below 2^p, buckets within 1/2^p of their lower bound,
// percentiles within relative_error() of the exact nearest-rank value.
#include "bench/load/histogram.h"

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

namespace recsched::load {
namespace {

double exact_percentile(std::vector<uint64_t> v, double q) {
  std::sort(v.begin(), v.end());
  const size_t rank = std::max<size_t>(1, size_t(std::ceil(q / 100.0 * double(v.size()))));
  return double(v[rank - 1]);
}

TEST_CASE("histogram buckets cover every value and are at most 1/2^p of their lower bound wide") {
  for (int p : {1, 3, 7, 10}) {
    CAPTURE(p);
    const Histogram h(p);
    std::mt19937_64 rng(p);
    for (int i = 0; i < 20000; ++i) {
      const uint64_t v = i < 3000 ? uint64_t(i) : (rng() >> 1) >> (rng() % 63);  // < 2^63
      const size_t idx = h.index_of(v);
      REQUIRE(h.bucket_lower(idx) <= v);
      REQUIRE(v < h.bucket_upper(idx));
      if (v >= (uint64_t{1} << p)) {
        CHECK(double(h.bucket_upper(idx) - h.bucket_lower(idx)) <=
              double(h.bucket_lower(idx)) / double(uint64_t{1} << p));
      } else {
        CHECK(h.bucket_upper(idx) - h.bucket_lower(idx) == 1);
      }
    }
    // Buckets are contiguous: each one starts where the previous ended.
    for (size_t i = 1; i < h.bucket_count(); ++i) CHECK(h.bucket_lower(i) == h.bucket_upper(i - 1));
    CHECK(h.index_of(~uint64_t{0}) == h.bucket_count() - 1);
  }
}

TEST_CASE("histogram percentiles are within the relative error bound of the exact ones") {
  for (int p : {4, 7}) {
    CAPTURE(p);
    Histogram h(p);
    std::mt19937_64 rng(42);
    std::lognormal_distribution<double> latency(std::log(2e6), 0.8);  // ns, around 2 ms
    std::vector<uint64_t> values;
    for (int i = 0; i < 50000; ++i) {
      const uint64_t v = uint64_t(latency(rng));
      values.push_back(v);
      h.record(v);
    }
    CHECK(h.relative_error() == doctest::Approx(1.0 / double(uint64_t{2} << p)));
    for (double q : {0.0, 1.0, 25.0, 50.0, 90.0, 95.0, 99.0, 99.9, 100.0}) {
      CAPTURE(q);
      const double exact = exact_percentile(values, q);
      CHECK(std::abs(h.percentile(q) - exact) <= exact * h.relative_error());
    }
    CHECK(h.count() == values.size());
    CHECK(h.max() == *std::max_element(values.begin(), values.end()));
    CHECK(h.min() == *std::min_element(values.begin(), values.end()));
  }
}

TEST_CASE("histogram small values are exact, and merge adds counts") {
  Histogram a, b;
  for (uint64_t v = 1; v <= 100; ++v) (v % 2 ? a : b).record(v);
  a.merge(b);
  CHECK(a.count() == 100);
  CHECK(a.percentile(50) == 50);
  CHECK(a.percentile(100) == 100);
  CHECK(a.min() == 1);
  CHECK(a.mean() == doctest::Approx(50.5));
  a.reset();
  CHECK(a.count() == 0);
  CHECK(a.percentile(95) == 0);
  CHECK_THROWS(a.merge(Histogram(3)));
}

}  // namespace
}  // namespace recsched::load
