// Dense (fully connected) layers on oneDNN's sgemm, and the small element-wise and
// interaction steps around them. Measured on the build machines (one core): oneDNN's
// sgemm reaches ~160 GFLOPS at batch 1024 and ~29 at batch 1, Debian's OpenBLAS ~32
// and ~4.5 (bench/gemm_rate), so oneDNN is the one BLAS here.
#pragma once

#include <cstdint>
#include <span>

#include "core/status.h"
#include "engine/host_buffer.h"

namespace recsched::engine {

/// What follows a Linear layer. kSoftmax normalises each output row.
enum class Activation { kNone, kRelu, kSigmoid, kSoftmax };

/// One Linear layer in PyTorch's layout: weight [out, in], bias [out];
/// y = act(x · weightᵀ + bias).
struct LinearLayer {
  int32_t in = 0;
  int32_t out = 0;
  Activation act = Activation::kRelu;
  HostBuffer weight;  ///< [out * in], row-major
  HostBuffer bias;    ///< [out]
};

/// A row-major matrix view with a leading dimension (row stride) >= cols.
struct MatrixView {
  float* data = nullptr;
  int64_t rows = 0;
  int64_t ld = 0;
};
struct ConstMatrixView {
  const float* data = nullptr;
  int64_t rows = 0;
  int64_t ld = 0;
};

/// y[r, 0:out] = act(x[r, 0:in] · weightᵀ + bias) for every row r.
/// x.rows == y.rows; x.ld >= in; y.ld >= out. kInternal if the BLAS fails.
/// No allocation. Runs on the calling thread's BLAS thread count (see
/// set_blas_threads).
Status linear_forward(const LinearLayer& layer, ConstMatrixView x, MatrixView y);

/// linear_forward in two halves, so that a caller can cut the product into blocks of
/// output columns: y[:, first:first+count] = x · weight[first:first+count]ᵀ (no bias), then
/// bias and activation over whole rows once every column is there. kInternal if the BLAS
/// fails.
Status linear_columns(const LinearLayer& layer, ConstMatrixView x, MatrixView y, int32_t first,
                      int32_t count);
void linear_bias_act(const LinearLayer& layer, MatrixView y);

/// The same computed with plain loops in double precision: the test oracle.
void linear_forward_ref(const LinearLayer& layer, ConstMatrixView x, MatrixView y);

/// Sets how many threads the BLAS may use for calls made from the calling thread.
/// Engine workers call it with 1: parallelism comes from sub-batches across workers.
void set_blas_threads(int threads);

/// DLRM's "dot" interaction (facebookresearch/dlrm, interact_features):
///   for each row r: z_0 = feats[r, 0:dim] (bottom-MLP output), z_i = feats[r, i*dim:(i+1)*dim]
///   out[r, 0:dim] = z_0
///   out[r, dim + k] = <z_i, z_j> for the k-th pair (i, j) in the order
///                     i = 1..n-1, j = 0..i-1  (strictly lower triangle, row by row)
/// where n = num_vectors. out needs dim + n*(n-1)/2 columns.
void dot_interaction(ConstMatrixView feats, int32_t num_vectors, int32_t dim, MatrixView out);

}  // namespace recsched::engine
