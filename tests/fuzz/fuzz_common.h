// Shared by the libFuzzer harnesses (tests/fuzz/README.md): the small fixed model specs
// the request parsers are fuzzed against, and FUZZ_CHECK, which turns a broken invariant
// into a crash that libFuzzer records (a failed check is a finding, like an ASan report).
#pragma once

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <string_view>

#include "engine/model_spec.h"

#define FUZZ_CHECK(cond)                                                                 \
  do {                                                                                   \
    if (!(cond)) {                                                                       \
      std::fprintf(stderr, "%s:%d: FUZZ_CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
      std::abort();                                                                      \
    }                                                                                    \
  } while (0)

namespace recsched::fuzz {

inline std::string_view as_text(const uint8_t* data, size_t size) {
  return {reinterpret_cast<const char*>(data), size};
}

inline engine::ModelSpec spec_from(const char* text) {
  auto spec = engine::parse_model_spec(nlohmann::json::parse(text));
  FUZZ_CHECK(spec.has_value());
  return *spec;
}

/// DLRM with dense input: D = 3, T = 2 tables of 10 and 20 rows, K = 1 (as kserve_test).
inline const engine::ModelSpec& dlrm_spec() {
  static const engine::ModelSpec spec = spec_from(R"({"name": "tiny", "type": "dlrm",
      "dense_features": 3, "embedding_dim": 4, "tables": [10, 20], "bottom_mlp": [4],
      "top_mlp": [1]})");
  return spec;
}

/// NCF without dense input: D = 0, T = 4 tables of 5..8 rows.
inline const engine::ModelSpec& ncf_spec() {
  static const engine::ModelSpec spec = spec_from(R"({"name": "ncf4", "type": "ncf",
      "dense_features": 0, "embedding_dim": 4, "tables": [5, 6, 7, 8], "mlp": [4]})");
  return spec;
}

}  // namespace recsched::fuzz
