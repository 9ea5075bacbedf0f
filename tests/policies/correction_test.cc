// ServiceCorrection: what serving measured, learnt against the profile's predictions.
#include "policies/correction.h"

#include <doctest/doctest.h>

#include <map>

#include "tests/policies/contract.h"

namespace recsched::policies {
namespace {

TEST_CASE("size ranges are powers of four, the last open") {
  CHECK(ServiceCorrection::range(1) == 0);
  CHECK(ServiceCorrection::range(3) == 0);
  CHECK(ServiceCorrection::range(4) == 1);
  CHECK(ServiceCorrection::range(63) == 2);
  CHECK(ServiceCorrection::range(64) == 3);
  CHECK(ServiceCorrection::range(164) == 3);
  CHECK(ServiceCorrection::range(256) == 4);
  CHECK(ServiceCorrection::range(1024) == 5);
  CHECK(ServiceCorrection::range(UINT32_MAX) == 5);
}

TEST_CASE("a range's ratio is learnt from its own queries and applied once it has enough") {
  ServiceCorrection c;
  // Seven queries of 164 items measured at twice the prediction: not yet applied.
  for (int i = 0; i < 7; ++i) c.learn_service("cpu0", "m", 164, 2.0, 1.0);
  CHECK(c.ratio("cpu0", "m", 164).value == 1.0);
  CHECK(c.ratio("cpu0", "m", 164).samples == 7);
  c.learn_service("cpu0", "m", 200, 2.0, 1.0);  // the same range, [64, 256)
  CHECK(c.ratio("cpu0", "m", 100).value == doctest::Approx(2.0));
  // Other ranges, devices and models are untouched.
  CHECK(c.ratio("cpu0", "m", 16).value == 1.0);
  CHECK(c.ratio("gpu0", "m", 164).value == 1.0);
  CHECK(c.ratio("cpu0", "other", 164).value == 1.0);
  // It follows a change: after many queries at 1.5x it is near 1.5. (A geometric mean: a
  // median-like prediction that one slow query among twenty does not pull up.)
  for (int i = 0; i < 200; ++i) c.learn_service("cpu0", "m", 164, 1.5, 1.0);
  CHECK(c.ratio("cpu0", "m", 164).value == doctest::Approx(1.5).epsilon(0.01));
  // Clamped: one stall does not make a model 1000x slower; bad samples are ignored.
  ServiceCorrection d;
  for (int i = 0; i < 8; ++i) d.learn_service("cpu0", "m", 1, 1000.0, 1.0);
  CHECK(d.ratio("cpu0", "m", 1).value == doctest::Approx(ServiceCorrection::kMaxRatio));
  d.learn_service("cpu0", "m", 1, 0.0, 1.0);
  d.learn_service("cpu0", "m", 1, 1.0, 0.0);
  CHECK(d.ratio("cpu0", "m", 1).samples == 8);
}

TEST_CASE("the corrected table scales each measured point by its range's ratio, or the nearest") {
  const ProfileTable measured = cpu_gpu_table();  // cpu0: 0.05 + 0.1 n ms at 1, 4, ..., 1024
  ServiceCorrection c;
  for (int i = 0; i < 8; ++i) c.learn_service("cpu0", "m", 5, 2.0, 1.0);    // [4, 16)
  for (int i = 0; i < 8; ++i) c.learn_service("cpu0", "m", 300, 3.0, 1.0);  // [256, 1024)
  for (int i = 0; i < 7; ++i) c.learn_service("cpu0", "m", 64, 9.0, 1.0);   // too few
  for (int i = 0; i < 8; ++i) c.learn_overhead("m", 64, 0.4);
  const ProfileTable t = c.apply(measured);
  const auto& pts = t.points("m", "cpu0");
  REQUIRE(pts.size() == measured.points("m", "cpu0").size());
  // 1 -> [4, 16) (nearest); 4 own; 16: [4, 16) one range away, [256, 1024) two; 64: the
  // reverse (its own has too few samples); 256 own; 1024 -> [256, 1024).
  const std::map<uint32_t, double> want = {{1, 2.0},  {4, 2.0},   {16, 2.0},
                                           {64, 3.0}, {256, 3.0}, {1024, 3.0}};
  for (size_t i = 0; i < pts.size(); ++i) {
    const ProfilePoint& was = measured.points("m", "cpu0")[i];
    CAPTURE(pts[i].batch_size);
    const double r = want.at(was.batch_size);
    CHECK(pts[i].p50_single_us == doctest::Approx(was.p50_single_us * r));
    CHECK(pts[i].p50_us == doctest::Approx(was.p50_us * r));
    CHECK(pts[i].items_per_s == doctest::Approx(was.items_per_s / r));
    CHECK(pts[i].power_w == was.power_w);
  }
  CHECK(t.points("m", "gpu0")[3].p50_single_us == measured.points("m", "gpu0")[3].p50_single_us);
  CHECK(c.overhead_ms("m", 100).value == doctest::Approx(0.4));
  CHECK(c.overhead_ms("m", 10).value == 0.0);
  // What GET /v1/profiles shows: learnt ranges only, with their bounds and counts.
  const nlohmann::json j = c.to_json();
  REQUIRE(j["service"].size() == 1);
  CHECK(j["service"][0]["device"] == "cpu0");
  const nlohmann::json& ranges = j["service"][0]["ranges"];
  REQUIRE(ranges.size() == 3);
  CHECK(ranges[0]["from_items"] == 4);
  CHECK(ranges[0]["to_items"] == 16);
  CHECK(ranges[0]["ratio"] == doctest::Approx(2.0));
  CHECK(ranges[0]["applied"] == true);
  CHECK(ranges[1]["from_items"] == 64);
  CHECK(ranges[1]["samples"] == 7);
  CHECK(ranges[1]["applied"] == false);
  CHECK(ranges[2]["from_items"] == 256);
  CHECK(ranges[2]["to_items"] == 1024);
  CHECK(j["overhead"][0]["ranges"][0]["ms"] == doctest::Approx(0.4));
}

}  // namespace
}  // namespace recsched::policies
