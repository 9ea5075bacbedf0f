#include "engine/dense.h"

#include <doctest/doctest.h>

#include <cmath>
#include <random>
#include <vector>

namespace recsched::engine {
namespace {

LinearLayer random_layer(std::mt19937& rng, int in, int out, Activation act) {
  LinearLayer l;
  l.in = in;
  l.out = out;
  l.act = act;
  l.weight = std::move(HostBuffer::allocate(size_t(in) * out).value());
  l.bias = std::move(HostBuffer::allocate(size_t(out)).value());
  std::normal_distribution<float> g(0.0f, 1.0f / std::sqrt(float(in)));
  for (float& w : l.weight.span()) w = g(rng);
  for (float& b : l.bias.span()) b = g(rng);
  return l;
}

TEST_CASE("linear_forward matches the double-precision reference for each activation") {
  std::mt19937 rng(7);
  set_blas_threads(1);
  for (Activation act :
       {Activation::kNone, Activation::kRelu, Activation::kSigmoid, Activation::kSoftmax}) {
    struct Shape {
      int64_t rows;
      int in, out;
    };
    for (const Shape& shape :
         {Shape{1, 13, 7}, Shape{5, 64, 32}, Shape{33, 2560, 17}, Shape{64, 3, 256}}) {
      const int64_t rows = shape.rows;
      const int in = shape.in, out = shape.out;
      CAPTURE(rows);
      CAPTURE(in);
      CAPTURE(out);
      const LinearLayer l = random_layer(rng, in, out, act);
      const int64_t ldx = in + 3, ldy = out + 2;  // strided views, as the model uses them
      std::vector<float> x(rows * ldx);
      std::uniform_real_distribution<float> uni(-1, 1);
      for (float& v : x) v = uni(rng);
      std::vector<float> got(rows * ldy, 123.0f), want(rows * ldy, 123.0f);
      REQUIRE(linear_forward(l, {x.data(), rows, ldx}, {got.data(), rows, ldy}).is_ok());
      linear_forward_ref(l, {x.data(), rows, ldx}, {want.data(), rows, ldy});
      for (int r = 0; r < rows; ++r) {
        for (int c = 0; c < ldy; ++c) {
          const float w = want[r * ldy + c], g = got[r * ldy + c];
          if (c >= out) {
            CHECK(g == 123.0f);  // the padding between rows is left alone
          } else {
            CHECK(std::abs(g - w) <= 1e-5f * (1.0f + std::abs(w)));
          }
          if (act == Activation::kRelu && c < out) CHECK(g >= 0.0f);
        }
      }
    }
  }
}

TEST_CASE("dot_interaction emits x then the strictly-lower-triangle dot products row by row") {
  // One row, 3 vectors of dim 2: z0 = (1, 2), z1 = (3, 4), z2 = (5, 6).
  const std::vector<float> feats = {1, 2, 3, 4, 5, 6};
  std::vector<float> out(2 + 3);
  dot_interaction({feats.data(), 1, 6}, 3, 2, {out.data(), 1, 5});
  // pairs in order (1,0), (2,0), (2,1): 1*3+2*4, 1*5+2*6, 3*5+4*6
  CHECK(out == std::vector<float>{1, 2, 11, 17, 39});
}

TEST_CASE("dot_interaction with a single vector passes x through") {
  const std::vector<float> feats = {1, 2, 3, 4};  // 2 rows of one vector of dim 2
  std::vector<float> out(4, -1);
  dot_interaction({feats.data(), 2, 2}, 1, 2, {out.data(), 2, 2});
  CHECK(out == feats);
}

}  // namespace
}  // namespace recsched::engine
