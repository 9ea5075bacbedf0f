// AVX2 embedding-bag kernels. This file alone is compiled with -mavx2; it runs only
// where engine/isa.h found AVX2.
#include <immintrin.h>

#include "engine/embedding_bag_walk.h"

namespace recsched::engine::kernels {
namespace {

// A pooled row of kRegs * 8 floats held in registers.
template <int kRegs>
struct RegisterAcc {
  __m256 r[kRegs];
  RegisterAcc(const BagArgs&, float*) {
    for (int i = 0; i < kRegs; ++i) r[i] = _mm256_setzero_ps();
  }
  void add(const float* row) {
    for (int i = 0; i < kRegs; ++i) r[i] = _mm256_add_ps(r[i], _mm256_loadu_ps(row + 8 * i));
  }
  void store(float* dst) const {
    for (int i = 0; i < kRegs; ++i) _mm256_storeu_ps(dst + 8 * i, r[i]);
  }
};

}  // namespace

BagFn avx2_kernel(int32_t dim, bool narrow) {
  switch (dim) {
    case 8:
      return walk_bags_for<RegisterAcc<1>>(narrow);
    case 16:
      return walk_bags_for<RegisterAcc<2>>(narrow);
    case 32:
      return walk_bags_for<RegisterAcc<4>>(narrow);
    case 64:
      return walk_bags_for<RegisterAcc<8>>(narrow);
    default:
      return nullptr;  // other widths: the generic kernel
  }
}

}  // namespace recsched::engine::kernels
