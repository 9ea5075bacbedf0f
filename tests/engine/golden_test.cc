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
      double worst = 0;
      for (size_t r = 0; r < expected.size(); ++r) {
        REQUIRE(expected[r].size() == size_t(k));
        for (int o = 0; o < k; ++o) {
          const double want = expected[r][o].get<double>();
          worst = std::max(worst, std::abs(got[r * k + o] - want) / std::abs(want));
        }
      }
      CHECK(worst <= tolerance);
    }
  }
}

}  // namespace
}  // namespace recsched::engine
