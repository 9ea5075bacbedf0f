// Properties every model type must have, checked on each: sub-batches score like the
// whole batch, exported weights reload to the same scores, the zoo specs load and score,
// and bad inputs are refused.
#include "engine/zoo.h"

#include <doctest/doctest.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <iterator>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "engine/inputs.h"
#include "engine/layers.h"
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

TEST_CASE("for every model type, 32-bit ids score bit for bit like 64-bit ids, whole and in "
          "sub-batches") {
  for (const char* c : kGoldenCases) {
    CAPTURE(c);
    const ModelSpec spec = golden_spec(c);
    const auto model = load_or_die(spec);
    const Batch batch = ragged_batch(spec, 29, 5);
    const std::vector<int32_t> narrow(batch.sparse.indices.begin(), batch.sparse.indices.end());
    BatchView narrow_view = view_of(batch);
    narrow_view.indices = {};
    narrow_view.narrow_indices = narrow;
    REQUIRE(validate_batch(spec, narrow_view).is_ok());
    CHECK(ids_of(narrow_view) == batch.sparse.indices);
    Workspace ws;
    CHECK(score(*model, narrow_view, ws) == score(*model, view_of(batch), ws));
    CHECK(score(*model, narrow_view.slice(7, 13), ws) ==
          score(*model, view_of(batch).slice(7, 13), ws));
    if (spec.num_tables() > 0) {
      // An id outside its table, 32-bit, is refused as a 64-bit one is.
      std::vector<int32_t> bad = narrow;
      bad.back() = -1;
      narrow_view.narrow_indices = bad;
      CHECK(validate_batch(spec, narrow_view).message().find("= -1 is outside table") !=
            std::string::npos);
      std::vector<float> out(size_t(narrow_view.batch_size) * spec.num_outputs());
      CHECK_FALSE(model->forward(narrow_view, ws, out).is_ok());
    }
  }
}

// Cooperative preemption (engine/model.h, YieldPoint): a worker runs another model's pass
// at a yield point, on its own workspace, and the interrupted pass resumes.
class RunOtherPass final : public YieldPoint {
 public:
  RunOtherPass(const Model& model, const BatchView& batch) : model_(model), batch_(batch) {
    ws_.set_yield(this);
  }
  void at_yield_point() override {
    ++points;
    if (busy_) return;  // the nested pass's own points: one level here
    busy_ = true;
    nested.push_back(score(model_, batch_, ws_));
    busy_ = false;
  }
  int points = 0;
  std::vector<std::vector<float>> nested;  // every interrupting pass's scores

 private:
  const Model& model_;
  BatchView batch_;
  Workspace ws_;
  bool busy_ = false;
};

TEST_CASE("for every model type, a pass interrupted at every yield point scores bit for bit "
          "like an uninterrupted one, and so does the pass run in its place") {
  constexpr size_t kCases = std::size(kGoldenCases);
  for (size_t i = 0; i < kCases; ++i) {
    const std::string c = kGoldenCases[i];
    const std::string other = kGoldenCases[(i + kCases / 2) % kCases];  // another model type
    CAPTURE(c);
    CAPTURE(other);
    const ModelSpec spec = golden_spec(c.c_str());
    const ModelSpec other_spec = golden_spec(other.c_str());
    const auto model = load_or_die(spec);
    const auto urgent = load_or_die(other_spec);
    const Batch batch = ragged_batch(spec, 100, 5);
    const Batch urgent_batch = ragged_batch(other_spec, 11, 6);

    // The smallest blocks: every GEMM and pooling of more than 32 rows is cut, and may be
    // interrupted, between blocks of 32 (layers.h, YieldBlocks).
    set_yield_blocks({.flops = 1, .lookups = 1, .min_rows = 32});
    // Alone: the same blocks (a hook that never interrupts), so only the interruptions differ.
    struct Pass final : YieldPoint {
      void at_yield_point() override {}
    } pass;
    Workspace plain;
    plain.set_yield(&pass);
    const std::vector<float> alone = score(*model, view_of(batch), plain);
    const std::vector<float> urgent_alone = score(*urgent, view_of(urgent_batch), plain);

    // The interrupting pass also offers points (to the same hook, which then declines):
    // the nesting a worker does one level deeper.
    RunOtherPass hook(*urgent, view_of(urgent_batch));
    Workspace ws;
    ws.set_yield(&hook);
    const std::vector<float> interrupted = score(*model, view_of(batch), ws);
    set_yield_blocks({});

    CHECK(hook.nested.size() >= 1);
    CHECK(hook.points > static_cast<int>(hook.nested.size()));  // the nested passes' points
    CHECK(std::memcmp(interrupted.data(), alone.data(), alone.size() * sizeof(float)) == 0);
    for (const std::vector<float>& s : hook.nested) {
      CHECK(std::memcmp(s.data(), urgent_alone.data(), s.size() * sizeof(float)) == 0);
    }
    // Cut into blocks, a pass scores as whole up to the GEMM kernels' rounding (a row
    // block's tail may run another kernel): the tolerance of the sub-batch test above.
    Workspace whole_ws;
    const std::vector<float> whole = score(*model, view_of(batch), whole_ws);
    for (size_t k = 0; k < whole.size(); ++k) {
      CHECK(alone[k] == doctest::Approx(whole[k]).epsilon(1e-5));
    }
  }
}

TEST_CASE("the zoo's large models offer a yield point at least once per table and layer") {
  // What bounds the wait of a preempting query: steps, not whole passes.
  for (const std::string c : {"dot", "din", "dien", "mtwnd"}) {
    CAPTURE(c);
    const ModelSpec spec = golden_spec(c.c_str());
    const auto model = load_or_die(spec);
    struct Count final : YieldPoint {
      void at_yield_point() override { ++n; }
      int n = 0;
    } count;
    Workspace ws;
    ws.set_yield(&count);
    const Batch batch = ragged_batch(spec, 100, 2);
    score(*model, view_of(batch), ws);
    size_t layers = spec.top_mlp.size() + spec.bottom_mlp.size() + spec.mlp.size() +
                    spec.attention_mlp.size();
    // DIEN: a point per recurrent step of each of its two recurrences as well.
    if (spec.type == ModelType::kDien) layers += 2 * size_t(spec.behaviour_tables);
    CHECK(count.n >= spec.num_tables() + static_cast<int>(layers) - 2);
    // Cut into blocks of 32 rows, the 100 items' GEMMs and pools offer more points.
    const int whole_steps = count.n;
    count.n = 0;
    set_yield_blocks({.flops = 1, .lookups = 1, .min_rows = 32});
    score(*model, view_of(batch), ws);
    set_yield_blocks({});
    CHECK(count.n > whole_steps);
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
