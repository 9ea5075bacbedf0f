// The rest of DeepRecInfra's zoo, as the papers describe the models (the equations and
// tensor names, shared with the PyTorch reference, are in scripts/reference/zoo_ref.py):
//   ncf    gmf = e0 * e1; m = MLP(e2 ++ e3) (ReLU after every layer);
//          out = sigmoid(predict(gmf ++ m))                               [N, 1]
//   wnd    out = sigmoid(MLP(dense ++ e_0 ++ ... ++ e_T-1))                [N, K]
//   mtwnd  t = trunk(dense ++ e_*) (ReLU after every layer);
//          out[:, i] = sigmoid(head_i(t))                                  [N, tasks]
//   din    w_i = att(b_i ++ a ++ b_i * a); pooled = sum_i w_i b_i;
//          out = softmax(top(u ++ pooled ++ a ++ c))                       [N, K]
//   dien   GRU over the behaviour steps, attention of its states on the ad, AUGRU;
//          out = softmax(top(u ++ g_S ++ a ++ c))                          [N, K]
// (softmax when K >= 2, sigmoid when K == 1). Tables: ncf [user_gmf, item_gmf,
// user_mlp, item_mlp]; din/dien [user, behaviour_1..B, ad, context], where an empty
// behaviour bag means "no behaviour there" (DIEN skips such steps).
#pragma once

#include <memory>

#include "core/status.h"
#include "engine/model.h"

namespace recsched::engine {

/// See load_model(). One per type; `spec.type` must match.
Result<std::unique_ptr<Model>> load_ncf(const ModelSpec& spec, const LoadOptions& options);
Result<std::unique_ptr<Model>> load_wnd(const ModelSpec& spec, const LoadOptions& options);
Result<std::unique_ptr<Model>> load_din(const ModelSpec& spec, const LoadOptions& options);
Result<std::unique_ptr<Model>> load_dien(const ModelSpec& spec, const LoadOptions& options);

}  // namespace recsched::engine
