// Model inputs: checking a Batch against a spec, reading one from JSON, and making
// synthetic ones for benchmarks and profiling. Depends on core and engine/model_spec.h.
#pragma once

#include <cstdint>
#include <span>
#include <nlohmann/json_fwd.hpp>

#include "core/batch.h"
#include "core/status.h"
#include "engine/model_spec.h"

namespace recsched::engine {

/// Most items one batch may carry; larger queries are refused before any allocation.
inline constexpr uint32_t kMaxBatchItems = 1u << 20;

/// kInvalidArgument, naming the field and position, unless `batch` fits `spec`: at least
/// one item, D dense values per item, T tables, offsets that add up, every id inside its
/// table.
Status validate_batch(const ModelSpec& spec, const BatchView& batch);
Status validate_batch(const ModelSpec& spec, const Batch& batch);

/// validate_batch without the ids' ranges: for a reader that checked each id with
/// check_table_ids as it copied it (daemon/kserve.cc: ids from shared memory, binary INT32
/// ids), so that the ids are not read a second time.
Status validate_layout(const ModelSpec& spec, const BatchView& batch);

/// Checks ids that belong to table `table`, the first at index `first` of the batch's ids:
/// each in [0, rows). kInvalidArgument naming the first that is not, as validate_batch does.
Status check_table_ids(const ModelSpec& spec, uint64_t table, uint64_t first,
                       std::span<const int64_t> ids);
Status check_table_ids(const ModelSpec& spec, uint64_t table, uint64_t first,
                       std::span<const int32_t> ids);

/// Reads {"dense": [[D floats] x N], "sparse_lengths": [[N ints] x T], "sparse_indices":
/// [ints, table by table]} and validates it. A model without dense features accepts
/// "dense": [] (N then comes from sparse_lengths).
Result<Batch> batch_from_json(const ModelSpec& spec, const nlohmann::json& j);

/// The same layout, for tools and tests.
nlohmann::json batch_to_json(const Batch& batch);

/// A synthetic batch: dense values uniform in [0, 1), every bag exactly
/// spec.lookups_per_table ids drawn uniformly from its table. Deterministic in `seed`.
Batch random_batch(const ModelSpec& spec, uint32_t batch_size, uint64_t seed);

}  // namespace recsched::engine
