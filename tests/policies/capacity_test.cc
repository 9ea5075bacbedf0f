// The capacity model (policies/capacity.h) against figures worked out by hand from a small
// synthetic profile.
#include "policies/capacity.h"

#include <doctest/doctest.h>

#include <cmath>

namespace recsched::policies {
namespace {

ProfilePoint point(uint32_t batch, double single_ms) {
  ProfilePoint p;
  p.batch_size = batch;
  p.p50_single_us = single_ms * 1e3;
  p.p50_us = single_ms * 1e3;
  p.best_workers = 1;
  return p;
}

// "m" on cpu0 (2 workers): 12 ms at 100 items, 20 ms at 200 (a whole query on one worker:
// larger batches are cheaper per item). "m" on gpu0 (1 stream): 4 ms at 200 items.
// "other" on cpu0 only: 1 ms at 100 items.
ProfileTable table() {
  ProfileTable t;
  t.add("m", "cpu0", point(100, 12));
  t.add("m", "cpu0", point(200, 20));
  t.add("m", "gpu0", point(200, 4));
  t.add("other", "cpu0", point(100, 1));
  return t;
}

const DeviceInfo kCpu{"cpu0", DeviceKind::kCpu, 2, 0};
const DeviceInfo kGpu{"gpu0", DeviceKind::kGpu, 1, 0};

TEST_CASE("a device's rate: the fewest worker-ms that meet the bound, times the ceiling") {
  const ProfileTable t = table();
  // 200 items within 24 ms: whole on one worker (20 ms, 20 worker-ms) beats two halves
  // (12 ms each, 24 worker-ms). 0.8 x 2 workers x 1000 / 20 = 80 q/s.
  DeviceCapacity c = device_capacity(t, kCpu, "m", 200, 24, 0.8);
  CHECK(c.workers_per_query == 1);
  CHECK(c.service_ms == doctest::Approx(20));
  CHECK(c.capacity_qps == doctest::Approx(80));
  // Within 16 ms only the split fits: 0.8 x 2 x 1000 / 24 = 66.67 q/s.
  c = device_capacity(t, kCpu, "m", 200, 16, 0.8);
  CHECK(c.workers_per_query == 2);
  CHECK(c.service_ms == doctest::Approx(12));
  CHECK(c.capacity_qps == doctest::Approx(2000.0 * 0.8 / 24));
  // Within 10 ms nothing fits: no capacity, and the fastest it could be is reported.
  c = device_capacity(t, kCpu, "m", 200, 10, 0.8);
  CHECK(c.workers_per_query == 0);
  CHECK(c.capacity_qps == 0);
  CHECK(c.service_ms == doctest::Approx(12));
  // The ceiling scales it; a device without the model has none.
  CHECK(device_capacity(t, kCpu, "m", 200, 24, 0.5).capacity_qps == doctest::Approx(50));
  CHECK(device_capacity(t, kGpu, "other", 100, 24, 0.8).capacity_qps == 0);
  // Sizes between points interpolate: 150 items is 16 ms whole, 0.8 x 2000 / 16 = 100.
  CHECK(device_capacity(t, kCpu, "m", 150, 100, 0.8).capacity_qps == doctest::Approx(100));
}

TEST_CASE("the host: models summed over devices, utilisation, mix capacity and headroom") {
  const ProfileTable t = table();
  const std::vector<DeviceInfo> devices{kCpu, kGpu};
  CapacityOptions o;  // bound 0.8 x target, ceiling 0.8
  // m: 200 items, target 30 (bound 24): cpu0 80 q/s + gpu0 0.8 x 1000 / 4 = 200 -> 280.
  // other: 100 items, target 5 (bound 4): cpu0 0.8 x 2000 / 1 = 1600 (gpu0 has no profile).
  std::vector<ModelDemand> demand{{"m", 30, 200, 150, 140}, {"other", 5, 100, 400, 400}};
  HostCapacity h = host_capacity(t, devices, {false, false}, demand, o);
  REQUIRE(h.models.size() == 2);
  CHECK(h.models[0].capacity_qps == doctest::Approx(280));
  REQUIRE(h.models[0].devices.size() == 2);
  CHECK(h.models[0].devices[1].capacity_qps == doctest::Approx(200));
  CHECK(h.models[1].capacity_qps == doctest::Approx(1600));
  CHECK(h.models[1].devices.size() == 1);
  CHECK(h.models[0].offered_qps == 150);
  // Utilisation 140/280 + 400/1600 = 0.75; the mix (540 q/s served) fits 540 / 0.75 = 720.
  CHECK(h.utilisation == doctest::Approx(0.75));
  CHECK(h.served_qps == doctest::Approx(540));
  CHECK(h.mix_capacity_qps == doctest::Approx(720));
  CHECK(h.headroom_qps == doctest::Approx(180));
  CHECK(h.models[0].headroom_qps == doctest::Approx(70));
  CHECK(h.models[1].headroom_qps == doctest::Approx(400));

  // A degraded device counts nothing.
  h = host_capacity(t, devices, {false, true}, demand, o);
  CHECK(h.models[0].capacity_qps == doctest::Approx(80));
  CHECK(h.models[0].devices[1].degraded);
  // 140/80 + 400/1600 = 2: overloaded, no headroom.
  CHECK(h.utilisation == doctest::Approx(2.0));
  CHECK(h.headroom_qps == 0);
  CHECK(h.models[1].headroom_qps == 0);

  // No traffic: an even split over the models, 2 / (1/280 + 1/1600) = 476.6 q/s, all free.
  demand = {{"m", 30, 200, 0, 0}, {"other", 5, 100, 0, 0}};
  h = host_capacity(t, devices, {}, demand, o);
  CHECK(h.utilisation == 0);
  CHECK(h.mix_capacity_qps == doctest::Approx(2.0 / (1.0 / 280 + 1.0 / 1600)));
  CHECK(h.headroom_qps == doctest::Approx(h.mix_capacity_qps));

  // A model no device serves within its target: capacity 0, left out of the even split,
  // and served anyway it counts as a full host.
  demand = {{"m", 1, 200, 0, 0}, {"other", 5, 100, 0, 0}};
  h = host_capacity(t, devices, {}, demand, o);
  CHECK(h.models[0].capacity_qps == 0);
  CHECK(h.mix_capacity_qps == doctest::Approx(1600));
  demand[0].served_qps = 1;
  h = host_capacity(t, devices, {}, demand, o);
  CHECK(h.utilisation == doctest::Approx(1.0));
  CHECK(h.headroom_qps == 0);
}

TEST_CASE("a rate meter forgets exponentially") {
  RateMeter r(10);
  CHECK(r.rate(0) == 0);
  // 100 events a second for 100 s: the rate settles at 100.
  for (int i = 0; i < 10000; ++i) r.add(i * 0.01);
  CHECK(r.rate(100) == doctest::Approx(100).epsilon(0.01));
  // Ten seconds of silence: e^-1 of it.
  CHECK(r.rate(110) == doctest::Approx(100 * std::exp(-1.0)).epsilon(0.01));
  // A burst counts at once.
  RateMeter b(10);
  b.add(5, 20);
  CHECK(b.rate(5) == doctest::Approx(2));
  // An event stamped a little before the last counts as at the last: no decay undone.
  b.add(4.9);
  CHECK(b.rate(5) == doctest::Approx(2.1));
  CHECK(b.rate(15) == doctest::Approx(2.1 * std::exp(-1.0)));
}

}  // namespace
}  // namespace recsched::policies
