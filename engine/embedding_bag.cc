// embedding_bag_sum(): argument checks, the choice of kernel, the generic kernel and
// the scalar reference. The SIMD kernels are in embedding_bag_avx2.cc and
// embedding_bag_avx512.cc, each compiled for its ISA.
#include "engine/embedding_bag.h"

#include <cstring>

#include "engine/embedding_bag_kernels.h"
#include "engine/embedding_bag_walk.h"

namespace recsched::engine {
namespace kernels {
namespace {

// Plain C++ the compiler vectorises for baseline x86-64 (SSE2).
struct ScalarAcc {
  float* dst;
  int32_t dim;
  ScalarAcc(const BagArgs& a, float* d) : dst(d), dim(a.dim) {
    std::memset(dst, 0, sizeof(float) * dim);
  }
  void add(const float* row) {
    for (int32_t d = 0; d < dim; ++d) dst[d] += row[d];
  }
  void store(float*) const {}
};

}  // namespace

BagFn generic_kernel(int32_t, bool narrow) { return walk_bags_for<ScalarAcc>(narrow); }

#if !defined(__x86_64__)
BagFn avx2_kernel(int32_t, bool) { return nullptr; }
BagFn avx512_kernel(int32_t, bool) { return nullptr; }
#endif

}  // namespace kernels

namespace {

template <class Id>
bool sum_with_kernel(Isa isa, const EmbeddingTable& table, std::span<const Id> indices,
                     std::span<const int64_t> offsets, PooledRows out) {
  if (offsets.empty()) return false;
  if (offsets.front() < 0 || offsets.back() > static_cast<int64_t>(indices.size())) return false;
  const int64_t num_bags = static_cast<int64_t>(offsets.size()) - 1;
  if (num_bags == 0) return true;
  if (table.dim <= 0) return false;
  constexpr bool kNarrow = sizeof(Id) == sizeof(int32_t);
  kernels::BagFn fn = nullptr;
  if (isa == Isa::kAvx512) fn = kernels::avx512_kernel(table.dim, kNarrow);
  if (isa == Isa::kAvx2) fn = kernels::avx2_kernel(table.dim, kNarrow);
  if (fn == nullptr) fn = kernels::generic_kernel(table.dim, kNarrow);
  kernels::BagArgs args{table.data, table.rows, table.dim, nullptr, nullptr, offsets.data(),
                        num_bags, out.data, out.stride};
  if constexpr (kNarrow) {
    args.narrow_indices = indices.data();
  } else {
    args.indices = indices.data();
  }
  return fn(args);
}

template <class Id>
bool sum_plainly(const EmbeddingTable& table, std::span<const Id> indices,
                 std::span<const int64_t> offsets, PooledRows out) {
  if (offsets.empty()) return false;
  if (offsets.front() < 0 || offsets.back() > static_cast<int64_t>(indices.size())) return false;
  for (size_t b = 0; b + 1 < offsets.size(); ++b) {
    if (offsets[b + 1] < offsets[b]) return false;
    float* dst = out.data + static_cast<int64_t>(b) * out.stride;
    for (int32_t d = 0; d < table.dim; ++d) dst[d] = 0.0f;
    for (int64_t j = offsets[b]; j < offsets[b + 1]; ++j) {
      const int64_t idx = indices[j];
      if (idx < 0 || idx >= table.rows) return false;
      for (int32_t d = 0; d < table.dim; ++d) dst[d] += table.data[idx * table.dim + d];
    }
  }
  return true;
}

}  // namespace

bool embedding_bag_sum(Isa isa, const EmbeddingTable& table, std::span<const int64_t> indices,
                       std::span<const int64_t> offsets, PooledRows out) {
  return sum_with_kernel(isa, table, indices, offsets, out);
}

bool embedding_bag_sum(Isa isa, const EmbeddingTable& table, std::span<const int32_t> indices,
                       std::span<const int64_t> offsets, PooledRows out) {
  return sum_with_kernel(isa, table, indices, offsets, out);
}

bool embedding_bag_sum_ref(const EmbeddingTable& table, std::span<const int64_t> indices,
                           std::span<const int64_t> offsets, PooledRows out) {
  return sum_plainly(table, indices, offsets, out);
}

bool embedding_bag_sum_ref(const EmbeddingTable& table, std::span<const int32_t> indices,
                           std::span<const int64_t> offsets, PooledRows out) {
  return sum_plainly(table, indices, offsets, out);
}

}  // namespace recsched::engine
