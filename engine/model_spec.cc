#include "engine/model_spec.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <filesystem>
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

struct TypeInfo {
  ModelType type;
  const char* name;
  std::vector<std::string> keys;  // beyond the common ones
};

const std::vector<TypeInfo>& types() {
  static const std::vector<TypeInfo> kTypes = {
      {ModelType::kDlrm, "dlrm", {"bottom_mlp", "top_mlp", "interaction"}},
      {ModelType::kNcf, "ncf", {"mlp"}},
      {ModelType::kWnd, "wnd", {"mlp"}},
      {ModelType::kMtwnd, "mtwnd", {"mlp", "task_mlp", "tasks"}},
      {ModelType::kDin, "din", {"behaviour_tables", "attention_mlp", "top_mlp"}},
      {ModelType::kDien, "dien", {"behaviour_tables", "gru_hidden", "top_mlp"}},
  };
  return kTypes;
}

uint64_t mlp_macs(int64_t in, const std::vector<int32_t>& widths) {
  uint64_t macs = 0;
  for (int32_t w : widths) macs += static_cast<uint64_t>(in) * w, in = w;
  return macs;
}

uint64_t mlp_params(int64_t in, const std::vector<int32_t>& widths) {
  uint64_t params = 0;
  for (int32_t w : widths) params += static_cast<uint64_t>(in + 1) * w, in = w;
  return params;
}

}  // namespace

std::string_view to_string(ModelType type) {
  for (const TypeInfo& t : types()) {
    if (t.type == type) return t.name;
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

int32_t ModelSpec::num_outputs() const {
  switch (type) {
    case ModelType::kDlrm:
    case ModelType::kDin:
    case ModelType::kDien:
      return top_mlp.back();
    case ModelType::kNcf:
      return 1;
    case ModelType::kWnd:
      return mlp.back();
    case ModelType::kMtwnd:
      return tasks;
  }
  return 0;
}

uint64_t ModelSpec::table_bytes() const {
  uint64_t rows = 0;
  for (int64_t r : table_rows) rows += static_cast<uint64_t>(r);
  return rows * static_cast<uint64_t>(embedding_dim) * sizeof(float);
}

uint64_t ModelSpec::dense_bytes() const {
  const int64_t d = embedding_dim, t = num_tables();
  uint64_t params = 0;
  switch (type) {
    case ModelType::kDlrm:
      params = mlp_params(dense_features, bottom_mlp) + mlp_params(top_input_width(), top_mlp);
      break;
    case ModelType::kNcf:
      params = mlp_params(2 * d, mlp) + d + mlp.back() + 1;
      break;
    case ModelType::kWnd:
      params = mlp_params(dense_features + t * d, mlp);
      break;
    case ModelType::kMtwnd:
      params = mlp_params(dense_features + t * d, mlp) +
               uint64_t(tasks) * mlp_params(mlp.back(), task_mlp);
      break;
    case ModelType::kDin:
      params = mlp_params(3 * d, attention_mlp) + mlp_params(4 * d, top_mlp);
      break;
    case ModelType::kDien: {
      const uint64_t h = gru_hidden;
      params = 3 * h * (d + h + 2) + h * d + 3 * h * (h + h + 2) + mlp_params(3 * d + h, top_mlp);
      break;
    }
  }
  return params * sizeof(float);
}

uint64_t ModelSpec::dense_macs_per_item() const {
  const int64_t d = embedding_dim, t = num_tables();
  switch (type) {
    case ModelType::kDlrm: {
      uint64_t macs = mlp_macs(dense_features, bottom_mlp) + mlp_macs(top_input_width(), top_mlp);
      if (interaction == Interaction::kDot) {
        const uint64_t n = num_tables() + 1;
        macs += n * (n - 1) / 2 * embedding_dim;
      }
      return macs;
    }
    case ModelType::kNcf:
      return mlp_macs(2 * d, mlp) + d + mlp.back();
    case ModelType::kWnd:
      return mlp_macs(dense_features + t * d, mlp);
    case ModelType::kMtwnd:
      return mlp_macs(dense_features + t * d, mlp) +
             uint64_t(tasks) * mlp_macs(mlp.back(), task_mlp);
    case ModelType::kDin:
      return uint64_t(behaviour_tables) * (mlp_macs(3 * d, attention_mlp) + d) +
             mlp_macs(4 * d, top_mlp);
    case ModelType::kDien: {
      const uint64_t h = gru_hidden, s = behaviour_tables;
      return s * (3 * h * (d + h) + h + 3 * h * (h + h)) + h * d + mlp_macs(3 * d + h, top_mlp);
    }
  }
  return 0;
}

Result<ModelSpec> parse_model_spec(const json& j) {
  if (!j.is_object()) return invalid_argument("a model spec must be a JSON object");
  if (!j.contains("type")) return key_error("type", "required but missing");
  if (!j["type"].is_string()) return key_error("type", "must be a string");
  const std::string type = j["type"].get<std::string>();
  const TypeInfo* info = nullptr;
  std::string known_types;
  for (const TypeInfo& t : types()) {
    if (t.name == type) info = &t;
    known_types += known_types.empty() ? t.name : std::string(", ") + t.name;
  }
  if (info == nullptr) {
    return key_error("type", "unknown model type '" + type + "' (known: " + known_types + ")");
  }

  static const std::set<std::string> kCommon = {
      "name",   "description", "type", "dense_features",   "embedding_dim",
      "tables", "row_scale",   "seed", "lookups_per_table"};
  for (const auto& [key, value] : j.items()) {
    if (!kCommon.count(key) &&
        std::find(info->keys.begin(), info->keys.end(), key) == info->keys.end()) {
      return key_error(key, "unknown key for a " + type + " model");
    }
  }
  for (const char* key : {"name", "embedding_dim", "tables"}) {
    if (!j.contains(key)) return key_error(key, "required but missing");
  }
  for (const std::string& key : info->keys) {
    if (key != "interaction" && !j.contains(key)) return key_error(key, "required but missing");
  }

  ModelSpec spec;
  spec.type = info->type;
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

  const bool takes_dense = spec.type == ModelType::kDlrm || spec.type == ModelType::kWnd ||
                           spec.type == ModelType::kMtwnd;
  if (spec.type == ModelType::kDlrm && !j.contains("dense_features")) {
    return key_error("dense_features", "required but missing");
  }
  if (j.contains("dense_features")) {
    const int64_t lo = spec.type == ModelType::kDlrm ? 1 : 0;
    RECSCHED_ASSIGN_OR_RETURN(int64_t dense,
                              get_int(j, "dense_features", lo, takes_dense ? kMaxWidth : 0));
    spec.dense_features = static_cast<int32_t>(dense);
  }
  RECSCHED_ASSIGN_OR_RETURN(int64_t dim, get_int(j, "embedding_dim", 1, kMaxWidth));
  spec.embedding_dim = static_cast<int32_t>(dim);

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
  if (j.contains("seed")) {
    if (!j["seed"].is_number_unsigned() && !(j["seed"].is_number_integer() && j["seed"] >= 0)) {
      return key_error("seed", "must be a non-negative integer");
    }
    spec.seed = j["seed"].get<uint64_t>();
  }

  const int64_t num_tables = spec.num_tables();
  switch (spec.type) {
    case ModelType::kDlrm: {
      RECSCHED_ASSIGN_OR_RETURN(spec.bottom_mlp, get_widths(j, "bottom_mlp"));
      RECSCHED_ASSIGN_OR_RETURN(spec.top_mlp, get_widths(j, "top_mlp"));
      if (spec.bottom_mlp.back() != spec.embedding_dim) {
        return key_error("bottom_mlp", "last width " + std::to_string(spec.bottom_mlp.back()) +
                                           " must equal embedding_dim (" +
                                           std::to_string(spec.embedding_dim) + ")");
      }
      if (j.contains("interaction")) {
        const json& v = j["interaction"];
        if (!v.is_string() || (v != "dot" && v != "cat")) {
          return key_error("interaction", "must be \"dot\" or \"cat\"");
        }
        spec.interaction = v == "dot" ? Interaction::kDot : Interaction::kCat;
      }
      break;
    }
    case ModelType::kNcf: {
      RECSCHED_ASSIGN_OR_RETURN(spec.mlp, get_widths(j, "mlp"));
      if (num_tables != 4) {
        return key_error("tables",
                         "an ncf model has exactly 4 tables (user and item for the "
                         "GMF branch, then for the MLP branch), got " +
                             std::to_string(num_tables));
      }
      break;
    }
    case ModelType::kWnd:
    case ModelType::kMtwnd: {
      RECSCHED_ASSIGN_OR_RETURN(spec.mlp, get_widths(j, "mlp"));
      if (num_tables == 0 && spec.dense_features == 0) {
        return key_error("tables", "a model needs tables or dense features");
      }
      if (spec.type == ModelType::kMtwnd) {
        RECSCHED_ASSIGN_OR_RETURN(spec.task_mlp, get_widths(j, "task_mlp"));
        if (spec.task_mlp.back() != 1) return key_error("task_mlp", "last width must be 1");
        RECSCHED_ASSIGN_OR_RETURN(int64_t tasks, get_int(j, "tasks", 1, 1024));
        spec.tasks = static_cast<int32_t>(tasks);
      }
      break;
    }
    case ModelType::kDin:
    case ModelType::kDien: {
      RECSCHED_ASSIGN_OR_RETURN(int64_t b, get_int(j, "behaviour_tables", 1, kMaxTables));
      spec.behaviour_tables = static_cast<int32_t>(b);
      if (num_tables != b + 3) {
        return key_error("tables", "a " + type + " model with " + std::to_string(b) +
                                       " behaviour tables has " + std::to_string(b + 3) +
                                       " tables (user, behaviours, ad, context), got " +
                                       std::to_string(num_tables));
      }
      RECSCHED_ASSIGN_OR_RETURN(spec.top_mlp, get_widths(j, "top_mlp"));
      if (spec.type == ModelType::kDin) {
        RECSCHED_ASSIGN_OR_RETURN(spec.attention_mlp, get_widths(j, "attention_mlp"));
        if (spec.attention_mlp.back() != 1) {
          return key_error("attention_mlp", "last width must be 1 (one weight per behaviour)");
        }
      } else {
        RECSCHED_ASSIGN_OR_RETURN(int64_t h, get_int(j, "gru_hidden", 1, kMaxWidth));
        spec.gru_hidden = static_cast<int32_t>(h);
      }
      break;
    }
  }
  return spec;
}

Result<ModelSpec> load_model_spec(const std::string& path) {
  // A directory opens as a file on Linux, and reading it throws std::ios_base::failure
  // out of the stream buffer (not a json::exception): refuse it before reading.
  std::error_code dir_ec;
  std::ifstream in(path);
  if (!in || std::filesystem::is_directory(path, dir_ec)) {
    return not_found("model spec " + path + ": cannot open file");
  }
  json j;
  try {
    j = json::parse(in);
  } catch (const json::exception& e) {
    return invalid_argument("model spec " + path + ": not valid JSON: " + e.what());
  } catch (const std::exception& e) {  // a read error from the stream buffer
    return invalid_argument("model spec " + path + ": cannot read: " + e.what());
  }
  Result<ModelSpec> spec = parse_model_spec(j);
  if (!spec) return invalid_argument("model spec " + path + ": " + spec.status().message());
  return spec;
}

}  // namespace recsched::engine
