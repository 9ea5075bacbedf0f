#include "engine/inputs.h"

#include <doctest/doctest.h>

#include <nlohmann/json.hpp>

namespace recsched::engine {
namespace {

using nlohmann::json;

ModelSpec spec() {
  return parse_model_spec(json::parse(R"({"name": "m", "type": "dlrm", "dense_features": 2,
      "bottom_mlp": [4], "top_mlp": [1], "embedding_dim": 4, "tables": [10, 5],
      "lookups_per_table": 3})"))
      .value();
}

json good_inputs() {
  return json::parse(R"({"dense": [[0.5, 1], [2, 3], [4, 5]],
      "sparse_lengths": [[1, 0, 2], [2, 1, 0]], "sparse_indices": [9, 0, 1, 4, 4, 0]})");
}

TEST_CASE("batch_from_json reads items, dense rows and table-major bags") {
  Result<Batch> b = batch_from_json(spec(), good_inputs());
  REQUIRE_MESSAGE(b.has_value(), b.status().to_string());
  CHECK(b->batch_size == 3);
  CHECK(b->dense == std::vector<float>{0.5, 1, 2, 3, 4, 5});
  CHECK(b->sparse.offsets == std::vector<int64_t>{0, 1, 1, 3, 5, 6, 6});
  CHECK(batch_to_json(*b) == good_inputs());
}

TEST_CASE("bad inputs are refused with a message that says which") {
  struct Case {
    const char* name;
    void (*edit)(json&);
    const char* expect;
  };
  const Case cases[] = {
      {"unknown key", [](json& j) { j["extra"] = 1; }, "unknown key 'extra'"},
      {"missing dense", [](json& j) { j.erase("dense"); }, "'dense' must be an array"},
      {"no items", [](json& j) { j["dense"] = json::array(); }, "no rows"},
      {"short dense row", [](json& j) { j["dense"][1] = {1}; }, "dense[1] must hold 2 numbers"},
      {"dense string", [](json& j) { j["dense"][0][0] = "x"; }, "dense[0] holds a non-number"},
      {"table count", [](json& j) { j["sparse_lengths"].erase(1); }, "has 2 tables"},
      {"lengths per item",
       [](json& j) {
         j["sparse_lengths"][1] = {1, 1};
       },
       "sparse_lengths[1] must hold 3"},
      {"negative length", [](json& j) { j["sparse_lengths"][0][0] = -1; }, "sparse_lengths[0]"},
      {"lengths vs ids", [](json& j) { j["sparse_indices"].push_back(1); },
       "has 7 ids but sparse_lengths add up to 6"},
      {"id past table", [](json& j) { j["sparse_indices"][3] = 5; },
       "sparse_indices[3] = 5 is outside table 1 (5 rows)"},
      {"negative id", [](json& j) { j["sparse_indices"][0] = -2; }, "sparse_indices[0] = -2"},
      {"id not integer", [](json& j) { j["sparse_indices"][0] = 1.5; },
       "sparse_indices[0] is not an integer"},
  };
  for (const Case& c : cases) {
    CAPTURE(c.name);
    json j = good_inputs();
    c.edit(j);
    Result<Batch> b = batch_from_json(spec(), j);
    REQUIRE_FALSE(b.has_value());
    CHECK(b.status().code() == StatusCode::kInvalidArgument);
    CHECK_MESSAGE(b.status().message().find(c.expect) != std::string::npos, b.status().message());
  }
  CHECK_FALSE(batch_from_json(spec(), json::array()).has_value());
}

TEST_CASE("random_batch follows the spec's lookups and table sizes and is deterministic") {
  const ModelSpec s = spec();
  const Batch a = random_batch(s, 50, 11);
  CHECK(validate_batch(s, a).is_ok());
  CHECK(a.sparse.indices.size() == 2 * 50 * 3);
  CHECK(a.sparse.offsets[1] == 3);
  const Batch b = random_batch(s, 50, 11);
  CHECK(a.sparse.indices == b.sparse.indices);
  CHECK(a.dense == b.dense);
}

TEST_CASE("validate_batch refuses an empty batch and mismatched shapes") {
  const ModelSpec s = spec();
  Batch b = random_batch(s, 2, 1);
  b.batch_size = 0;
  CHECK(validate_batch(s, b).message().find("at least one item") != std::string::npos);
  b = random_batch(s, 2, 1);
  b.num_dense = 3;
  CHECK(validate_batch(s, b).message().find("takes 2") != std::string::npos);
  b = random_batch(s, 2, 1);
  b.sparse.offsets.pop_back();
  CHECK(validate_batch(s, b).code() == StatusCode::kInvalidArgument);
}

TEST_CASE("validate_layout leaves the ids to check_table_ids, which names the first bad one") {
  const ModelSpec s = spec();
  Batch b = batch_from_json(s, good_inputs()).value();
  b.sparse.indices[3] = 5;   // table 1 has 5 rows
  b.sparse.indices[5] = -1;  // and a later, negative one
  CHECK(validate_layout(s, view_of(b)).is_ok());
  CHECK(validate_batch(s, b).message() == "sparse_indices[3] = 5 is outside table 1 (5 rows)");
  // Table 1's ids are indices 3..5; checked from index 3, each named by its batch index.
  const std::span<const int64_t> t1(b.sparse.indices.data() + 3, 3);
  CHECK(check_table_ids(s, 1, 3, t1).message() == "sparse_indices[3] = 5 is outside table 1 (5 rows)");
  CHECK(check_table_ids(s, 1, 5, t1.subspan(2)).message() ==
        "sparse_indices[5] = -1 is outside table 1 (5 rows)");
  CHECK(check_table_ids(s, 0, 0, std::span<const int64_t>(b.sparse.indices.data(), 3)).is_ok());
  // The layout's own errors stay validate_layout's.
  b.sparse.offsets[2] = 0;  // a bag of table 0 ends before it starts
  CHECK(validate_layout(s, view_of(b)).message().find("negative length") != std::string::npos);
}

}  // namespace
}  // namespace recsched::engine
