// Every model type against PyTorch: the golden files come from
// scripts/reference/make_golden.py (DLRM written as facebookresearch/dlrm writes it, the
// rest as scripts/reference/zoo_ref.py does).
#include <doctest/doctest.h>

#include <cmath>
#include <nlohmann/json.hpp>

#include "engine/inputs.h"
#include "engine/model.h"
#include "test_util.h"

namespace recsched::engine {
namespace {

using nlohmann::json;
using namespace testing;

TEST_CASE("every model type's scores match PyTorch's golden outputs on every ISA") {
  for (const char* c : kGoldenCases) {
    CAPTURE(c);
    const ModelSpec spec = load_model_spec(golden_path(c, ".model.json")).value();
    Result<Batch> batch = batch_from_json(spec, read_json(golden_path(c, ".inputs.json")));
    REQUIRE_MESSAGE(batch.has_value(), batch.status().to_string());
    const json expected = read_json(golden_path(c, ".expected.json"))["scores"];
    REQUIRE(expected.size() == batch->batch_size);
    // The bar: 1e-5 relative, 1e-4 where a recurrence compounds rounding.
    const double tolerance = spec.type == ModelType::kDien ? 1e-4 : 1e-5;
    for (Isa isa : supported_isas()) {
      CAPTURE(to_string(isa));
      LoadOptions opts;
      opts.weights_path = golden_path(c, ".safetensors");
      opts.isa = isa;
      auto model = load_model(spec, opts);
      REQUIRE_MESSAGE(model.has_value(), model.status().to_string());
      const int k = spec.num_outputs();
      std::vector<float> got(size_t(batch->batch_size) * k);
      Workspace ws;
      REQUIRE((*model)->forward(view_of(*batch), ws, got).is_ok());
      std::vector<double> want;
      for (size_t r = 0; r < expected.size(); ++r) {
        REQUIRE(expected[r].size() == size_t(k));
        for (int o = 0; o < k; ++o) want.push_back(expected[r][o].get<double>());
      }
      CHECK(worst_relative_error(got, want) <= tolerance);
    }
  }
}

TEST_CASE("the golden comparison fails on a NaN or an infinite score, not only a wrong one") {
  const std::vector<double> want = {0.5, 0.25, 0.125};
  CHECK(worst_relative_error(std::vector<float>{0.5f, 0.25f, 0.125f}, want) == 0);
  CHECK(worst_relative_error(std::vector<float>{0.5f, 0.25f, 0.126f}, want) ==
        doctest::Approx(0.008));
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const float inf = std::numeric_limits<float>::infinity();
  // The NaN last, after a finite error: std::max(worst, NaN) would have kept 0.008.
  CHECK_FALSE(worst_relative_error(std::vector<float>{0.5f, 0.25f, nan}, want) <= 1e-5);
  CHECK_FALSE(worst_relative_error(std::vector<float>{nan, 0.25f, 0.125f}, want) <= 1e-5);
  CHECK_FALSE(worst_relative_error(std::vector<float>{0.5f, inf, 0.125f}, want) <= 1e-5);
  CHECK_FALSE(worst_relative_error(std::vector<float>{0.5f, 0.25f}, want) <= 1e-5);
}

}  // namespace
}  // namespace recsched::engine
