#include "bench/load/payload.h"

#include <algorithm>
#include <charconv>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <stdexcept>

namespace recsched::load {

using nlohmann::json;

namespace {

const json* find_tensor(const json& list, std::string_view name) {
  if (!list.is_array()) return nullptr;
  for (const json& t : list) {
    if (t.is_object() && t.value("name", "") == name) return &t;
  }
  return nullptr;
}

template <class T>
void append_number(std::string& out, T v) {
  char buf[32];
  auto r = std::to_chars(buf, buf + sizeof buf, v);
  out.append(buf, r.ptr);
}

void append_shape(std::string& out, std::initializer_list<uint64_t> dims) {
  out += "[";
  bool first = true;
  for (uint64_t d : dims) {
    if (!first) out += ",";
    append_number(out, d);
    first = false;
  }
  out += "]";
}

}  // namespace

ModelInfo model_info_from_json(const json& v1, const json& v2, int32_t lookups) {
  ModelInfo m;
  if (!v1.is_object() || !v1.contains("name") || !v1["name"].is_string())
    throw std::invalid_argument("/v1/models: an entry without a name");
  m.name = v1["name"];
  const std::string where = "model '" + m.name + "': ";
  if (!v1.contains("table_rows") || !v1["table_rows"].is_array())
    throw std::invalid_argument(where + "/v1/models has no table_rows");
  m.table_rows = v1["table_rows"].get<std::vector<int64_t>>();
  for (int64_t r : m.table_rows) {
    if (r < 1) throw std::invalid_argument(where + "a table with no rows");
  }
  m.sla_ms = v1.value("sla_ms", 0.0);
  m.sla_percentile = v1.value("sla_percentile", 95.0);
  m.spec_path = v1.value("spec", "");
  if (lookups < 1) throw std::invalid_argument(where + "lookups per table must be >= 1");
  m.lookups = lookups;
  if (!v2.is_object()) throw std::invalid_argument(where + "no metadata");
  const json inputs = v2.value("inputs", json::array());
  const json outputs = v2.value("outputs", json::array());
  if (const json* d = find_tensor(inputs, "dense")) m.dense = (*d)["shape"][1].get<int32_t>();
  const json* lengths = find_tensor(inputs, "sparse_lengths");
  const int64_t tables = lengths ? (*lengths)["shape"][0].get<int64_t>() : 0;
  if (tables != int64_t(m.table_rows.size()))
    throw std::invalid_argument(where + "/v2 metadata says " + std::to_string(tables) +
                                " tables, /v1/models lists " + std::to_string(m.table_rows.size()));
  if (const json* s = find_tensor(outputs, "scores")) m.outputs = (*s)["shape"][1].get<int32_t>();
  if (m.dense == 0 && tables == 0) throw std::invalid_argument(where + "takes no inputs");
  return m;
}

std::optional<int32_t> read_spec_lookups(const std::string& spec_path) {
  if (spec_path.empty()) return std::nullopt;
  std::ifstream in(spec_path);
  if (!in) return std::nullopt;
  const json j = json::parse(in, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return std::nullopt;
  if (!j.contains("lookups_per_table")) return 1;  // the engine's default
  if (!j["lookups_per_table"].is_number_integer()) return std::nullopt;
  return j["lookups_per_table"].get<int32_t>();
}

PayloadPool::PayloadPool(std::vector<ModelInfo> models, const SizeDistribution& sizes,
                         const PoolOptions& options)
    : models_(std::move(models)), options_(options) {
  if (models_.empty()) throw std::invalid_argument("no models to send queries to");
  if (options_.max_items < 1) throw std::invalid_argument("max_items must be >= 1");
  std::mt19937_64 rng(options_.seed);
  std::uniform_real_distribution<float> uni(0.0f, 1.0f);
  const uint64_t cap = options_.max_items;
  const uint64_t per_model = options_.budget_bytes / models_.size();
  for (const ModelInfo& m : models_) {
    ModelPool p;
    const uint64_t t = m.table_rows.size(), l = uint64_t(m.lookups);
    const uint64_t block_bytes = cap * (uint64_t(m.dense) * 4 + t * l * 8);
    int variants = options_.format == PayloadFormat::kJson ? 1 : options_.max_variants;
    variants = int(std::clamp<uint64_t>(per_model / std::max<uint64_t>(1, block_bytes), 1,
                                        uint64_t(std::max(1, variants))));
    for (int v = 0; v < variants; ++v) {
      Block b;
      b.dense.resize(cap * m.dense);
      for (float& x : b.dense) x = uni(rng);
      b.ids.resize(t * cap * l);
      for (uint64_t tb = 0; tb < t; ++tb) {
        std::uniform_int_distribution<int64_t> id(0, m.table_rows[tb] - 1);
        int64_t* out = b.ids.data() + tb * cap * l;
        for (uint64_t j = 0; j < cap * l; ++j) out[j] = id(rng);
      }
      if (options_.int32_ids) {
        for (int64_t rows : m.table_rows) {
          if (rows > int64_t{1} << 31) {
            throw std::invalid_argument(m.name + ": a table of " + std::to_string(rows) +
                                        " rows needs INT64 ids");
          }
        }
        b.ids32.assign(b.ids.begin(), b.ids.end());
      }
      p.variants.push_back(std::move(b));
    }
    p.lengths.assign(t * cap, m.lookups);
    pools_.push_back(std::move(p));
  }
  for (uint32_t mi = 0; mi < models_.size(); ++mi) {
    ModelPool& p = pools_[mi];
    if (options_.format == PayloadFormat::kJson) {
      // Whole JSON bodies: formatting numbers is far too slow to do per query.
      for (int k = 0; k < std::max(1, options_.json_pool); ++k) {
        const uint32_t n = std::min<uint32_t>(sizes.draw(rng), options_.max_items);
        const ModelInfo& m = models_[mi];
        const Block& b = p.variants[0];
        const uint64_t t = m.table_rows.size(), l = uint64_t(m.lookups);
        const uint64_t off = rng() % (cap - n + 1);
        std::string s = "{\"inputs\":[";
        bool first = true;
        if (m.dense > 0) {
          s += "{\"name\":\"dense\",\"datatype\":\"FP32\",\"shape\":";
          append_shape(s, {n, uint64_t(m.dense)});
          s += ",\"data\":[";
          const float* d = b.dense.data() + off * m.dense;
          for (uint64_t i = 0; i < uint64_t(n) * m.dense; ++i) {
            if (i) s += ',';
            append_number(s, d[i]);
          }
          s += "]}";
          first = false;
        }
        if (t > 0) {
          if (!first) s += ",";
          s += "{\"name\":\"sparse_lengths\",\"datatype\":\"INT32\",\"shape\":";
          append_shape(s, {t, n});
          s += ",\"data\":[";
          for (uint64_t i = 0; i < t * n; ++i) {
            if (i) s += ',';
            append_number(s, m.lookups);
          }
          s += "]},{\"name\":\"sparse_indices\",\"datatype\":\"INT64\",\"shape\":";
          append_shape(s, {t * n * l});
          s += ",\"data\":[";
          bool first_id = true;
          for (uint64_t tb = 0; tb < t; ++tb) {
            const int64_t* ids = b.ids.data() + tb * cap * l + off * l;
            for (uint64_t j = 0; j < uint64_t(n) * l; ++j) {
              if (!first_id) s += ',';
              append_number(s, ids[j]);
              first_id = false;
            }
          }
          s += "]}";
        }
        s += "]" + parameters_json(mi) + "}";
        p.json_items.push_back(n);
        p.json_bodies.push_back(std::move(s));
      }
      p.variants.clear();
      p.lengths.clear();
    }
    for (const Block& b : p.variants) {
      bytes_ += b.dense.size() * 4 + b.ids.size() * 8 + b.ids32.size() * 4;
    }
    bytes_ += p.lengths.size() * 4;
    for (const std::string& s : p.json_bodies) bytes_ += s.size();
  }
}

std::string PayloadPool::parameters_json(uint32_t model) const {
  std::optional<double> sla = options_.sla_ms;
  if (options_.per_model_sla && models_[model].sla_ms > 0) sla = models_[model].sla_ms;
  if (!sla && !options_.priority) return "";
  std::string s = ",\"parameters\":{";
  if (sla) {
    s += "\"sla_ms\":";
    append_number(s, *sla);
  }
  if (options_.priority) {
    if (sla) s += ",";
    s += "\"priority\":" + std::to_string(*options_.priority);
  }
  return s + "}";
}

EncodedQuery PayloadPool::encode(uint32_t model, uint32_t items, uint64_t pick) const {
  const ModelInfo& m = models_.at(model);
  const ModelPool& p = pools_[model];
  EncodedQuery q;
  if (options_.format == PayloadFormat::kJson) {
    const size_t k = pick % p.json_bodies.size();
    q.json = p.json_bodies[k];
    q.items = p.json_items[k];
    q.body_bytes = q.json.size();
    return q;
  }
  const uint64_t cap = options_.max_items;
  const uint32_t n = std::clamp<uint32_t>(items, 1, options_.max_items);
  const Block& b = p.variants[pick % p.variants.size()];
  const uint64_t off = (pick >> 8) % (cap - n + 1);
  const uint64_t t = m.table_rows.size(), l = uint64_t(m.lookups);
  std::string& s = q.json;
  s.reserve(400);
  s = "{\"inputs\":[";
  bool first = true;
  auto input = [&](const char* name, const char* dtype, std::initializer_list<uint64_t> shape,
                   uint64_t bytes) {
    if (!first) s += ",";
    first = false;
    s += "{\"name\":\"";
    s += name;
    s += "\",\"datatype\":\"";
    s += dtype;
    s += "\",\"shape\":";
    append_shape(s, shape);
    s += ",\"parameters\":{\"binary_data_size\":";
    append_number(s, bytes);
    s += "}}";
  };
  if (m.dense > 0) {
    const uint64_t bytes = uint64_t(n) * m.dense * 4;
    input("dense", "FP32", {n, uint64_t(m.dense)}, bytes);
    q.sections.emplace_back(reinterpret_cast<const char*>(b.dense.data() + off * m.dense), bytes);
  }
  if (t > 0) {
    input("sparse_lengths", "INT32", {t, n}, t * n * 4);
    q.sections.emplace_back(reinterpret_cast<const char*>(p.lengths.data()), t * n * 4);
    const uint64_t width = options_.int32_ids ? 4 : 8;
    input("sparse_indices", options_.int32_ids ? "INT32" : "INT64", {t * n * l}, t * n * l * width);
    for (uint64_t tb = 0; tb < t; ++tb) {
      const char* ids = options_.int32_ids
                            ? reinterpret_cast<const char*>(b.ids32.data() + tb * cap * l + off * l)
                            : reinterpret_cast<const char*>(b.ids.data() + tb * cap * l + off * l);
      q.sections.emplace_back(ids, n * l * width);
    }
  }
  s += "],\"outputs\":[{\"name\":\"scores\",\"parameters\":{\"binary_data\":true}}]";
  s += parameters_json(model);
  s += "}";
  // INT64 ids 8-byte aligned from the body's start are read where they lie by recschedd
  // (no copy; kserve.h): pad the JSON header with trailing spaces to put them there.
  if (t > 0 && !options_.int32_ids) {
    const uint64_t ids_at = s.size() + uint64_t(n) * m.dense * 4 + t * n * 4;
    s.append((8 - ids_at % 8) % 8, ' ');
  }
  q.header_length = s.size();
  q.items = n;
  q.body_bytes = s.size();
  for (std::string_view v : q.sections) q.body_bytes += v.size();
  return q;
}

}  // namespace recsched::load
