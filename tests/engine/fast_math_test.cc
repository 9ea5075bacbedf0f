#include "engine/fast_math.h"

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>

namespace recsched::engine {
namespace {

// The larger error, or NaN once either is NaN: std::max(worst, NaN) keeps `worst`, so a
// NaN from the function under test would pass the bound.
double worse(double worst, double error) {
  return std::isnan(worst) || std::isnan(error) ? std::nan("") : std::max(worst, error);
}

TEST_CASE("fast_exp is within 2e-7 relative of exp over the float range") {
  double worst = 0;
  for (double x = -87.0; x <= 88.0; x += 0.000731) {
    const double want = std::exp(static_cast<double>(static_cast<float>(x)));
    const double got = fast_exp(static_cast<float>(x));
    worst = worse(worst, std::abs(got - want) / want);
  }
  CHECK(worst < 2e-7);
  CHECK(fast_exp(0.0f) == 1.0f);
  CHECK(fast_exp(-1000.0f) > 0.0f);         // clamped, not zero or denormal
  CHECK(std::isfinite(fast_exp(1000.0f)));  // clamped, not inf
}

TEST_CASE("fast_sigmoid and fast_tanh are within 3e-7 absolute of the exact functions") {
  double worst_sigmoid = 0, worst_tanh = 0;
  for (double x = -40.0; x <= 40.0; x += 0.00037) {
    const float xf = static_cast<float>(x);
    worst_sigmoid =
        worse(worst_sigmoid, std::abs(fast_sigmoid(xf) - 1.0 / (1.0 + std::exp(-double{xf}))));
    worst_tanh = worse(worst_tanh, std::abs(fast_tanh(xf) - std::tanh(double{xf})));
  }
  CHECK(worst_sigmoid < 3e-7);
  CHECK(worst_tanh < 3e-7);
  CHECK(fast_tanh(100.0f) == 1.0f);
  CHECK(fast_tanh(-100.0f) == -1.0f);
  CHECK(fast_sigmoid(-100.0f) >= 0.0f);
}

}  // namespace
}  // namespace recsched::engine
