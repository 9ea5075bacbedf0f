#include "engine/layers.h"

#include <algorithm>
#include <atomic>
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

namespace {
std::atomic<double> g_block_flops{YieldBlocks{}.flops};
std::atomic<int64_t> g_block_lookups{YieldBlocks{}.lookups};
std::atomic<int64_t> g_block_min_rows{YieldBlocks{}.min_rows};
}  // namespace

void set_yield_blocks(const YieldBlocks& blocks) {
  g_block_flops.store(blocks.flops, std::memory_order_relaxed);
  g_block_lookups.store(blocks.lookups, std::memory_order_relaxed);
  g_block_min_rows.store(std::max<int64_t>(1, blocks.min_rows), std::memory_order_relaxed);
}

YieldBlocks yield_blocks() {
  return {.flops = g_block_flops.load(std::memory_order_relaxed),
          .lookups = g_block_lookups.load(std::memory_order_relaxed),
          .min_rows = g_block_min_rows.load(std::memory_order_relaxed)};
}

Status EmbeddingTables::pool(Isa isa, const BatchView& batch, int32_t t, PooledRows out,
                             Workspace* ws) const {
  const EmbeddingTable table{tables_[t].data(), rows_[t], dim_};
  const std::span<const int64_t> offsets = batch.table_offsets(uint32_t(t));
  auto bad = [&] {
    return invalid_argument("table " + std::to_string(t) + ": an id is outside [0, " +
                            std::to_string(rows_[t]) + ") or the bag offsets are malformed");
  };
  // Bags per block: about `lookups` ids each, at the batch's mean bag size.
  const int64_t bags = static_cast<int64_t>(offsets.size()) - 1;
  const YieldBlocks cut = yield_blocks();
  int64_t block = bags;
  if (ws != nullptr && ws->yields() && cut.lookups > 0 && bags > cut.min_rows) {
    const int64_t ids = std::max<int64_t>(offsets.back() - offsets.front(), 1);
    block = std::clamp<int64_t>(cut.lookups * bags / ids, cut.min_rows, bags);
  }
  // The ids in the width the batch holds them (BatchView::narrow_indices).
  auto sum = [&](std::span<const int64_t> bag_offsets, PooledRows into) {
    return batch.narrow_indices.empty()
               ? embedding_bag_sum(isa, table, batch.indices, bag_offsets, into)
               : embedding_bag_sum(isa, table, batch.narrow_indices, bag_offsets, into);
  };
  if (block >= bags) {
    if (!sum(offsets, out)) return bad();
    return Status::ok();
  }
  for (int64_t b = 0; b < bags; b += block) {
    if (b > 0) ws->yield_point();
    const int64_t n = std::min(block, bags - b);
    if (!sum(offsets.subspan(size_t(b), size_t(n) + 1),
             PooledRows{out.data + b * out.stride, out.stride})) {
      return bad();
    }
  }
  return Status::ok();
}

Status linear_forward_yielding(const LinearLayer& layer, ConstMatrixView x, MatrixView y,
                               Workspace& ws) {
  const YieldBlocks cut = yield_blocks();
  const double flops = 2.0 * x.rows * layer.in * layer.out;
  if (!ws.yields() || cut.flops <= 0 || flops <= cut.flops) return linear_forward(layer, x, y);
  const int64_t blocks = static_cast<int64_t>(std::ceil(flops / cut.flops));
  // Cut where the other operand is the smaller one to read again per block: by output
  // columns (each block reads its slice of the weights once, and all of x) when x is the
  // smaller, else by rows (each block reads all of the weights).
  if (x.rows <= layer.out) {
    const int32_t width =
        static_cast<int32_t>(std::max<int64_t>(cut.min_rows, (layer.out + blocks - 1) / blocks));
    for (int32_t c = 0; c < layer.out; c += width) {
      if (c > 0) ws.yield_point();
      RECSCHED_RETURN_IF_ERROR(linear_columns(layer, x, y, c, std::min(width, layer.out - c)));
    }
    linear_bias_act(layer, MatrixView{y.data, x.rows, y.ld});
    return Status::ok();
  }
  const int64_t block = std::max<int64_t>(cut.min_rows, (x.rows + blocks - 1) / blocks);
  for (int64_t r = 0; r < x.rows; r += block) {
    if (r > 0) ws.yield_point();
    const int64_t n = std::min(block, x.rows - r);
    RECSCHED_RETURN_IF_ERROR(linear_forward(layer, ConstMatrixView{x.data + r * x.ld, n, x.ld},
                                            MatrixView{y.data + r * y.ld, n, y.ld}));
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
    RECSCHED_RETURN_IF_ERROR(linear_forward_yielding(layers_[k], x, y, ws));
    x = ConstMatrixView{y.data, n, y.ld};
    if (!last) ws.yield_point();
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
                              MatrixView out, Workspace& ws) const {
  for (int32_t i = 0; i < count; ++i) {
    RECSCHED_RETURN_IF_ERROR(
        tables_.pool(isa_, batch, first + i,
                     PooledRows{out.data + int64_t{i} * spec_.embedding_dim, out.ld}, &ws));
    ws.yield_point();
  }
  return Status::ok();
}

}  // namespace recsched::engine
