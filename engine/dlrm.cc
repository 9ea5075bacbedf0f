#include "engine/dlrm.h"

#include "engine/layers.h"

namespace recsched::engine {
namespace {

// Workspace slots of one forward pass; the MLPs' hidden layers use kHidden and kHidden + 1.
enum Slot : size_t { kFeatures, kInteraction, kHidden };

class DlrmModel final : public ModelBase {
 public:
  DlrmModel(const ModelSpec& spec, Isa isa) : ModelBase(spec, isa) {}

  Status build() {
    RECSCHED_RETURN_IF_ERROR(tables_.allocate(spec_, weights_));
    // dlrm: ReLU after every bottom layer (the last included); sigmoid after the last top one.
    RECSCHED_RETURN_IF_ERROR(bottom_.allocate("bot_l", spec_.dense_features, spec_.bottom_mlp,
                                              Activation::kRelu, weights_));
    return top_.allocate("top_l", spec_.top_input_width(), spec_.top_mlp, Activation::kSigmoid,
                         weights_);
  }

 private:
  Status run(const BatchView& batch, Workspace& ws, MatrixView scores) const override {
    const int64_t n = batch.batch_size;
    const int32_t dim = spec_.embedding_dim;
    const int32_t num_tables = spec_.num_tables();
    // Feature matrix [n, (T + 1) * dim]: the bottom-MLP output, then one pooled
    // embedding per table, each written in place (the "cat" interaction for free).
    const int64_t feat_ld = int64_t{num_tables + 1} * dim;
    RECSCHED_ASSIGN_OR_RETURN(float* feats, ws.floats(kFeatures, size_t(n) * feat_ld));
    RECSCHED_RETURN_IF_ERROR(
        bottom_.forward(ConstMatrixView{batch.dense.data(), n, spec_.dense_features},
                        MatrixView{feats, n, feat_ld}, ws, kHidden));
    ws.yield_point();
    RECSCHED_RETURN_IF_ERROR(
        pool_tables(batch, 0, num_tables, MatrixView{feats + dim, n, feat_ld}, ws));

    ConstMatrixView top_in{feats, n, feat_ld};
    if (spec_.interaction == Interaction::kDot) {
      const int32_t width = spec_.top_input_width();
      RECSCHED_ASSIGN_OR_RETURN(float* inter, ws.floats(kInteraction, size_t(n) * width));
      dot_interaction(top_in, num_tables + 1, dim, MatrixView{inter, n, width});
      top_in = ConstMatrixView{inter, n, width};
      ws.yield_point();
    }
    return top_.forward(top_in, scores, ws, kHidden);
  }

  Mlp bottom_;
  Mlp top_;
};

}  // namespace

Result<std::unique_ptr<Model>> load_dlrm(const ModelSpec& spec, const LoadOptions& options) {
  return build_and_load<DlrmModel>(spec, options);
}

}  // namespace recsched::engine
