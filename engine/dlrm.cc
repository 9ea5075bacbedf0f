#include "engine/dlrm.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "engine/dense.h"
#include "engine/embedding_bag.h"
#include "engine/weights.h"

namespace recsched::engine {
namespace {

// Workspace slots used by one forward pass.
enum Slot : size_t { kHiddenA, kHiddenB, kFeatures, kInteraction };

class DlrmModel final : public Model {
 public:
  DlrmModel(ModelSpec spec, Isa isa) : spec_(std::move(spec)), isa_(isa) {}

  const ModelSpec& spec() const override { return spec_; }
  Isa isa() const override { return isa_; }
  Status forward(const BatchView& batch, Workspace& ws, std::span<float> scores) const override;
  std::vector<TensorToWrite> tensors() const override;

  /// Allocates every tensor (zeroed) and lists them with their dlrm names.
  Status allocate(std::vector<ExpectedTensor>& expected);
  void init_seeded();

 private:
  Status run_mlp(const std::vector<LinearLayer>& layers, ConstMatrixView in, MatrixView out,
                 Workspace& ws) const;

  ModelSpec spec_;
  Isa isa_;
  std::vector<HostBuffer> tables_;
  std::vector<LinearLayer> bottom_;
  std::vector<LinearLayer> top_;
  int32_t max_hidden_ = 0;  // widest hidden activation of either MLP
};

std::string layer_name(const char* mlp, size_t k, const char* what) {
  // nn.Sequential puts an activation after each Linear, so Linear k sits at index 2k.
  return std::string(mlp) + "." + std::to_string(2 * k) + "." + what;
}

Status DlrmModel::allocate(std::vector<ExpectedTensor>& expected) {
  const int32_t dim = spec_.embedding_dim;
  for (int32_t t = 0; t < spec_.num_tables(); ++t) {
    const int64_t rows = spec_.table_rows[t];
    RECSCHED_ASSIGN_OR_RETURN(HostBuffer buf,
                              HostBuffer::allocate(static_cast<size_t>(rows) * dim));
    tables_.push_back(std::move(buf));
    expected.push_back({"emb_l." + std::to_string(t) + ".weight", {rows, dim}, tables_.back().span()});
  }
  auto build = [&](const char* mlp, int32_t in, const std::vector<int32_t>& widths,
                   Activation last_act, std::vector<LinearLayer>& layers) -> Status {
    for (size_t k = 0; k < widths.size(); ++k) {
      LinearLayer l;
      l.in = in;
      l.out = widths[k];
      l.act = k + 1 == widths.size() ? last_act : Activation::kRelu;
      RECSCHED_ASSIGN_OR_RETURN(l.weight, HostBuffer::allocate(size_t(l.out) * l.in));
      RECSCHED_ASSIGN_OR_RETURN(l.bias, HostBuffer::allocate(size_t(l.out)));
      layers.push_back(std::move(l));
      in = widths[k];
    }
    for (size_t k = 0; k < layers.size(); ++k) {
      LinearLayer& l = layers[k];
      expected.push_back({layer_name(mlp, k, "weight"), {l.out, l.in}, l.weight.span()});
      expected.push_back({layer_name(mlp, k, "bias"), {l.out}, l.bias.span()});
      if (k + 1 < layers.size()) max_hidden_ = std::max(max_hidden_, l.out);
    }
    return Status::ok();
  };
  // dlrm: ReLU after every bottom layer (the last included); sigmoid after the last top one.
  RECSCHED_RETURN_IF_ERROR(
      build("bot_l", spec_.dense_features, spec_.bottom_mlp, Activation::kRelu, bottom_));
  RECSCHED_RETURN_IF_ERROR(
      build("top_l", spec_.top_input_width(), spec_.top_mlp, Activation::kSigmoid, top_));
  return Status::ok();
}

void DlrmModel::init_seeded() {
  // Variances as facebookresearch/dlrm initialises them (it draws embeddings uniform in
  // +-sqrt(1/rows) and Linear weights normal with std sqrt(2/(in+out)), biases std
  // sqrt(1/out)); uniform draws of equal variance keep this fast for big tables.
  for (size_t t = 0; t < tables_.size(); ++t) {
    fill_uniform(tables_[t].span(), spec_.seed, "emb_l." + std::to_string(t) + ".weight",
                 static_cast<float>(std::sqrt(1.0 / spec_.table_rows[t])));
  }
  auto init = [&](const char* mlp, std::vector<LinearLayer>& layers) {
    for (size_t k = 0; k < layers.size(); ++k) {
      LinearLayer& l = layers[k];
      fill_uniform(l.weight.span(), spec_.seed, layer_name(mlp, k, "weight"),
                   static_cast<float>(std::sqrt(3.0 * 2.0 / (l.in + l.out))));
      fill_uniform(l.bias.span(), spec_.seed, layer_name(mlp, k, "bias"),
                   static_cast<float>(std::sqrt(3.0 / l.out)));
    }
  };
  init("bot_l", bottom_);
  init("top_l", top_);
}

std::vector<TensorToWrite> DlrmModel::tensors() const {
  std::vector<TensorToWrite> out;
  for (size_t t = 0; t < tables_.size(); ++t) {
    out.push_back({"emb_l." + std::to_string(t) + ".weight",
                   {spec_.table_rows[t], spec_.embedding_dim},
                   tables_[t].span()});
  }
  auto add = [&](const char* mlp, const std::vector<LinearLayer>& layers) {
    for (size_t k = 0; k < layers.size(); ++k) {
      out.push_back({layer_name(mlp, k, "weight"), {layers[k].out, layers[k].in},
                     layers[k].weight.span()});
      out.push_back({layer_name(mlp, k, "bias"), {layers[k].out}, layers[k].bias.span()});
    }
  };
  add("bot_l", bottom_);
  add("top_l", top_);
  return out;
}

// Runs `layers` from `in` to `out`, ping-ponging hidden activations between two slots.
Status DlrmModel::run_mlp(const std::vector<LinearLayer>& layers, ConstMatrixView in,
                          MatrixView out, Workspace& ws) const {
  const int64_t n = in.rows;
  float* hidden[2] = {nullptr, nullptr};
  if (layers.size() > 1) {
    RECSCHED_ASSIGN_OR_RETURN(hidden[0], ws.floats(kHiddenA, size_t(n) * max_hidden_));
  }
  if (layers.size() > 2) {
    RECSCHED_ASSIGN_OR_RETURN(hidden[1], ws.floats(kHiddenB, size_t(n) * max_hidden_));
  }
  ConstMatrixView x = in;
  for (size_t k = 0; k < layers.size(); ++k) {
    const bool last = k + 1 == layers.size();
    MatrixView y = last ? out : MatrixView{hidden[k % 2], n, layers[k].out};
    RECSCHED_RETURN_IF_ERROR(linear_forward(layers[k], x, y));
    x = ConstMatrixView{y.data, n, y.ld};
  }
  return Status::ok();
}

Status DlrmModel::forward(const BatchView& batch, Workspace& ws, std::span<float> scores) const {
  const int64_t n = batch.batch_size;
  const int32_t dim = spec_.embedding_dim;
  const int32_t num_tables = spec_.num_tables();
  if (scores.size() != size_t(n) * spec_.num_outputs()) {
    return invalid_argument("scores buffer has " + std::to_string(scores.size()) +
                            " floats, expected " + std::to_string(n * spec_.num_outputs()));
  }
  if (batch.num_dense != uint32_t(spec_.dense_features) ||
      batch.num_tables != uint32_t(num_tables) || batch.dense.size() != size_t(n) * batch.num_dense) {
    return invalid_argument("batch shape does not match model '" + spec_.name + "'");
  }
  if (n == 0) return Status::ok();

  // Feature matrix [n, (T + 1) * dim]: the bottom-MLP output, then one pooled
  // embedding per table, each written in place (the "cat" interaction for free).
  const int64_t feat_ld = int64_t{num_tables + 1} * dim;
  RECSCHED_ASSIGN_OR_RETURN(float* feats, ws.floats(kFeatures, size_t(n) * feat_ld));
  RECSCHED_RETURN_IF_ERROR(
      run_mlp(bottom_, ConstMatrixView{batch.dense.data(), n, spec_.dense_features},
              MatrixView{feats, n, feat_ld}, ws));
  for (int32_t t = 0; t < num_tables; ++t) {
    const EmbeddingTable table{tables_[t].data(), spec_.table_rows[t], dim};
    const PooledRows out{feats + int64_t{t + 1} * dim, feat_ld};
    if (!embedding_bag_sum(isa_, table, batch.indices, batch.table_offsets(t), out)) {
      return invalid_argument("table " + std::to_string(t) + ": an id is outside [0, " +
                              std::to_string(spec_.table_rows[t]) +
                              ") or the bag offsets are malformed");
    }
  }

  ConstMatrixView top_in{feats, n, feat_ld};
  if (spec_.interaction == Interaction::kDot) {
    const int32_t width = spec_.top_input_width();
    RECSCHED_ASSIGN_OR_RETURN(float* inter, ws.floats(kInteraction, size_t(n) * width));
    dot_interaction(top_in, num_tables + 1, dim, MatrixView{inter, n, width});
    top_in = ConstMatrixView{inter, n, width};
  }
  return run_mlp(top_, top_in, MatrixView{scores.data(), n, spec_.num_outputs()}, ws);
}

}  // namespace

Result<std::unique_ptr<Model>> load_dlrm(const ModelSpec& spec, const LoadOptions& options) {
  auto model = std::make_unique<DlrmModel>(spec, options.isa);
  std::vector<ExpectedTensor> expected;
  RECSCHED_RETURN_IF_ERROR(model->allocate(expected));
  if (options.weights_path.empty()) {
    model->init_seeded();
  } else {
    RECSCHED_ASSIGN_OR_RETURN(SafetensorsFile file, SafetensorsFile::open(options.weights_path));
    RECSCHED_RETURN_IF_ERROR(read_expected(file, expected));
  }
  return std::unique_ptr<Model>(std::move(model));
}

}  // namespace recsched::engine
