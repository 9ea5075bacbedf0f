// Model specs: the JSON that describes a model's shape (models/*.json), parsed and
// validated into a ModelSpec. Depends on core and nlohmann/json.
#pragma once

#include <cstdint>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"

namespace recsched::engine {

/// The model families of DeepRecInfra's zoo (the math of each: engine/zoo.h, engine/dlrm.h).
enum class ModelType { kDlrm, kNcf, kWnd, kMtwnd, kDin, kDien };
/// How DLRM combines the bottom-MLP output with the pooled embeddings.
enum class Interaction {
  kDot,  ///< facebookresearch/dlrm's default: pairwise dot products, appended to x
  kCat,  ///< DeepRecSys: plain concatenation
};

std::string_view to_string(ModelType type);
std::string_view to_string(Interaction interaction);

/// A validated model description. Keys common to every type, then each type's own
/// (unused ones stay empty). Every width is > 0.
struct ModelSpec {
  std::string name;
  std::string description;
  ModelType type = ModelType::kDlrm;
  int32_t dense_features = 0;  ///< 0 for ncf, din, dien (they take no dense input)
  int32_t embedding_dim = 0;
  std::vector<int64_t> spec_rows;   ///< rows per table as written in the spec
  double row_scale = 1.0;           ///< rows actually allocated = max(1, round(rows * scale))
  std::vector<int64_t> table_rows;  ///< rows per table after row_scale
  int32_t lookups_per_table = 1;    ///< typical bag length, used for synthetic inputs
  uint64_t seed = 0;                ///< seed of the deterministic default weights

  // dlrm: bottom_mlp (last width == embedding_dim), top_mlp, interaction.
  // din, dien: top_mlp.   ncf, wnd, mtwnd: mlp.   mtwnd: task_mlp (last width 1), tasks.
  // din: behaviour_tables, attention_mlp (last width 1).   dien: behaviour_tables, gru_hidden.
  std::vector<int32_t> bottom_mlp;  ///< output widths; input is dense_features
  std::vector<int32_t> top_mlp;     ///< output widths
  Interaction interaction = Interaction::kDot;
  std::vector<int32_t> mlp;
  std::vector<int32_t> task_mlp;
  int32_t tasks = 0;
  int32_t behaviour_tables = 0;
  std::vector<int32_t> attention_mlp;
  int32_t gru_hidden = 0;

  int32_t num_tables() const { return static_cast<int32_t>(table_rows.size()); }
  /// dlrm: width of the interaction output that feeds the top MLP.
  int32_t top_input_width() const;
  /// Scores per item (K of the [N, K] output).
  int32_t num_outputs() const;
  /// Bytes of all embedding tables (after row_scale).
  uint64_t table_bytes() const;
  /// Bytes of all dense-layer weights and biases.
  uint64_t dense_bytes() const;
  /// Multiply-adds per item in the dense layers, interactions and recurrences.
  uint64_t dense_macs_per_item() const;
};

/// Validates `j` as a model spec. kInvalidArgument naming the key for an unknown key,
/// a missing required key, a wrong type or a value out of range.
Result<ModelSpec> parse_model_spec(const nlohmann::json& j);
/// Reads and parses a spec file; errors start with the path.
Result<ModelSpec> load_model_spec(const std::string& path);

}  // namespace recsched::engine
