#include "core/merge.h"

#include <doctest/doctest.h>

namespace recsched {
namespace {

// An accelerator-like cost: 1 ms fixed per pass, 0.01 ms per item.
double pass_ms(uint32_t items) { return 1.0 + 0.01 * items; }

TEST_CASE("queries join the pass while it still ends by every feasible deadline") {
  // Head: 100 items, 3 ms of slack. Alone it takes 2 ms; with the 50-item query 2.5 ms;
  // with the next 100 as well 3.5 ms, past the head's deadline: that one stays queued, and
  // the 20-item query after it still fits (2.7 ms).
  const std::vector<MergeQuery> waiting = {{50, 10}, {100, 10}, {20, 10}};
  CHECK(merge_into({100, 3.0}, waiting, 1024, pass_ms) == std::vector<size_t>{0, 2});
}

TEST_CASE("a waiting query's own deadline limits the pass it joins") {
  // The first waiting query has 2.2 ms of slack: a 2.5 ms pass would make it late, so it
  // waits; the second (plenty of slack) joins, and the bound stays the head's.
  const std::vector<MergeQuery> waiting = {{50, 2.2}, {50, 30}};
  CHECK(merge_into({100, 10.0}, waiting, 1024, pass_ms) == std::vector<size_t>{1});
  // Once it has joined, its deadline binds the queries after it.
  const std::vector<MergeQuery> tight_first = {{10, 2.2}, {50, 30}};
  CHECK(merge_into({100, 10.0}, tight_first, 1024, pass_ms) == std::vector<size_t>{0});
}

TEST_CASE("queries already late set no limit: an overloaded stream merges up to max_items") {
  // Every slack is shorter than the query's own pass: nothing can be met, so the pass takes
  // all it may (the most work per fixed cost), up to max_items.
  const std::vector<MergeQuery> waiting = {{400, -5}, {400, 0.5}, {300, 1}, {100, -1}};
  CHECK(merge_into({300, 0.0}, waiting, 1024, pass_ms) == std::vector<size_t>{0, 2});
  CHECK(merge_into({300, 0.0}, waiting, 700, pass_ms) == std::vector<size_t>{0});
  // A late head with a feasible query waiting: that query's deadline binds.
  CHECK(merge_into({300, 0.0}, {{100, 5.0}, {900, 50}}, 2048, pass_ms) ==
        std::vector<size_t>{0});
}

TEST_CASE("nothing joins when the head alone fills the pass or nothing waits") {
  CHECK(merge_into({1024, 100}, {{1, 100}}, 1024, pass_ms).empty());
  CHECK(merge_into({10, 100}, {}, 1024, pass_ms).empty());
  CHECK(merge_into({10, 100}, {{0, 100}}, 1024, pass_ms).empty());  // an empty query never joins
}

}  // namespace
}  // namespace recsched
