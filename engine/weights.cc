#include "engine/weights.h"

#include <unordered_set>

namespace recsched::engine {
namespace {

uint64_t splitmix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

uint64_t fnv1a(std::string_view s) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (char c : s) h = (h ^ static_cast<unsigned char>(c)) * 0x100000001b3ull;
  return h;
}

}  // namespace

void fill_uniform(std::span<float> dst, uint64_t seed, std::string_view tensor, float bound) {
  const uint64_t key = splitmix64(seed ^ fnv1a(tensor));
  const float scale = 2.0f * bound / 16777216.0f;  // 24 random bits -> [0, 2 * bound)
  for (size_t i = 0; i < dst.size(); ++i) {
    const uint64_t r = splitmix64(key + i);
    dst[i] = static_cast<float>(r >> 40) * scale - bound;
  }
}

void init_seeded(std::span<const WeightTensor> tensors, uint64_t seed) {
  for (const WeightTensor& t : tensors) fill_uniform(t.data, seed, t.name, t.init_bound);
}

std::string shape_to_string(std::span<const int64_t> shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i) s += ", ";
    s += std::to_string(shape[i]);
  }
  return s + "]";
}

Status read_weights(const SafetensorsFile& file, std::span<const WeightTensor> expected) {
  // Check every name and shape before reading anything: tables can be gigabytes.
  std::unordered_set<std::string> names;
  std::vector<const TensorInfo*> found;
  for (const WeightTensor& e : expected) {
    names.insert(e.name);
    const TensorInfo* t = file.find(e.name);
    if (t == nullptr) {
      return invalid_argument("weights " + file.path() + ": missing tensor '" + e.name +
                              "' of shape " + shape_to_string(e.shape));
    }
    if (t->shape != e.shape) {
      return invalid_argument("weights " + file.path() + ": tensor '" + e.name + "' has shape " +
                              shape_to_string(t->shape) + ", expected " + shape_to_string(e.shape));
    }
    if (t->dtype != "F32") {
      return invalid_argument("weights " + file.path() + ": tensor '" + e.name + "' has dtype " +
                              t->dtype + ", only F32 is supported");
    }
    found.push_back(t);
  }
  for (const TensorInfo& t : file.tensors()) {
    if (!names.count(t.name)) {
      return invalid_argument("weights " + file.path() + ": unexpected tensor '" + t.name +
                              "' (not part of this model)");
    }
  }
  for (size_t i = 0; i < expected.size(); ++i) {
    RECSCHED_RETURN_IF_ERROR(file.read_f32(*found[i], expected[i].data));
  }
  return Status::ok();
}

}  // namespace recsched::engine
