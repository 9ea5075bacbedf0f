// The whole-query runner (a GPU's feeding threads) on the CPU engine: whole queries, in
// submission order, each answered once, errors and a throwing forward() as the query's
// status, and every queued query answered before destruction returns.
#include "exec/whole_query_runner.h"

#include <doctest/doctest.h>

#include <atomic>
#include <mutex>
#include <semaphore>
#include <string>
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

}  // namespace
}  // namespace recsched::exec
