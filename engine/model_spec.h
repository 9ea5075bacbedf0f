// Model specs: the JSON that describes a model's shape (models/*.json), parsed and
// validated into a ModelSpec. Depends on core and nlohmann/json.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "core/status.h"

namespace recsched::engine {

enum class ModelType { kDlrm };
/// How DLRM combines the bottom-MLP output with the pooled embeddings.
enum class Interaction {
  kDot,  ///< facebookresearch/dlrm's default: pairwise dot products, appended to x
  kCat,  ///< DeepRecSys: plain concatenation
};

std::string_view to_string(ModelType type);
std::string_view to_string(Interaction interaction);

/// A validated model description. Every width is > 0; bottom_mlp.back() == embedding_dim.
struct ModelSpec {
  std::string name;
  std::string description;
  ModelType type = ModelType::kDlrm;
  int32_t dense_features = 0;
  std::vector<int32_t> bottom_mlp;  ///< output widths; input is dense_features
  std::vector<int32_t> top_mlp;     ///< output widths; input is top_input_width()
  int32_t embedding_dim = 0;
  std::vector<int64_t> spec_rows;   ///< rows per table as written in the spec
  double row_scale = 1.0;           ///< rows actually allocated = max(1, round(rows * scale))
  std::vector<int64_t> table_rows;  ///< rows per table after row_scale
  int32_t lookups_per_table = 1;    ///< typical bag length, used for synthetic inputs
  Interaction interaction = Interaction::kDot;
  uint64_t seed = 0;                ///< seed of the deterministic default weights

  int32_t num_tables() const { return static_cast<int32_t>(table_rows.size()); }
  /// Width of the interaction output that feeds the top MLP.
  int32_t top_input_width() const;
  /// Scores per item (the last top width).
  int32_t num_outputs() const { return top_mlp.back(); }
  /// Bytes of all embedding tables (after row_scale).
  uint64_t table_bytes() const;
  /// Bytes of all dense-layer weights and biases.
  uint64_t dense_bytes() const;
  /// Multiply-adds per item in the dense layers (and the dot interaction).
  uint64_t dense_macs_per_item() const;
};

/// Validates `j` as a model spec. kInvalidArgument naming the key for an unknown key,
/// a missing required key, a wrong type or a value out of range.
Result<ModelSpec> parse_model_spec(const nlohmann::json& j);
/// Reads and parses a spec file; errors start with the path.
Result<ModelSpec> load_model_spec(const std::string& path);

}  // namespace recsched::engine
