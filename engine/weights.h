// Model weights from either source: deterministic from a seed (so every host builds
// the same model from the same spec), or read from a safetensors file by name.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"
#include "engine/safetensors.h"

namespace recsched::engine {

/// Fills `dst` with values uniform in [-bound, bound), a function only of
/// (seed, tensor name, element index): the same on every host and thread count.
void fill_uniform(std::span<float> dst, uint64_t seed, std::string_view tensor, float bound);

/// One weight tensor of a model: its state_dict name and shape, the memory it lives in,
/// and the bound of its seeded initialisation (values uniform in +-init_bound).
struct WeightTensor {
  std::string name;
  std::vector<int64_t> shape;
  std::span<float> data;
  float init_bound = 0.0f;
};

/// Fills every tensor with fill_uniform(data, seed, name, init_bound).
void init_seeded(std::span<const WeightTensor> tensors, uint64_t seed);

/// Reads every tensor from `file`. kInvalidArgument naming the tensor if one is missing,
/// has another shape or dtype, or if the file holds a tensor the model does not have.
/// Names and shapes are all checked before any data is read.
Status read_weights(const SafetensorsFile& file, std::span<const WeightTensor> tensors);

std::string shape_to_string(std::span<const int64_t> shape);

}  // namespace recsched::engine
