// The CUDA runner against the CPU engine and PyTorch's golden outputs. Needs a GPU:
// without one, main() prints why and exits 77, which ctest reports as skipped.
#define DOCTEST_CONFIG_IMPLEMENT
#include "engine/cuda/cuda_model.h"

#include <doctest/doctest.h>

#include <cmath>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "../test_util.h"
#include "engine/inputs.h"

namespace recsched::engine::cuda {
namespace {

using nlohmann::json;
using namespace engine::testing;

std::unique_ptr<Model> load_or_die(const ModelSpec& spec, const LoadOptions& opts, bool gpu) {
  auto m = gpu ? load_cuda_model(spec, opts, CudaOptions{}) : load_model(spec, opts);
  REQUIRE_MESSAGE(m.has_value(), m.status().to_string());
  return std::move(m).value();
}

std::vector<float> score(const Model& model, const BatchView& view) {
  Workspace ws;
  std::vector<float> out(size_t(view.batch_size) * model.spec().num_outputs());
  const Status st = model.forward(view, ws, out);
  REQUIRE_MESSAGE(st.is_ok(), st.to_string());
  return out;
}

// +infinity on a NaN or an infinite score (test_util.h), so a NaN fails the tolerance.
double worst_relative(const std::vector<float>& got, const std::vector<float>& want) {
  REQUIRE(got.size() == want.size());
  return worst_relative_error(got, want);
}

// cuBLAS sums in another order than oneDNN and the GPU contracts multiply-adds, so
// GPU and CPU agree to rounding, not bit for bit: 1e-4 relative on the scores.
constexpr double kTolerance = 1e-4;

TEST_CASE("the CUDA runner matches PyTorch's golden outputs for every model type") {
  for (const char* c : kGoldenCases) {
    CAPTURE(c);
    const ModelSpec spec = load_model_spec(golden_path(c, ".model.json")).value();
    const Batch batch = batch_from_json(spec, read_json(golden_path(c, ".inputs.json"))).value();
    LoadOptions opts;
    opts.weights_path = golden_path(c, ".safetensors");
    const auto gpu = load_or_die(spec, opts, true);
    const json expected = read_json(golden_path(c, ".expected.json"))["scores"];
    std::vector<float> want;
    for (const json& row : expected) {
      for (const json& v : row) want.push_back(v.get<float>());
    }
    CHECK(worst_relative(score(*gpu, view_of(batch)), want) <= kTolerance);
  }
}

TEST_CASE("the CUDA runner matches the CPU engine on large random batches and on sub-batches") {
  for (const char* c : kGoldenCases) {
    CAPTURE(c);
    const ModelSpec spec = load_model_spec(golden_path(c, ".model.json")).value();
    const auto cpu = load_or_die(spec, {}, false);
    const auto gpu = load_or_die(spec, {}, true);
    const Batch batch = random_batch(spec, 777, 5);
    const std::vector<float> want = score(*cpu, view_of(batch));
    CHECK(worst_relative(score(*gpu, view_of(batch)), want) <= kTolerance);
    const int k = spec.num_outputs();
    const std::vector<float> part = score(*gpu, view_of(batch).slice(100, 300));
    CHECK(worst_relative(part, std::vector<float>(want.begin() + 100 * k,
                                                  want.begin() + 400 * k)) <= kTolerance);
  }
}

TEST_CASE("the CUDA runner refuses an out-of-range id and keeps serving") {
  const ModelSpec spec = load_model_spec(golden_path("dot", ".model.json")).value();
  const auto gpu = load_or_die(spec, {}, true);
  Batch bad = random_batch(spec, 4, 3);
  bad.sparse.indices.back() = spec.table_rows.back();
  Workspace ws;
  std::vector<float> out(4);
  // Twice: the first pass runs kernel by kernel, the second replays its CUDA graph,
  // which must raise the error flag as well.
  for (int pass = 0; pass < 2; ++pass) {
    CAPTURE(pass);
    CHECK(gpu->forward(view_of(bad), ws, out).code() == StatusCode::kInvalidArgument);
  }
  CHECK(score(*gpu, view_of(random_batch(spec, 4, 3))).size() == 4);
}

// The embedding-bag kernel's named corner cases, seen through a model: the GPU must
// give what the CPU gives, or refuse what the CPU refuses.
TEST_CASE("embedding-bag corner cases on the GPU: empty bags, no ids, bad offsets") {
  const ModelSpec spec = load_model_spec(golden_path("cat", ".model.json")).value();
  const auto cpu = load_or_die(spec, {}, false);
  const auto gpu = load_or_die(spec, {}, true);
  const uint32_t n = 5;
  Batch b = random_batch(spec, n, 4);
  SUBCASE("EMPTY_INDICES: every bag of every table empty") {
    b.sparse.indices.clear();
    b.sparse.offsets.assign(size_t(spec.num_tables()) * n + 1, 0);
    CHECK(worst_relative(score(*gpu, view_of(b)), score(*cpu, view_of(b))) <= kTolerance);
  }
  SUBCASE("EMPTY_BAG: some bags empty, the rest full") {
    std::vector<int32_t> lengths(size_t(spec.num_tables()) * n, 0);
    std::vector<int64_t> ids;
    for (int32_t t = 0; t < spec.num_tables(); ++t) {
      for (uint32_t r = 0; r < n; ++r) {
        const int32_t len = (r + t) % 3 == 0 ? 0 : 2;
        lengths[size_t(t) * n + r] = len;
        for (int32_t k = 0; k < len; ++k) ids.push_back((r * 7 + k) % spec.table_rows[t]);
      }
    }
    b.sparse.indices = ids;
    b.sparse.offsets = Batch::offsets_from_lengths(lengths);
    CHECK(worst_relative(score(*gpu, view_of(b)), score(*cpu, view_of(b))) <= kTolerance);
  }
  SUBCASE("OFFSETS_MISMATCH: decreasing offsets are refused, as on the CPU") {
    std::swap(b.sparse.offsets[1], b.sparse.offsets[2]);
    Workspace ws;
    std::vector<float> out(n);
    CHECK(cpu->forward(view_of(b), ws, out).code() == StatusCode::kInvalidArgument);
    CHECK(gpu->forward(view_of(b), ws, out).code() == StatusCode::kInvalidArgument);
  }
  SUBCASE("OUT_OF_BOUND_INDICES: a negative id is refused") {
    b.sparse.indices[0] = -1;
    Workspace ws;
    std::vector<float> out(n);
    CHECK(gpu->forward(view_of(b), ws, out).code() == StatusCode::kInvalidArgument);
  }
}

// A zoo spec from models/ with its tables scaled to 1 % of their rows (fits any GPU fast).
constexpr const char* kZoo[] = {"rmc1", "rmc2", "rmc3", "ncf", "wnd", "mtwnd", "din", "dien"};
ModelSpec small_zoo_spec(const char* name) {
  json j = read_json(source_path(std::string("models/") + name + ".json"));
  j["row_scale"] = 0.01;
  return parse_model_spec(j).value();
}

TEST_CASE("every zoo spec in models/ loads on the GPU and matches the CPU") {
  for (const char* name : kZoo) {
    CAPTURE(name);
    const ModelSpec spec = small_zoo_spec(name);
    const auto cpu = load_or_die(spec, {}, false);
    const auto gpu = load_or_die(spec, {}, true);
    const Batch batch = random_batch(spec, 64, 8);
    CHECK(worst_relative(score(*gpu, view_of(batch)), score(*cpu, view_of(batch))) <= kTolerance);
  }
}

TEST_CASE("every table in one launch scores bit for bit as a launch per table") {
  // The one-launch pooling (CudaOptions::table_batched, the default since 2026-12-06) sums
  // each bag in the same order as the per-table kernel verified on the H200: the scores
  // must be identical, not merely close, for every model type.
  for (const char* name : kZoo) {
    CAPTURE(name);
    const ModelSpec spec = small_zoo_spec(name);
    CudaOptions one, per_table;
    per_table.table_batched = false;
    auto a = load_cuda_model(spec, {}, one);
    auto b = load_cuda_model(spec, {}, per_table);
    REQUIRE_MESSAGE(a.has_value(), a.status().to_string());
    REQUIRE_MESSAGE(b.has_value(), b.status().to_string());
    for (uint32_t n : {1u, 7u, 164u}) {
      CAPTURE(n);
      const Batch batch = random_batch(spec, n, n + 3);
      CHECK(score(**a, view_of(batch)) == score(**b, view_of(batch)));
    }
  }
}

TEST_CASE("a pass replayed from its CUDA graph reads each query afresh and scores as run directly") {
  // CudaOptions::graph_max_items (256 by default): the first pass of a row bucket runs
  // kernel by kernel and is captured, later ones replay the graph. A replay must read the
  // new query (not the captured one), give bit for bit what the direct run of the same
  // padded size gave, and stay within rounding of a model without graphs (padding to the
  // bucket may let cuBLAS pick another kernel for the larger row count).
  for (const char* name : kZoo) {
    CAPTURE(name);
    const ModelSpec spec = small_zoo_spec(name);
    CudaOptions plain;
    plain.graph_max_items = 0;
    auto graphed = load_cuda_model(spec, {}, CudaOptions{});
    auto direct = load_cuda_model(spec, {}, plain);
    REQUIRE_MESSAGE(graphed.has_value(), graphed.status().to_string());
    REQUIRE_MESSAGE(direct.has_value(), direct.status().to_string());
    for (uint32_t n : {1u, 5u, 7u, 164u, 300u}) {  // 300: above the limit, no graph
      CAPTURE(n);
      const Batch a = random_batch(spec, n, n + 11);
      const Batch b = random_batch(spec, n, n + 12);
      const std::vector<float> a_first = score(**graphed, view_of(a));  // direct, captured
      const std::vector<float> b_replay = score(**graphed, view_of(b));
      const std::vector<float> a_replay = score(**graphed, view_of(a));
      CHECK(a_replay == a_first);
      CHECK(b_replay != a_first);
      CHECK(worst_relative(a_first, score(**direct, view_of(a))) <= kTolerance);
      CHECK(worst_relative(b_replay, score(**direct, view_of(b))) <= kTolerance);
    }
    const std::string kernels = (*graphed)->kernels();
    CAPTURE(kernels);
    CHECK(kernels.find("graphs up to 256 rows") != std::string::npos);
  }
}

}  // namespace
}  // namespace recsched::engine::cuda

int main(int argc, char** argv) {
  std::string why;
  const auto devices = recsched::engine::cuda::list_devices(&why);
  if (devices.empty()) {
    std::printf("cuda_model_test: skipped, %s\n", why.c_str());
    return 77;  // ctest's SKIP_RETURN_CODE
  }
  std::printf("cuda_model_test: on %s (%s)\n", devices[0].name.c_str(),
              devices[0].pci_bus_id.c_str());
  doctest::Context context(argc, argv);
  return context.run();
}
