// Helpers shared by the engine tests: fixture paths and JSON files.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <limits>
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

/// The worst relative error |got - want| / |want| over paired values (|want| floored at
/// 1e-30), or +infinity when either side holds a NaN or an infinity: a comparison
/// against a tolerance then fails, where std::max(worst, NaN) would keep `worst` and pass.
template <typename Got, typename Want>
double worst_relative_error(const Got& got, const Want& want) {
  if (got.size() != want.size()) return std::numeric_limits<double>::infinity();
  double worst = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    const double g = double(got[i]), w = double(want[i]);
    if (!std::isfinite(g) || !std::isfinite(w)) return std::numeric_limits<double>::infinity();
    worst = std::max(worst, std::abs(g - w) / std::max(1e-30, std::abs(w)));
  }
  return worst;
}

/// The golden cases produced by scripts/reference/make_golden.py.
inline const char* const kGoldenCases[] = {"dot", "cat", "notables", "multiout", "wide",
                                           "ncf", "wnd", "mtwnd",    "din",      "dien"};

}  // namespace recsched::engine::testing
