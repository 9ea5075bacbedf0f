// The input tensors of one query: N items, each with dense features and one bag of
// sparse ids per embedding table. Standard library only; shapes are checked against a
// model spec by engine::validate_batch.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

namespace recsched {

/// Sparse input in EmbeddingBag "offsets" layout, all tables in one array:
/// bag b (item b) of table t covers indices[offsets[t * N + b] .. offsets[t * N + b + 1]),
/// where N is the batch size. offsets has T * N + 1 entries, is non-decreasing, starts at
/// 0 and ends at indices.size(). This is the wire layout (`sparse_lengths` [T][N],
/// `sparse_indices` table by table) turned into prefix sums.
struct SparseFeatures {
  std::vector<int64_t> indices;
  std::vector<int64_t> offsets;
};

/// A batch of items for one model: what a query carries.
struct Batch {
  uint32_t batch_size = 0;
  uint32_t num_dense = 0;
  uint32_t num_tables = 0;
  std::vector<float> dense;  ///< [batch_size * num_dense], row-major
  SparseFeatures sparse;

  /// Builds offsets from table-major bag lengths ([T][N] flattened, as on the wire).
  /// Lengths must be non-negative (checked by the caller).
  static std::vector<int64_t> offsets_from_lengths(std::span<const int32_t> lengths);
};

/// A read-only window of items [first, first + batch_size) of a Batch, without copying.
/// This is how a query is cut into sub-batches.
struct BatchView {
  uint32_t batch_size = 0;
  uint32_t num_dense = 0;
  uint32_t num_tables = 0;
  std::span<const float> dense;      ///< the window's rows only
  std::span<const int64_t> indices;  ///< the whole batch's indices (offsets are absolute)
  /// Or the whole batch's ids as 32-bit integers, `indices` then empty: INT32 ids as a
  /// client sent them, read without widening (half the bytes to copy and to gather).
  /// Every reader of a view takes either (num_indices()).
  std::span<const int32_t> narrow_indices;
  std::span<const int64_t> offsets;  ///< the whole batch's offsets
  uint32_t full_batch_size = 0;      ///< N of the underlying Batch (offsets stride)
  uint32_t first = 0;                ///< first item of the window

  /// How many ids the batch holds, in whichever width.
  size_t num_indices() const {
    return narrow_indices.empty() ? indices.size() : narrow_indices.size();
  }
  /// Offsets of table t's bags in this window: batch_size + 1 absolute positions.
  std::span<const int64_t> table_offsets(uint32_t t) const {
    return offsets.subspan(static_cast<size_t>(t) * full_batch_size + first, batch_size + 1);
  }
  /// Items [begin, begin + count) of this view. Requires begin + count <= batch_size.
  BatchView slice(uint32_t begin, uint32_t count) const;
};

/// The whole batch as a view.
BatchView view_of(const Batch& batch);

/// The view's ids, whichever their width, as a copy of 64-bit ids: for checks and tools,
/// not for the engine's path (which reads them where they are).
std::vector<int64_t> ids_of(const BatchView& view);

/// The items of `parts`, in order, as one batch (an accelerator's merged pass: core/merge.h);
/// item i of part p is item (items of the parts before p) + i of the result. Every part
/// must have the same num_dense and num_tables (the first part's; checked by the caller).
Batch concat(std::span<const BatchView> parts);

}  // namespace recsched
