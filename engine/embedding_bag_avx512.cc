// AVX-512 embedding-bag kernels. This file alone is compiled with -mavx512f; it runs
// only where engine/isa.h found AVX-512.
#include <immintrin.h>

#include "engine/embedding_bag_walk.h"

namespace recsched::engine::kernels {
namespace {

// A pooled row of kRegs * 16 floats held in registers.
template <int kRegs>
struct RegisterAcc {
  __m512 r[kRegs];
  RegisterAcc(const BagArgs&, float*) {
    for (int i = 0; i < kRegs; ++i) r[i] = _mm512_setzero_ps();
  }
  void add(const float* row) {
    for (int i = 0; i < kRegs; ++i) r[i] = _mm512_add_ps(r[i], _mm512_loadu_ps(row + 16 * i));
  }
  void store(float* dst) const {
    for (int i = 0; i < kRegs; ++i) _mm512_storeu_ps(dst + 16 * i, r[i]);
  }
};

// Any width: sums in the (L1-resident) output row, 16 lanes at a time, masked tail.
struct MemoryAcc {
  float* dst;
  int32_t full;
  __mmask16 tail;
  MemoryAcc(const BagArgs& a, float* d)
      : dst(d),
        full(a.dim / 16 * 16),
        tail(static_cast<__mmask16>((1u << (a.dim - a.dim / 16 * 16)) - 1)) {
    int32_t i = 0;
    for (; i < full; i += 16) _mm512_storeu_ps(dst + i, _mm512_setzero_ps());
    if (tail) _mm512_mask_storeu_ps(dst + i, tail, _mm512_setzero_ps());
  }
  void add(const float* row) {
    int32_t i = 0;
    for (; i < full; i += 16) {
      _mm512_storeu_ps(dst + i, _mm512_add_ps(_mm512_loadu_ps(dst + i), _mm512_loadu_ps(row + i)));
    }
    if (tail) {
      const __m512 x = _mm512_maskz_loadu_ps(tail, row + i);
      _mm512_mask_storeu_ps(dst + i, tail, _mm512_add_ps(_mm512_maskz_loadu_ps(tail, dst + i), x));
    }
  }
  void store(float*) const {}
};

}  // namespace

BagFn avx512_kernel(int32_t dim, bool narrow) {
  switch (dim) {
    case 16:
      return walk_bags_for<RegisterAcc<1>>(narrow);
    case 32:
      return walk_bags_for<RegisterAcc<2>>(narrow);
    case 48:
      return walk_bags_for<RegisterAcc<3>>(narrow);
    case 64:
      return walk_bags_for<RegisterAcc<4>>(narrow);
    case 128:
      return walk_bags_for<RegisterAcc<8>>(narrow);
    default:
      return walk_bags_for<MemoryAcc>(narrow);
  }
}

}  // namespace recsched::engine::kernels
