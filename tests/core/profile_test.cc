#include "core/profile.h"

#include <doctest/doctest.h>

#include <algorithm>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace recsched {
namespace {

ProfilePoint make_point(uint32_t batch_size, double p50_us, double power_w,
                        std::string power_source, uint32_t best_sub_batch, uint32_t best_workers) {
  ProfilePoint p;
  p.batch_size = batch_size;
  p.p50_us = p50_us;
  p.p95_us = 1.5 * p50_us;
  p.items_per_s = batch_size * 1e6 / p50_us;
  p.power_w = power_w;
  p.energy_per_item_j = power_w * p50_us * 1e-6 / batch_size;
  p.power_source = std::move(power_source);
  p.best_sub_batch = best_sub_batch;
  p.best_workers = best_workers;
  return p;
}

void check_same(const ProfilePoint& got, const ProfilePoint& want) {
  CHECK(got.batch_size == want.batch_size);
  CHECK(got.p50_us == want.p50_us);
  CHECK(got.p95_us == want.p95_us);
  CHECK(got.items_per_s == want.items_per_s);
  CHECK(got.power_w == want.power_w);
  CHECK(got.energy_per_item_j == want.energy_per_item_j);
  CHECK(got.power_source == want.power_source);
  CHECK(got.best_sub_batch == want.best_sub_batch);
  CHECK(got.best_workers == want.best_workers);
  CHECK(got.best_streams == want.best_streams);
  CHECK(got.streams_items_per_s == want.streams_items_per_s);
}

// dlrm on cpu0, measured at 8, 16 and 64 (added out of order).
ProfileTable make_table() {
  ProfileTable t;
  t.add("dlrm", "cpu0", make_point(64, 1000, 200, "rapl", 16, 8));
  t.add("dlrm", "cpu0", make_point(8, 100, 100, "rapl", 8, 1));
  t.add("dlrm", "cpu0", make_point(16, 200, 120, "estimated", 4, 2));
  return t;
}

TEST_CASE("estimate returns the measured point on an exact hit") {
  const ProfileTable t = make_table();
  for (uint32_t b : {8u, 16u, 64u}) {
    CAPTURE(b);
    const std::optional<ProfilePoint> p = t.estimate("dlrm", "cpu0", b);
    REQUIRE(p.has_value());
    const auto& pts = t.points("dlrm", "cpu0");
    const auto it = std::find_if(pts.begin(), pts.end(),
                                 [&](const ProfilePoint& q) { return q.batch_size == b; });
    REQUIRE(it != pts.end());
    check_same(*p, *it);
  }
}

TEST_CASE("estimate interpolates every numeric field linearly between the nearest sizes") {
  const ProfileTable t = make_table();
  const ProfilePoint lo = make_point(16, 200, 120, "estimated", 4, 2);
  const ProfilePoint hi = make_point(64, 1000, 200, "rapl", 16, 8);
  struct Case {
    uint32_t batch_size;
    double t;                 // (batch_size - 16) / (64 - 16)
    uint32_t best_sub_batch;  // from the nearer point, the lower on a tie
    uint32_t best_workers;
  };
  const Case cases[] = {
      {40, 0.5, 4, 2},      // midway: a tie, so the lower point's knobs
      {28, 0.25, 4, 2},     // nearer the lower point
      {52, 0.75, 16, 8},    // nearer the upper point
      {17, 1.0 / 48, 4, 2}  // just above the lower point
  };
  for (const Case& c : cases) {
    CAPTURE(c.batch_size);
    const std::optional<ProfilePoint> p = t.estimate("dlrm", "cpu0", c.batch_size);
    REQUIRE(p.has_value());
    CHECK(p->batch_size == c.batch_size);
    CHECK(p->p50_us == doctest::Approx(lo.p50_us + c.t * (hi.p50_us - lo.p50_us)));
    CHECK(p->p95_us == doctest::Approx(lo.p95_us + c.t * (hi.p95_us - lo.p95_us)));
    CHECK(p->power_w == doctest::Approx(lo.power_w + c.t * (hi.power_w - lo.power_w)));
    CHECK(p->energy_per_item_j ==
          doctest::Approx(lo.energy_per_item_j +
                          c.t * (hi.energy_per_item_j - lo.energy_per_item_j)));
    // items_per_s stays consistent with the interpolated latency.
    CHECK(p->items_per_s == doctest::Approx(c.batch_size * 1e6 / p->p50_us));
    CHECK(p->power_source == "estimated");  // always from the lower point
    CHECK(p->best_sub_batch == c.best_sub_batch);
    CHECK(p->best_workers == c.best_workers);
    CHECK(p->best_streams == 0);  // not measured on either point
    CHECK(p->streams_items_per_s == 0);
  }

  // Between the first two points the lower one is labelled "rapl".
  const std::optional<ProfilePoint> p = t.estimate("dlrm", "cpu0", 12);
  REQUIRE(p.has_value());
  CHECK(p->p50_us == doctest::Approx(150));
  CHECK(p->items_per_s == doctest::Approx(12 * 1e6 / 150));
  CHECK(p->power_source == "rapl");
  CHECK(p->best_sub_batch == 8);  // midway between 8 and 16: the lower
}

TEST_CASE("a GPU's streams: interpolated from the nearer point, the device's the most of any point") {
  ProfileTable t;
  ProfilePoint lo = make_point(16, 200, 300, "nvml", 16, 1);
  lo.best_streams = 3;
  lo.streams_items_per_s = 200000;
  ProfilePoint hi = make_point(64, 400, 300, "nvml", 64, 1);
  hi.best_streams = 1;
  hi.streams_items_per_s = 160000;
  t.add("rmc2", "gpu0", lo);
  t.add("rmc2", "gpu0", hi);
  const std::optional<ProfilePoint> near_lo = t.estimate("rmc2", "gpu0", 28);
  const std::optional<ProfilePoint> near_hi = t.estimate("rmc2", "gpu0", 52);
  REQUIRE(near_lo.has_value());
  REQUIRE(near_hi.has_value());
  CHECK(near_lo->best_streams == 3);
  CHECK(near_hi->best_streams == 1);
  CHECK(near_lo->streams_items_per_s == doctest::Approx(190000));  // a quarter of the way
  CHECK(near_hi->streams_items_per_s == doctest::Approx(170000));

  CHECK(streams_paying(t, "gpu0") == 3);
  ProfilePoint other = make_point(8, 100, 300, "nvml", 8, 1);
  other.best_streams = 4;
  t.add("din", "gpu0", other);
  CHECK(streams_paying(t, "gpu0") == 4);  // the most over every model
  t.add("din", "gpu1", make_point(8, 100, 300, "nvml", 8, 1));
  CHECK(streams_paying(t, "gpu1") == 0);  // never measured: the caller's default
  CHECK(streams_paying(t, "gpu7") == 0);
}

TEST_CASE("estimate returns nullopt outside the measured range") {
  const ProfileTable t = make_table();
  for (uint32_t b : {0u, 1u, 7u, 65u, 1000u}) {
    CAPTURE(b);
    CHECK_FALSE(t.estimate("dlrm", "cpu0", b).has_value());
  }
}

TEST_CASE("an unknown model or device has no estimate and no points") {
  const ProfileTable t = make_table();
  struct Case {
    std::string model;
    std::string device;
  };
  const Case cases[] = {{"dlrm", "cpu1"}, {"din", "cpu0"}, {"", ""}, {"dlrm", ""}};
  for (const Case& c : cases) {
    CAPTURE(c.model);
    CAPTURE(c.device);
    CHECK_FALSE(t.estimate(c.model, c.device, 16).has_value());
    CHECK(t.points(c.model, c.device).empty());
  }
  ProfileTable empty;
  CHECK(empty.empty());
  CHECK(empty.keys().empty());
  CHECK(empty.points("dlrm", "cpu0").empty());
  CHECK_FALSE(t.empty());
}

TEST_CASE("add keeps points sorted by batch size and replaces an existing batch size") {
  ProfileTable t = make_table();
  std::vector<uint32_t> sizes;
  for (const ProfilePoint& p : t.points("dlrm", "cpu0")) sizes.push_back(p.batch_size);
  CHECK(sizes == std::vector<uint32_t>{8, 16, 64});

  const ProfilePoint replacement = make_point(16, 180, 110, "nvml", 2, 4);
  t.add("dlrm", "cpu0", replacement);
  const auto& pts = t.points("dlrm", "cpu0");
  REQUIRE(pts.size() == 3);
  check_same(pts[1], replacement);
  const std::optional<ProfilePoint> p = t.estimate("dlrm", "cpu0", 16);
  REQUIRE(p.has_value());
  check_same(*p, replacement);

  t.add("dlrm", "cpu0", make_point(32, 500, 150, "rapl", 8, 4));
  sizes.clear();
  for (const ProfilePoint& q : t.points("dlrm", "cpu0")) sizes.push_back(q.batch_size);
  CHECK(sizes == std::vector<uint32_t>{8, 16, 32, 64});
}

TEST_CASE("a single measured point answers only its own batch size") {
  ProfileTable t;
  t.add("din", "cuda0", make_point(32, 50, 300, "nvml", 32, 1));
  CHECK(t.estimate("din", "cuda0", 32).has_value());
  CHECK_FALSE(t.estimate("din", "cuda0", 31).has_value());
  CHECK_FALSE(t.estimate("din", "cuda0", 33).has_value());
}

TEST_CASE("keys lists every profiled pair in sorted order") {
  ProfileTable t;
  t.add("dlrm", "cuda0", make_point(8, 10, 100, "nvml", 8, 1));
  t.add("din", "cpu1", make_point(8, 10, 100, "rapl", 8, 1));
  t.add("dlrm", "cpu0", make_point(8, 10, 100, "rapl", 8, 1));
  t.add("din", "cpu0", make_point(8, 10, 100, "rapl", 8, 1));
  t.add("dlrm", "cpu0", make_point(16, 20, 100, "rapl", 8, 1));
  using Pair = std::pair<std::string, std::string>;
  CHECK(t.keys() ==
        std::vector<Pair>{{"din", "cpu0"}, {"din", "cpu1"}, {"dlrm", "cpu0"}, {"dlrm", "cuda0"}});
}

}  // namespace
}  // namespace recsched
