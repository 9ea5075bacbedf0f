// NCF, Wide&Deep (single- and multi-task) and DIN. DIEN is in dien.cc.
#include "engine/zoo.h"

#include <algorithm>

#include "engine/layers.h"

namespace recsched::engine {
namespace {

// Workspace slots; MLP hidden layers use kHidden and kHidden + 1.
enum Slot : size_t { kFeatures, kJoined, kWeights, kTop, kHidden };

Activation output_activation(int32_t k) {
  return k >= 2 ? Activation::kSoftmax : Activation::kSigmoid;
}

class NcfModel final : public ModelBase {
 public:
  NcfModel(const ModelSpec& spec, Isa isa) : ModelBase(spec, isa) {}

  Status build() {
    const int32_t dim = spec_.embedding_dim;
    RECSCHED_RETURN_IF_ERROR(tables_.allocate(spec_, weights_));
    RECSCHED_RETURN_IF_ERROR(mlp_.allocate("mlp", 2 * dim, spec_.mlp, Activation::kRelu, weights_));
    return predict_.allocate("predict", dim + mlp_.out(), {1}, Activation::kSigmoid, weights_,
                             Mlp::Naming::kSingleLayer);
  }

 private:
  Status run(const BatchView& batch, Workspace& ws, MatrixView scores) const override {
    const int64_t n = batch.batch_size;
    const int32_t dim = spec_.embedding_dim;
    const int64_t feat_ld = 4 * int64_t{dim};
    const int64_t joined_ld = dim + mlp_.out();
    RECSCHED_ASSIGN_OR_RETURN(float* feats, ws.floats(kFeatures, size_t(n) * feat_ld));
    RECSCHED_ASSIGN_OR_RETURN(float* joined, ws.floats(kJoined, size_t(n) * joined_ld));
    RECSCHED_RETURN_IF_ERROR(pool_tables(batch, 0, 4, MatrixView{feats, n, feat_ld}, ws));
    // GMF branch: element-wise product of the user and item vectors, into joined[:, 0:dim].
    for (int64_t r = 0; r < n; ++r) {
      const float* u = feats + r * feat_ld;
      float* g = joined + r * joined_ld;
      for (int32_t d = 0; d < dim; ++d) g[d] = u[d] * u[dim + d];
    }
    // MLP branch on [e2, e3], written beside the GMF vector.
    RECSCHED_RETURN_IF_ERROR(mlp_.forward(ConstMatrixView{feats + 2 * dim, n, feat_ld},
                                          MatrixView{joined + dim, n, joined_ld}, ws, kHidden));
    ws.yield_point();
    return predict_.forward(ConstMatrixView{joined, n, joined_ld}, scores, ws, kHidden);
  }

  Mlp mlp_;
  Mlp predict_;
};

// Wide&Deep and its multi-task form share the joined input [dense ++ e_0 ++ ...].
class WndModel final : public ModelBase {
 public:
  WndModel(const ModelSpec& spec, Isa isa) : ModelBase(spec, isa) {}

  Status build() {
    const bool multi = spec_.type == ModelType::kMtwnd;
    RECSCHED_RETURN_IF_ERROR(tables_.allocate(spec_, weights_));
    RECSCHED_RETURN_IF_ERROR(mlp_.allocate("mlp", input_width(), spec_.mlp,
                                           multi ? Activation::kRelu : Activation::kSigmoid,
                                           weights_));
    heads_.resize(multi ? spec_.tasks : 0);
    for (size_t i = 0; i < heads_.size(); ++i) {
      RECSCHED_RETURN_IF_ERROR(heads_[i].allocate("heads." + std::to_string(i), mlp_.out(),
                                                  spec_.task_mlp, Activation::kSigmoid, weights_));
    }
    return Status::ok();
  }

 private:
  int64_t input_width() const {
    return spec_.dense_features + int64_t{spec_.num_tables()} * spec_.embedding_dim;
  }

  Status run(const BatchView& batch, Workspace& ws, MatrixView scores) const override {
    const int64_t n = batch.batch_size;
    const int64_t ld = input_width();
    const int32_t d = spec_.dense_features;
    RECSCHED_ASSIGN_OR_RETURN(float* feats, ws.floats(kFeatures, size_t(n) * ld));
    for (int64_t r = 0; r < n; ++r) {
      std::copy_n(batch.dense.data() + r * d, d, feats + r * ld);
    }
    RECSCHED_RETURN_IF_ERROR(
        pool_tables(batch, 0, spec_.num_tables(), MatrixView{feats + d, n, ld}, ws));
    const ConstMatrixView in{feats, n, ld};
    if (heads_.empty()) return mlp_.forward(in, scores, ws, kHidden);

    RECSCHED_ASSIGN_OR_RETURN(float* trunk, ws.floats(kJoined, size_t(n) * mlp_.out()));
    RECSCHED_RETURN_IF_ERROR(mlp_.forward(in, MatrixView{trunk, n, mlp_.out()}, ws, kHidden));
    for (size_t i = 0; i < heads_.size(); ++i) {
      ws.yield_point();
      // Head i writes column i of the [n, tasks] scores.
      RECSCHED_RETURN_IF_ERROR(heads_[i].forward(ConstMatrixView{trunk, n, mlp_.out()},
                                                 MatrixView{scores.data + i, n, scores.ld}, ws,
                                                 kHidden));
    }
    return Status::ok();
  }

  Mlp mlp_;
  std::vector<Mlp> heads_;
};

class DinModel final : public ModelBase {
 public:
  static constexpr int64_t kItemsPerPoint = 32;

  DinModel(const ModelSpec& spec, Isa isa) : ModelBase(spec, isa) {}

  Status build() {
    const int32_t dim = spec_.embedding_dim;
    RECSCHED_RETURN_IF_ERROR(tables_.allocate(spec_, weights_));
    RECSCHED_RETURN_IF_ERROR(
        att_.allocate("att", 3 * dim, spec_.attention_mlp, Activation::kNone, weights_));
    return top_.allocate("top_l", 4 * dim, spec_.top_mlp, output_activation(spec_.top_mlp.back()),
                         weights_);
  }

 private:
  Status run(const BatchView& batch, Workspace& ws, MatrixView scores) const override {
    const int64_t n = batch.batch_size;
    const int32_t dim = spec_.embedding_dim;
    const int32_t nb = spec_.behaviour_tables;
    const int64_t feat_ld = int64_t{nb + 3} * dim;  // [u, b_1..b_B, a, c] per item
    RECSCHED_ASSIGN_OR_RETURN(float* feats, ws.floats(kFeatures, size_t(n) * feat_ld));
    RECSCHED_RETURN_IF_ERROR(pool_tables(batch, 0, nb + 3, MatrixView{feats, n, feat_ld}, ws));

    // Attention inputs for every (item, behaviour) as one matrix [n * B, 3 * dim], so the
    // attention MLP runs as one GEMM per layer rather than B small ones.
    const int64_t rows = n * nb;
    RECSCHED_ASSIGN_OR_RETURN(float* att_in, ws.floats(kJoined, size_t(rows) * 3 * dim));
    RECSCHED_ASSIGN_OR_RETURN(float* w, ws.floats(kWeights, size_t(rows)));
    for (int64_t r = 0; r < n; ++r) {
      const float* item = feats + r * feat_ld;
      const float* ad = item + int64_t{nb + 1} * dim;
      for (int32_t i = 0; i < nb; ++i) {
        const float* b = item + int64_t{i + 1} * dim;
        float* x = att_in + (r * nb + i) * 3 * dim;
        std::copy_n(b, dim, x);
        std::copy_n(ad, dim, x + dim);
        for (int32_t d = 0; d < dim; ++d) x[2 * dim + d] = b[d] * ad[d];
      }
      // The attention input is B rows per item (250 for the zoo's DIN): a point every
      // kItemsPerPoint items keeps this loop, too, from holding a worker for long.
      if ((r + 1) % kItemsPerPoint == 0) ws.yield_point();
    }
    RECSCHED_RETURN_IF_ERROR(
        att_.forward(ConstMatrixView{att_in, rows, 3 * dim}, MatrixView{w, rows, 1}, ws, kHidden));
    ws.yield_point();

    // Top input [u, sum_i w_i b_i, a, c].
    const int64_t top_ld = 4 * int64_t{dim};
    RECSCHED_ASSIGN_OR_RETURN(float* top_in, ws.floats(kTop, size_t(n) * top_ld));
    for (int64_t r = 0; r < n; ++r) {
      const float* item = feats + r * feat_ld;
      float* t = top_in + r * top_ld;
      std::copy_n(item, dim, t);
      float* pooled = t + dim;
      std::fill_n(pooled, dim, 0.0f);
      for (int32_t i = 0; i < nb; ++i) {
        const float wi = w[r * nb + i];
        const float* b = item + int64_t{i + 1} * dim;
        for (int32_t d = 0; d < dim; ++d) pooled[d] += wi * b[d];
      }
      std::copy_n(item + int64_t{nb + 1} * dim, 2 * dim, t + 2 * dim);  // a, c
      if ((r + 1) % kItemsPerPoint == 0) ws.yield_point();
    }
    return top_.forward(ConstMatrixView{top_in, n, top_ld}, scores, ws, kHidden);
  }

  Mlp att_;
  Mlp top_;
};

}  // namespace

Result<std::unique_ptr<Model>> load_ncf(const ModelSpec& spec, const LoadOptions& options) {
  return build_and_load<NcfModel>(spec, options);
}

Result<std::unique_ptr<Model>> load_wnd(const ModelSpec& spec, const LoadOptions& options) {
  return build_and_load<WndModel>(spec, options);
}

Result<std::unique_ptr<Model>> load_din(const ModelSpec& spec, const LoadOptions& options) {
  return build_and_load<DinModel>(spec, options);
}

}  // namespace recsched::engine
