#include "engine/embedding_bag.h"

#include <doctest/doctest.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstring>
#include <random>
#include <span>
#include <vector>

namespace recsched::engine {
namespace {

// A table whose last byte sits right before a PROT_NONE page: any read past the end
// of the table crashes the test instead of passing silently.
class GuardedTable {
 public:
  GuardedTable(int64_t rows, int32_t dim) : rows_(rows), dim_(dim) {
    const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
    const size_t bytes = static_cast<size_t>(rows) * dim * sizeof(float);
    const size_t data_pages = (bytes + page - 1) / page;
    map_bytes_ = (data_pages + 1) * page;
    base_ = static_cast<char*>(
        mmap(nullptr, map_bytes_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
    REQUIRE(base_ != MAP_FAILED);
    REQUIRE(mprotect(base_ + data_pages * page, page, PROT_NONE) == 0);
    data_ = reinterpret_cast<float*>(base_ + data_pages * page - bytes);
    std::mt19937 rng(static_cast<uint32_t>(rows * 131 + dim));
    std::uniform_real_distribution<float> uni(-1.0f, 1.0f);
    for (size_t i = 0; i < static_cast<size_t>(rows) * dim; ++i) data_[i] = uni(rng);
  }
  ~GuardedTable() { munmap(base_, map_bytes_); }
  EmbeddingTable table() const { return {data_, rows_, dim_}; }

 private:
  int64_t rows_;
  int32_t dim_;
  size_t map_bytes_ = 0;
  char* base_ = nullptr;
  float* data_ = nullptr;
};

struct Bags {
  std::vector<int64_t> indices;
  std::vector<int64_t> offsets;
};

Bags random_bags(std::mt19937& rng, int64_t rows, int num_bags, int max_len) {
  Bags b;
  std::uniform_int_distribution<int> len(0, max_len);
  std::uniform_int_distribution<int64_t> id(0, rows - 1);
  b.offsets.push_back(0);
  for (int i = 0; i < num_bags; ++i) {
    const int n = len(rng);
    for (int k = 0; k < n; ++k) b.indices.push_back(id(rng));
    b.offsets.push_back(static_cast<int64_t>(b.indices.size()));
  }
  return b;
}

TEST_CASE("every ISA's embedding_bag_sum equals the reference bit for bit on random shapes") {
  std::mt19937 rng(42);
  for (int32_t dim : {1, 3, 8, 15, 16, 17, 32, 48, 64, 100, 128}) {
    for (int64_t rows : {int64_t{1}, int64_t{7}, int64_t{1000}}) {
      GuardedTable t(rows, dim);
      for (int round = 0; round < 3; ++round) {
        const int num_bags = 1 + static_cast<int>(rng() % 40);
        const Bags bags = random_bags(rng, rows, num_bags, 30);
        const int64_t stride = dim + static_cast<int64_t>(rng() % 5);  // write into wider rows
        std::vector<float> want(num_bags * stride, -7.0f);
        REQUIRE(
            embedding_bag_sum_ref(t.table(), bags.indices, bags.offsets, {want.data(), stride}));
        for (Isa isa : supported_isas()) {
          CAPTURE(to_string(isa));
          CAPTURE(dim);
          CAPTURE(rows);
          std::vector<float> got(num_bags * stride, -7.0f);
          REQUIRE(
              embedding_bag_sum(isa, t.table(), bags.indices, bags.offsets, {got.data(), stride}));
          // Padding between strided rows stays untouched (-7), and sums match exactly.
          CHECK(std::memcmp(got.data(), want.data(), got.size() * sizeof(float)) == 0);
        }
      }
    }
  }
}

TEST_CASE("32-bit ids give every ISA's kernel and the reference the same sums as 64-bit ids") {
  std::mt19937 rng(7);
  for (int32_t dim : {3, 8, 16, 32, 64, 100}) {
    const int64_t rows = 1000;
    GuardedTable t(rows, dim);
    const Bags bags = random_bags(rng, rows, 1 + static_cast<int>(rng() % 40), 30);
    const std::vector<int32_t> narrow(bags.indices.begin(), bags.indices.end());
    std::vector<float> want(bags.offsets.size() * dim, -7.0f);
    REQUIRE(embedding_bag_sum_ref(t.table(), bags.indices, bags.offsets, {want.data(), dim}));
    std::vector<float> ref32(want.size(), -7.0f);
    REQUIRE(embedding_bag_sum_ref(t.table(), narrow, bags.offsets, {ref32.data(), dim}));
    CHECK(std::memcmp(ref32.data(), want.data(), want.size() * sizeof(float)) == 0);
    for (Isa isa : supported_isas()) {
      CAPTURE(to_string(isa));
      CAPTURE(dim);
      std::vector<float> got(want.size(), -7.0f);
      REQUIRE(embedding_bag_sum(isa, t.table(), narrow, bags.offsets, {got.data(), dim}));
      CHECK(std::memcmp(got.data(), want.data(), got.size() * sizeof(float)) == 0);
    }
  }
}

TEST_CASE("32-bit ids outside the table are refused on every ISA and by the reference") {
  GuardedTable t(10, 32);
  std::vector<float> out(2 * 32);
  const std::vector<int64_t> off = {0, 1, 2};
  for (int32_t bad : {int32_t{10}, int32_t{-1}, INT32_MIN, INT32_MAX}) {
    CAPTURE(bad);
    const std::vector<int32_t> idx = {9, bad};  // the last row is read, the next refused
    CHECK_FALSE(embedding_bag_sum_ref(t.table(), idx, off, {out.data(), 32}));
    for (Isa isa : supported_isas()) {
      CAPTURE(to_string(isa));
      CHECK_FALSE(embedding_bag_sum(isa, t.table(), idx, off, {out.data(), 32}));
      CHECK(embedding_bag_sum(isa, t.table(), std::span<const int32_t>(idx).first(1),
                              std::vector<int64_t>{0, 1}, {out.data(), 32}));
    }
  }
}

TEST_CASE("the reference sums rows of a bag and leaves an empty bag zero") {
  const std::vector<float> data = {1, 2, 10, 20, 100, 200};  // 3 rows, dim 2
  const EmbeddingTable table{data.data(), 3, 2};
  const std::vector<int64_t> indices = {0, 2, 2, 1};
  const std::vector<int64_t> offsets = {0, 3, 3, 4};  // bags {0,2,2}, {}, {1}
  std::vector<float> out(6, 99.0f);
  REQUIRE(embedding_bag_sum_ref(table, indices, offsets, {out.data(), 2}));
  CHECK(out == std::vector<float>{201, 402, 0, 0, 10, 20});
}

// Named corner cases (after FBGEMM's EmbeddingSpMDMCornerCase), checked on every ISA.
TEST_CASE("embedding_bag_sum corner cases on every ISA") {
  GuardedTable t(10, 32);
  for (Isa isa : supported_isas()) {
    CAPTURE(to_string(isa));
    std::vector<float> out(4 * 32, 5.0f);
    const PooledRows rows{out.data(), 32};

    SUBCASE("EMPTY_BAG gives zeros") {
      const std::vector<int64_t> idx = {3};
      const std::vector<int64_t> off = {0, 0, 1};
      REQUIRE(embedding_bag_sum(isa, t.table(), idx, off, rows));
      for (int d = 0; d < 32; ++d) CHECK(out[d] == 0.0f);
    }
    SUBCASE("EMPTY_INDICES: all bags empty") {
      const std::vector<int64_t> off = {0, 0, 0};
      REQUIRE(embedding_bag_sum(isa, t.table(), std::span<const int64_t>(), off, rows));
      for (int d = 0; d < 64; ++d) CHECK(out[d] == 0.0f);
    }
    SUBCASE("NO_BAGS: a single offset is zero bags and writes nothing") {
      const std::vector<int64_t> off = {0};
      REQUIRE(embedding_bag_sum(isa, t.table(), std::span<const int64_t>(), off, rows));
      CHECK(out[0] == 5.0f);
    }
    SUBCASE("EMPTY_OFFSETS is malformed") {
      CHECK_FALSE(embedding_bag_sum(isa, t.table(), std::span<const int64_t>(), {}, rows));
    }
    SUBCASE("OUT_OF_BOUND_INDICES: rows and -1 are refused, the last row is read") {
      const std::vector<int64_t> off = {0, 1};
      for (int64_t bad : {int64_t{10}, int64_t{-1}, int64_t{1} << 40, INT64_MIN}) {
        const std::vector<int64_t> idx = {bad};
        CHECK_FALSE(embedding_bag_sum(isa, t.table(), idx, off, rows));
      }
      const std::vector<int64_t> last = {9};
      CHECK(embedding_bag_sum(isa, t.table(), last, off, rows));
    }
    SUBCASE("an out-of-range id behind the prefetch window is refused too") {
      std::vector<int64_t> idx(40, 1);
      idx[39] = 10;
      const std::vector<int64_t> off = {0, 20, 40};
      CHECK_FALSE(embedding_bag_sum(isa, t.table(), idx, off, rows));
    }
    SUBCASE("OFFSETS_MISMATCH: decreasing offsets or offsets past the indices") {
      const std::vector<int64_t> idx = {1, 2, 3};
      CHECK_FALSE(embedding_bag_sum(isa, t.table(), idx, std::vector<int64_t>{0, 2, 1}, rows));
      CHECK_FALSE(embedding_bag_sum(isa, t.table(), idx, std::vector<int64_t>{0, 4}, rows));
      CHECK_FALSE(embedding_bag_sum(isa, t.table(), idx, std::vector<int64_t>{-1, 2}, rows));
    }
  }
}

TEST_CASE("a table with zero rows refuses every id") {
  const EmbeddingTable empty{nullptr, 0, 32};
  std::vector<float> out(32);
  const std::vector<int64_t> idx = {0};
  const std::vector<int64_t> off = {0, 1};
  for (Isa isa : supported_isas()) {
    CHECK_FALSE(embedding_bag_sum(isa, empty, idx, off, {out.data(), 32}));
  }
}

}  // namespace
}  // namespace recsched::engine
