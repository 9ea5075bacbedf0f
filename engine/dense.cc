#include "engine/dense.h"

#include <dnnl.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

namespace recsched::engine {
namespace {

void apply_bias_act(const float* bias, Activation act, int32_t n, float* y) {
  switch (act) {
    case Activation::kNone:
      for (int32_t i = 0; i < n; ++i) y[i] += bias[i];
      break;
    case Activation::kRelu:
      for (int32_t i = 0; i < n; ++i) y[i] = std::max(y[i] + bias[i], 0.0f);
      break;
    case Activation::kSigmoid:
      for (int32_t i = 0; i < n; ++i) y[i] = 1.0f / (1.0f + std::exp(-(y[i] + bias[i])));
      break;
    case Activation::kSoftmax: {
      float top = -INFINITY;
      for (int32_t i = 0; i < n; ++i) top = std::max(top, y[i] += bias[i]);
      float sum = 0.0f;
      for (int32_t i = 0; i < n; ++i) sum += (y[i] = std::exp(y[i] - top));
      for (int32_t i = 0; i < n; ++i) y[i] /= sum;
      break;
    }
  }
}

}  // namespace

Status linear_columns(const LinearLayer& layer, ConstMatrixView x, MatrixView y, int32_t first,
                      int32_t count) {
  if (x.rows == 0 || count <= 0) return Status::ok();
  // Row-major C = A · Bᵀ with B = weight [out, in]: oneDNN's row-major sgemm, 'N','T'.
  const dnnl_status_t st =
      dnnl_sgemm('N', 'T', x.rows, count, layer.in, 1.0f, x.data, x.ld,
                 layer.weight.data() + int64_t{first} * layer.in, layer.in, 0.0f, y.data + first,
                 y.ld);
  if (st != dnnl_success) {
    return internal_error("dnnl_sgemm failed with status " + std::to_string(st) + " for a " +
                          std::to_string(x.rows) + "x" + std::to_string(layer.in) + "x" +
                          std::to_string(count) + " layer");
  }
  return Status::ok();
}

void linear_bias_act(const LinearLayer& layer, MatrixView y) {
  for (int64_t r = 0; r < y.rows; ++r) {
    apply_bias_act(layer.bias.data(), layer.act, layer.out, y.data + r * y.ld);
  }
}

Status linear_forward(const LinearLayer& layer, ConstMatrixView x, MatrixView y) {
  RECSCHED_RETURN_IF_ERROR(linear_columns(layer, x, y, 0, layer.out));
  linear_bias_act(layer, MatrixView{y.data, x.rows, y.ld});
  return Status::ok();
}

void linear_forward_ref(const LinearLayer& layer, ConstMatrixView x, MatrixView y) {
  const float* w = layer.weight.data();
  std::vector<double> row(layer.out);
  for (int64_t r = 0; r < x.rows; ++r) {
    double top = -INFINITY, sum = 0;
    for (int32_t o = 0; o < layer.out; ++o) {
      double acc = layer.bias.data()[o];
      for (int32_t i = 0; i < layer.in; ++i) {
        acc += static_cast<double>(x.data[r * x.ld + i]) * w[int64_t{o} * layer.in + i];
      }
      if (layer.act == Activation::kRelu) acc = std::max(acc, 0.0);
      if (layer.act == Activation::kSigmoid) acc = 1.0 / (1.0 + std::exp(-acc));
      row[o] = acc;
      top = std::max(top, acc);
    }
    if (layer.act == Activation::kSoftmax) {
      for (double& v : row) sum += (v = std::exp(v - top));
      for (double& v : row) v /= sum;
    }
    for (int32_t o = 0; o < layer.out; ++o) y.data[r * y.ld + o] = static_cast<float>(row[o]);
  }
}

void set_blas_threads(int threads) { omp_set_num_threads(std::max(1, threads)); }

void dot_interaction(ConstMatrixView feats, int32_t num_vectors, int32_t dim, MatrixView out) {
  for (int64_t r = 0; r < feats.rows; ++r) {
    const float* z = feats.data + r * feats.ld;
    float* o = out.data + r * out.ld;
    std::copy(z, z + dim, o);
    float* pair = o + dim;
    for (int32_t i = 1; i < num_vectors; ++i) {
      const float* zi = z + int64_t{i} * dim;
      for (int32_t j = 0; j < i; ++j) {
        const float* zj = z + int64_t{j} * dim;
        float acc = 0.0f;
        for (int32_t d = 0; d < dim; ++d) acc += zi[d] * zj[d];
        *pair++ = acc;
      }
    }
  }
}

}  // namespace recsched::engine
