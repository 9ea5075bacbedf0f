// Deadline-aware merging on an accelerator (issue 18): which queued queries of one model
// join the forward pass a free stream is about to start. exec::WholeQueryRunner serves by
// it and the simulator models it, so the two cannot drift apart (as core/pieces.h for the
// CPU's pieces). Standard library only.
//
// The rule. A stream that frees takes the query first in queue order (the head); the
// queries of the head's model still waiting are looked at in queue order, and one joins
// the pass when the merged pass, predicted from the profile at the merged size, still ends
// by the deadline of every query in it that can still meet its deadline; a query that
// cannot (its slack is shorter than its own pass alone) sets no limit. A query that would
// break that, or make the pass larger than `max_items`, stays queued for a later pass. No
// query is held back to wait for others: only what is queued now is merged, so merging
// never delays a query past the moment a free stream would have started it alone.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <vector>

namespace recsched {

/// The largest merged pass (items), where no other limit is given: the largest size the
/// profiler measures; past it a pass's time is only extrapolated per item, and larger
/// passes gain nothing in any prediction.
inline constexpr uint32_t kMaxMergedItems = 1024;

/// One query as the rule reads it.
struct MergeQuery {
  uint32_t items = 0;
  double slack_ms = 0;  ///< its deadline minus now (negative when already past it)
};

/// The indices into `waiting` (queries of the head's model, in queue order) that join the
/// head's pass, in that order. `service_ms(items)` predicts one pass of that many items.
template <typename ServiceMs>
std::vector<size_t> merge_into(const MergeQuery& head, const std::vector<MergeQuery>& waiting,
                               uint32_t max_items, ServiceMs&& service_ms) {
  constexpr double kNone = std::numeric_limits<double>::infinity();
  // A query limits the pass only if it can still make its deadline alone.
  auto limit = [&](const MergeQuery& q) {
    return q.slack_ms >= service_ms(q.items) ? q.slack_ms : kNone;
  };
  std::vector<size_t> joined;
  uint32_t items = head.items;
  double bound = limit(head);
  for (size_t i = 0; i < waiting.size() && items < max_items; ++i) {
    const MergeQuery& q = waiting[i];
    if (q.items == 0 || items + uint64_t{q.items} > max_items) continue;
    const double b = std::min(bound, limit(q));
    if (service_ms(items + q.items) > b) continue;
    joined.push_back(i);
    items += q.items;
    bound = b;
  }
  return joined;
}

}  // namespace recsched
