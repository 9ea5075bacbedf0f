// Internal to engine/: the per-ISA embedding-bag kernels behind embedding_bag_sum().
// Each ISA's kernels live in their own file compiled for that ISA (as FBGEMM does), so
// this header holds only plain types: no standard-library inline code whose copies,
// compiled for different ISAs, the linker could merge.
#pragma once

#include <cstdint>

namespace recsched::engine::kernels {

/// One call's arguments; offsets are already checked to lie inside the ids.
struct BagArgs {
  const float* table;
  int64_t rows;
  int32_t dim;
  const int64_t* indices;         ///< the ids: 64-bit,
  const int32_t* narrow_indices;  ///< or 32-bit (the kernel chosen for them reads these)
  const int64_t* offsets;  ///< num_bags + 1 absolute positions
  int64_t num_bags;
  float* out;
  int64_t out_stride;
};

/// A kernel: the contract of embedding_bag_sum() on checked arguments.
using BagFn = bool (*)(const BagArgs&);

/// The kernel for rows of `dim` floats and ids of 32 bits (`narrow`) or 64.
BagFn generic_kernel(int32_t dim, bool narrow);
/// nullptr where the ISA's kernels are not built (non-x86 builds).
BagFn avx2_kernel(int32_t dim, bool narrow);
BagFn avx512_kernel(int32_t dim, bool narrow);

}  // namespace recsched::engine::kernels
