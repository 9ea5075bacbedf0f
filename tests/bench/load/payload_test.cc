// Payloads decode, with recschedd's own KServe parser, into valid batches for the model
// spec they were made for: binary tensors and JSON, every model type of the golden zoo.
#include "bench/load/payload.h"
#include "bench/load/shm.h"

#include <doctest/doctest.h>

#include <algorithm>

#include <cstring>
#include <nlohmann/json.hpp>

#include "daemon/kserve.h"
#include "engine/model_spec.h"

namespace recsched::load {
namespace {

using nlohmann::json;

engine::ModelSpec golden_spec(const std::string& name) {
  auto spec = engine::load_model_spec(std::string(RECSCHED_SOURCE_DIR) + "/tests/fixtures/golden/" +
                                      name + ".model.json");
  REQUIRE_MESSAGE(spec.has_value(), spec.status().to_string());
  return *spec;
}

// What the daemon answers for this spec on /v1/models and /v2/models/{m}.
ModelInfo info_for(const engine::ModelSpec& spec) {
  const json v1 = {
      {"name", spec.name}, {"table_rows", spec.table_rows}, {"sla_ms", 7.5}, {"spec", "x"}};
  return model_info_from_json(v1, daemon::model_metadata(spec), spec.lookups_per_table);
}

std::string flatten(const EncodedQuery& q) {
  std::string body = q.json;
  for (std::string_view s : q.sections) body.append(s);
  return body;
}

TEST_CASE("binary and JSON payloads parse into valid batches of the requested size") {
  const char* kNames[] = {"dot", "cat",  "ncf",      "wnd",     "mtwnd",
                          "din", "dien", "multiout", "notables"};
  std::vector<engine::ModelSpec> specs;
  std::vector<ModelInfo> infos;
  for (const char* n : kNames) {
    specs.push_back(golden_spec(n));
    infos.push_back(info_for(specs.back()));
    CHECK(infos.back().dense == specs.back().dense_features);
    CHECK(infos.back().table_rows.size() == specs.back().table_rows.size());
    CHECK(infos.back().outputs == specs.back().num_outputs());
    CHECK(infos.back().sla_ms == 7.5);
  }
  const SizeDistribution sizes = SizeDistribution::parse("lognormal:3,0.5,64");
  daemon::InferLimits limits;
  for (PayloadFormat format : {PayloadFormat::kBinary, PayloadFormat::kJson}) {
    PoolOptions o;
    o.format = format;
    o.max_items = 64;
    o.json_pool = 4;
    o.per_model_sla = true;
    o.priority = format == PayloadFormat::kBinary ? 2 : -1;
    const PayloadPool pool(infos, sizes, o);
    CHECK(pool.bytes() > 0);
    std::mt19937_64 rng(9);
    for (uint32_t m = 0; m < infos.size(); ++m) {
      for (int k = 0; k < 12; ++k) {
        CAPTURE(infos[m].name);
        CAPTURE(k);
        const uint32_t n = k == 0 ? 64 : k == 1 ? 1 : sizes.draw(rng);
        const EncodedQuery q = pool.encode(m, n, rng());
        const std::string body = flatten(q);
        CHECK(body.size() == q.body_bytes);
        const auto header =
            q.header_length > 0 ? std::optional<size_t>(q.header_length) : std::nullopt;
        CHECK((format == PayloadFormat::kBinary) == header.has_value());
        auto parsed = daemon::parse_infer_request(body, header, specs[m], limits);
        REQUIRE_MESSAGE(parsed.has_value(), parsed.status().to_string());
        CHECK(parsed->batch.batch_size == q.items);
        if (format == PayloadFormat::kBinary) {
          CHECK(q.items == n);
          CHECK(parsed->binary_output);
          // The header is padded so recschedd reads the INT64 ids where they lie.
          if (specs[m].num_tables() > 0) {
            auto owned =
                daemon::parse_infer_request_in_place(std::string(body), header, specs[m], limits);
            REQUIRE(owned.has_value());
            CHECK(owned->wire != nullptr);
            const BatchView v = owned->view();
            CHECK(ids_of(v) == ids_of(parsed->view()));
          }
        }
        CHECK(parsed->sla_ms.value_or(0) == 7.5);
        CHECK(parsed->priority == *o.priority);
        // Every bag has the spec's lookups.
        const auto& off = parsed->batch.sparse.offsets;
        for (size_t b = 1; b < off.size(); ++b)
          CHECK(off[b] - off[b - 1] == specs[m].lookups_per_table);
        for (float v : parsed->batch.dense) CHECK((v >= 0.0f && v < 1.0f));
      }
    }
  }
}

TEST_CASE("INT32 ids: the same queries in less bytes, decoded by recschedd to the same batch") {
  const engine::ModelSpec spec = golden_spec("dot");
  const std::vector<ModelInfo> infos = {info_for(spec)};
  const SizeDistribution sizes = SizeDistribution::parse("fixed:16");
  PoolOptions wide_o, narrow_o;
  wide_o.max_items = narrow_o.max_items = 16;
  narrow_o.int32_ids = true;
  const PayloadPool wide(infos, sizes, wide_o), narrow(infos, sizes, narrow_o);
  for (uint64_t pick : {0ull, 1ull, 977ull}) {
    const EncodedQuery a = wide.encode(0, 16, pick), b = narrow.encode(0, 16, pick);
    const uint64_t ids = 16ull * spec.num_tables() * spec.lookups_per_table;
    CHECK(a.body_bytes - b.body_bytes == 4 * ids + (a.json.size() - b.json.size()));
    CHECK(b.json.find("\"INT32\",\"shape\":[" + std::to_string(ids) + "]") != std::string::npos);
    auto pa = daemon::parse_infer_request(flatten(a), a.header_length, spec, {});
    auto pb = daemon::parse_infer_request(flatten(b), b.header_length, spec, {});
    REQUIRE_MESSAGE(pa.has_value(), pa.status().to_string());
    REQUIRE_MESSAGE(pb.has_value(), pb.status().to_string());
    const BatchView va = pa->view(), vb = pb->view();
    CHECK(ids_of(va) == ids_of(vb));
    CHECK_FALSE(ids_of(vb).empty());
    CHECK(pa->batch.sparse.offsets == pb->batch.sparse.offsets);
    CHECK(pa->batch.dense == pb->batch.dense);
  }
}

TEST_CASE("binary payloads send the pool's bytes without copying, windows vary with pick") {
  const engine::ModelSpec spec = golden_spec("dot");
  PoolOptions o;
  o.max_items = 32;
  const PayloadPool pool({info_for(spec)}, SizeDistribution::parse("fixed:32"), o);
  const EncodedQuery a = pool.encode(0, 8, 1), b = pool.encode(0, 8, uint64_t{1} << 20);
  REQUIRE(a.sections.size() == 2 + spec.table_rows.size());  // dense, lengths, one per table
  CHECK(a.sections[0].size() == 8 * 5 * 4);
  CHECK(std::memcmp(a.sections[0].data(), b.sections[0].data(), a.sections[0].size()) != 0);
}

TEST_CASE("model info is checked against the metadata") {
  const engine::ModelSpec spec = golden_spec("dot");
  json v1 = {{"name", spec.name}, {"table_rows", {1, 2}}, {"sla_ms", 5}};
  CHECK_THROWS_AS(model_info_from_json(v1, daemon::model_metadata(spec), 1), std::invalid_argument);
  CHECK_THROWS_AS(model_info_from_json(json::object(), daemon::model_metadata(spec), 1),
                  std::invalid_argument);
  v1["table_rows"] = spec.table_rows;
  CHECK_THROWS_AS(model_info_from_json(v1, daemon::model_metadata(spec), 0), std::invalid_argument);
  CHECK(read_spec_lookups(std::string(RECSCHED_SOURCE_DIR) +
                          "/tests/fixtures/golden/dot.model.json") == 3);
  CHECK_FALSE(read_spec_lookups("/nonexistent.json").has_value());
}

}  // namespace
}  // namespace recsched::load

namespace recsched::load {
namespace {

// The region's bytes, read as recschedd reads a registered region.
class RegionReader final : public daemon::SharedMemoryReader {
 public:
  RegionReader(std::string name, const std::string& bytes) : name_(std::move(name)), bytes_(bytes) {}
  Status read(std::string_view region, uint64_t offset, std::span<std::byte> into) const override {
    if (region != name_) return invalid_argument("wrong region");
    if (offset + into.size() > bytes_.size()) return invalid_argument("past the end");
    std::memcpy(into.data(), bytes_.data() + offset, into.size());
    return Status::ok();
  }

 private:
  std::string name_;
  const std::string& bytes_;
};

TEST_CASE("a query through shared memory decodes to the batch its binary body does") {
  for (const char* name : {"dot", "ncf", "din", "notables"}) {
    CAPTURE(name);
    const engine::ModelSpec spec = golden_spec(name);
    const PayloadPool pool({info_for(spec)}, SizeDistribution::parse("fixed:16"), [] {
      PoolOptions o;
      o.max_items = 16;
      return o;
    }());
    const EncodedQuery q = pool.encode(0, 9, 3);
    const size_t need = shared_memory_bytes(q);
    std::string region(need + 5, '\0');
    // At an odd offset: each input is still placed 8-byte aligned within the region.
    const std::string body = shared_memory_body(q, "r", region.data(), 5, region.size());
    CHECK(body.find("binary_data_size") == std::string::npos);
    const RegionReader reader("r", region);
    auto via_shm = daemon::parse_infer_request(body, std::nullopt, spec, {}, &reader);
    REQUIRE_MESSAGE(via_shm.has_value(), via_shm.status().to_string());
    auto via_body =
        daemon::parse_infer_request(flatten(q), q.header_length, spec, {});
    REQUIRE(via_body.has_value());
    const BatchView a = via_shm->view(), b = via_body->view();
    CHECK(a.batch_size == 9);
    CHECK(ids_of(a) == ids_of(b));
    CHECK(ids_of(a).empty() == (spec.num_tables() == 0));
    CHECK(std::vector<int64_t>(a.offsets.begin(), a.offsets.end()) ==
          std::vector<int64_t>(b.offsets.begin(), b.offsets.end()));
    CHECK(std::vector<float>(a.dense.begin(), a.dense.end()) ==
          std::vector<float>(b.dense.begin(), b.dense.end()));
    // A region too small for the inputs is refused before anything is written past it.
    size_t data = 0;
    for (std::string_view section : q.sections) data += section.size();
    CHECK(need >= data);
    CHECK_THROWS_AS(shared_memory_body(q, "r", region.data(), 5, 5 + data - 1), std::length_error);
  }
}

}  // namespace
}  // namespace recsched::load
