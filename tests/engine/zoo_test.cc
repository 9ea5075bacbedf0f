// Properties every model type must have, checked on each: sub-batches score like the
// whole batch, exported weights reload to the same scores, the zoo specs load and score,
// and bad inputs are refused.
#include "engine/zoo.h"

#include <doctest/doctest.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "engine/inputs.h"
#include "engine/model.h"
#include "test_util.h"

namespace recsched::engine {
namespace {

using nlohmann::json;
using namespace testing;

std::unique_ptr<Model> load_or_die(const ModelSpec& spec, const LoadOptions& opts = {}) {
  auto m = load_model(spec, opts);
  REQUIRE_MESSAGE(m.has_value(), m.status().to_string());
  return std::move(m).value();
}

std::vector<float> score(const Model& model, const BatchView& view, Workspace& ws) {
  std::vector<float> out(size_t(view.batch_size) * model.spec().num_outputs());
  const Status st = model.forward(view, ws, out);
  REQUIRE_MESSAGE(st.is_ok(), st.to_string());
  return out;
}

// The golden specs are small instances of every type.
ModelSpec golden_spec(const char* c) {
  return load_model_spec(golden_path(c, ".model.json")).value();
}

// A batch with random bag lengths 0..3, so DIN and DIEN see empty behaviours.
Batch ragged_batch(const ModelSpec& spec, uint32_t n, uint64_t seed) {
  Batch b = random_batch(spec, n, seed);
  std::vector<int32_t> lengths(size_t(spec.num_tables()) * n);
  std::vector<int64_t> indices;
  uint64_t x = seed * 2654435761u + 1;
  for (int32_t t = 0; t < spec.num_tables(); ++t) {
    for (uint32_t r = 0; r < n; ++r) {
      x = x * 6364136223846793005ull + 1442695040888963407ull;
      const int32_t len = static_cast<int32_t>((x >> 33) % 4);
      lengths[size_t(t) * n + r] = len;
      for (int32_t k = 0; k < len; ++k) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        indices.push_back(static_cast<int64_t>((x >> 20) % uint64_t(spec.table_rows[t])));
      }
    }
  }
  b.sparse.indices = std::move(indices);
  b.sparse.offsets = Batch::offsets_from_lengths(lengths);
  REQUIRE(validate_batch(spec, b).is_ok());
  return b;
}

TEST_CASE("for every model type, sub-batches score exactly like the whole batch") {
  for (const char* c : kGoldenCases) {
    CAPTURE(c);
    const ModelSpec spec = golden_spec(c);
    const auto model = load_or_die(spec);
    const Batch batch = ragged_batch(spec, 29, 3);
    Workspace ws;
    const std::vector<float> whole = score(*model, view_of(batch), ws);
    const int k = spec.num_outputs();
    uint32_t begin = 0;
    for (uint32_t n : {1u, 7u, 21u}) {
      const std::vector<float> part = score(*model, view_of(batch).slice(begin, n), ws);
      for (uint32_t i = 0; i < n * k; ++i) {
        CHECK(part[i] == doctest::Approx(whole[begin * k + i]).epsilon(1e-5));
      }
      begin += n;
    }
    for (float s : whole) CHECK((std::isfinite(s) && s >= 0.0f && s <= 1.0f));
  }
}

TEST_CASE("for every model type, exported seeded weights reload to the same scores") {
  for (const char* c : kGoldenCases) {
    CAPTURE(c);
    const ModelSpec spec = golden_spec(c);
    const auto seeded = load_or_die(spec);
    const std::string path = "/tmp/recsched_zoo_" + std::to_string(getpid()) + ".safetensors";
    REQUIRE(write_safetensors(path, seeded->tensors()).is_ok());
    LoadOptions opts;
    opts.weights_path = path;
    const auto loaded = load_or_die(spec, opts);
    const Batch batch = ragged_batch(spec, 6, 9);
    Workspace ws;
    CHECK(score(*loaded, view_of(batch), ws) == score(*seeded, view_of(batch), ws));
    std::remove(path.c_str());
  }
}

TEST_CASE("every spec in models/ loads and scores (rows scaled down for the test)") {
  int specs = 0;
  for (const auto& entry : std::filesystem::directory_iterator(source_path("models"))) {
    if (entry.path().extension() != ".json") continue;
    CAPTURE(entry.path().string());
    json j = read_json(entry.path().string());
    j["row_scale"] = 0.001;  // same shapes, small tables: this is a test, not a benchmark
    Result<ModelSpec> spec = parse_model_spec(j);
    REQUIRE_MESSAGE(spec.has_value(), spec.status().to_string());
    const auto model = load_or_die(*spec);
    const Batch batch = random_batch(*spec, 3, 4);
    REQUIRE(validate_batch(*spec, batch).is_ok());
    Workspace ws;
    for (float s : score(*model, view_of(batch), ws)) {
      CHECK((std::isfinite(s) && s > 0.0f && s < 1.0f));
    }
    ++specs;
  }
  CHECK(specs == 8);  // DeepRecInfra's eight models
}

TEST_CASE("the zoo's softmax outputs sum to one per item") {
  for (const char* c : {"din", "dien"}) {
    const ModelSpec spec = golden_spec(c);
    REQUIRE(spec.num_outputs() == 2);
    const auto model = load_or_die(spec);
    Workspace ws;
    const std::vector<float> s = score(*model, view_of(ragged_batch(spec, 5, 1)), ws);
    for (size_t r = 0; r < 5; ++r) CHECK(s[2 * r] + s[2 * r + 1] == doctest::Approx(1.0f));
  }
}

TEST_CASE("models without dense features take an empty dense array") {
  const ModelSpec spec = golden_spec("dien");
  json in = read_json(golden_path("dien", ".inputs.json"));
  REQUIRE(in["dense"] == json::array());
  Result<Batch> b = batch_from_json(spec, in);
  REQUIRE(b.has_value());
  CHECK(b->batch_size == in["sparse_lengths"][0].size());
  in["dense"] = json::array({json::array({1.0})});
  CHECK_FALSE(batch_from_json(spec, in).has_value());
}

TEST_CASE("a behaviour sequence of the wrong length or a wrong table count is refused") {
  const ModelSpec spec = golden_spec("dien");  // 6 behaviour steps: 9 tables
  json in = read_json(golden_path("dien", ".inputs.json"));
  json shorter = in;
  shorter["sparse_lengths"].erase(shorter["sparse_lengths"].size() - 1);
  Result<Batch> b = batch_from_json(spec, shorter);
  REQUIRE_FALSE(b.has_value());
  CHECK(b.status().message().find("has 9 tables") != std::string::npos);

  json extra_step = in;
  extra_step["sparse_lengths"][3].push_back(1);  // one item too many in step 3
  b = batch_from_json(spec, extra_step);
  REQUIRE_FALSE(b.has_value());
  CHECK(b.status().message().find("sparse_lengths[3]") != std::string::npos);
}

}  // namespace
}  // namespace recsched::engine
