// Internal to engine/: the loop every embedding-bag kernel shares, parameterised by an
// accumulator type that each ISA's file defines with its own intrinsics. Included only
// by those files; everything here has internal linkage (anonymous namespace) so each
// ISA's instantiation stays its own.
#pragma once

#include <cstdint>

#include "engine/embedding_bag_kernels.h"

namespace recsched::engine::kernels {
namespace {

/// How many lookups ahead rows are prefetched (bench/gather_bw: 8 to 32 all do about
/// equally well for 128-byte rows; 16 and up help 256-byte rows).
constexpr int64_t kPrefetchDistance = 16;

inline bool valid_row(int64_t idx, int64_t rows) {
  return static_cast<uint64_t>(idx) < static_cast<uint64_t>(rows);
}

// Walks bags in order. Acc(args, dst) starts a zero sum for the bag written to dst;
// add(row) adds one row; store() writes the sum. Index checks stay in the loop: a
// well-predicted branch costs far less than the cache miss each lookup pays. The row
// that lookup j + kPrefetchDistance will read is prefetched (across bag boundaries) if
// its id is valid; an invalid id is reported when it is read. Id is the ids' type
// (int64_t: a.indices, int32_t: a.narrow_indices).
//
// Each id is loaded once (a relaxed atomic load: a plain load on x86 and ARM, which the
// compiler may not repeat) and the row read is the one whose id was checked: the ids may
// lie in a client's shared memory (daemon/shared_memory.h), which the client can rewrite
// while they are read, so a check made earlier proves nothing here.
template <class Acc, class Id>
inline bool walk_bags(const BagArgs& a) {
  const Id* ids;
  if constexpr (sizeof(Id) == sizeof(int32_t)) {
    ids = a.narrow_indices;
  } else {
    ids = a.indices;
  }
  const int64_t end = a.offsets[a.num_bags];
  const int64_t row_bytes = int64_t{a.dim} * 4;
  for (int64_t b = 0; b < a.num_bags; ++b) {
    float* dst = a.out + b * a.out_stride;
    Acc acc(a, dst);
    const int64_t s = a.offsets[b], e = a.offsets[b + 1];
    if (e < s) return false;
    for (int64_t j = s; j < e; ++j) {
      const int64_t idx = __atomic_load_n(ids + j, __ATOMIC_RELAXED);
      if (!valid_row(idx, a.rows)) return false;
      if (j + kPrefetchDistance < end) {
        const int64_t ahead = __atomic_load_n(ids + j + kPrefetchDistance, __ATOMIC_RELAXED);
        if (valid_row(ahead, a.rows)) {
          const char* p = reinterpret_cast<const char*>(a.table + ahead * a.dim);
          for (int64_t off = 0; off < row_bytes; off += 64) __builtin_prefetch(p + off, 0, 3);
        }
      }
      acc.add(a.table + idx * a.dim);
    }
    acc.store(dst);
  }
  return true;
}

/// walk_bags with Acc, for ids of 32 bits or 64.
template <class Acc>
inline BagFn walk_bags_for(bool narrow) {
  return narrow ? &walk_bags<Acc, int32_t> : &walk_bags<Acc, int64_t>;
}

}  // namespace
}  // namespace recsched::engine::kernels
