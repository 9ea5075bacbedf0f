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

/// One tensor a model expects.
struct ExpectedTensor {
  std::string name;
  std::vector<int64_t> shape;
  std::span<float> dst;
};

/// Reads every expected tensor from `file`. kInvalidArgument naming the tensor if one is
/// missing, has another shape or dtype, or if the file holds a tensor not expected.
Status read_expected(const SafetensorsFile& file, std::span<const ExpectedTensor> expected);

std::string shape_to_string(std::span<const int64_t> shape);

}  // namespace recsched::engine
