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

}  // namespace recsched
