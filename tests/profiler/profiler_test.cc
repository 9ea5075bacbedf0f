#include "profiler/profiler.h"

#include <doctest/doctest.h>

namespace recsched::profiler {
namespace {

using exec::CpuRunner;
using hw::CpuDevice;
using hw::Partition;
using hw::Topology;

engine::ModelSpec golden(const char* c) {
  return engine::load_model_spec(std::string(RECSCHED_SOURCE_DIR) + "/tests/fixtures/golden/" + c +
                                 ".model.json")
      .value();
}

TEST_CASE("a CPU sweep measures every batch size, the best split and labelled energy") {
  Topology topo = std::move(Topology::host().value());
  const CpuDevice dev = topo.devices(Partition::kNuma)->cpus.at(0);
  auto runner = std::move(CpuRunner::create(topo, dev).value());
  auto model = std::move(runner->load(golden("wide"), {}).value());
  // A fake clock makes the estimate exact: 10 s of wall time per reading pair would be
  // unreadable, so the clock stands still and only busy time costs energy.
  EstimatedMeter meter({.active_w = 20.0, .idle_w = 0.0, .what = "test CPU"}, [] { return 0.0; });
  ProfileOptions o = ProfileOptions::quick();
  Result<std::vector<ProfilePoint>> points = profile_cpu(*runner, *model, meter, o);
  REQUIRE_MESSAGE(points.has_value(), points.status().to_string());
  REQUIRE(points->size() == o.batch_sizes.size());
  for (size_t i = 0; i < points->size(); ++i) {
    const ProfilePoint& p = (*points)[i];
    CAPTURE(p.batch_size);
    CHECK(p.batch_size == o.batch_sizes[i]);
    CHECK(p.p50_us > 0);
    CHECK(p.p95_us >= p.p50_us);
    // The best split is the fastest of the splits tried, one worker among them.
    CHECK(p.p50_single_us >= p.p50_us);
    CHECK(p.items_per_s == doctest::Approx(p.batch_size / (p.p50_us * 1e-6)));
    CHECK(p.best_workers >= 1);
    CHECK(p.best_workers <= static_cast<uint32_t>(runner->workers()));
    // The split covers the batch: workers x sub-batch >= batch, with no idle worker.
    CHECK(p.best_workers * p.best_sub_batch >= p.batch_size);
    CHECK((p.best_workers - 1) * p.best_sub_batch < p.batch_size);
    CHECK(p.power_source == "estimated");
  }
  CHECK(meter.energy_joules().value() > 0.0);
}

TEST_CASE("a whole-model sweep labels its energy with the meter's source") {
  auto model = std::move(engine::load_model(golden("ncf"), {}).value());
  EstimatedMeter meter({.active_w = 10.0, .idle_w = 10.0, .what = "test GPU"});
  ProfileOptions o = ProfileOptions::quick();
  o.batch_sizes = {1, 8};
  Result<std::vector<ProfilePoint>> points = profile_whole(*model, meter, o);
  REQUIRE(points.has_value());
  REQUIRE(points->size() == 2);
  // Idle == active: 10 W whatever the load, so the measured power is exactly 10 W.
  CHECK((*points)[1].power_w == doctest::Approx(10.0).epsilon(0.2));
  CHECK((*points)[1].power_source == "estimated");
  CHECK((*points)[1].best_workers == 1);
  CHECK((*points)[1].best_sub_batch == 8);
  CHECK((*points)[1].p50_single_us == (*points)[1].p50_us);
}

}  // namespace
}  // namespace recsched::profiler
