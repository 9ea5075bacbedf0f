// The building blocks every model type is made of: embedding tables, stacks of Linear
// layers (PyTorch's nn.Sequential of Linear/activation) and a base class that owns the
// weight list, so loading (seeded or from safetensors) and export are written once.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "core/batch.h"
#include "core/status.h"
#include "engine/dense.h"
#include "engine/embedding_bag.h"
#include "engine/model.h"
#include "engine/model_spec.h"
#include "engine/weights.h"

namespace recsched::engine {

/// A model's embedding tables, `emb_l.{t}.weight` [rows_t, dim], in HostBuffers.
class EmbeddingTables {
 public:
  /// Allocates every table (zeroed) and registers it, initialised uniform in
  /// +-sqrt(1/rows) as facebookresearch/dlrm does.
  Status allocate(const ModelSpec& spec, std::vector<WeightTensor>& weights);

  /// Sum-pools table t's bags of `batch` into `out`. kInvalidArgument naming the table
  /// if an id is out of range or the offsets are malformed. With `ws` given and yielding,
  /// in blocks of bags with a yield point between them (YieldBlocks).
  Status pool(Isa isa, const BatchView& batch, int32_t t, PooledRows out,
              Workspace* ws = nullptr) const;

  int32_t count() const { return static_cast<int32_t>(tables_.size()); }

 private:
  std::vector<HostBuffer> tables_;
  std::vector<int64_t> rows_;
  int32_t dim_ = 0;
};

/// How finely a pass that yields (Workspace::yields) cuts its longest steps: a Linear
/// layer into blocks of about `flops` floating-point operations (by output columns where
/// its input is the smaller operand, else by rows; at least min_rows of either), a
/// table's pooling into blocks of about `lookups` ids, with a yield point between blocks.
/// The pooling's sums are bit-identical to the whole; a GEMM cut into blocks may round
/// differently (another kernel on a block's tail), within the tolerance of a sub-batch.
/// The same cut gives the same bits, interrupted or not. 0 turns a cut off.
struct YieldBlocks {
  double flops = 32e6;      // about 0.5 ms of one core's GEMM
  int64_t lookups = 16384;  // about 0.1-0.3 ms of gathers
  int64_t min_rows = 64;    // rows (or columns) of a GEMM block at least: narrower ones are slow
};
/// Process-wide (for benchmarks that compare settings side by side).
void set_yield_blocks(const YieldBlocks& blocks);
YieldBlocks yield_blocks();

/// linear_forward, cut into blocks of rows with a yield point between them when `ws`
/// yields (see YieldBlocks).
Status linear_forward_yielding(const LinearLayer& layer, ConstMatrixView x, MatrixView y,
                               Workspace& ws);

/// Linear layers in sequence; tensors named as nn.Sequential names them.
class Mlp {
 public:
  enum class Naming {
    kSequential,   ///< "<prefix>.{2k}.weight": Linear k at index 2k, activations between
    kSingleLayer,  ///< "<prefix>.weight": one bare nn.Linear
  };

  /// Layers from `in` through `widths`; ReLU after each but the last, which gets `last`.
  /// Registers Glorot-uniform weights and uniform +-sqrt(1/out) biases (the variances
  /// facebookresearch/dlrm draws from).
  Status allocate(std::string prefix, int32_t in, const std::vector<int32_t>& widths,
                  Activation last, std::vector<WeightTensor>& weights,
                  Naming naming = Naming::kSequential);

  /// in [n, in()] -> out [n, out()]. Hidden activations use workspace slots `scratch`
  /// and `scratch + 1`; `ws`'s yield point is offered between layers. kInternal if the
  /// BLAS fails.
  Status forward(ConstMatrixView in, MatrixView out, Workspace& ws, size_t scratch) const;

  int32_t in() const { return layers_.front().in; }
  int32_t out() const { return layers_.back().out; }

 private:
  std::vector<LinearLayer> layers_;
  int32_t widest_hidden_ = 0;
};

/// Allocates one tensor of `shape` and registers it under `name`.
Result<HostBuffer> allocate_tensor(const std::string& name, std::vector<int64_t> shape,
                                   float init_bound, std::vector<WeightTensor>& weights);

/// What every model type shares: spec, kernels, the weight list, shape checks.
class ModelBase : public Model {
 public:
  const ModelSpec& spec() const override { return spec_; }
  Isa isa() const override { return isa_; }
  std::vector<TensorToWrite> tensors() const override;
  /// Checks the batch's shape and the scores' size, then calls run().
  Status forward(const BatchView& batch, Workspace& ws, std::span<float> scores) const final;

  /// Loads the weights of a model whose constructor registered them in weights_.
  Status load_weights(const LoadOptions& options);

 protected:
  ModelBase(const ModelSpec& spec, Isa isa) : spec_(spec), isa_(isa) {}
  /// Scores a non-empty batch of the right shape into `scores` [n, K].
  virtual Status run(const BatchView& batch, Workspace& ws, MatrixView scores) const = 0;
  /// Pools every table t in [first, first + count) into columns t' * dim of `out`,
  /// offering `ws`'s yield point after each table.
  Status pool_tables(const BatchView& batch, int32_t first, int32_t count, MatrixView out,
                     Workspace& ws) const;

  ModelSpec spec_;
  Isa isa_;
  EmbeddingTables tables_;
  std::vector<WeightTensor> weights_;
};

/// Builds a model type M (its build() allocates and registers every tensor), then loads
/// its weights: what every load_<type>() does.
template <class M>
Result<std::unique_ptr<Model>> build_and_load(const ModelSpec& spec, const LoadOptions& options) {
  auto model = std::make_unique<M>(spec, options.isa);
  RECSCHED_RETURN_IF_ERROR(model->build());
  RECSCHED_RETURN_IF_ERROR(model->load_weights(options));
  return std::unique_ptr<Model>(std::move(model));
}

}  // namespace recsched::engine
