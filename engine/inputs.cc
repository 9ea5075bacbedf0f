#include "engine/inputs.h"

#include <algorithm>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <type_traits>

namespace recsched::engine {

using nlohmann::json;

Status validate_batch(const ModelSpec& spec, const Batch& batch) {
  return validate_batch(spec, view_of(batch));
}

Status validate_layout(const ModelSpec& spec, const BatchView& batch) {
  if (batch.first != 0 || batch.full_batch_size != batch.batch_size) {
    return invalid_argument("a batch is validated whole, not a window of one");
  }
  const uint64_t n = batch.batch_size;
  if (n == 0) return invalid_argument("a batch needs at least one item");
  if (n > kMaxBatchItems) {
    return invalid_argument("batch of " + std::to_string(n) + " items exceeds the limit of " +
                            std::to_string(kMaxBatchItems));
  }
  if (batch.num_dense != uint32_t(spec.dense_features)) {
    return invalid_argument("dense: " + std::to_string(batch.num_dense) +
                            " features per item, model '" + spec.name + "' takes " +
                            std::to_string(spec.dense_features));
  }
  if (batch.dense.size() != n * batch.num_dense) {
    return invalid_argument("dense: " + std::to_string(batch.dense.size()) + " values, expected " +
                            std::to_string(n * batch.num_dense));
  }
  const uint64_t num_tables = spec.table_rows.size();
  if (batch.num_tables != num_tables) {
    return invalid_argument("sparse: " + std::to_string(batch.num_tables) + " tables, model '" +
                            spec.name + "' has " + std::to_string(num_tables));
  }
  const std::span<const int64_t> off = batch.offsets;
  if (off.size() != num_tables * n + 1 || off.front() != 0 ||
      off.back() != static_cast<int64_t>(batch.num_indices())) {
    return invalid_argument("sparse: bag offsets do not match " +
                            std::to_string(batch.num_indices()) + " indices");
  }
  for (uint64_t t = 0; t < num_tables; ++t) {
    for (uint64_t b = 0; b < n; ++b) {
      if (off[t * n + b + 1] < off[t * n + b]) {
        return invalid_argument("sparse: bag " + std::to_string(b) + " of table " +
                                std::to_string(t) + " has a negative length");
      }
    }
  }
  return Status::ok();
}

namespace {

// Ids of one table, 64-bit or 32-bit: each in [0, rows).
template <class Id>
Status check_ids(const ModelSpec& spec, uint64_t table, uint64_t first, std::span<const Id> ids) {
  const int64_t rows = spec.table_rows[table];
  // A negative id wraps above any row count. In 32-bit lanes (which vectorise on baseline
  // x86-64, where a compare of 64-bit lanes needs SSE4.2) a negative id is 2^31 or more,
  // and no 32-bit id reaches a table of more than 2^31 rows.
  using U = std::make_unsigned_t<Id>;
  const auto limit = static_cast<U>(
      sizeof(Id) == sizeof(int64_t) ? rows : std::min<int64_t>(rows, int64_t{1} << 31));
  const auto outside = [limit](Id id) { return static_cast<U>(id) >= limit; };
  // One branch-free pass (it vectorises); the search for which only when one is.
  U bad = 0;
  for (const Id id : ids) bad |= static_cast<U>(outside(id));
  if (bad == 0) return Status::ok();
  const auto it = std::find_if(ids.begin(), ids.end(), outside);
  return invalid_argument("sparse_indices[" + std::to_string(first + (it - ids.begin())) +
                          "] = " + std::to_string(*it) + " is outside table " +
                          std::to_string(table) + " (" + std::to_string(rows) + " rows)");
}

}  // namespace

Status check_table_ids(const ModelSpec& spec, uint64_t table, uint64_t first,
                       std::span<const int64_t> ids) {
  return check_ids(spec, table, first, ids);
}

Status check_table_ids(const ModelSpec& spec, uint64_t table, uint64_t first,
                       std::span<const int32_t> ids) {
  return check_ids(spec, table, first, ids);
}

Status validate_batch(const ModelSpec& spec, const BatchView& batch) {
  RECSCHED_RETURN_IF_ERROR(validate_layout(spec, batch));
  // Table by table: validate_layout made the offsets rise, so table t's ids are the one
  // range [off[t n], off[(t + 1) n]).
  const uint64_t n = batch.batch_size;
  for (uint64_t t = 0; t < spec.table_rows.size(); ++t) {
    const auto begin = static_cast<uint64_t>(batch.offsets[t * n]);
    const auto end = static_cast<uint64_t>(batch.offsets[(t + 1) * n]);
    RECSCHED_RETURN_IF_ERROR(
        batch.narrow_indices.empty()
            ? check_table_ids(spec, t, begin, batch.indices.subspan(begin, end - begin))
            : check_table_ids(spec, t, begin, batch.narrow_indices.subspan(begin, end - begin)));
  }
  return Status::ok();
}

Result<Batch> batch_from_json(const ModelSpec& spec, const json& j) {
  if (!j.is_object()) return invalid_argument("inputs must be a JSON object");
  for (const auto& [key, value] : j.items()) {
    if (key != "dense" && key != "sparse_lengths" && key != "sparse_indices") {
      return invalid_argument("inputs: unknown key '" + key + "'");
    }
  }
  for (const char* key : {"dense", "sparse_lengths", "sparse_indices"}) {
    if (!j.contains(key) || !j[key].is_array()) {
      return invalid_argument(std::string("inputs: '") + key + "' must be an array");
    }
  }
  const json& dense = j["dense"];
  const json& lengths = j["sparse_lengths"];
  const json& indices = j["sparse_indices"];
  const size_t num_tables = spec.table_rows.size();
  const size_t dim = spec.dense_features;

  Batch batch;
  batch.num_dense = static_cast<uint32_t>(dim);
  batch.num_tables = static_cast<uint32_t>(num_tables);
  size_t n = dense.size();
  if (n == 0 && dim == 0 && !lengths.empty() && lengths[0].is_array()) n = lengths[0].size();
  if (n == 0) return invalid_argument("inputs: 'dense' has no rows (a batch needs items)");
  if (n > kMaxBatchItems) {
    return invalid_argument("inputs: " + std::to_string(n) + " items exceed the limit of " +
                            std::to_string(kMaxBatchItems));
  }
  batch.batch_size = static_cast<uint32_t>(n);

  if (dim > 0) {
    batch.dense.reserve(n * dim);
    for (size_t r = 0; r < n; ++r) {
      const json& row = dense[r];
      if (!row.is_array() || row.size() != dim) {
        return invalid_argument("inputs: dense[" + std::to_string(r) + "] must hold " +
                                std::to_string(dim) + " numbers");
      }
      for (const json& v : row) {
        if (!v.is_number()) {
          return invalid_argument("inputs: dense[" + std::to_string(r) + "] holds a non-number");
        }
        batch.dense.push_back(v.get<float>());
      }
    }
  }

  if (lengths.size() != num_tables) {
    return invalid_argument("inputs: sparse_lengths has " + std::to_string(lengths.size()) +
                            " rows, model '" + spec.name + "' has " + std::to_string(num_tables) +
                            " tables");
  }
  std::vector<int32_t> flat;
  flat.reserve(num_tables * n);
  int64_t total = 0;
  for (size_t t = 0; t < num_tables; ++t) {
    if (!lengths[t].is_array() || lengths[t].size() != n) {
      return invalid_argument("inputs: sparse_lengths[" + std::to_string(t) + "] must hold " +
                              std::to_string(n) + " bag lengths (one per item)");
    }
    for (const json& v : lengths[t]) {
      if (!v.is_number_integer() || v.get<int64_t>() < 0 || v.get<int64_t>() > (1 << 24)) {
        return invalid_argument("inputs: sparse_lengths[" + std::to_string(t) +
                                "] holds a length that is not an integer in [0, 16777216]");
      }
      flat.push_back(v.get<int32_t>());
      total += flat.back();
    }
  }
  if (static_cast<int64_t>(indices.size()) != total) {
    return invalid_argument("inputs: sparse_indices has " + std::to_string(indices.size()) +
                            " ids but sparse_lengths add up to " + std::to_string(total));
  }
  batch.sparse.indices.reserve(indices.size());
  for (size_t i = 0; i < indices.size(); ++i) {
    if (!indices[i].is_number_integer()) {
      return invalid_argument("inputs: sparse_indices[" + std::to_string(i) +
                              "] is not an integer");
    }
    batch.sparse.indices.push_back(indices[i].get<int64_t>());
  }
  batch.sparse.offsets = Batch::offsets_from_lengths(flat);
  RECSCHED_RETURN_IF_ERROR(validate_batch(spec, batch));
  return batch;
}

json batch_to_json(const Batch& batch) {
  json dense = json::array();
  for (uint32_t r = 0; r < batch.batch_size; ++r) {
    dense.push_back(std::vector<float>(batch.dense.begin() + size_t(r) * batch.num_dense,
                                       batch.dense.begin() + size_t(r + 1) * batch.num_dense));
  }
  json lengths = json::array();
  const auto& off = batch.sparse.offsets;
  for (uint32_t t = 0; t < batch.num_tables; ++t) {
    json row = json::array();
    for (uint32_t b = 0; b < batch.batch_size; ++b) {
      const size_t i = size_t(t) * batch.batch_size + b;
      row.push_back(off[i + 1] - off[i]);
    }
    lengths.push_back(std::move(row));
  }
  return {{"dense", std::move(dense)},
          {"sparse_lengths", std::move(lengths)},
          {"sparse_indices", batch.sparse.indices}};
}

Batch random_batch(const ModelSpec& spec, uint32_t batch_size, uint64_t seed) {
  std::mt19937_64 rng(seed);
  Batch batch;
  batch.batch_size = batch_size;
  batch.num_dense = static_cast<uint32_t>(spec.dense_features);
  batch.num_tables = static_cast<uint32_t>(spec.table_rows.size());
  std::uniform_real_distribution<float> uni(0.0f, 1.0f);
  batch.dense.resize(size_t(batch_size) * batch.num_dense);
  for (float& v : batch.dense) v = uni(rng);
  const size_t lookups = static_cast<size_t>(spec.lookups_per_table);
  batch.sparse.indices.reserve(size_t(batch.num_tables) * batch_size * lookups);
  for (int64_t rows : spec.table_rows) {
    std::uniform_int_distribution<int64_t> pick(0, rows - 1);
    for (size_t k = 0; k < size_t(batch_size) * lookups; ++k) {
      batch.sparse.indices.push_back(pick(rng));
    }
  }
  std::vector<int32_t> lengths(size_t(batch.num_tables) * batch_size,
                               static_cast<int32_t>(lookups));
  batch.sparse.offsets = Batch::offsets_from_lengths(lengths);
  return batch;
}

}  // namespace recsched::engine
