#include "policies/policy.h"

#include <doctest/doctest.h>

#include <cmath>
#include <functional>

#include "policies/registry.h"
#include "tests/policies/contract.h"

namespace recsched::policies {
namespace {

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
  for (const std::string& name : policy_names()) {
    CAPTURE(name);
    auto policy = create_policy(name, nlohmann::json::object());
    REQUIRE_MESSAGE(policy.has_value(), policy.status().to_string());
    check_contract(**policy, name);
  }
  const Status unknown = create_policy("psychic", nlohmann::json::object()).status();
  CHECK(unknown.message().find("known: static") != std::string::npos);
  CHECK(unknown.code() == StatusCode::kNotFound);
  CHECK(create_policy("static", {{"colour", 1}}).status().code() == StatusCode::kInvalidArgument);
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

TEST_CASE("earliest-finish splits a query across CPU workers only when whole it would miss") {
  // 0.5 ms per sub-batch plus 0.1 ms per item: a split adds work.
  ProfileTable t;
  for (uint32_t b : {1u, 16u, 64u, 256u}) t.add("m", "cpu0", point(b, 0.5 + 0.1 * b));
  const ModelView model{"m", 100.0, 0.0};
  auto policy = std::move(create_policy("earliest-finish", nlohmann::json::object()).value());
  const std::vector<DeviceView> cpu = {{"cpu0", DeviceKind::kCpu, 8, 0, 0, 0, 10.0}};
  // Whole, 256 items take 26.1 ms: within 0.8 x a 100 ms target, so whole (less work).
  Result<Placement> loose = policy->place({1, &model, 256, 100.0}, {cpu, t, Clock::now()});
  REQUIRE(loose.has_value());
  CHECK(loose->workers == 1);
  CHECK(loose->sub_batch == 256);
  // Against 20 ms, whole misses: the earliest finish, 8 workers x 32 items (3.7 ms).
  Result<Placement> tight = policy->place({2, &model, 256, 20.0}, {cpu, t, Clock::now()});
  REQUIRE(tight.has_value());
  CHECK(tight->workers == 8);
  CHECK(tight->sub_batch == 32);
  // margin 0.9: only 2 ms of the 100 count, so it splits there too; a bad margin is refused.
  REQUIRE(policy->configure({{"margin", 0.9}}).is_ok());
  CHECK(policy->place({3, &model, 256, 100.0}, {cpu, t, Clock::now()})->workers == 8);
  CHECK(policy->params()["margin"] == 0.9);
  CHECK(policy->configure({{"margin", 1}}).code() == StatusCode::kInvalidArgument);
  // A model whose time per item grows with the batch: the split does less work than whole
  // (8 x 1.0 ms against 65.5 ms), so it is taken even with a loose target.
  ProfileTable sq;
  for (uint32_t b : {1u, 16u, 64u, 256u}) sq.add("m", "cpu0", point(b, 0.001 * b * b));
  auto fresh = std::move(create_policy("earliest-finish", nlohmann::json::object()).value());
  CHECK(fresh->place({4, &model, 256, 1000.0}, {cpu, sq, Clock::now()})->workers == 8);
}

TEST_CASE("min-energy does not credit a split with idle energy it does not save") {
  // 0.5 ms per sub-batch plus 0.1 ms per item, 20 W per busy worker, 10 W per idle one:
  // 256 items whole take 26.1 ms; split over 8 workers 3.7 ms each, 29.6 ms of work.
  ProfileTable t;
  for (uint32_t b : {1u, 16u, 64u, 256u}) t.add("m", "cpu0", point(b, 0.5 + 0.1 * b, 20.0));
  const ModelView model{"m", 100.0, 0.0};
  auto policy = std::move(create_policy("min-energy", {{"park", false}}).value());
  const std::vector<DeviceView> cpu = {{"cpu0", DeviceKind::kCpu, 8, 0, 0, 0, 80.0}};
  // The seven other workers idle through the query either way: whole is cheaper.
  Result<Placement> loose = policy->place({1, &model, 256, 100.0}, {cpu, t, Clock::now()});
  REQUIRE(loose.has_value());
  CHECK(loose->workers == 1);
  // Whole cannot meet 20 ms: then the split, the one placement that does.
  Result<Placement> tight = policy->place({2, &model, 256, 20.0}, {cpu, t, Clock::now()});
  REQUIRE(tight.has_value());
  CHECK(tight->workers > 1);
  CHECK(tight->predicted_ms <= 16.0);
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
  // Its queue is FIFO (DeepRecSys's baseline) unless asked for deadline order.
  CHECK(policy->params()["queue"] == "fifo");
  CHECK(policy->place({1, &model, 8, 50.0}, {devices, table, Clock::now()})->order ==
        QueueOrder::kArrival);
  CHECK(policy->configure({{"queue", "lifo"}}).code() == StatusCode::kInvalidArgument);
  REQUIRE(policy->configure({{"queue", "edf"}}).is_ok());
  CHECK(policy->place({1, &model, 8, 50.0}, {devices, table, Clock::now()})->order ==
        QueueOrder::kDeadline);
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
  // Tried in DeepRecSys's order until 96 did worse than 128, then back to 128 for good;
  // 384 is skipped: like 512 it leaves every 300-item query whole.
  CHECK(tried == std::vector<uint32_t>{512, 256, 192, 128, 96, 128});
  const nlohmann::json params = policy->params();
  CHECK(params["models"]["m"]["sub_batch"] == 128);
  CHECK(params["models"]["m"]["settled"] == true);
  CHECK(policy->configure({{"window", 0}}).code() == StatusCode::kInvalidArgument);
  CHECK(policy->configure({{"tolerance", 2}}).code() == StatusCode::kInvalidArgument);
  CHECK(policy->configure({{"candidates", {64, 0}}}).code() == StatusCode::kInvalidArgument);
}

// Drives deeprecsched with synthetic latencies: while the sub-batch search runs, 512 is
// best; then every completion takes g(threshold in use). Returns the thresholds tried.
std::vector<std::string> climb_threshold(const std::function<double(double)>& g) {
  const ProfileTable table = cpu_gpu_table();  // crossover: the GPU wins from 256 up
  const ModelView model{"m", 1000.0, 0.0};
  auto policy = std::move(create_policy("deeprecsched", {{"window", 8}}).value());
  const std::vector<DeviceView> devices = cpu_and_gpu(1);
  std::vector<std::string> tried;
  for (uint64_t i = 1; i < 400; ++i) {
    Result<Placement> p = policy->place({i, &model, 100, 1000.0}, {devices, table, Clock::now()});
    REQUIRE(p.has_value());
    const nlohmann::json m = policy->params()["models"]["m"];
    double latency = p->sub_batch == 512 ? 10 : 20;
    if (m["settled"] == true) {
      const std::string th = m["threshold"].dump();
      if (tried.empty() || tried.back() != th) tried.push_back(th);
      latency = g(m["threshold"].is_number() ? m["threshold"].get<double>() : 1e6);
    }
    policy->observe({i, "m", 100, *p, latency, true});
  }
  CHECK(policy->params()["models"]["m"]["threshold_settled"] == true);
  return tried;
}

TEST_CASE("deeprecsched tunes the offload threshold from the crossover, down then up") {
  // Best at 16: stepping down from the crossover (256) improves until 4 does worse.
  CHECK(climb_threshold([](double th) { return 5 + std::abs(std::log2(th) - 4); }) ==
        std::vector<std::string>{"256", "64", "16", "4", "16"});
  // Best at 1024: the first step down is worse, so it turns and climbs up.
  CHECK(climb_threshold([](double th) { return 5 + std::abs(std::log2(th) - 10); }) ==
        std::vector<std::string>{"256", "64", "1024", "\"never\"", "1024"});
}

TEST_CASE("deeprecsched with given settings places by them, the threshold moving only in its band") {
  const ProfileTable table = cpu_gpu_table();  // the GPU's profiled sizes: 1, 4, ... 1024
  const ModelView model{"m", 10.0, 0.0};
  auto policy = std::move(
      create_policy("deeprecsched", {{"window", 4},
                                     {"models", {{"m", {{"sub_batch", 64}, {"threshold", 200}}}}}})
          .value());
  const std::vector<DeviceView> devices = cpu_and_gpu(4);
  const ClusterView view{devices, table, Clock::now()};
  uint64_t id = 0;
  // Runs one window of 4 queries of `items`, each completing in `latency_ms`; returns
  // where the last went.
  auto window = [&](uint32_t items, double latency_ms) {
    std::string device;
    for (int i = 0; i < 4; ++i) {
      Result<Placement> p = policy->place({++id, &model, items, 10.0}, view);
      REQUIRE(p.has_value());
      device = p->device;
      if (p->device == "cpu0") CHECK(p->sub_batch == 64);
      policy->observe({id, "m", items, *p, latency_ms, true});
    }
    return device;
  };
  CHECK(window(100, 5) == "cpu0");
  CHECK(window(220, 5) == "gpu0");  // 220 >= the given 200
  CHECK(policy->params()["models"]["m"]["threshold"] == 200);
  // The GPU's queries miss the 10 ms target: up one profiled size, to 256.
  CHECK(window(220, 30) == "gpu0");
  CHECK(policy->params()["models"]["m"]["threshold"] == 256);
  CHECK(window(220, 5) == "cpu0");  // under 256 now; under target / 1.1: back down
  CHECK(policy->params()["models"]["m"]["threshold"] == 200);
  CHECK(window(220, 5) == "gpu0");
  CHECK(policy->params()["models"]["m"]["threshold"] == 200);  // never below the given value
  // Late on the CPU alone is not the accelerator's fault: the threshold stays.
  CHECK(window(100, 30) == "cpu0");
  CHECK(policy->params()["models"]["m"]["threshold"] == 200);
  CHECK(policy->params()["models"]["m"]["given"] == true);

  // A GET's params PUT back as they are: accepted, and the given settings stand even where
  // the stable band has moved the threshold (to 256 here).
  CHECK(window(220, 30) == "gpu0");
  REQUIRE(policy->params()["models"]["m"]["threshold"] == 256);
  const nlohmann::json got = policy->params();
  REQUIRE_MESSAGE(policy->configure(got).is_ok(), got.dump());
  CHECK(policy->params()["models"]["m"]["given_threshold"] == 200);
  CHECK(policy->params()["models"]["m"]["sub_batch"] == 64);
  CHECK(window(220, 5) == "gpu0");
  CHECK(policy->params()["models"]["m"]["threshold"] == 200);
  // The read-only keys are checked for their type all the same.
  CHECK(policy->configure({{"models", {{"m", {{"sub_batch", 8}, {"settled", 3}}}}}}).code() ==
        StatusCode::kInvalidArgument);

  // "never": a given model is not offloaded at any size; bad settings are refused whole.
  REQUIRE(policy->configure({{"models", {{"m", {{"sub_batch", 32}, {"threshold", "never"}}}}}})
              .is_ok());
  Result<Placement> big = policy->place({++id, &model, 1000, 10.0}, view);
  CHECK(big->device == "cpu0");
  CHECK(big->sub_batch == 32);
  for (const nlohmann::json& bad :
       {nlohmann::json{{"models", {{"m", {{"sub_batch", 0}}}}}},
        nlohmann::json{{"models", {{"m", {{"threshold", 8}}}}}},
        nlohmann::json{{"models", {{"m", {{"sub_batch", 8}, {"threshold", "sometimes"}}}}}},
        nlohmann::json{{"models", {{"m", {{"sub_batch", 8}, {"depth", 2}}}}}},
        nlohmann::json{{"models", {1, 2}}}}) {
    CAPTURE(bad.dump());
    const Status st = policy->configure(bad);
    CHECK(st.code() == StatusCode::kInvalidArgument);
    CHECK(st.message().find("'models'") != std::string::npos);
  }
  CHECK(policy->params()["models"]["m"]["sub_batch"] == 32);  // unchanged by the refusals
}

TEST_CASE("the same query size goes to different devices for different models") {
  // "light": the CPU beats the GPU at every size (an MLP-light, gather-bound model);
  // "heavy": the GPU wins from 64 items (cpu_gpu_table's model).
  ProfileTable t = cpu_gpu_table();
  for (uint32_t b : {1u, 4u, 16u, 64u, 256u, 1024u}) {
    t.add("light", "cpu0", point(b, 0.01 + 0.002 * b, 20.0));
    t.add("light", "gpu0", point(b, 1.0 + 0.01 * b, 150.0));
  }
  // A 20 ms target: "heavy" takes 51 ms whole on the one CPU worker, 7.4 ms on the GPU.
  const ModelView light{"light", 20.0, 0.0}, heavy{"m", 20.0, 0.0};
  const std::vector<DeviceView> devices = cpu_and_gpu(1);
  for (const char* name : {"earliest-finish", "min-energy", "deeprecsched"}) {
    CAPTURE(name);
    auto policy = std::move(create_policy(name, nlohmann::json::object()).value());
    const ClusterView view{devices, t, Clock::now()};
    CHECK(policy->place({1, &light, 512, 20.0}, view)->device == "cpu0");
    CHECK(policy->place({2, &heavy, 512, 20.0}, view)->device == "gpu0");
  }
}

}  // namespace
}  // namespace recsched::policies
