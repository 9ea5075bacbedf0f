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
  /// if an id is out of range or the offsets are malformed.
  Status pool(Isa isa, const BatchView& batch, int32_t t, PooledRows out) const;

  int32_t count() const { return static_cast<int32_t>(tables_.size()); }

 private:
  std::vector<HostBuffer> tables_;
  std::vector<int64_t> rows_;
  int32_t dim_ = 0;
};

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
  /// and `scratch + 1`. kInternal if the BLAS fails.
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
  /// Pools every table t in [first, first + count) into columns t' * dim of `out`.
  Status pool_tables(const BatchView& batch, int32_t first, int32_t count, MatrixView out) const;

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
