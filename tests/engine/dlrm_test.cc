#include "engine/dlrm.h"

#include <doctest/doctest.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "engine/inputs.h"
#include "engine/model.h"
#include "test_util.h"

namespace recsched::engine {
namespace {

using nlohmann::json;
using namespace testing;

std::vector<float> score(const Model& model, const Batch& batch) {
  Workspace ws;
  std::vector<float> out(size_t(batch.batch_size) * model.spec().num_outputs());
  Status st = model.forward(view_of(batch), ws, out);
  REQUIRE_MESSAGE(st.is_ok(), st.to_string());
  return out;
}

std::unique_ptr<Model> load_or_die(const ModelSpec& spec, const LoadOptions& opts = {}) {
  auto m = load_model(spec, opts);
  REQUIRE_MESSAGE(m.has_value(), m.status().to_string());
  return std::move(m).value();
}

ModelSpec small_spec(Interaction interaction = Interaction::kDot) {
  json j = json::parse(R"({"name": "small", "type": "dlrm", "dense_features": 6,
      "bottom_mlp": [16, 8], "top_mlp": [12, 2], "embedding_dim": 8,
      "tables": [50, 20, 70], "lookups_per_table": 4, "seed": 9})");
  j["interaction"] = interaction == Interaction::kDot ? "dot" : "cat";
  return parse_model_spec(j).value();
}

std::string temp_path(const std::string& name) {
  return "/tmp/recsched_dlrm_" + std::to_string(getpid()) + "_" + name;
}

TEST_CASE("scoring a batch in sub-batches gives the scores of the whole batch") {
  for (Interaction inter : {Interaction::kDot, Interaction::kCat}) {
    const ModelSpec spec = small_spec(inter);
    const auto model = load_or_die(spec);
    const Batch batch = random_batch(spec, 37, 5);
    const std::vector<float> whole = score(*model, batch);
    const BatchView all = view_of(batch);
    Workspace ws;  // one workspace reused across sizes, as a worker does
    uint32_t begin = 0;
    for (uint32_t n : {1u, 3u, 16u, 17u}) {
      std::vector<float> part(n * 2);
      REQUIRE(model->forward(all.slice(begin, n), ws, part).is_ok());
      for (uint32_t i = 0; i < n * 2; ++i) {
        CHECK(part[i] == doctest::Approx(whole[begin * 2 + i]).epsilon(1e-6));
      }
      begin += n;
    }
    CHECK(begin == 37);
  }
}

TEST_CASE("seeded weights are deterministic and depend on the seed") {
  ModelSpec spec = small_spec();
  const Batch batch = random_batch(spec, 8, 1);
  const std::vector<float> a = score(*load_or_die(spec), batch);
  const std::vector<float> b = score(*load_or_die(spec), batch);
  CHECK(a == b);
  spec.seed += 1;
  const std::vector<float> reseeded = score(*load_or_die(spec), batch);
  CHECK(reseeded != a);
  for (float s : a) CHECK((s > 0.0f && s < 1.0f));
  for (float s : reseeded) CHECK((s > 0.0f && s < 1.0f));  // different, and not NaN
}

TEST_CASE("exported weights load back to the same scores") {
  const ModelSpec spec = small_spec(Interaction::kCat);
  const auto seeded = load_or_die(spec);
  const std::string path = temp_path("export.safetensors");
  REQUIRE(write_safetensors(path, seeded->tensors()).is_ok());
  LoadOptions opts;
  opts.weights_path = path;
  const Batch batch = random_batch(spec, 5, 2);
  CHECK(score(*load_or_die(spec, opts), batch) == score(*seeded, batch));
  std::remove(path.c_str());
}

TEST_CASE("a weights file with a missing, extra or mis-shaped tensor is refused by name") {
  const ModelSpec spec = small_spec();
  const auto seeded = load_or_die(spec);
  const std::vector<TensorToWrite> good = seeded->tensors();
  const std::string path = temp_path("bad.safetensors");
  auto load_with = [&](const std::vector<TensorToWrite>& tensors) {
    REQUIRE(write_safetensors(path, tensors).is_ok());
    LoadOptions opts;
    opts.weights_path = path;
    return load_model(spec, opts).status();
  };

  std::vector<TensorToWrite> missing;
  for (const auto& t : good) {
    if (t.name != "emb_l.1.weight") missing.push_back(t);
  }
  Status st = load_with(missing);
  CHECK(st.code() == StatusCode::kInvalidArgument);
  CHECK(st.message().find("missing tensor 'emb_l.1.weight'") != std::string::npos);

  std::vector<TensorToWrite> extra = good;
  extra.push_back({"top_l.9.weight", {1}, good.back().data.first(1)});
  st = load_with(extra);
  CHECK(st.message().find("unexpected tensor 'top_l.9.weight'") != std::string::npos);

  std::vector<TensorToWrite> misshaped = good;
  for (auto& t : misshaped) {
    if (t.name == "bot_l.2.weight") t.shape = {t.shape[1], t.shape[0]};
  }
  st = load_with(misshaped);
  CHECK(st.message().find("tensor 'bot_l.2.weight' has shape [16, 8], expected [8, 16]") !=
        std::string::npos);
  std::remove(path.c_str());

  LoadOptions opts;
  opts.weights_path = "/nonexistent/w.safetensors";
  CHECK(load_model(spec, opts).status().code() == StatusCode::kNotFound);
}

TEST_CASE("forward refuses an out-of-range id even when validation was skipped") {
  const ModelSpec spec = small_spec();
  const auto model = load_or_die(spec);
  Batch batch = random_batch(spec, 4, 3);
  batch.sparse.indices.back() = 70;  // table 2 has 70 rows
  Workspace ws;
  std::vector<float> out(8);
  Status st = model->forward(view_of(batch), ws, out);
  CHECK(st.code() == StatusCode::kInvalidArgument);
  CHECK(st.message().find("table 2") != std::string::npos);
  std::vector<float> short_out(3);
  CHECK(model->forward(view_of(random_batch(spec, 4, 3)), ws, short_out).code() ==
        StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace recsched::engine
