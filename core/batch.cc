#include "core/batch.h"

namespace recsched {

std::vector<int64_t> Batch::offsets_from_lengths(std::span<const int32_t> lengths) {
  std::vector<int64_t> offsets(lengths.size() + 1);
  int64_t pos = 0;
  for (size_t i = 0; i < lengths.size(); ++i) {
    offsets[i] = pos;
    pos += lengths[i];
  }
  offsets[lengths.size()] = pos;
  return offsets;
}

BatchView BatchView::slice(uint32_t begin, uint32_t count) const {
  BatchView v = *this;
  v.batch_size = count;
  v.first = first + begin;
  v.dense =
      dense.subspan(static_cast<size_t>(begin) * num_dense, static_cast<size_t>(count) * num_dense);
  return v;
}

BatchView view_of(const Batch& batch) {
  BatchView v;
  v.batch_size = batch.batch_size;
  v.num_dense = batch.num_dense;
  v.num_tables = batch.num_tables;
  v.dense = batch.dense;
  v.indices = batch.sparse.indices;
  v.offsets = batch.sparse.offsets;
  v.full_batch_size = batch.batch_size;
  v.first = 0;
  return v;
}

std::vector<int64_t> ids_of(const BatchView& view) {
  if (view.narrow_indices.empty()) return {view.indices.begin(), view.indices.end()};
  return {view.narrow_indices.begin(), view.narrow_indices.end()};
}

Batch concat(std::span<const BatchView> parts) {
  Batch out;
  if (parts.empty()) return out;
  out.num_dense = parts.front().num_dense;
  out.num_tables = parts.front().num_tables;
  size_t indices = 0;
  for (const BatchView& p : parts) {
    out.batch_size += p.batch_size;
    for (uint32_t t = 0; t < p.num_tables; ++t) {
      const auto off = p.table_offsets(t);
      indices += static_cast<size_t>(off.back() - off.front());
    }
  }
  out.dense.reserve(static_cast<size_t>(out.batch_size) * out.num_dense);
  for (const BatchView& p : parts) out.dense.insert(out.dense.end(), p.dense.begin(), p.dense.end());
  // Table-major, as the wire layout: every part's bags of table 0, then of table 1, ...
  out.sparse.indices.reserve(indices);
  out.sparse.offsets.reserve(static_cast<size_t>(out.num_tables) * out.batch_size + 1);
  for (uint32_t t = 0; t < out.num_tables; ++t) {
    for (const BatchView& p : parts) {
      const auto off = p.table_offsets(t);
      const int64_t base = static_cast<int64_t>(out.sparse.indices.size()) - off.front();
      for (uint32_t b = 0; b < p.batch_size; ++b) out.sparse.offsets.push_back(base + off[b]);
      if (p.narrow_indices.empty()) {
        out.sparse.indices.insert(out.sparse.indices.end(), p.indices.begin() + off.front(),
                                  p.indices.begin() + off.back());
      } else {
        out.sparse.indices.insert(out.sparse.indices.end(), p.narrow_indices.begin() + off.front(),
                                  p.narrow_indices.begin() + off.back());
      }
    }
  }
  out.sparse.offsets.push_back(static_cast<int64_t>(out.sparse.indices.size()));
  return out;
}

}  // namespace recsched
