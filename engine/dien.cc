// DIEN (Zhou et al. 2019): a GRU extracts interest states from the behaviour sequence,
// attention weighs each state against the candidate ad, and an AUGRU (a GRU whose
// update is scaled by the attention weight) evolves them into one interest vector.
// Equations and tensor names: scripts/reference/zoo_ref.py. Steps whose behaviour bag
// is empty are masked: both recurrences skip them and the attention gives them 0.
#include <algorithm>
#include <cmath>

#include "engine/fast_math.h"
#include "engine/layers.h"
#include "engine/zoo.h"

namespace recsched::engine {
namespace {

enum Slot : size_t {
  kFeatures,  // [n, 3 * dim]: user, ad, context
  kSteps,     // [n * S, dim]: behaviour embeddings, item-major
  kMask,      // [n * S]: 1 where the step's bag is non-empty
  kGatesIn,   // [n * S, 3H]: input projections of every step, computed in one GEMM
  kStates,    // [n * S, H]: GRU states h_t
  kGatesHid,  // [n, 3H]: hidden projection of the current step
  kState,     // [n, H]: the running state
  kAdProj,    // [n, H]: W_a a
  kAlpha,     // [n * S]: attention weights
  kTop,       // [n, 3 * dim + H]
  kHidden,    // MLP scratch (two slots)
};

// A GRU cell's weights in PyTorch's layout: gate rows r, z, n.
struct GruWeights {
  LinearLayer ih;  // [3H, in] + bias_ih
  LinearLayer hh;  // [3H, H] + bias_hh
};

Status allocate_gru(const std::string& prefix, int32_t in, int32_t hidden,
                    std::vector<WeightTensor>& weights, GruWeights& gru) {
  // PyTorch's GRU initialisation: every tensor uniform in +-1/sqrt(H).
  const float bound = 1.0f / std::sqrt(static_cast<float>(hidden));
  for (auto [layer, layer_in, suffix] :
       {std::tuple{&gru.ih, in, "ih"}, std::tuple{&gru.hh, hidden, "hh"}}) {
    layer->in = layer_in;
    layer->out = 3 * hidden;
    layer->act = Activation::kNone;
    RECSCHED_ASSIGN_OR_RETURN(
        layer->weight,
        allocate_tensor(prefix + ".weight_" + suffix, {3 * hidden, layer_in}, bound, weights));
    RECSCHED_ASSIGN_OR_RETURN(
        layer->bias, allocate_tensor(prefix + ".bias_" + suffix, {3 * hidden}, bound, weights));
  }
  return Status::ok();
}

class DienModel final : public ModelBase {
 public:
  DienModel(const ModelSpec& spec, Isa isa) : ModelBase(spec, isa) {}

  Status build() {
    const int32_t dim = spec_.embedding_dim, h = spec_.gru_hidden;
    RECSCHED_RETURN_IF_ERROR(tables_.allocate(spec_, weights_));
    RECSCHED_RETURN_IF_ERROR(allocate_gru("gru", dim, h, weights_, gru_));
    att_.in = dim;
    att_.out = h;
    att_.act = Activation::kNone;
    RECSCHED_ASSIGN_OR_RETURN(att_.weight, allocate_tensor("att.weight", {h, dim},
                                                           std::sqrt(6.0f / (h + dim)), weights_));
    RECSCHED_ASSIGN_OR_RETURN(att_.bias, HostBuffer::allocate(size_t(h)));  // no bias: zeros
    RECSCHED_RETURN_IF_ERROR(allocate_gru("augru", h, h, weights_, augru_));
    return top_.allocate("top_l", 3 * dim + h, spec_.top_mlp,
                         spec_.top_mlp.back() >= 2 ? Activation::kSoftmax : Activation::kSigmoid,
                         weights_);
  }

 private:
  Status run(const BatchView& batch, Workspace& ws, MatrixView scores) const override;

  GruWeights gru_;
  LinearLayer att_;
  GruWeights augru_;
  Mlp top_;
};

Status DienModel::run(const BatchView& batch, Workspace& ws, MatrixView scores) const {
  const int64_t n = batch.batch_size;
  const int32_t dim = spec_.embedding_dim, h = spec_.gru_hidden, steps = spec_.behaviour_tables;
  const int64_t rows = n * steps, g3 = 3 * int64_t{h};

  RECSCHED_ASSIGN_OR_RETURN(float* feats, ws.floats(kFeatures, size_t(n) * 3 * dim));
  RECSCHED_ASSIGN_OR_RETURN(float* x, ws.floats(kSteps, size_t(rows) * dim));
  RECSCHED_ASSIGN_OR_RETURN(float* mask, ws.floats(kMask, size_t(rows)));
  RECSCHED_ASSIGN_OR_RETURN(float* gi, ws.floats(kGatesIn, size_t(rows) * g3));
  RECSCHED_ASSIGN_OR_RETURN(float* states, ws.floats(kStates, size_t(rows) * h));
  RECSCHED_ASSIGN_OR_RETURN(float* gh, ws.floats(kGatesHid, size_t(n) * g3));
  RECSCHED_ASSIGN_OR_RETURN(float* state, ws.floats(kState, size_t(n) * h));
  RECSCHED_ASSIGN_OR_RETURN(float* ad_proj, ws.floats(kAdProj, size_t(n) * h));
  RECSCHED_ASSIGN_OR_RETURN(float* alpha, ws.floats(kAlpha, size_t(rows)));
  const int64_t top_ld = 3 * int64_t{dim} + h;
  RECSCHED_ASSIGN_OR_RETURN(float* top_in, ws.floats(kTop, size_t(n) * top_ld));

  // Embeddings: user -> feats[:, 0], ad -> feats[:, 1], context -> feats[:, 2]; step t of
  // item r -> x[r * S + t].
  const int64_t feat_ld = 3 * int64_t{dim};
  RECSCHED_RETURN_IF_ERROR(tables_.pool(isa_, batch, 0, PooledRows{feats, feat_ld}));
  RECSCHED_RETURN_IF_ERROR(tables_.pool(isa_, batch, steps + 1, PooledRows{feats + dim, feat_ld}));
  RECSCHED_RETURN_IF_ERROR(
      tables_.pool(isa_, batch, steps + 2, PooledRows{feats + 2 * dim, feat_ld}));
  ws.yield_point();
  for (int32_t t = 0; t < steps; ++t) {
    RECSCHED_RETURN_IF_ERROR(
        tables_.pool(isa_, batch, t + 1, PooledRows{x + int64_t{t} * dim, int64_t{steps} * dim}));
    const auto off = batch.table_offsets(uint32_t(t + 1));
    for (int64_t r = 0; r < n; ++r) mask[r * steps + t] = off[r + 1] > off[r] ? 1.0f : 0.0f;
    ws.yield_point();
  }

  // One recurrence over the steps. `update(r, t, z, cand, s)` applies the cell's update to
  // state row s given the gates; masked steps keep the state.
  auto recur = [&](const GruWeights& w, const float* inputs, int32_t in_width, auto update,
                   float* record) -> Status {
    RECSCHED_RETURN_IF_ERROR(linear_forward_yielding(w.ih, ConstMatrixView{inputs, rows, in_width},
                                                     MatrixView{gi, rows, g3}, ws));
    std::fill_n(state, size_t(n) * h, 0.0f);
    for (int32_t t = 0; t < steps; ++t) {
      ws.yield_point();
      RECSCHED_RETURN_IF_ERROR(
          linear_forward(w.hh, ConstMatrixView{state, n, h}, MatrixView{gh, n, g3}));
      for (int64_t r = 0; r < n; ++r) {
        float* s = state + r * h;
        if (mask[r * steps + t] != 0.0f) {
          const float* a = gi + (r * steps + t) * g3;
          const float* b = gh + r * g3;
          for (int32_t k = 0; k < h; ++k) {
            const float reset = fast_sigmoid(a[k] + b[k]);
            const float z = fast_sigmoid(a[h + k] + b[h + k]);
            const float cand = fast_tanh(a[2 * h + k] + reset * b[2 * h + k]);
            s[k] = update(r, t, z, cand, s[k]);
          }
        }
        if (record != nullptr) std::copy_n(s, h, record + (r * steps + t) * h);
      }
    }
    return Status::ok();
  };

  // Layer 1: GRU, h' = (1 - z) * n + z * h.
  RECSCHED_RETURN_IF_ERROR(recur(
      gru_, x, dim,
      [](int64_t, int32_t, float z, float cand, float s) { return (1.0f - z) * cand + z * s; },
      states));

  // Attention: alpha = softmax over the valid steps of h_t . (W_a a).
  RECSCHED_RETURN_IF_ERROR(
      linear_forward(att_, ConstMatrixView{feats + dim, n, feat_ld}, MatrixView{ad_proj, n, h}));
  for (int64_t r = 0; r < n; ++r) {
    float top = -INFINITY;
    float* a = alpha + r * steps;
    for (int32_t t = 0; t < steps; ++t) {
      if (mask[r * steps + t] == 0.0f) continue;
      const float* st = states + (r * steps + t) * h;
      float dot = 0.0f;
      for (int32_t k = 0; k < h; ++k) dot += st[k] * ad_proj[r * h + k];
      a[t] = dot;
      top = std::max(top, dot);
    }
    float sum = 0.0f;
    for (int32_t t = 0; t < steps; ++t) {
      a[t] = mask[r * steps + t] == 0.0f ? 0.0f : std::exp(a[t] - top);
      sum += a[t];
    }
    if (sum > 0.0f) {
      for (int32_t t = 0; t < steps; ++t) a[t] /= sum;
    }
  }

  ws.yield_point();
  // Layer 2: AUGRU over the GRU states, g' = g + alpha * (1 - z) * (n - g).
  RECSCHED_RETURN_IF_ERROR(recur(
      augru_, states, h,
      [&](int64_t r, int32_t t, float z, float cand, float s) {
        return s + alpha[r * steps + t] * (1.0f - z) * (cand - s);
      },
      nullptr));

  ws.yield_point();
  // Top: [u, g_S, a, c].
  for (int64_t r = 0; r < n; ++r) {
    float* o = top_in + r * top_ld;
    const float* f = feats + r * feat_ld;
    std::copy_n(f, dim, o);
    std::copy_n(state + r * h, h, o + dim);
    std::copy_n(f + dim, 2 * dim, o + dim + h);
  }
  return top_.forward(ConstMatrixView{top_in, n, top_ld}, scores, ws, kHidden);
}

}  // namespace

Result<std::unique_ptr<Model>> load_dien(const ModelSpec& spec, const LoadOptions& options) {
  return build_and_load<DienModel>(spec, options);
}

}  // namespace recsched::engine
