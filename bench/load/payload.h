// Query payloads for recsched-load: each model's input shapes (from the daemon's metadata),
// and a pool of random features generated before the run, so that making a request costs
// a few pointers, not a pass of a random generator. Binary tensors (KServe v2's binary data
// extension, as Triton's clients send them) by default, JSON on request. Depends on
// nlohmann/json.
#pragma once

#include <cstdint>
#include <nlohmann/json_fwd.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "bench/load/workload.h"

namespace recsched::load {

/// What the generator needs to know about one served model.
struct ModelInfo {
  std::string name;
  int32_t dense = 0;                ///< D of dense [N, D]; 0 = the model takes no dense input
  std::vector<int64_t> table_rows;  ///< T tables; ids are drawn uniformly in [0, rows)
  int32_t lookups = 1;              ///< ids per bag (the spec's lookups_per_table)
  int32_t outputs = 1;              ///< K of scores [N, K]
  double sla_ms = 0;                ///< the daemon's target for this model
  double sla_percentile = 95;       ///< the percentile the target bounds
  std::string spec_path;            ///< where the daemon read its spec ("" if unknown)
};

/// Builds a ModelInfo from one entry of GET /v1/models ({"name", "table_rows", "sla_ms",
/// "spec", ...}) and GET /v2/models/{m} (inputs' and outputs' shapes). `lookups` is the
/// spec's lookups_per_table (the daemon's routes do not carry it; see read_spec_lookups).
/// Throws std::invalid_argument if the two disagree or a field is missing.
ModelInfo model_info_from_json(const nlohmann::json& v1_model, const nlohmann::json& v2_metadata,
                               int32_t lookups);

/// lookups_per_table from a spec file, nullopt if the file cannot be read or has no such key
/// (the engine's default is then 1).
std::optional<int32_t> read_spec_lookups(const std::string& spec_path);

enum class PayloadFormat { kBinary, kJson };

/// One request body as a list of byte ranges that stay valid while the pool lives: the
/// JSON header first, then the binary sections (none for JSON).
struct EncodedQuery {
  std::string json;                        ///< the JSON header (binary) or the whole body (JSON)
  std::vector<std::string_view> sections;  ///< binary data after the JSON, in order
  size_t header_length = 0;                ///< Inference-Header-Content-Length; 0 for JSON
  size_t body_bytes = 0;                   ///< json.size() + all sections
  uint32_t items = 0;                      ///< N of this query
};

/// Random features for each model, generated once.
///
/// Binary: per model, a few variants of a block of `max_items` items (dense values uniform in
/// [0, 1), every bag `lookups` ids uniform in its table); a query of n items is a window of n
/// consecutive items of one variant at an offset, both chosen by Arrival::pick, sent without
/// copying. JSON: per model, `json_pool` whole bodies with sizes drawn from the distribution,
/// one chosen by pick (the query then has that body's size, not the arrival's).
struct PoolOptions {
  PayloadFormat format = PayloadFormat::kBinary;
  uint32_t max_items = 1024;           ///< largest query (the size distribution's cap)
  uint64_t budget_bytes = 512u << 20;  ///< memory for all models' blocks together
  int max_variants = 4;
  int json_pool = 32;
  std::optional<double> sla_ms;  ///< send parameters.sla_ms with every query (per model below)
  bool per_model_sla = false;    ///< send each model's ModelInfo::sla_ms as parameters.sla_ms
  std::optional<int> priority;   ///< send parameters.priority with every query
  /// Binary sparse_indices as INT32 (half the bytes; every id must fit) instead of INT64.
  bool int32_ids = false;
  uint64_t seed = 1;
};

class PayloadPool {
 public:
  PayloadPool(std::vector<ModelInfo> models, const SizeDistribution& sizes,
              const PoolOptions& options);

  const std::vector<ModelInfo>& models() const { return models_; }
  PayloadFormat format() const { return options_.format; }
  /// The body for `model` (index) with `items` items (clamped to [1, max_items]), payload
  /// chosen by `pick`.
  EncodedQuery encode(uint32_t model, uint32_t items, uint64_t pick) const;
  /// Bytes held by the pool.
  uint64_t bytes() const { return bytes_; }

 private:
  struct Block {
    std::vector<float> dense;  // [max_items, D]
    std::vector<int64_t> ids;    // [T][max_items * lookups]
    std::vector<int32_t> ids32;  // the same ids, with PoolOptions::int32_ids
  };
  struct ModelPool {
    std::vector<Block> variants;
    std::vector<int32_t> lengths;  // T * max_items copies of lookups (any prefix is valid)
    std::vector<std::string> json_bodies;
    std::vector<uint32_t> json_items;
  };
  std::string parameters_json(uint32_t model) const;

  std::vector<ModelInfo> models_;
  PoolOptions options_;
  std::vector<ModelPool> pools_;
  uint64_t bytes_ = 0;
};

}  // namespace recsched::load
