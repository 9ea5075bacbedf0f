// Bounded waiting's piece rule (policies::BoundedWait): which piece of a query a free CPU
// worker may take now. exec::CpuRunner serves by it and the simulator models it, so the two
// cannot drift apart. Standard library only.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>

namespace recsched {

/// A free worker looks at most this many queries, in queue order, for one it may take a
/// piece of; past them it waits (a bound on the pick's cost under deep queues).
inline constexpr size_t kMaxQueriesLooked = 64;

/// Cooperative preemption (exec::CpuRunner::set_preemption): pieces that may be suspended
/// on one worker at once, each for a more urgent one.
inline constexpr int kMaxSuspended = 2;

/// One query's state as the rule reads it (exec::Request's bounded-waiting fields).
struct PieceQuery {
  uint32_t left = 0;         ///< items not yet taken
  uint32_t sub_batch = 1;    ///< the policy's piece size
  uint32_t short_items = 0;  ///< pieces larger than this are long
  int reserve = 0;           ///< workers kept from its long pieces
  bool urgent = false;       ///< its urgent_at has passed: no worker kept from it
};

/// The items a worker may take of `q` with `long_busy` of `awake` workers running long
/// pieces: its sub-batch when that is short, or a long lane is free (at least one always
/// is), or it is urgent; else a short piece of `short_items`; 0 if that is 0 too (the query
/// waits). Sets *is_long for the piece returned.
inline uint32_t next_piece(const PieceQuery& q, int long_busy, int awake, bool* is_long) {
  const uint32_t full = std::min(q.sub_batch, q.left);
  *is_long = full > q.short_items;
  if (!*is_long) return full;
  if (long_busy < std::max(1, awake - q.reserve) || q.urgent) return full;
  *is_long = false;
  return std::min(q.short_items, q.left);
}

}  // namespace recsched
