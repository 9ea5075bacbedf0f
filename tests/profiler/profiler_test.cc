#include "profiler/profiler.h"

#include <doctest/doctest.h>

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>

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

// A stand-in for a GPU with `lanes` passes' worth of room: a pass sleeps kPassMs holding
// one lane, so lanes passes overlap and more queue. How many streams pay is then known.
// 10 ms, not 2 or 5: between two passes a stream's thread pays a wake-up (50-100 us on a
// VM whose idle vCPUs halt, more beside another test), a share of a short pass large
// enough that three streams on two lanes measured more than 10 % above two (the lane never
// idle while a third waits): at 2 ms once, at 5 ms in three README runs of 2026-12-07.
constexpr int kPassMs = 10;

class Lanes final : public engine::Model {
 public:
  Lanes(engine::ModelSpec spec, int lanes) : spec_(std::move(spec)), free_(lanes) {}
  const engine::ModelSpec& spec() const override { return spec_; }
  engine::Isa isa() const override { return engine::Isa::kGeneric; }
  std::vector<engine::TensorToWrite> tensors() const override { return {}; }
  Status forward(const BatchView&, engine::Workspace&, std::span<float> scores) const override {
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&] { return free_ > 0; });
      --free_;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(kPassMs));
    std::fill(scores.begin(), scores.end(), 0.5f);
    {
      std::lock_guard<std::mutex> lock(mu_);
      ++free_;
    }
    cv_.notify_one();
    return Status::ok();
  }

 private:
  engine::ModelSpec spec_;
  mutable std::mutex mu_;
  mutable std::condition_variable cv_;
  mutable int free_;
};

TEST_CASE("a whole-model sweep with streams finds how many passes at once pay") {
  EstimatedMeter meter({.active_w = 10.0, .idle_w = 10.0, .what = "test GPU"});
  ProfileOptions o = ProfileOptions::quick();
  o.batch_sizes = {1, 8};
  // Long enough that one stream's thread losing its core for a few milliseconds to another
  // process (ctest runs tests side by side) costs well under the 10 % the choice turns on:
  // at 0.04 s, one stream on one lane once measured 2 "paying".
  o.seconds_per_point = 0.15;
  struct Case {
    int lanes;
    uint32_t want;
  };
  for (const Case c : {Case{1, 1}, Case{2, 2}}) {
    CAPTURE(c.lanes);
    const Lanes model(golden("ncf"), c.lanes);
    Result<std::vector<ProfilePoint>> points = profile_whole(model, meter, o, 3);
    REQUIRE_MESSAGE(points.has_value(), points.status().to_string());
    for (const ProfilePoint& p : *points) {
      CAPTURE(p.batch_size);
      // Three streams on two lanes are no faster than two: the fewest within 10 % of the
      // most is two. On one lane, none beats one.
      CHECK(p.best_streams == c.want);
      // Each pass takes kPassMs, so `lanes` at once give lanes x batch / kPassMs items a second.
      const double rate = c.lanes * p.batch_size / (kPassMs * 1e-3);
      CHECK(p.streams_items_per_s <= rate * 1.05);
      // A sleep overshoots on a busy machine, and on a VM whose idle vCPUs halt by as
      // much again (one lane at 8 items once measured 2,042 of 4,000 items/s, each pass
      // 3.9 ms): the measure is the rate's order, not its precision.
      CHECK(p.streams_items_per_s >= rate * 0.3);
    }
  }
  // Without streams (the default) neither field is measured.
  const Lanes model(golden("ncf"), 2);
  Result<std::vector<ProfilePoint>> plain = profile_whole(model, meter, o);
  REQUIRE(plain.has_value());
  CHECK(plain->front().best_streams == 0);
  CHECK(plain->front().streams_items_per_s == 0);
}

}  // namespace
}  // namespace recsched::profiler
