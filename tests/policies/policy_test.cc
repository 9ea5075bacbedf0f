#include "policies/policy.h"

#include <doctest/doctest.h>

#include <cmath>

#include "policies/registry.h"

namespace recsched::policies {
namespace {

ProfilePoint point(uint32_t batch, double single_ms, double power_w = 100, uint32_t workers = 1) {
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
ProfileTable cpu_gpu_table() {
  ProfileTable t;
  for (uint32_t b : {1u, 4u, 16u, 64u, 256u, 1024u}) {
    t.add("m", "cpu0", point(b, 0.05 + 0.1 * b, 20.0));
    t.add("m", "gpu0", point(b, 1.0 + 0.0125 * b + (b <= 64 ? 6.0 : 0.0), 150.0));
  }
  return t;
}

std::vector<DeviceView> cpu_and_gpu(int cpu_workers = 1) {
  return {{"cpu0", DeviceKind::kCpu, cpu_workers, 0, 0, 0, 10.0},
          {"gpu0", DeviceKind::kGpu, 1, 0, 0, 0, 70.0}};
}

TEST_CASE("predict_service_ms spreads sub-batches over workers in rounds") {
  ProfileTable t;
  t.add("m", "cpu0", point(10, 1.0));
  t.add("m", "cpu0", point(100, 10.0));
  CHECK(*predict_service_ms(t, "m", "cpu0", 100, 100, 1) == doctest::Approx(10.0));
  CHECK(*predict_service_ms(t, "m", "cpu0", 100, 10, 10) == doctest::Approx(1.0));  // one round
  CHECK(*predict_service_ms(t, "m", "cpu0", 100, 10, 5) == doctest::Approx(2.0));   // two rounds
  CHECK(*predict_service_ms(t, "m", "cpu0", 100, 25, 2) == doctest::Approx(2 * 2.5));
  // 100 items in sub-batches of 30 on 3 workers: 30, 30, 30 then 10 alone.
  CHECK(*predict_service_ms(t, "m", "cpu0", 100, 30, 3) == doctest::Approx(3.0 + 1.0));
  CHECK(*predict_service_ms(t, "m", "cpu0", 200, 200, 1) ==
        doctest::Approx(20.0));  // per item beyond
  CHECK_FALSE(predict_service_ms(t, "m", "gpu0", 10, 10, 1).has_value());
}

// Every registered policy keeps the interface's contract.
TEST_CASE("every registered policy keeps the contract") {
  const ProfileTable table = cpu_gpu_table();
  const ModelView model{"m", 50.0, 0.0};
  for (const std::string& name : policy_names()) {
    CAPTURE(name);
    auto policy = create_policy(name, nlohmann::json::object());
    REQUIRE_MESSAGE(policy.has_value(), policy.status().to_string());
    CHECK((*policy)->name() == name);
    CHECK((*policy)->params().is_object());
    const std::vector<DeviceView> devices = cpu_and_gpu(4);
    const ClusterView view{devices, table, Clock::now()};
    Result<Placement> p = (*policy)->place({1, &model, 100, 50.0}, view);
    REQUIRE_MESSAGE(p.has_value(), p.status().to_string());
    CHECK((p->device == "cpu0" || p->device == "gpu0"));
    CHECK(p->sub_batch >= 1);
    CHECK(p->workers >= 1);
    CHECK_FALSE(p->reason.empty());
    // An empty view is an expected rejection, not a bug.
    const ClusterView empty{{}, table, Clock::now()};
    CHECK((*policy)->place({2, &model, 100, 50.0}, empty).status().code() ==
          StatusCode::kUnavailable);
    // All devices busy: still a placement (the backlog shows in the prediction).
    std::vector<DeviceView> busy = cpu_and_gpu(4);
    for (auto& d : busy) d.busy_workers = d.workers, d.queued = 10, d.backlog_ms = 500;
    Result<Placement> q = (*policy)->place({3, &model, 100, 50.0}, {busy, table, Clock::now()});
    REQUIRE(q.has_value());
    CHECK(q->predicted_ms > p->predicted_ms);
    (*policy)->observe({1, "m", 100, *p, 3.0, true});
    CHECK((*policy)->configure({{"no-such-knob", 1}}).code() == StatusCode::kInvalidArgument);
  }
  CHECK(
      create_policy("psychic", nlohmann::json::object()).status().message().find("known: static") !=
      std::string::npos);
}

TEST_CASE("earliest-finish sends small queries to the CPU and large ones to the GPU") {
  const ProfileTable table = cpu_gpu_table();
  const ModelView model{"m", 1000.0, 0.0};
  auto policy = std::move(create_policy("earliest-finish", nlohmann::json::object()).value());
  const std::vector<DeviceView> devices = cpu_and_gpu(1);
  const ClusterView view{devices, table, Clock::now()};
  CHECK(policy->place({1, &model, 16, 1000.0}, view)->device == "cpu0");
  CHECK(policy->place({2, &model, 512, 1000.0}, view)->device == "gpu0");
  // With a long GPU backlog, the large query goes to the CPU after all.
  std::vector<DeviceView> jammed = devices;
  jammed[1].backlog_ms = 1000;
  CHECK(policy->place({3, &model, 512, 1000.0}, {jammed, table, Clock::now()})->device == "cpu0");
}

TEST_CASE("earliest-finish splits a query across CPU workers when that finishes sooner") {
  ProfileTable t;
  for (uint32_t b : {1u, 16u, 64u, 256u}) t.add("m", "cpu0", point(b, 0.1 * b));
  const ModelView model{"m", 100.0, 0.0};
  auto policy = std::move(create_policy("earliest-finish", nlohmann::json::object()).value());
  const std::vector<DeviceView> cpu = {{"cpu0", DeviceKind::kCpu, 8, 0, 0, 0, 10.0}};
  Result<Placement> p = policy->place({1, &model, 256, 100.0}, {cpu, t, Clock::now()});
  REQUIRE(p.has_value());
  CHECK(p->workers == 8);
  CHECK(p->sub_batch == 32);
}

TEST_CASE("min-energy takes the cheaper device that meets the SLA, else the fastest") {
  const ProfileTable table = cpu_gpu_table();
  auto policy = std::move(create_policy("min-energy", {{"margin", 0.0}}).value());
  const std::vector<DeviceView> devices = cpu_and_gpu(1);
  const ClusterView view{devices, table, Clock::now()};
  // 256 items: CPU 25.65 ms at 20 W (0.51 J); GPU 4.2 ms at 150 W (0.63 J). A loose SLA
  // lets the CPU's lower energy win; a tight one leaves only the GPU.
  const ModelView loose{"m", 100.0, 0.0}, tight{"m", 10.0, 0.0}, impossible{"m", 1.0, 0.0};
  CHECK(policy->place({1, &loose, 256, 100.0}, view)->device == "cpu0");
  CHECK(policy->place({2, &tight, 256, 10.0}, view)->device == "gpu0");
  Result<Placement> none = policy->place({3, &impossible, 256, 1.0}, view);
  REQUIRE(none.has_value());
  CHECK(none->device == "gpu0");
  CHECK(none->reason.find("nothing meets the SLA") != std::string::npos);
  CHECK(policy->configure({{"margin", 1.5}}).code() == StatusCode::kInvalidArgument);
}

TEST_CASE("static keeps every query whole on its one device") {
  const ProfileTable table = cpu_gpu_table();
  const ModelView model{"m", 50.0, 0.0};
  auto policy = std::move(create_policy("static", {{"device", "gpu0"}}).value());
  const std::vector<DeviceView> devices = cpu_and_gpu(4);
  for (uint32_t items : {1u, 64u, 1000u}) {
    Result<Placement> p = policy->place({1, &model, items, 50.0}, {devices, table, Clock::now()});
    REQUIRE(p.has_value());
    CHECK(p->device == "gpu0");
    CHECK(p->sub_batch == items);
    CHECK(p->workers == 1);
  }
  CHECK(policy->params()["device"] == "gpu0");
  auto missing = std::move(create_policy("static", {{"device", "cpu9"}}).value());
  CHECK(missing->place({1, &model, 8, 50.0}, {devices, table, Clock::now()}).status().code() ==
        StatusCode::kUnavailable);
}

}  // namespace
}  // namespace recsched::policies

namespace recsched::policies {
namespace {

TEST_CASE("deeprecsched offloads large queries to the GPU where the profiles cross over") {
  const ProfileTable table = cpu_gpu_table();
  const ModelView model{"m", 1000.0, 0.0};
  auto policy = std::move(create_policy("deeprecsched", nlohmann::json::object()).value());
  const std::vector<DeviceView> devices = cpu_and_gpu(1);
  const ClusterView view{devices, table, Clock::now()};
  Result<Placement> small = policy->place({1, &model, 16, 1000.0}, view);
  REQUIRE(small.has_value());
  CHECK(small->device == "cpu0");
  CHECK(small->sub_batch == 512);  // the first candidate, before any tuning
  CHECK(policy->place({2, &model, 512, 1000.0}, view)->device == "gpu0");
  // A configured threshold wins over the profiles.
  REQUIRE(policy->configure({{"threshold", 8}}).is_ok());
  CHECK(policy->place({3, &model, 16, 1000.0}, view)->device == "gpu0");
}

TEST_CASE("deeprecsched's hill-climber settles on the sub-batch size with the lowest p95") {
  // A synthetic latency curve with its minimum at 128 items per sub-batch.
  auto latency = [](uint32_t b) { return 10.0 + std::abs(static_cast<double>(b) - 128.0) / 8; };
  ProfileTable t;
  for (uint32_t b : {1u, 1024u}) t.add("m", "cpu0", point(b, 0.1 * b));
  const ModelView model{"m", 100.0, 0.0};
  auto policy = std::move(create_policy("deeprecsched", {{"window", 16}}).value());
  const std::vector<DeviceView> cpu = {{"cpu0", DeviceKind::kCpu, 4, 0, 0, 0, 10.0}};
  std::vector<uint32_t> tried;
  for (int i = 0; i < 16 * 10; ++i) {
    Result<Placement> p = policy->place({uint64_t(i), &model, 300, 100.0}, {cpu, t, Clock::now()});
    REQUIRE(p.has_value());
    if (tried.empty() || tried.back() != p->sub_batch) tried.push_back(p->sub_batch);
    policy->observe({uint64_t(i), "m", 300, *p, latency(p->sub_batch), true});
  }
  // Tried in DeepRecSys's order until 96 did worse than 128, then back to 128 for good.
  CHECK(tried == std::vector<uint32_t>{512, 384, 256, 192, 128, 96, 128});
  const nlohmann::json params = policy->params();
  CHECK(params["models"]["m"]["sub_batch"] == 128);
  CHECK(params["models"]["m"]["settled"] == true);
  CHECK(policy->configure({{"window", 0}}).code() == StatusCode::kInvalidArgument);
  CHECK(policy->configure({{"candidates", {64, 0}}}).code() == StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace recsched::policies
