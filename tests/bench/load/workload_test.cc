// The open-loop schedule (Poisson: exponential gaps of mean 1/qps, fixed in advance), the
// model mix and DeepRecInfra's query-size distributions.
#include "bench/load/workload.h"

#include <doctest/doctest.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <numeric>

namespace recsched::load {
namespace {

TEST_CASE("Poisson schedule: mean gap 1/qps, exponential gaps, deterministic in the seed") {
  const double qps = 2000, duration = 50;
  const auto s = make_schedule(qps, duration, {1.0}, SizeDistribution::parse("fixed:1"), 7);
  const double n = double(s.size());
  // Count ~ Poisson(100000): within 5 standard deviations.
  CHECK(std::abs(n - qps * duration) < 5 * std::sqrt(qps * duration));
  std::vector<double> gaps;
  int64_t prev = 0;
  for (const Arrival& a : s) {
    REQUIRE(a.t_ns >= prev);
    REQUIRE(a.t_ns < int64_t(duration * 1e9));
    gaps.push_back(double(a.t_ns - prev) / 1e9);
    prev = a.t_ns;
  }
  const double mean = std::accumulate(gaps.begin(), gaps.end(), 0.0) / n;
  CHECK(mean == doctest::Approx(1 / qps).epsilon(0.02));
  double var = 0;
  for (double g : gaps) var += (g - mean) * (g - mean);
  // Exponential: standard deviation equals the mean (coefficient of variation 1).
  CHECK(std::sqrt(var / n) / mean == doctest::Approx(1.0).epsilon(0.03));
  // Memoryless: P(gap > t) = exp(-qps t) at a few t.
  for (double k : {0.5, 1.0, 2.0, 3.0}) {
    CAPTURE(k);
    const double frac =
        double(std::count_if(gaps.begin(), gaps.end(), [&](double g) { return g > k / qps; })) / n;
    CHECK(frac == doctest::Approx(std::exp(-k)).epsilon(0.05));
  }
  const auto again = make_schedule(qps, duration, {1.0}, SizeDistribution::parse("fixed:1"), 7);
  REQUIRE(again.size() == s.size());
  CHECK(again[1234].t_ns == s[1234].t_ns);
  CHECK(make_schedule(qps, duration, {1.0}, SizeDistribution::parse("fixed:1"), 8)[10].t_ns !=
        s[10].t_ns);
}

TEST_CASE("the model mix follows the weights") {
  const auto s = make_schedule(1000, 60, {1.0, 3.0, 0.0}, SizeDistribution::parse("fixed:5"), 1);
  std::vector<double> count(3, 0);
  for (const Arrival& a : s) {
    ++count[a.model];
    CHECK(a.items == 5);
  }
  CHECK(count[2] == 0);
  CHECK(count[1] / double(s.size()) == doctest::Approx(0.75).epsilon(0.02));
  CHECK_THROWS(make_schedule(0, 1, {1.0}, SizeDistribution(), 1));
  CHECK_THROWS(make_schedule(10, 1, {0.0, 0.0}, SizeDistribution(), 1));
  CHECK_THROWS(make_schedule(10, 1, {-1.0}, SizeDistribution(), 1));
}

TEST_CASE("lognormal sizes have DeepRecInfra's parameters and are capped") {
  const SizeDistribution d = SizeDistribution::parse("lognormal");
  CHECK(d.a == 5.1);
  CHECK(d.b == 0.2);
  CHECK(d.cap == 1024);
  std::mt19937_64 rng(3);
  double sum_log = 0, sum_log2 = 0;
  const int n = 200000;
  for (int i = 0; i < n; ++i) {
    const uint32_t v = d.draw(rng);
    REQUIRE(v >= 1);
    REQUIRE(v <= 1024);
    sum_log += std::log(v);
    sum_log2 += std::log(v) * std::log(v);
  }
  const double mu = sum_log / n, sigma = std::sqrt(sum_log2 / n - mu * mu);
  CHECK(mu == doctest::Approx(5.1).epsilon(0.005));
  CHECK(sigma == doctest::Approx(0.2).epsilon(0.03));  // rounding to integers adds a little

  // A wide lognormal hits the cap; nothing goes past it.
  const SizeDistribution wide = SizeDistribution::parse("lognormal:5.1,1.5,300");
  int capped = 0;
  for (int i = 0; i < 20000; ++i) {
    const uint32_t v = wide.draw(rng);
    REQUIRE(v <= 300);
    capped += v == 300;
  }
  CHECK(capped > 1000);  // P(X > 300) is about 0.35
}

TEST_CASE("normal, fixed and file sizes") {
  std::mt19937_64 rng(5);
  const SizeDistribution n = SizeDistribution::parse("normal:100,10,120");
  double sum = 0;
  for (int i = 0; i < 50000; ++i) {
    const uint32_t v = n.draw(rng);
    REQUIRE(v >= 1);
    REQUIRE(v <= 120);
    sum += v;
  }
  CHECK(sum / 50000 == doctest::Approx(100).epsilon(0.01));
  CHECK(SizeDistribution::parse("fixed:64").draw(rng) == 64);
  CHECK(SizeDistribution::parse("fixed:64").max_size() == 64);

  const auto path = std::filesystem::temp_directory_path() /
                    ("recsched_sizes_" + std::to_string(::getpid()) + ".txt");
  std::ofstream(path) << "10\n20\n30\n";
  const SizeDistribution f = SizeDistribution::parse("file:" + path.string());
  CHECK(f.max_size() == 30);
  for (int i = 0; i < 100; ++i) {
    const uint32_t v = f.draw(rng);
    CHECK((v == 10 || v == 20 || v == 30));
  }
  std::filesystem::remove(path);

  for (const char* bad : {"poisson", "normal:1", "fixed:0", "fixed:1.5", "lognormal:5,x",
                          "lognormal:5,-1", "file:/nonexistent/sizes", "lognormal:5,1,0"}) {
    CAPTURE(bad);
    CHECK_THROWS_AS(SizeDistribution::parse(bad), std::invalid_argument);
  }
}

}  // namespace
}  // namespace recsched::load
