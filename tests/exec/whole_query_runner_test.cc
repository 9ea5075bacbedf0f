// The whole-query runner (a GPU's feeding threads) on the CPU engine: whole queries, in
// submission order (none has a deadline) or earliest deadline first, each answered once,
// errors and a throwing forward() as the query's status, and every queued query answered
// before destruction returns. Merging (issue 18): queued queries of one model run as one
// pass when core/merge.h's rule lets them, and each query's scores are bit for bit those
// of its own pass, on the CPU engine and on a stand-in for the GPU whose pass times come
// from the recorded H200 profile (docs/bench-2026-11-26-h200/profile.json).
#include "exec/whole_query_runner.h"

#include <doctest/doctest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <fstream>
#include <mutex>
#include <nlohmann/json.hpp>
#include <semaphore>
#include <string>
#include <thread>
#include <vector>

#include "core/failpoint.h"
#include "engine/inputs.h"

namespace recsched::exec {
namespace {

engine::ModelSpec golden_spec() {
  return engine::load_model_spec(std::string(RECSCHED_SOURCE_DIR) +
                                 "/tests/fixtures/golden/wide.model.json")
      .value();
}

struct Cleared {
  ~Cleared() { failpoint::clear(); }
};

TEST_CASE("the whole-query runner scores whole queries in submission order, each answered once") {
  Cleared guard;
  const engine::ModelSpec spec = golden_spec();
  auto model = std::move(engine::load_model(spec, {}).value());
  constexpr int kQueries = 6;
  std::vector<Batch> batches;
  std::vector<std::vector<float>> scores(kQueries);
  for (int q = 0; q < kQueries; ++q) {
    batches.push_back(engine::random_batch(spec, 5 + q, q));
    scores[q].resize(batches[q].batch_size * spec.num_outputs());
  }
  std::mutex mu;
  std::vector<int> order;
  std::counting_semaphore<kQueries> answered(0);
  // One thread, held at the fail point by the first query: the rest queue behind it.
  REQUIRE(failpoint::set("forward.gpu9", "pause").is_ok());
  {
    WholeQueryRunner runner(1, {}, "gpu9");
    CHECK(runner.workers() == 1);
    for (int q = 0; q < kQueries; ++q) {
      REQUIRE(runner
                  .submit({.model = model.get(),
                           .batch = view_of(batches[q]),
                           .scores = scores[q],
                           .done =
                               [&, q](Status st) {
                                 CHECK(st.is_ok());
                                 std::lock_guard<std::mutex> lock(mu);
                                 order.push_back(q);
                                 answered.release();
                               }})
                  .is_ok());
    }
    REQUIRE(failpoint::wait_paused("forward.gpu9", 1, 30000));
    const Load l = runner.load();
    CHECK(l.queries == kQueries);
    CHECK(l.busy_workers == 1);
    // A wrong scores size and a full queue are refused, and done is not called for them.
    std::vector<float> short_out(1);
    CHECK(runner.submit({.model = model.get(), .batch = view_of(batches[0]), .scores = short_out,
                         .done = [](Status) { FAIL("called"); }})
              .code() == StatusCode::kInvalidArgument);
    CHECK(runner.submit({.model = model.get(), .batch = view_of(batches[0]), .scores = scores[0],
                         .done = [](Status) { FAIL("called"); }},
                        kQueries)
              .code() == StatusCode::kUnavailable);
    failpoint::clear();
  }  // destruction answers whatever is still queued
  std::vector<int> want(kQueries);
  for (int q = 0; q < kQueries; ++q) want[q] = q;
  CHECK(order == want);
  for (int q = 0; q < kQueries; ++q) {
    engine::Workspace ws;
    std::vector<float> expect(scores[q].size());
    REQUIRE(model->forward(view_of(batches[q]), ws, expect).is_ok());
    CHECK(scores[q] == expect);
  }
}

TEST_CASE("a forward() that throws on the whole-query runner fails that query, naming the device") {
  Cleared guard;
  const engine::ModelSpec spec = golden_spec();
  auto model = std::move(engine::load_model(spec, {}).value());
  const Batch batch = engine::random_batch(spec, 4, 1);
  std::vector<float> out(batch.batch_size * spec.num_outputs());
  WholeQueryRunner runner(2, {}, "gpu7");
  REQUIRE(failpoint::set("forward.gpu7", "1*throw").is_ok());
  const Status failed = runner.run({.model = model.get(), .batch = view_of(batch), .scores = out});
  CHECK(failed.code() == StatusCode::kInternal);
  CHECK(failed.message() == "device gpu7: forward() threw: fail point forward.gpu7 fired");
  CHECK(runner.run({.model = model.get(), .batch = view_of(batch), .scores = out}).is_ok());
  CHECK(runner.busy_seconds() > 0);
  CHECK(runner.load().queries == 0);
}

// Submits `batches` (each with its deadline, ms from now) to `runner` while its one thread
// is held at the fail point by a first query of another model; releases it and waits for
// every answer. Returns the order the queries were answered in.
std::vector<int> run_held(WholeQueryRunner& runner, const engine::Model& blocker,
                          const Batch& blocker_batch, const engine::Model& model,
                          const std::vector<Batch>& batches, const std::vector<double>& due_ms,
                          std::vector<std::vector<float>>& scores, const char* point,
                          std::vector<uint32_t>* pass_items = nullptr) {
  if (pass_items != nullptr) pass_items->assign(batches.size(), 0);
  std::mutex mu;
  std::vector<int> order;
  std::counting_semaphore<64> answered(0);
  std::vector<float> blocker_out(blocker_batch.batch_size * blocker.spec().num_outputs());
  REQUIRE(failpoint::set(point, "pause").is_ok());
  REQUIRE(runner
              .submit({.model = &blocker, .batch = view_of(blocker_batch), .scores = blocker_out,
                       .done = [&](Status st) {
                         CHECK(st.is_ok());
                         answered.release();
                       }})
              .is_ok());
  REQUIRE(failpoint::wait_paused(point, 1, 30000));
  const auto now = Clock::now();
  for (size_t q = 0; q < batches.size(); ++q) {
    scores[q].assign(batches[q].batch_size * model.spec().num_outputs(), -1.0f);
    REQUIRE(runner
                .submit({.model = &model,
                         .batch = view_of(batches[q]),
                         .scores = scores[q],
                         .deadline = now + std::chrono::duration_cast<Clock::duration>(
                                               std::chrono::duration<double, std::milli>(
                                                   due_ms[q])),
                         .done =
                             [&, q](Status st) {
                               CHECK(st.is_ok());
                               std::lock_guard<std::mutex> lock(mu);
                               order.push_back(static_cast<int>(q));
                               answered.release();
                             },
                         .pass_items = pass_items != nullptr ? &(*pass_items)[q] : nullptr})
                .is_ok());
  }
  failpoint::clear();
  for (size_t q = 0; q <= batches.size(); ++q) answered.acquire();
  return order;
}

// Counts the forward() calls inside it at once (each sleeps 10 ms), the most seen.
class Overlapping final : public engine::Model {
 public:
  explicit Overlapping(engine::ModelSpec spec) : spec_(std::move(spec)) {}
  const engine::ModelSpec& spec() const override { return spec_; }
  engine::Isa isa() const override { return engine::Isa::kGeneric; }
  std::vector<engine::TensorToWrite> tensors() const override { return {}; }
  Status forward(const BatchView&, engine::Workspace&, std::span<float> scores) const override {
    const int now = ++inside_;
    int seen = most_.load();
    while (now > seen && !most_.compare_exchange_weak(seen, now)) {
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    std::fill(scores.begin(), scores.end(), 0.25f);
    --inside_;
    return Status::ok();
  }
  int most() const { return most_.load(); }

 private:
  engine::ModelSpec spec_;
  mutable std::atomic<int> inside_{0};
  mutable std::atomic<int> most_{0};
};

TEST_CASE("set_streams bounds the passes a whole-query runner runs at once") {
  const engine::ModelSpec spec = golden_spec();
  const Batch batch = engine::random_batch(spec, 4, 1);
  // Runs 12 queries on a runner of 4 threads limited to `streams`; the most at once.
  auto most_at_once = [&](int streams, int* workers) {
    const Overlapping model(spec);
    constexpr int kQueries = 12;
    std::vector<std::vector<float>> scores(kQueries,
                                           std::vector<float>(4 * spec.num_outputs()));
    std::counting_semaphore<kQueries> answered(0);
    WholeQueryRunner runner(4, {}, "gpu5");
    runner.set_streams(streams);
    *workers = runner.workers();
    for (int q = 0; q < kQueries; ++q) {
      REQUIRE(runner
                  .submit({.model = &model,
                           .batch = view_of(batch),
                           .scores = scores[q],
                           .done =
                               [&](Status st) {
                                 CHECK(st.is_ok());
                                 answered.release();
                               }})
                  .is_ok());
    }
    for (int q = 0; q < kQueries; ++q) answered.acquire();
    return model.most();
  };
  int workers = 0;
  CHECK(most_at_once(1, &workers) == 1);
  CHECK(workers == 1);
  CHECK(most_at_once(2, &workers) == 2);  // 12 queries of 10 ms: two always overlap
  CHECK(workers == 2);
  CHECK(most_at_once(9, &workers) <= 4);  // clamped to the threads
  CHECK(workers == 4);
  CHECK(most_at_once(0, &workers) == 1);  // clamped to one
  CHECK(workers == 1);
}

TEST_CASE("the whole-query runner serves earliest deadline first") {
  Cleared guard;
  const engine::ModelSpec spec = golden_spec();
  auto model = std::move(engine::load_model(spec, {}).value());
  std::vector<Batch> batches;
  for (int q = 0; q < 4; ++q) batches.push_back(engine::random_batch(spec, 3, q));
  std::vector<std::vector<float>> scores(batches.size());
  WholeQueryRunner runner(1, {}, "gpu6");  // merging off: one query per pass
  const std::vector<int> order = run_held(runner, *model, batches[0], *model, batches,
                                          {400, 100, 300, 200}, scores, "forward.gpu6");
  CHECK(order == std::vector<int>{1, 3, 2, 0});
  CHECK(runner.passes().passes == 5);
  CHECK(runner.passes().merged == 0);
}

TEST_CASE("merged queries on the CPU engine score as each alone, and a tight one is left out") {
  Cleared guard;
  const engine::ModelSpec spec = golden_spec();
  auto model = std::move(engine::load_model(spec, {}).value());
  auto blocker = std::move(engine::load_model(spec, {}).value());  // another model object
  const Batch blocker_batch = engine::random_batch(spec, 2, 99);
  std::vector<Batch> batches;  // 7, 12, 17, 22 and 27 items
  for (uint32_t q = 0; q < 5; ++q) batches.push_back(engine::random_batch(spec, 7 + 5 * q, q + 1));
  std::vector<std::vector<float>> scores(batches.size());
  WholeQueryRunner runner(1, {}, "gpu5");
  // Predicted, a pass costs 1 s plus 10 ms per item (the CPU runs it in microseconds; only
  // the rule reads these, so the margins hold however slowly a sanitizer runs the test).
  // Query 3 (22 items, due in 1,200 ms) is first by deadline and cannot make it even alone
  // (1,220 ms), so it sets no limit. Query 2 (17 items, due in 1,250) could alone (1,170)
  // but not in a pass with query 3 (1,390): it stays queued. Queries 0, 1 and 4 (due in
  // 6,000-6,200 ms) join: 68 items, 1,680 ms.
  runner.set_merging({.on = true, .max_items = 1024, .service_ms = [](const engine::Model&,
                                                                       uint32_t n) {
                        return 1000.0 + 10.0 * n;
                      }});
  const std::vector<int> order = run_held(runner, *blocker, blocker_batch, *model, batches,
                                          {6000, 6100, 1250, 1200, 6200}, scores, "forward.gpu5");
  CHECK(order == std::vector<int>{3, 0, 1, 4, 2});
  const WholeQueryRunner::Passes p = runner.passes();
  CHECK(p.passes == 3);  // the blocker, the merged pass, query 2
  CHECK(p.queries == 6);
  CHECK(p.merged == 1);
  // The CPU engine is not batch-invariant: oneDNN's sgemm takes another kernel for a
  // handful of rows than for dozens, so a 7-item query alone and the same 7 items inside a
  // 68-item pass differ in the last bit (5.96e-8 here). The split itself is checked bit
  // for bit on the stand-in below; here, each query's scores as its own pass's to 1e-6.
  for (size_t q = 0; q < batches.size(); ++q) {
    engine::Workspace ws;
    std::vector<float> alone(scores[q].size());
    REQUIRE(model->forward(view_of(batches[q]), ws, alone).is_ok());
    for (size_t i = 0; i < alone.size(); ++i) {
      CHECK_MESSAGE(scores[q][i] == doctest::Approx(alone[i]).epsilon(1e-6), "query " << q);
    }
  }
}

// A stand-in for a GPU model: each pass sleeps for the recorded H200 profile's median at its
// size (interpolated) and scores each item from its own inputs only, so a merged pass's
// split is checkable and its timing is the accelerator's shape (a fixed cost per pass).
class ProfiledModel final : public engine::Model {
 public:
  ProfiledModel(engine::ModelSpec spec, std::vector<std::pair<uint32_t, double>> points)
      : spec_(std::move(spec)), points_(std::move(points)) {}
  const engine::ModelSpec& spec() const override { return spec_; }
  engine::Isa isa() const override { return engine::Isa::kGeneric; }
  std::vector<engine::TensorToWrite> tensors() const override { return {}; }
  double pass_ms(uint32_t n) const {
    auto hi = std::lower_bound(points_.begin(), points_.end(), n,
                               [](const auto& p, uint32_t v) { return p.first < v; });
    if (hi == points_.begin()) return hi->second;
    if (hi == points_.end()) return points_.back().second * n / points_.back().first;
    const auto lo = hi - 1;
    const double f = double(n - lo->first) / (hi->first - lo->first);
    return lo->second + f * (hi->second - lo->second);
  }
  Status forward(const BatchView& batch, engine::Workspace&, std::span<float> scores) const override {
    std::this_thread::sleep_for(std::chrono::duration<double, std::milli>(pass_ms(batch.batch_size)));
    const int k = spec_.num_outputs();
    for (uint32_t i = 0; i < batch.batch_size; ++i) {
      const auto off = batch.table_offsets(0);
      double v = 0;
      for (int64_t j = off[i]; j < off[i + 1]; ++j) v += double(batch.indices[size_t(j)]);
      for (int o = 0; o < k; ++o) scores[size_t(i) * k + o] = float(v + o);
    }
    return Status::ok();
  }

 private:
  engine::ModelSpec spec_;
  std::vector<std::pair<uint32_t, double>> points_;
};

TEST_CASE("on the H200's recorded pass times, 16-item queries merge into a few passes") {
  Cleared guard;
  const std::string root = RECSCHED_SOURCE_DIR;
  const nlohmann::json profile =
      nlohmann::json::parse(std::ifstream(root + "/docs/bench-2026-11-26-h200/profile.json"));
  std::vector<std::pair<uint32_t, double>> points;
  for (const auto& e : profile.at("profiles")) {
    if (e.at("model") != "rmc2" || e.at("device") != "gpu0") continue;
    for (const auto& pt : e.at("points")) {
      points.emplace_back(pt.at("batch_size").get<uint32_t>(), pt.at("p50_us").get<double>() / 1e3);
    }
  }
  REQUIRE(points.size() >= 8);
  std::sort(points.begin(), points.end());
  const ProfiledModel gpu(engine::load_model_spec(root + "/models/rmc2.json").value(), points);
  const ProfiledModel blocker = gpu;
  const Batch blocker_batch = engine::random_batch(gpu.spec(), 1, 7);
  // 32 queries of 16 items, each due 500 ms from now (the H200 runs 512 items of RMC2 in
  // 3.9 ms): all fit one pass of 512 items, where one at a time they take 32 x 1.4 ms.
  std::vector<Batch> batches;
  for (uint32_t q = 0; q < 32; ++q) batches.push_back(engine::random_batch(gpu.spec(), 16, q + 1));
  std::vector<std::vector<float>> scores(batches.size());
  WholeQueryRunner runner(1, {}, "gpu4");
  runner.set_merging({.on = true, .max_items = 1024, .service_ms = [&](const engine::Model&,
                                                                       uint32_t n) {
                        return gpu.pass_ms(n);
                      }});
  std::vector<uint32_t> pass_items;
  (void)run_held(runner, blocker, blocker_batch, gpu, batches,
                 std::vector<double>(batches.size(), 500.0), scores, "forward.gpu4", &pass_items);
  CHECK(runner.passes().passes == 2);  // the blocker, then all 32 in one pass
  // Each query learns that it ran in a pass of 512 items (recschedd predicts its service
  // at that size, not at its own 16).
  CHECK(pass_items == std::vector<uint32_t>(batches.size(), 512));
  for (size_t q = 0; q < batches.size(); ++q) {
    engine::Workspace ws;
    std::vector<float> alone(scores[q].size());
    REQUIRE(gpu.forward(view_of(batches[q]), ws, alone).is_ok());
    CHECK_MESSAGE(scores[q] == alone, "query " << q);
  }
  // With tight deadlines a pass may not grow past what ends in time. The rule is given the
  // profile's times x 100 and deadlines of 300 ms (3 ms of the profile, under 256 items:
  // the scale keeps the margins whatever a sanitizer costs), so the 32 queries need
  // several passes.
  WholeQueryRunner tight(1, {}, "gpu3");
  tight.set_merging({.on = true, .max_items = 1024, .service_ms = [&](const engine::Model&,
                                                                      uint32_t n) {
                       return 100 * gpu.pass_ms(n);
                     }});
  (void)run_held(tight, blocker, blocker_batch, gpu, batches,
                 std::vector<double>(batches.size(), 300.0), scores, "forward.gpu3");
  const WholeQueryRunner::Passes p = tight.passes();
  CHECK(p.queries == 33);
  CHECK(p.passes > 2);
  CHECK(p.passes < 33);
}

}  // namespace
}  // namespace recsched::exec
