// Sum-pooled embedding bag: the sparse half of every recommendation model, and the part
// bound by random-access memory bandwidth. A scalar reference (the test oracle) and
// SIMD kernels with software prefetching, chosen per ISA. Depends on engine/isa.h only.
#pragma once

#include <cstdint>
#include <span>

#include "engine/isa.h"

namespace recsched::engine {

/// A read-only embedding table: `rows` rows of `dim` floats, row-major, contiguous.
struct EmbeddingTable {
  const float* data = nullptr;
  int64_t rows = 0;
  int32_t dim = 0;
};

/// Where pooled rows go: row b starts at data + b * stride, dim floats. stride >= dim,
/// so a bag can write straight into its slot of a wider feature matrix.
struct PooledRows {
  float* data = nullptr;
  int64_t stride = 0;
};

/// Sum-pooled embedding bag (PyTorch EmbeddingBag, mode="sum", offsets layout):
///   num_bags = offsets.size() - 1
///   for b in [0, num_bags):
///     out[b, :] = sum over j in [offsets[b], offsets[b+1]) of table[indices[j], :]
///   (summed in order of j, so every kernel returns the reference's exact floats)
/// Offsets are absolute positions in `indices`; an empty bag yields zeros.
/// Returns false, with `out` unspecified, if any index is outside [0, table.rows), if
/// offsets decrease, or if they point outside `indices` (offsets[0] < 0 or
/// offsets[num_bags] > indices.size()). Never reads outside `table` or `indices`.
/// An empty `offsets` is malformed (false); a single entry means zero bags (true).
/// Hot path: no allocation, no logging, no exceptions.
/// The ids may be 32-bit (INT32 on the wire, never widened): the same sums.
bool embedding_bag_sum(Isa isa, const EmbeddingTable& table, std::span<const int64_t> indices,
                       std::span<const int64_t> offsets, PooledRows out);
bool embedding_bag_sum(Isa isa, const EmbeddingTable& table, std::span<const int32_t> indices,
                       std::span<const int64_t> offsets, PooledRows out);

/// The scalar reference: the contract above, written plainly. The test oracle.
bool embedding_bag_sum_ref(const EmbeddingTable& table, std::span<const int64_t> indices,
                           std::span<const int64_t> offsets, PooledRows out);
bool embedding_bag_sum_ref(const EmbeddingTable& table, std::span<const int32_t> indices,
                           std::span<const int64_t> offsets, PooledRows out);

}  // namespace recsched::engine
