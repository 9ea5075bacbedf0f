#include "engine/layers.h"

#include <algorithm>
#include <cmath>

namespace recsched::engine {

Status EmbeddingTables::allocate(const ModelSpec& spec, std::vector<WeightTensor>& weights) {
  dim_ = spec.embedding_dim;
  rows_ = spec.table_rows;
  for (size_t t = 0; t < rows_.size(); ++t) {
    RECSCHED_ASSIGN_OR_RETURN(HostBuffer buf, HostBuffer::allocate(size_t(rows_[t]) * dim_));
    tables_.push_back(std::move(buf));
    weights.push_back({"emb_l." + std::to_string(t) + ".weight",
                       {rows_[t], dim_},
                       tables_.back().span(),
                       static_cast<float>(std::sqrt(1.0 / rows_[t]))});
  }
  return Status::ok();
}

Status EmbeddingTables::pool(Isa isa, const BatchView& batch, int32_t t, PooledRows out) const {
  const EmbeddingTable table{tables_[t].data(), rows_[t], dim_};
  if (!embedding_bag_sum(isa, table, batch.indices, batch.table_offsets(uint32_t(t)), out)) {
    return invalid_argument("table " + std::to_string(t) + ": an id is outside [0, " +
                            std::to_string(rows_[t]) + ") or the bag offsets are malformed");
  }
  return Status::ok();
}

Status Mlp::allocate(std::string prefix, int32_t in, const std::vector<int32_t>& widths,
                     Activation last, std::vector<WeightTensor>& weights, Naming naming) {
  if (widths.empty() || (naming == Naming::kSingleLayer && widths.size() != 1)) {
    return internal_error("MLP '" + prefix + "' has a bad layer list");
  }
  for (size_t k = 0; k < widths.size(); ++k) {
    LinearLayer l;
    l.in = in;
    l.out = widths[k];
    l.act = k + 1 == widths.size() ? last : Activation::kRelu;
    RECSCHED_ASSIGN_OR_RETURN(l.weight, HostBuffer::allocate(size_t(l.out) * l.in));
    RECSCHED_ASSIGN_OR_RETURN(l.bias, HostBuffer::allocate(size_t(l.out)));
    const std::string base =
        naming == Naming::kSingleLayer ? prefix : prefix + "." + std::to_string(2 * k);
    weights.push_back({base + ".weight",
                       {l.out, l.in},
                       l.weight.span(),
                       static_cast<float>(std::sqrt(6.0 / (l.in + l.out)))});
    weights.push_back(
        {base + ".bias", {l.out}, l.bias.span(), static_cast<float>(std::sqrt(3.0 / l.out))});
    if (k + 1 < widths.size()) widest_hidden_ = std::max(widest_hidden_, l.out);
    layers_.push_back(std::move(l));
    in = widths[k];
  }
  return Status::ok();
}

Status Mlp::forward(ConstMatrixView in, MatrixView out, Workspace& ws, size_t scratch) const {
  const int64_t n = in.rows;
  float* hidden[2] = {nullptr, nullptr};
  for (size_t i = 0; i < 2 && i + 1 < layers_.size(); ++i) {
    RECSCHED_ASSIGN_OR_RETURN(hidden[i], ws.floats(scratch + i, size_t(n) * widest_hidden_));
  }
  ConstMatrixView x = in;
  for (size_t k = 0; k < layers_.size(); ++k) {
    const bool last = k + 1 == layers_.size();
    MatrixView y = last ? out : MatrixView{hidden[k % 2], n, layers_[k].out};
    RECSCHED_RETURN_IF_ERROR(linear_forward(layers_[k], x, y));
    x = ConstMatrixView{y.data, n, y.ld};
  }
  return Status::ok();
}

Result<HostBuffer> allocate_tensor(const std::string& name, std::vector<int64_t> shape,
                                   float init_bound, std::vector<WeightTensor>& weights) {
  size_t count = 1;
  for (int64_t d : shape) count *= static_cast<size_t>(d);
  RECSCHED_ASSIGN_OR_RETURN(HostBuffer buf, HostBuffer::allocate(count));
  weights.push_back({name, std::move(shape), buf.span(), init_bound});
  return buf;
}

std::vector<TensorToWrite> ModelBase::tensors() const {
  std::vector<TensorToWrite> out;
  for (const WeightTensor& w : weights_) out.push_back({w.name, w.shape, w.data});
  return out;
}

Status ModelBase::load_weights(const LoadOptions& options) {
  if (options.weights_path.empty()) {
    init_seeded(weights_, spec_.seed);
    return Status::ok();
  }
  RECSCHED_ASSIGN_OR_RETURN(SafetensorsFile file, SafetensorsFile::open(options.weights_path));
  return read_weights(file, weights_);
}

Status ModelBase::forward(const BatchView& batch, Workspace& ws, std::span<float> scores) const {
  const int64_t n = batch.batch_size;
  const int32_t k = spec_.num_outputs();
  if (scores.size() != size_t(n) * k) {
    return invalid_argument("scores buffer has " + std::to_string(scores.size()) +
                            " floats, expected " + std::to_string(n * k));
  }
  if (batch.num_dense != uint32_t(spec_.dense_features) ||
      batch.num_tables != uint32_t(spec_.num_tables()) ||
      batch.dense.size() != size_t(n) * batch.num_dense) {
    return invalid_argument("batch shape does not match model '" + spec_.name + "'");
  }
  if (n == 0) return Status::ok();
  return run(batch, ws, MatrixView{scores.data(), n, k});
}

Status ModelBase::pool_tables(const BatchView& batch, int32_t first, int32_t count,
                              MatrixView out) const {
  for (int32_t i = 0; i < count; ++i) {
    RECSCHED_RETURN_IF_ERROR(tables_.pool(
        isa_, batch, first + i, PooledRows{out.data + int64_t{i} * spec_.embedding_dim, out.ld}));
  }
  return Status::ok();
}

}  // namespace recsched::engine
