// Embedding-bag kernels. Each ISA's kernel is compiled with a target attribute, so the
// file builds for baseline x86-64 and only the chosen kernel's instructions ever run.
// Index checks are in the loop: a well-predicted branch costs far less than the cache
// miss each lookup pays, and it keeps the kernel safe on its own.
#include "engine/embedding_bag.h"

#include <cstring>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace recsched::engine {
namespace {

bool offsets_in_bounds(std::span<const int64_t> indices, std::span<const int64_t> offsets) {
  if (offsets.empty()) return false;
  return offsets.front() >= 0 && offsets.back() <= static_cast<int64_t>(indices.size());
}

inline bool valid_row(int64_t idx, int64_t rows) {
  return static_cast<uint64_t>(idx) < static_cast<uint64_t>(rows);
}

// Prefetches every cache line of the row that lookup j + distance will read, if that
// lookup is in range and its id is valid (an invalid id is reported when it is read).
inline void prefetch_row(const EmbeddingTable& t, const int64_t* indices, int64_t j,
                         int64_t end, int64_t row_bytes) {
  const int64_t ahead = j + kEmbeddingPrefetchDistance;
  if (ahead >= end) return;
  const int64_t idx = indices[ahead];
  if (!valid_row(idx, t.rows)) return;
  const char* row = reinterpret_cast<const char*>(t.data + idx * t.dim);
  for (int64_t b = 0; b < row_bytes; b += 64) __builtin_prefetch(row + b, 0, 3);
}

// Generic kernel: plain C++ the compiler vectorises for the baseline ISA.
bool bag_generic(const EmbeddingTable& t, const int64_t* indices, const int64_t* offsets,
                 int64_t num_bags, PooledRows out) {
  const int64_t end = offsets[num_bags];
  const int64_t row_bytes = int64_t{t.dim} * 4;
  for (int64_t b = 0; b < num_bags; ++b) {
    float* dst = out.data + b * out.stride;
    std::memset(dst, 0, sizeof(float) * t.dim);
    const int64_t s = offsets[b], e = offsets[b + 1];
    if (e < s) return false;
    for (int64_t j = s; j < e; ++j) {
      const int64_t idx = indices[j];
      if (!valid_row(idx, t.rows)) return false;
      prefetch_row(t, indices, j, end, row_bytes);
      const float* row = t.data + idx * t.dim;
      for (int32_t d = 0; d < t.dim; ++d) dst[d] += row[d];
    }
  }
  return true;
}

#if defined(__x86_64__)
// kRegs vector registers hold one pooled row of kRegs * kLanes floats.
template <int kRegs>
__attribute__((target("avx512f"))) bool bag_avx512_fixed(const EmbeddingTable& t,
                                                         const int64_t* indices,
                                                         const int64_t* offsets,
                                                         int64_t num_bags, PooledRows out) {
  const int64_t end = offsets[num_bags];
  const int64_t row_bytes = int64_t{t.dim} * 4;
  for (int64_t b = 0; b < num_bags; ++b) {
    __m512 acc[kRegs];
    for (int r = 0; r < kRegs; ++r) acc[r] = _mm512_setzero_ps();
    const int64_t s = offsets[b], e = offsets[b + 1];
    if (e < s) return false;
    for (int64_t j = s; j < e; ++j) {
      const int64_t idx = indices[j];
      if (!valid_row(idx, t.rows)) return false;
      prefetch_row(t, indices, j, end, row_bytes);
      const float* row = t.data + idx * t.dim;
      for (int r = 0; r < kRegs; ++r) acc[r] = _mm512_add_ps(acc[r], _mm512_loadu_ps(row + 16 * r));
    }
    float* dst = out.data + b * out.stride;
    for (int r = 0; r < kRegs; ++r) _mm512_storeu_ps(dst + 16 * r, acc[r]);
  }
  return true;
}

// Any dim: full 16-lane blocks, then a masked tail. Accumulates in `out` (L1-resident).
__attribute__((target("avx512f"))) bool bag_avx512_any(const EmbeddingTable& t,
                                                       const int64_t* indices,
                                                       const int64_t* offsets, int64_t num_bags,
                                                       PooledRows out) {
  const int64_t end = offsets[num_bags];
  const int64_t row_bytes = int64_t{t.dim} * 4;
  const int32_t full = t.dim / 16 * 16;
  const __mmask16 tail = static_cast<__mmask16>((1u << (t.dim - full)) - 1);
  for (int64_t b = 0; b < num_bags; ++b) {
    float* dst = out.data + b * out.stride;
    std::memset(dst, 0, sizeof(float) * t.dim);
    const int64_t s = offsets[b], e = offsets[b + 1];
    if (e < s) return false;
    for (int64_t j = s; j < e; ++j) {
      const int64_t idx = indices[j];
      if (!valid_row(idx, t.rows)) return false;
      prefetch_row(t, indices, j, end, row_bytes);
      const float* row = t.data + idx * t.dim;
      int32_t d = 0;
      for (; d < full; d += 16) {
        _mm512_storeu_ps(dst + d, _mm512_add_ps(_mm512_loadu_ps(dst + d), _mm512_loadu_ps(row + d)));
      }
      if (tail) {
        const __m512 x = _mm512_maskz_loadu_ps(tail, row + d);
        _mm512_mask_storeu_ps(dst + d, tail, _mm512_add_ps(_mm512_maskz_loadu_ps(tail, dst + d), x));
      }
    }
  }
  return true;
}

template <int kRegs>
__attribute__((target("avx2"))) bool bag_avx2_fixed(const EmbeddingTable& t,
                                                    const int64_t* indices,
                                                    const int64_t* offsets, int64_t num_bags,
                                                    PooledRows out) {
  const int64_t end = offsets[num_bags];
  const int64_t row_bytes = int64_t{t.dim} * 4;
  for (int64_t b = 0; b < num_bags; ++b) {
    __m256 acc[kRegs];
    for (int r = 0; r < kRegs; ++r) acc[r] = _mm256_setzero_ps();
    const int64_t s = offsets[b], e = offsets[b + 1];
    if (e < s) return false;
    for (int64_t j = s; j < e; ++j) {
      const int64_t idx = indices[j];
      if (!valid_row(idx, t.rows)) return false;
      prefetch_row(t, indices, j, end, row_bytes);
      const float* row = t.data + idx * t.dim;
      for (int r = 0; r < kRegs; ++r) acc[r] = _mm256_add_ps(acc[r], _mm256_loadu_ps(row + 8 * r));
    }
    float* dst = out.data + b * out.stride;
    for (int r = 0; r < kRegs; ++r) _mm256_storeu_ps(dst + 8 * r, acc[r]);
  }
  return true;
}
#endif  // __x86_64__

using BagFn = bool (*)(const EmbeddingTable&, const int64_t*, const int64_t*, int64_t,
                       PooledRows);

BagFn pick_kernel(Isa isa, int32_t dim) {
#if defined(__x86_64__)
  if (isa == Isa::kAvx512) {
    switch (dim) {
      case 16: return &bag_avx512_fixed<1>;
      case 32: return &bag_avx512_fixed<2>;
      case 48: return &bag_avx512_fixed<3>;
      case 64: return &bag_avx512_fixed<4>;
      case 128: return &bag_avx512_fixed<8>;
      default: return &bag_avx512_any;
    }
  }
  if (isa == Isa::kAvx2) {
    switch (dim) {
      case 8: return &bag_avx2_fixed<1>;
      case 16: return &bag_avx2_fixed<2>;
      case 32: return &bag_avx2_fixed<4>;
      case 64: return &bag_avx2_fixed<8>;
      default: break;  // other widths: the generic kernel, vectorised by the compiler
    }
  }
#endif
  return &bag_generic;
}

}  // namespace

bool embedding_bag_sum(Isa isa, const EmbeddingTable& table, std::span<const int64_t> indices,
                       std::span<const int64_t> offsets, PooledRows out) {
  if (!offsets_in_bounds(indices, offsets)) return false;
  const int64_t num_bags = static_cast<int64_t>(offsets.size()) - 1;
  if (num_bags == 0) return true;
  if (table.dim <= 0) return false;
  return pick_kernel(isa, table.dim)(table, indices.data(), offsets.data(), num_bags, out);
}

bool embedding_bag_sum_ref(const EmbeddingTable& table, std::span<const int64_t> indices,
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

}  // namespace recsched::engine
