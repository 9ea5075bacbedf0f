// The DLRM family (facebookresearch/dlrm; DeepRecInfra's RMC1, RMC2, RMC3):
//   x = bottom MLP(dense)                      ReLU after every bottom layer
//   e_t = embedding_bag_sum(table t, bags)     one pooled vector per table
//   z = interaction(x, e_0..e_T-1)             "dot" or "cat" (engine/model_spec.h)
//   scores = sigmoid(top MLP(z))               ReLU between top layers
#pragma once

#include <memory>

#include "core/status.h"
#include "engine/model.h"

namespace recsched::engine {

/// See load_model().
Result<std::unique_ptr<Model>> load_dlrm(const ModelSpec& spec, const LoadOptions& options);

}  // namespace recsched::engine
