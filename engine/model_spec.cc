#include "engine/model_spec.h"

#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

namespace recsched::engine {
namespace {

using nlohmann::json;

// Upper bounds that catch typos (an extra zero or three) before they become
// multi-terabyte allocations; a real model is far inside every one of them.
constexpr int64_t kMaxWidth = 1 << 16;
constexpr int64_t kMaxTables = 4096;
constexpr int64_t kMaxRows = int64_t{1} << 34;
constexpr int64_t kMaxLookups = 1 << 16;

Status key_error(std::string_view key, std::string_view what) {
  return invalid_argument("key '" + std::string(key) + "': " + std::string(what));
}

Result<int64_t> get_int(const json& j, std::string_view key, int64_t lo, int64_t hi) {
  const json& v = j.at(std::string(key));
  if (!v.is_number_integer()) return key_error(key, "must be an integer");
  const int64_t x = v.get<int64_t>();
  if (x < lo || x > hi) {
    return key_error(key, "must be in [" + std::to_string(lo) + ", " + std::to_string(hi) +
                              "], got " + std::to_string(x));
  }
  return x;
}

Result<std::vector<int32_t>> get_widths(const json& j, std::string_view key) {
  const json& v = j.at(std::string(key));
  if (!v.is_array() || v.empty()) return key_error(key, "must be a non-empty array of widths");
  std::vector<int32_t> out;
  for (size_t i = 0; i < v.size(); ++i) {
    if (!v[i].is_number_integer() || v[i].get<int64_t>() < 1 || v[i].get<int64_t>() > kMaxWidth) {
      return key_error(key, "entry " + std::to_string(i) + " must be an integer in [1, " +
                                std::to_string(kMaxWidth) + "]");
    }
    out.push_back(v[i].get<int32_t>());
  }
  return out;
}

}  // namespace

std::string_view to_string(ModelType type) {
  switch (type) {
    case ModelType::kDlrm: return "dlrm";
  }
  return "unknown";
}

std::string_view to_string(Interaction interaction) {
  return interaction == Interaction::kDot ? "dot" : "cat";
}

int32_t ModelSpec::top_input_width() const {
  const int32_t n = num_tables() + 1;
  if (interaction == Interaction::kCat) return n * embedding_dim;
  return embedding_dim + n * (n - 1) / 2;
}

uint64_t ModelSpec::table_bytes() const {
  uint64_t rows = 0;
  for (int64_t r : table_rows) rows += static_cast<uint64_t>(r);
  return rows * static_cast<uint64_t>(embedding_dim) * sizeof(float);
}

uint64_t ModelSpec::dense_bytes() const {
  uint64_t params = 0;
  int64_t in = dense_features;
  for (int32_t w : bottom_mlp) params += static_cast<uint64_t>(in + 1) * w, in = w;
  in = top_input_width();
  for (int32_t w : top_mlp) params += static_cast<uint64_t>(in + 1) * w, in = w;
  return params * sizeof(float);
}

uint64_t ModelSpec::dense_macs_per_item() const {
  uint64_t macs = 0;
  int64_t in = dense_features;
  for (int32_t w : bottom_mlp) macs += static_cast<uint64_t>(in) * w, in = w;
  in = top_input_width();
  for (int32_t w : top_mlp) macs += static_cast<uint64_t>(in) * w, in = w;
  if (interaction == Interaction::kDot) {
    const uint64_t n = num_tables() + 1;
    macs += n * (n - 1) / 2 * embedding_dim;
  }
  return macs;
}

Result<ModelSpec> parse_model_spec(const json& j) {
  if (!j.is_object()) return invalid_argument("a model spec must be a JSON object");
  static const std::set<std::string> kKnown = {
      "name",  "description", "type",       "dense_features",    "bottom_mlp", "top_mlp",
      "embedding_dim", "tables", "row_scale", "lookups_per_table", "interaction", "seed"};
  for (const auto& [key, value] : j.items()) {
    if (!kKnown.count(key)) return key_error(key, "unknown key");
  }
  for (const char* key : {"name", "type", "dense_features", "bottom_mlp", "top_mlp",
                          "embedding_dim", "tables"}) {
    if (!j.contains(key)) return key_error(key, "required but missing");
  }

  ModelSpec spec;
  if (!j["name"].is_string() || j["name"].get<std::string>().empty()) {
    return key_error("name", "must be a non-empty string");
  }
  spec.name = j["name"].get<std::string>();
  for (char c : spec.name) {
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-' || c == '.')) {
      return key_error("name", "may hold only letters, digits, '_', '-' and '.'");
    }
  }
  if (j.contains("description")) {
    if (!j["description"].is_string()) return key_error("description", "must be a string");
    spec.description = j["description"].get<std::string>();
  }
  if (!j["type"].is_string()) return key_error("type", "must be a string");
  const std::string type = j["type"].get<std::string>();
  if (type != "dlrm") return key_error("type", "unknown model type '" + type + "' (known: dlrm)");
  spec.type = ModelType::kDlrm;

  RECSCHED_ASSIGN_OR_RETURN(int64_t dense, get_int(j, "dense_features", 1, kMaxWidth));
  spec.dense_features = static_cast<int32_t>(dense);
  RECSCHED_ASSIGN_OR_RETURN(int64_t dim, get_int(j, "embedding_dim", 1, kMaxWidth));
  spec.embedding_dim = static_cast<int32_t>(dim);
  RECSCHED_ASSIGN_OR_RETURN(spec.bottom_mlp, get_widths(j, "bottom_mlp"));
  RECSCHED_ASSIGN_OR_RETURN(spec.top_mlp, get_widths(j, "top_mlp"));
  if (spec.bottom_mlp.back() != spec.embedding_dim) {
    return key_error("bottom_mlp", "last width " + std::to_string(spec.bottom_mlp.back()) +
                                       " must equal embedding_dim (" +
                                       std::to_string(spec.embedding_dim) + ")");
  }

  if (j.contains("row_scale")) {
    const json& v = j["row_scale"];
    if (!v.is_number() || !(v.get<double>() > 0.0) || v.get<double>() > 1.0) {
      return key_error("row_scale", "must be a number in (0, 1]");
    }
    spec.row_scale = v.get<double>();
  }
  const json& tables = j["tables"];
  if (!tables.is_array()) return key_error("tables", "must be an array of row counts");
  if (static_cast<int64_t>(tables.size()) > kMaxTables) {
    return key_error("tables", "at most " + std::to_string(kMaxTables) + " tables");
  }
  for (size_t t = 0; t < tables.size(); ++t) {
    if (!tables[t].is_number_integer() || tables[t].get<int64_t>() < 1 ||
        tables[t].get<int64_t>() > kMaxRows) {
      return key_error("tables", "entry " + std::to_string(t) + " must be a row count in [1, " +
                                     std::to_string(kMaxRows) + "]");
    }
    const int64_t rows = tables[t].get<int64_t>();
    spec.spec_rows.push_back(rows);
    spec.table_rows.push_back(
        std::max<int64_t>(1, static_cast<int64_t>(std::floor(rows * spec.row_scale + 0.5))));
  }

  if (j.contains("lookups_per_table")) {
    RECSCHED_ASSIGN_OR_RETURN(int64_t l, get_int(j, "lookups_per_table", 0, kMaxLookups));
    spec.lookups_per_table = static_cast<int32_t>(l);
  }
  if (j.contains("interaction")) {
    const json& v = j["interaction"];
    if (!v.is_string() || (v != "dot" && v != "cat")) {
      return key_error("interaction", "must be \"dot\" or \"cat\"");
    }
    spec.interaction = v == "dot" ? Interaction::kDot : Interaction::kCat;
  }
  if (j.contains("seed")) {
    if (!j["seed"].is_number_unsigned() && !(j["seed"].is_number_integer() && j["seed"] >= 0)) {
      return key_error("seed", "must be a non-negative integer");
    }
    spec.seed = j["seed"].get<uint64_t>();
  }
  return spec;
}

Result<ModelSpec> load_model_spec(const std::string& path) {
  std::ifstream in(path);
  if (!in) return not_found("model spec " + path + ": cannot open file");
  json j;
  try {
    j = json::parse(in);
  } catch (const json::exception& e) {
    return invalid_argument("model spec " + path + ": not valid JSON: " + e.what());
  }
  Result<ModelSpec> spec = parse_model_spec(j);
  if (!spec) return invalid_argument("model spec " + path + ": " + spec.status().message());
  return spec;
}

}  // namespace recsched::engine
