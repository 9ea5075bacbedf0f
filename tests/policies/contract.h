// Shared by the policy tests: hand-made profile tables and the contract every policy
// (built-in or plugin) keeps.
#pragma once

#include <doctest/doctest.h>

#include <chrono>
#include <string>
#include <vector>

#include "policies/policy.h"

namespace recsched::policies {

inline ProfilePoint point(uint32_t batch, double single_ms, double power_w = 100,
                          uint32_t workers = 1) {
  ProfilePoint p;
  p.batch_size = batch;
  p.p50_single_us = single_ms * 1e3;
  p.p50_us = single_ms * 1e3 / workers;
  p.p95_us = p.p50_us * 1.2;
  p.items_per_s = batch / (p.p50_us * 1e-6);
  p.power_w = power_w;
  p.energy_per_item_j = power_w * p.p50_us * 1e-6 / batch;
  p.power_source = "estimated";
  p.best_sub_batch = batch;
  p.best_workers = workers;
  return p;
}

// A CPU whose single-worker time grows linearly (0.1 ms/item + 0.05 ms), and a GPU with a
// 1 ms floor that wins only above 64 items (it is 8x faster per item).
inline ProfileTable cpu_gpu_table() {
  ProfileTable t;
  for (uint32_t b : {1u, 4u, 16u, 64u, 256u, 1024u}) {
    t.add("m", "cpu0", point(b, 0.05 + 0.1 * b, 20.0));
    t.add("m", "gpu0", point(b, 1.0 + 0.0125 * b + (b <= 64 ? 6.0 : 0.0), 150.0));
  }
  return t;
}

inline std::vector<DeviceView> cpu_and_gpu(int cpu_workers = 1) {
  return {{"cpu0", DeviceKind::kCpu, cpu_workers, 0, 0, 0, 10.0},
          {"gpu0", DeviceKind::kGpu, 1, 0, 0, 0, 70.0}};
}

// The interface's contract: a device from the view, sane sizes, a reason; an empty view is
// an expected rejection (kUnavailable); an all-busy view still gets a placement whose
// prediction shows the backlog; observe() and a bad knob are handled; and place() does
// not block (a generous bound: 1000 decisions well within a second).
inline void check_contract(Policy& policy, const std::string& name) {
  const ProfileTable table = cpu_gpu_table();
  const ModelView model{"m", 50.0, 0.0};
  CHECK(policy.name() == name);
  CHECK(policy.params().is_object());
  const std::vector<DeviceView> devices = cpu_and_gpu(4);
  const ClusterView view{devices, table, Clock::now()};
  Result<Placement> p = policy.place({1, &model, 100, 50.0}, view);
  REQUIRE_MESSAGE(p.has_value(), p.status().to_string());
  CHECK((p->device == "cpu0" || p->device == "gpu0"));
  CHECK(p->sub_batch >= 1);
  CHECK(p->workers >= 1);
  CHECK(p->active_workers >= 0);
  CHECK_FALSE(p->reason.empty());
  const ClusterView empty{{}, table, Clock::now()};
  CHECK(policy.place({2, &model, 100, 50.0}, empty).status().code() == StatusCode::kUnavailable);
  std::vector<DeviceView> busy = cpu_and_gpu(4);
  for (auto& d : busy) d.busy_workers = d.workers, d.queued = 10, d.backlog_ms = 500;
  Result<Placement> q = policy.place({3, &model, 100, 50.0}, {busy, table, Clock::now()});
  REQUIRE(q.has_value());
  CHECK(q->predicted_ms > p->predicted_ms);
  policy.observe({1, "m", 100, *p, 3.0, true});
  policy.observe({3, "m", 100, *q, 300.0, false});
  CHECK(policy.configure({{"no-such-knob", 1}}).code() == StatusCode::kInvalidArgument);
  // A thousand decisions return (a policy must not block); how fast is bench/policy_decision's
  // business. The minute is a bound for a hang, not a speed claim.
  const auto t0 = std::chrono::steady_clock::now();
  for (uint64_t i = 0; i < 1000; ++i)
    (void)policy.place({10 + i, &model, uint32_t(1 + i % 500), 50.0}, view);
  CHECK(std::chrono::steady_clock::now() - t0 < std::chrono::seconds(60));
}

}  // namespace recsched::policies
