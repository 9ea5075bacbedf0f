#include "core/batch.h"

#include <doctest/doctest.h>

namespace recsched {
namespace {

TEST_CASE("offsets_from_lengths builds prefix sums over table-major lengths") {
  const std::vector<int32_t> lengths = {2, 0, 3, 1, 1, 0};
  CHECK(Batch::offsets_from_lengths(lengths) == std::vector<int64_t>{0, 2, 2, 5, 6, 7, 7});
  CHECK(Batch::offsets_from_lengths({}) == std::vector<int64_t>{0});
}

TEST_CASE("a BatchView slice selects dense rows and each table's bag offsets") {
  // 3 items, 2 dense features, 2 tables; lengths table 0: 1,2,0; table 1: 3,0,1.
  Batch b;
  b.batch_size = 3;
  b.num_dense = 2;
  b.num_tables = 2;
  b.dense = {0, 1, 10, 11, 20, 21};
  b.sparse.indices = {5, 6, 7, 1, 2, 3, 4};
  b.sparse.offsets = Batch::offsets_from_lengths(std::vector<int32_t>{1, 2, 0, 3, 0, 1});

  const BatchView all = view_of(b);
  CHECK(std::vector<int64_t>(all.table_offsets(1).begin(), all.table_offsets(1).end()) ==
        std::vector<int64_t>{3, 6, 6, 7});

  const BatchView tail = all.slice(1, 2);
  CHECK(tail.batch_size == 2);
  CHECK(std::vector<float>(tail.dense.begin(), tail.dense.end()) ==
        std::vector<float>{10, 11, 20, 21});
  CHECK(std::vector<int64_t>(tail.table_offsets(0).begin(), tail.table_offsets(0).end()) ==
        std::vector<int64_t>{1, 3, 3});
  CHECK(std::vector<int64_t>(tail.table_offsets(1).begin(), tail.table_offsets(1).end()) ==
        std::vector<int64_t>{6, 6, 7});

  const BatchView one = tail.slice(1, 1);  // item 2 of the batch
  CHECK(one.first == 2);
  CHECK(one.dense[0] == 20);
  CHECK(one.table_offsets(1)[0] == 6);
  CHECK(one.table_offsets(1)[1] == 7);
}

TEST_CASE("concat joins views item by item, each table's bags in order") {
  // Part A: 2 items, lengths table 0: 1,2; table 1: 0,1. Part B: a 1-item slice of a
  // 2-item batch (its second item), lengths table 0: 3; table 1: 2.
  Batch a;
  a.batch_size = 2;
  a.num_dense = 1;
  a.num_tables = 2;
  a.dense = {1, 2};
  a.sparse.indices = {10, 11, 12, 13};
  a.sparse.offsets = Batch::offsets_from_lengths(std::vector<int32_t>{1, 2, 0, 1});
  Batch b;
  b.batch_size = 2;
  b.num_dense = 1;
  b.num_tables = 2;
  b.dense = {8, 9};
  b.sparse.indices = {90, 20, 21, 22, 91, 30, 31};
  b.sparse.offsets = Batch::offsets_from_lengths(std::vector<int32_t>{1, 3, 1, 2});
  const std::vector<BatchView> parts = {view_of(a), view_of(b).slice(1, 1)};
  const Batch m = concat(parts);
  CHECK(m.batch_size == 3);
  CHECK(m.num_dense == 1);
  CHECK(m.num_tables == 2);
  CHECK(m.dense == std::vector<float>{1, 2, 9});
  CHECK(m.sparse.indices == std::vector<int64_t>{10, 11, 12, 20, 21, 22, 13, 30, 31});
  CHECK(m.sparse.offsets == std::vector<int64_t>{0, 1, 3, 6, 6, 7, 9});
  // Each item's bags are the ones it had in its own part.
  const BatchView v = view_of(m);
  CHECK(v.table_offsets(1)[2] == 7);
  CHECK(concat(std::vector<BatchView>{}).batch_size == 0);
}

}  // namespace
}  // namespace recsched
