// Helpers shared by the engine tests: fixture paths and JSON files.
#pragma once

#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>

namespace recsched::engine::testing {

/// A path in the source tree; RECSCHED_SOURCE_DIR in the environment overrides the
/// build's (to run tests built elsewhere, as on a GPU machine).
inline std::string source_path(const std::string& rel) {
  const char* env = std::getenv("RECSCHED_SOURCE_DIR");
  return std::string(env != nullptr ? env : RECSCHED_SOURCE_DIR) + "/" + rel;
}

inline std::string golden_path(const std::string& golden_case, const std::string& suffix) {
  return source_path("tests/fixtures/golden/" + golden_case + suffix);
}

inline nlohmann::json read_json(const std::string& path) {
  std::ifstream in(path);
  return nlohmann::json::parse(in);
}

/// The golden cases produced by scripts/reference/make_golden.py.
inline const char* const kGoldenCases[] = {"dot", "cat", "notables", "multiout", "wide",
                                           "ncf", "wnd", "mtwnd",    "din",      "dien"};

}  // namespace recsched::engine::testing
