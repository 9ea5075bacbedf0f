// The dispatcher: backlog accounting, SLA admission, and live policy switching.
#include "policies/dispatcher.h"

#include <doctest/doctest.h>

#include <cmath>

#include "policies/registry.h"
#include "tests/policies/contract.h"

namespace recsched::policies {
namespace {

std::unique_ptr<Policy> make(const std::string& name, const nlohmann::json& params = {}) {
  return std::move(
      create_policy(name, params.is_null() ? nlohmann::json::object() : params).value());
}

// A CPU with 2 workers where a query of n items takes 0.05 + 0.1 n ms on one worker.
struct OneCpu {
  ProfileTable table = cpu_gpu_table();
  std::vector<DeviceInfo> devices = {{"cpu0", DeviceKind::kCpu, 2, 3.0}};
  ModelView model{"m", 10.0, 0.0};
};

TEST_CASE("admitted work counts in the device's backlog until it completes") {
  OneCpu c;
  Dispatcher d(c.devices, make("static"), 2.0);
  Decision a = d.dispatch({1, &c.model, 16, 10.0}, {{}}, c.table, Clock::now());
  REQUIRE(a.admitted());
  CHECK(a.placement.device == "cpu0");
  CHECK(a.service_ms == doctest::Approx(0.05 + 1.6));
  CHECK(d.backlog_ms()[0] == doctest::Approx(a.service_ms));
  // The next query waits for half the backlog (two workers share it).
  Decision b = d.dispatch({2, &c.model, 16, 10.0}, {{1, 1, 0}}, c.table, Clock::now());
  REQUIRE(b.admitted());
  CHECK(b.placement.predicted_ms == doctest::Approx(a.service_ms / 2 + b.service_ms));
  d.complete(a, {1, "m", 16, a.placement, 1.7, true});
  CHECK(d.backlog_ms()[0] == doctest::Approx(b.service_ms));
  d.complete(b, {2, "m", 16, b.placement, 1.7, true});
  CHECK(d.backlog_ms()[0] == doctest::Approx(0.0));
}

TEST_CASE("the backlog a query sees is the work queued ahead of it in its runner's order") {
  OneCpu c;
  const ModelView loose{"m", 1000.0, 0.0};
  const auto t0 = Clock::now();
  for (const bool edf : {true, false}) {
    CAPTURE(edf);
    // earliest-finish: every query ordered by deadline; static: by arrival (FIFO).
    Dispatcher d(c.devices, edf ? make("earliest-finish") : make("static"), 2.0);
    // A loose query (due in 1 s) of 256 items: 25.65 ms of work, queued.
    Decision a = d.dispatch({1, &loose, 256, 1000.0}, {{}}, c.table, t0);
    REQUIRE(a.admitted());
    CHECK(a.queue_key_ms == doctest::Approx(
                                std::chrono::duration<double, std::milli>(t0.time_since_epoch())
                                    .count() +
                                (edf ? 1000.0 : 0.0)));
    // A tight one (10 ms) arriving 1 ms later: by deadline it goes first and waits for
    // nothing queued, only (when every worker is busy) for the remainder of a running
    // sub-batch, counted as half the loose one's (it runs split in one round: a.service_ms)
    // per worker; first come, first served it waits for half the loose one's work,
    // 12.8 ms + its own 0.85 ms, within 2 x 10 ms either way.
    if (edf) {
      Decision idle = d.dispatch({9, &c.model, 8, 10.0}, {{1, 1, 0}}, c.table,
                                 t0 + std::chrono::milliseconds(1));
      CHECK(idle.placement.predicted_ms == doctest::Approx(idle.service_ms));
      d.complete(idle, {9, "m", 8, idle.placement, 1.0, true});
    }
    Decision b = d.dispatch({2, &c.model, 8, 10.0}, {{2, 1, 0}}, c.table,
                            t0 + std::chrono::milliseconds(1));
    REQUIRE(b.admitted());
    CHECK(b.placement.predicted_ms ==
          doctest::Approx(edf ? a.service_ms / 2 + b.service_ms
                              : a.backlog_added_ms / 2 + b.service_ms));
    // Before deciding, a query no longer expects to wait for work that finished.
    d.complete(a, {1, "m", 256, a.placement, 20.0, true});
    Decision e = d.dispatch({3, &c.model, 8, 10.0}, {{1, 1, 0}}, c.table,
                            t0 + std::chrono::milliseconds(2));
    CHECK(e.placement.predicted_ms ==
          doctest::Approx((edf ? b.backlog_added_ms / 2 : b.service_ms / 2) + e.service_ms));
    d.complete(b, {2, "m", 8, b.placement, 1.0, true});
    d.complete(e, {3, "m", 8, e.placement, 1.0, true});
    CHECK(d.backlog_ms()[0] == 0.0);
    // hopeless() counts the same: 300 ms of loose work queued is no reason to turn away
    // a tight query that will overtake it, unless it is ordered by arrival.
    Decision big = d.dispatch({4, &loose, 1024, 1000.0}, {{}}, c.table, t0);
    REQUIRE(big.admitted());
    Decision big2 = d.dispatch({5, &loose, 1024, 1000.0}, {{}}, c.table, t0);
    REQUIRE(big2.admitted());
    CHECK(d.hopeless("m", 10.0, {{}}, t0).is_ok() == edf);
  }
}

TEST_CASE("with preemption, a query due sooner expects no wait for a running piece due later") {
  OneCpu c;
  const ModelView loose{"m", 1000.0, 0.0};
  const auto t0 = Clock::now();
  for (const bool preemption : {false, true}) {
    CAPTURE(preemption);
    Dispatcher d(c.devices, make("earliest-finish"), 2.0);
    d.set_bounded_wait({.on = false, .preemption = preemption});
    Decision a = d.dispatch({1, &loose, 256, 1000.0}, {{}}, c.table, t0);
    REQUIRE(a.admitted());
    // Both workers busy with the loose query: without preemption the tight one waits for
    // half of its running sub-batch; with it, only for its own service.
    Decision b = d.dispatch({2, &c.model, 8, 10.0}, {{2, 1, 0}}, c.table,
                            t0 + std::chrono::milliseconds(1));
    REQUIRE(b.admitted());
    CHECK(b.placement.predicted_ms ==
          doctest::Approx(preemption ? b.service_ms : a.service_ms / 2 + b.service_ms));
    // Work due sooner still counts in full.
    Decision e = d.dispatch({3, &c.model, 8, 10.0}, {{2, 2, 0}}, c.table,
                            t0 + std::chrono::milliseconds(1));
    CHECK(e.placement.predicted_ms >= b.backlog_added_ms / 2 + e.service_ms - 1e-9);
  }
}

TEST_CASE("on a GPU that merges, a query adds what its items add to its model's passes") {
  // A GPU whose pass costs 1 ms plus 0.01 ms per item: the fixed cost is what merging saves.
  ProfileTable table;
  for (uint32_t b : {1u, 16u, 64u, 256u, 1024u}) table.add("m", "gpu0", point(b, 1.0 + 0.01 * b));
  const std::vector<DeviceInfo> gpu = {{"gpu0", DeviceKind::kGpu, 1, 70.0}};
  const ModelView model{"m", 100.0, 0.0};
  const ModelView other{"o", 100.0, 0.0};
  table.add("o", "gpu0", point(1, 1.0));
  table.add("o", "gpu0", point(1024, 11.24));
  const auto t0 = Clock::now();
  Dispatcher d(gpu, make("earliest-finish"), 2.0);
  d.set_gpu_merging(true, 100);
  Decision a = d.dispatch({1, &model, 64, 100.0}, {{}}, table, t0);
  REQUIRE(a.admitted());
  CHECK(a.backlog_added_ms == doctest::Approx(1.64));  // nothing to merge with: a pass
  CHECK(a.merged_items == 64);
  // The second 64 would share a's passes: at most 100 items each, so passes of 100 and 28
  // items (2.0 + 1.28 ms) instead of 1.64: it adds 1.64 ms. Its own prediction says so.
  Decision b = d.dispatch({2, &model, 64, 100.0}, {{1, 1, 0}}, table, t0);
  REQUIRE(b.admitted());
  CHECK(b.backlog_added_ms == doctest::Approx(1.64));
  CHECK(b.placement.predicted_ms == doctest::Approx(1.64 + 1.64));
  // A 30-item one joins the 28-item pass: 1.58 -> 1.28 + ... : passes of 100, 58 items.
  Decision c = d.dispatch({3, &model, 30, 100.0}, {{1, 2, 0}}, table, t0);
  REQUIRE(c.admitted());
  CHECK(c.backlog_added_ms == doctest::Approx(0.30));
  CHECK(c.placement.predicted_ms == doctest::Approx(1.64 + 1.64 + 0.30));
  CHECK(d.backlog_ms()[0] == doctest::Approx(1.64 + 1.64 + 0.30));
  // Another model shares no pass with them: a whole pass of its own.
  Decision e = d.dispatch({4, &other, 1, 100.0}, {{1, 3, 0}}, table, t0);
  REQUIRE(e.admitted());
  CHECK(e.backlog_added_ms == doctest::Approx(1.0));
  // Completions take their work and their items back out.
  for (const Decision* x : {&a, &b, &c, &e}) {
    d.complete(*x, {1, x->model, 1, x->placement, 2.0, true});
  }
  CHECK(d.backlog_ms()[0] == doctest::Approx(0.0));
  Decision f = d.dispatch({5, &model, 64, 100.0}, {{}}, table, t0);
  CHECK(f.backlog_added_ms == doctest::Approx(1.64));
  // Without merging, every query adds its own pass.
  Dispatcher plain(gpu, make("earliest-finish"), 2.0);
  plain.dispatch({1, &model, 64, 100.0}, {{}}, table, t0);
  CHECK(plain.dispatch({2, &model, 30, 100.0}, {{1, 1, 0}}, table, t0).backlog_added_ms ==
        doctest::Approx(1.30));
  d.set_gpu_merging(true, 1024);
  CHECK(d.dispatch({6, &model, 30, 100.0}, {{1, 1, 0}}, table, t0).backlog_added_ms ==
        doctest::Approx(0.30));
}

TEST_CASE("before refusing, admission places a query on a GPU whose runner's order makes it on time") {
  // cpu_gpu_table: the CPU runs n items in 0.05 + 0.1 n ms, the GPU in 1 + 0.0125 n ms
  // (+6 up to 64). Loose 1024-item queries (13.8 ms each on the GPU, 102.45 on the CPU)
  // fill the GPU with seven (96.6 ms) and the CPU with one, earliest-finish placing each.
  // A tight 256-item query (target 20 ms, bound 2 x 0.8 x 20 = 32 ms): 25.65 ms on the
  // CPU, where earliest-finish puts it (its GPU view is all of the backlog, 96.6 + 4.2 ms),
  // then behind half of the loose one running there: over the bound. Its runner on the GPU
  // takes it before every loose query, after half of the one running: 6.9 + 4.2 ms.
  const ProfileTable table = cpu_gpu_table();
  const std::vector<DeviceInfo> devices = {{"cpu0", DeviceKind::kCpu, 1, 3.0},
                                           {"gpu0", DeviceKind::kGpu, 1, 70.0}};
  const ModelView tight{"m", 20.0, 0.0};
  const auto t0 = Clock::now();
  for (const double loose_ms : {1000.0, 100.0}) {
    CAPTURE(loose_ms);
    const ModelView loose{"m", loose_ms, 0.0};
    Dispatcher d(devices, make("earliest-finish"),
                 Admission{.reject_factor = 2.0, .normal_share = 0.8});
    std::vector<Decision> queued;
    for (uint64_t id = 1; id <= 8; ++id) {
      queued.push_back(d.dispatch({id, &loose, 1024, loose_ms}, {{}, {}}, table, t0));
      REQUIRE(queued.back().admitted());
      CHECK(queued.back().placement.device == (id <= 7 ? "gpu0" : "cpu0"));
    }
    const Decision t = d.dispatch({9, &tight, 256, 20.0}, {{1, 1, 0}, {1, 7, 0}}, table,
                                  t0 + std::chrono::milliseconds(1));
    if (loose_ms == 1000.0) {
      REQUIRE_MESSAGE(t.admitted(), t.status.message());
      CHECK(t.placement.device == "gpu0");
      CHECK(t.placement.predicted_ms == doctest::Approx(13.8 / 2 + 4.2));
      CHECK(t.placement.reason.find("admission: on time on gpu0") == 0);
      CHECK(t.placement.sub_batch == 256);
      CHECK(t.placement.order == QueueOrder::kDeadline);
    } else {
      // Due in 100 ms, the seventh loose query ends at 96.6 ms: 4.2 ms more ahead of it
      // would make it late, so the GPU offers all of its backlog and the query is refused.
      CHECK_FALSE(t.admitted());
      CHECK(t.status.code() == StatusCode::kUnavailable);
    }
  }
  // Static keeps its published form (Policy::admission_may_move is false): its CPU
  // placement stands, and past the bound it is refused though the GPU is idle.
  Dispatcher s(devices, make("static"), Admission{.reject_factor = 2.0, .normal_share = 0.8});
  const ModelView loose{"m", 1000.0, 0.0};
  REQUIRE(s.dispatch({1, &loose, 1024, 1000.0}, {{}, {}}, table, t0).admitted());
  const Decision t = s.dispatch({2, &tight, 256, 20.0}, {{1, 1, 0}, {}}, table,
                                t0 + std::chrono::milliseconds(1));
  CHECK_FALSE(t.admitted());
}

TEST_CASE("a query predicted beyond reject_factor x its SLA is rejected, with the reason") {
  OneCpu c;
  Dispatcher d(c.devices, make("static"), 2.0);
  // 256 items: 25.65 ms on one worker > 2 x 10 ms.
  Decision r = d.dispatch({1, &c.model, 256, 10.0}, {{}}, c.table, Clock::now());
  CHECK_FALSE(r.admitted());
  CHECK(r.status.message().find("exceeds 2 x the SLA of 10 ms") != std::string::npos);
  CHECK(d.backlog_ms()[0] == 0.0);
  // A looser per-query SLA admits it.
  CHECK(d.dispatch({2, &c.model, 256, 100.0}, {{}}, c.table, Clock::now()).admitted());
  // A policy's expected rejection (no device) is a rejection too.
  Dispatcher none({}, make("earliest-finish"), 2.0);
  Decision n = none.dispatch({3, &c.model, 8, 10.0}, {}, c.table, Clock::now());
  CHECK_FALSE(n.admitted());
  CHECK_FALSE(n.status.message().empty());
  CHECK(n.status.code() == StatusCode::kUnavailable);  // 503: load, not a bug
  CHECK(r.status.code() == StatusCode::kUnavailable);
}

TEST_CASE("a query predicted past its bound is admitted on its model's tail budget while it lasts") {
  OneCpu c;  // model "m": a 10 ms p95 target, so 5 % of its answers may be late
  c.devices = {{"cpu0", DeviceKind::kCpu, 16, 3.0}};  // room: a short queue adds little wait
  const ModelView loose{"m", 1000.0, 0.0};
  const auto t0 = Clock::now();
  // Budget 0.5 of the tail: 2.5 % of the model's answers, over kLateWindow (200) of them.
  Dispatcher d(c.devices, make("static"), Admission{.reject_factor = 1.0, .late_budget = 0.5});
  // 256 items: 25.65 ms, past kLateCap (2) x the target: refused, budget or not.
  Decision far = d.dispatch({90, &c.model, 256, 10.0}, {{}}, c.table, t0);
  CHECK_FALSE(far.admitted());
  CHECK(far.status.message().find("past 2 x the SLA") != std::string::npos);
  // 110 items: 11.05 ms alone, past the 10 ms target. Five fit the budget in flight
  // (0 late + 5 / 200 = 2.5 %); the sixth does not.
  std::vector<Decision> late;
  for (uint64_t i = 0; i < 5; ++i) {
    late.push_back(d.dispatch({i, &c.model, 110, 10.0}, {{}}, c.table, t0));
    REQUIRE(late.back().admitted());
    CHECK(late.back().on_budget);
    CHECK(late.back().expected_late);
  }
  CHECK(d.tail("m").expected_late == 5);
  Decision refused = d.dispatch({5, &c.model, 110, 10.0}, {{}}, c.table, t0);
  CHECK_FALSE(refused.admitted());
  CHECK(refused.status.message().find(
            "tail budget is spent (0.0 % of its answers late, 5 admitted predicted late in "
            "flight)") != std::string::npos);
  // Before decoding: 205 ms of loose work queued is 12.8 ms of wait on 16 workers, past the
  // target; with the budget spent that is a refusal.
  Decision big1 = d.dispatch({80, &loose, 1024, 1000.0}, {{}}, c.table, t0);
  Decision big2 = d.dispatch({81, &loose, 1024, 1000.0}, {{}}, c.table, t0);
  REQUIRE(big1.admitted());
  REQUIRE(big2.admitted());
  CHECK_FALSE(d.hopeless("m", 10.0, {{}}, t0).is_ok());
  // They finish late: the late fraction is what they were expected to add.
  for (const Decision& x : late) d.complete(x, {1, "m", 110, x.placement, 12.0, true});
  CHECK(d.tail("m").expected_late == 0);
  const double after_five = 1 - std::pow(1 - 1 / Dispatcher::kLateWindow, 5);
  CHECK(d.tail("m").late == doctest::Approx(after_five));
  CHECK_FALSE(d.hopeless("m", 10.0, {{}}, t0).is_ok());
  d.complete(big1, {80, "m", 1024, big1.placement, 100.0, true});
  d.complete(big2, {81, "m", 1024, big2.placement, 100.0, true});
  CHECK_FALSE(d.dispatch({6, &c.model, 110, 10.0}, {{}}, c.table, t0).admitted());
  // On-time answers pay it back: once 43 more are on time the late fraction is under 2 %,
  // and one more predicted-late query fits.
  for (uint64_t i = 0; i < 43; ++i) {
    Decision ok = d.dispatch({100 + i, &c.model, 8, 10.0}, {{}}, c.table, t0);
    REQUIRE(ok.admitted());
    CHECK_FALSE(ok.on_budget);
    d.complete(ok, {100 + i, "m", 8, ok.placement, 1.0, true});
  }
  CHECK(d.tail("m").late < 0.02);
  // With room, a wait past the target but within 2 x is no reason to refuse before decoding.
  Decision big3 = d.dispatch({82, &loose, 1024, 1000.0}, {{}}, c.table, t0);
  Decision big4 = d.dispatch({83, &loose, 1024, 1000.0}, {{}}, c.table, t0);
  CHECK(d.hopeless("m", 10.0, {{}}, t0).is_ok());
  d.complete(big3, {82, "m", 1024, big3.placement, 100.0, true});
  d.complete(big4, {83, "m", 1024, big4.placement, 100.0, true});
  Decision again = d.dispatch({7, &c.model, 110, 10.0}, {{}}, c.table, t0);
  CHECK(again.admitted());
  CHECK(again.on_budget);
  CHECK(d.tail("m").expected_late == 1);
  // A failure is not an answer: it leaves the late fraction alone.
  const double before = d.tail("m").late;
  d.complete(again, {7, "m", 110, again.placement, 0.0, false});
  CHECK(d.tail("m").late == before);
  CHECK(d.tail("m").expected_late == 0);
}

TEST_CASE("the tail budget is not spent on low priority, on a request's own target, or when off") {
  OneCpu c;
  c.devices = {{"cpu0", DeviceKind::kCpu, 16, 3.0}};
  const auto t0 = Clock::now();
  Dispatcher d(c.devices, make("static"),
               Admission{.reject_factor = 1.0, .normal_share = 0.8, .low_share = 0.5,
                         .late_budget = 0.5});
  // 110 items, 11.05 ms: within 2 x the target, so the budget could take it.
  // Low priority is shed first: refused past its bound whatever the budget.
  CHECK_FALSE(d.dispatch({1, &c.model, 110, 10.0}, {{}}, c.table, t0, -1).admitted());
  // A request's own sla_ms is its deadline, not a tail target.
  CHECK_FALSE(d.dispatch({2, &c.model, 110, 10.0}, {{}}, c.table, t0, 0, true).admitted());
  // ... nor is it counted in the model's tail when it is admitted and late.
  Decision own = d.dispatch({9, &c.model, 8, 10.0}, {{}}, c.table, t0, 0, true);
  REQUIRE(own.admitted());
  d.complete(own, {9, "m", 8, own.placement, 50.0, true});
  CHECK(d.tail("m").late == 0.0);
  // 89 items: 8.95 ms, past 0.8 x 10 ms but within the target: admitted on the budget,
  // not expected late (nothing held in flight against the budget).
  Decision near = d.dispatch({3, &c.model, 89, 10.0}, {{}}, c.table, t0);
  CHECK(near.admitted());
  CHECK(near.on_budget);
  CHECK_FALSE(near.expected_late);
  CHECK(d.tail("m").expected_late == 0);
  d.complete(near, {3, "m", 89, near.placement, 9.0, true});
  CHECK(d.tail("m").late == 0.0);
  // Off: the prediction alone decides, as before the budget.
  d.set_admission({.reject_factor = 1.0, .normal_share = 0.8, .low_share = 0.5});
  Decision off = d.dispatch({4, &c.model, 89, 10.0}, {{}}, c.table, t0);
  CHECK_FALSE(off.admitted());
  CHECK(off.status.message().find("tail budget") == std::string::npos);
  // The tail follows the model's own percentile: p99 leaves 1 %, half of it 0.5 %: one
  // predicted-late query in flight fits (1 / 200), a second does not.
  Dispatcher strict(c.devices, make("static"), Admission{.reject_factor = 1.0, .late_budget = 0.5});
  const ModelView p99{"m", 10.0, 0.0, 99.0};
  Decision a = strict.dispatch({5, &p99, 110, 10.0}, {{}}, c.table, t0);
  CHECK(a.admitted());
  CHECK(a.expected_late);
  CHECK_FALSE(strict.dispatch({6, &p99, 110, 10.0}, {{}}, c.table, t0).admitted());
  CHECK(strict.tail("m").percentile == 99.0);
}

// A policy that fails as policy.h says only a broken one does.
class Broken final : public Policy {
 public:
  std::string_view name() const override { return "broken"; }
  Result<Placement> place(const QueryInfo&, const ClusterView&) override {
    return internal_error("lost its table");
  }
  nlohmann::json params() const override { return nlohmann::json::object(); }
  Status configure(const nlohmann::json&) override { return Status::ok(); }
};

TEST_CASE("a policy's internal error stays an internal error, not a rejection") {
  OneCpu c;
  Dispatcher d(c.devices, std::make_unique<Broken>(), 2.0);
  Decision r = d.dispatch({1, &c.model, 8, 10.0}, {{}}, c.table, Clock::now());
  CHECK_FALSE(r.admitted());
  CHECK(r.status.code() == StatusCode::kInternal);  // 500, where it was a 503
  CHECK(r.status.message() == "policy broken: lost its table");
  CHECK(d.backlog_ms()[0] == 0.0);
}

// Records what it observes.
class Recorder final : public Policy {
 public:
  explicit Recorder(std::vector<uint64_t>* seen) : seen_(seen) {}
  std::string_view name() const override { return "recorder"; }
  Result<Placement> place(const QueryInfo& q, const ClusterView& v) override {
    return Placement{v.devices[0].id, q.items, 1, 1.0, "recorder"};
  }
  void observe(const Completion& done) override { seen_->push_back(done.id); }
  nlohmann::json params() const override { return nlohmann::json::object(); }
  Status configure(const nlohmann::json&) override { return Status::ok(); }

 private:
  std::vector<uint64_t>* seen_;
};

TEST_CASE(
    "switching policies keeps queries in flight and their backlog, only the placer observes") {
  OneCpu c;
  std::vector<uint64_t> first, second;
  Dispatcher d(c.devices, std::make_unique<Recorder>(&first), 2.0);
  Decision a = d.dispatch({1, &c.model, 8, 10.0}, {{}}, c.table, Clock::now());
  REQUIRE(a.admitted());
  d.set_policy(std::make_unique<Recorder>(&second));
  Decision b = d.dispatch({2, &c.model, 8, 10.0}, {{}}, c.table, Clock::now());
  REQUIRE(b.admitted());
  CHECK(a.generation != b.generation);
  d.complete(a, {1, "m", 8, a.placement, 1.0, true});
  d.complete(b, {2, "m", 8, b.placement, 1.0, true});
  CHECK(first.empty());  // the old policy is gone; its query still settled its backlog
  CHECK(second == std::vector<uint64_t>{2});
  CHECK(d.backlog_ms()[0] == doctest::Approx(0.0));
}

TEST_CASE("a placement on a device that is not served is refused, and workers are clamped") {
  OneCpu c;
  Dispatcher d(c.devices, make("static", {{"device", "cpu9"}}), 2.0);
  Decision r = d.dispatch({1, &c.model, 8, 10.0}, {{}}, c.table, Clock::now());
  CHECK_FALSE(r.admitted());
  CHECK(r.status.message().find("cpu9") != std::string::npos);
  CHECK(r.status.code() == StatusCode::kUnavailable);  // static's own refusal: not in the view
}

// Places every query on a device it names, whatever the view holds.
class Rogue final : public Policy {
 public:
  explicit Rogue(std::string device) : device_(std::move(device)) {}
  std::string_view name() const override { return "rogue"; }
  Result<Placement> place(const QueryInfo& q, const ClusterView&) override {
    return Placement{device_, q.items, 1, 1.0, "rogue"};
  }
  nlohmann::json params() const override { return nlohmann::json::object(); }
  Status configure(const nlohmann::json&) override { return Status::ok(); }

 private:
  std::string device_;
};

TEST_CASE("a policy that places on a device that is not served fails the query as a bug") {
  OneCpu c;
  for (const char* device : {"cpu9", "gpu0", "nonsense"}) {
    CAPTURE(device);
    Dispatcher d(c.devices, std::make_unique<Rogue>(device), 2.0);
    Decision r = d.dispatch({1, &c.model, 8, 10.0}, {{}}, c.table, Clock::now());
    CHECK_FALSE(r.admitted());
    CHECK(r.status.code() == StatusCode::kInternal);
    CHECK(r.status.message() ==
          std::string("rogue chose device '") + device + "', which is not served");
    CHECK(d.backlog_ms()[0] == 0.0);
  }
  Dispatcher ok(c.devices, std::make_unique<Rogue>("cpu0"), 2.0);
  CHECK(ok.dispatch({1, &c.model, 8, 10.0}, {{}}, c.table, Clock::now()).admitted());
}

TEST_CASE("min-energy parks workers at low load and wakes them when the SLA needs them") {
  OneCpu c;
  Dispatcher d(c.devices, make("min-energy"), 2.0);
  // Idle device: one worker awake meets the SLA and burns no idle power beside it.
  Decision a = d.dispatch({1, &c.model, 16, 10.0}, {{}}, c.table, Clock::now());
  REQUIRE(a.admitted());
  CHECK(a.placement.active_workers == 1);
  CHECK(a.placement.workers == 1);
  CHECK(a.placement.reason.find("1 of 2 workers awake") != std::string::npos);
  // A backlog that one worker cannot clear in time: both are woken.
  std::vector<Decision> held;
  for (uint64_t i = 2; i < 6; ++i) {
    held.push_back(d.dispatch({i, &c.model, 40, 20.0}, {{1, i, 1}}, c.table, Clock::now()));
  }
  CHECK(held.back().placement.active_workers == 2);
  // With parking off it never parks.
  Dispatcher off(c.devices, make("min-energy", {{"park", false}}), 2.0);
  CHECK(
      off.dispatch({9, &c.model, 16, 10.0}, {{}}, c.table, Clock::now()).placement.active_workers ==
      0);
}


TEST_CASE("min-energy parks only while the work it placed leaves every awake worker rarely busy") {
  OneCpu c;
  Dispatcher d(c.devices, make("min-energy"), 2.0);
  const Clock::time_point t0{};
  // 16 items: 1.65 ms on one worker. One query every 10 ms is 16.5 % of a worker: with one
  // awake, a query would find it busy 16.5 % of the time, past the 1 % min-energy allows,
  // so after the first few (the rate is learnt from its own placements) both stay awake.
  int parked = 0;
  for (uint64_t i = 0; i < 200; ++i) {
    const auto now = t0 + std::chrono::milliseconds(10 * i);
    Decision q = d.dispatch({i + 1, &c.model, 16, 10.0}, {{}}, c.table, now);
    REQUIRE(q.admitted());
    if (i >= 20 && q.placement.active_workers == 1) ++parked;
    d.complete(q, {i + 1, "m", 16, q.placement, 1.65, true});
  }
  CHECK(parked == 0);
  // One query a second (0.165 %): parking one worker is allowed again once the rate decays.
  const auto later = t0 + std::chrono::seconds(60);
  int kept_one = 0;
  for (uint64_t i = 0; i < 10; ++i) {
    const auto now = later + std::chrono::seconds(i);
    Decision q = d.dispatch({500 + i, &c.model, 16, 10.0}, {{}}, c.table, now);
    REQUIRE(q.admitted());
    kept_one += q.placement.active_workers == 1;
    d.complete(q, {500 + i, "m", 16, q.placement, 1.65, true});
  }
  CHECK(kept_one == 10);
}

// Bounded waiting's two models on cpu0: tight, 0.05 + 0.01 n ms (16 items in 0.21 ms),
// target 1 ms; heavy, 0.1 n ms (64 items in 6.4 ms), target 100 ms.
struct TightAndHeavy {
  ProfileTable table;
  ModelView tight{"tight", 1.0, 0.0}, heavy{"heavy", 100.0, 0.0};
  TightAndHeavy() {
    for (uint32_t b : {1u, 4u, 16u, 64u, 256u}) {
      table.add("tight", "cpu0", point(b, 0.05 + 0.01 * b));
      table.add("heavy", "cpu0", point(b, 0.1 * b));
    }
  }
  // `ms` after the clock's epoch: a manual clock.
  static Clock::time_point at(double ms) {
    return Clock::time_point{} + std::chrono::duration_cast<Clock::duration>(
                                     std::chrono::duration<double, std::milli>(ms));
  }
};

TEST_CASE("bounded waiting: loose queries get a short-piece size, a reserve and an urgent time") {
  const TightAndHeavy m;
  const ProfileTable& table = m.table;
  const ModelView &tight = m.tight, &heavy = m.heavy;
  const std::vector<DeviceInfo> devices = {{"cpu0", DeviceKind::kCpu, 2, 3.0}};
  const Clock::time_point t0{};
  const auto at = &TightAndHeavy::at;
  Dispatcher d(devices, make("static", {{"queue", "edf"}}), 1000.0);
  // Off (the default): nothing is limited.
  Decision a = d.dispatch({1, &heavy, 64, 100.0}, {{}}, table, t0);
  CHECK(a.short_items == UINT32_MAX);
  CHECK(a.reserve == 0);
  CHECK(d.wait_bound_ms(0) == std::numeric_limits<double>::infinity());
  d.complete(a, {1, "heavy", 64, a.placement, 6.4, true});

  d.set_bounded_wait({.on = true, .fraction = 0.5});
  // Only heavy in the mix (slack 93.6 ms): the bound is 46.8 ms, and heavy, the tightest
  // model there, is not limited.
  Decision b = d.dispatch({2, &heavy, 64, 100.0}, {{}}, table, at(1));
  CHECK(d.wait_bound_ms(0) == doctest::Approx(0.5 * 93.6));
  CHECK(b.short_items == UINT32_MAX);
  d.complete(b, {2, "heavy", 64, b.placement, 6.4, true});
  // A tight query (slack 1 - 0.21 = 0.79 ms): the bound drops to 0.395 ms. The tight query
  // itself is never limited.
  Decision c = d.dispatch({3, &tight, 16, 1.0}, {{}}, table, at(2));
  CHECK(d.wait_bound_ms(0) == doctest::Approx(0.395));
  CHECK(c.short_items == UINT32_MAX);
  CHECK(c.reserve == 0);
  d.complete(c, {3, "tight", 16, c.placement, 0.21, true});
  // The heavy one now: pieces of at most 3 items (0.3 ms) on the reserved worker; urgent
  // once its time to deadline is down to 6.4 x 1.25 + 0.79 ms.
  Decision e = d.dispatch({4, &heavy, 64, 100.0}, {{}}, table, at(3));
  CHECK(e.short_items == 3);
  CHECK(e.reserve == 1);
  CHECK(std::chrono::duration<double, std::milli>(e.urgent_at - at(3)).count() ==
        doctest::Approx(100.0 - 6.4 * 1.25 - 0.79));
  d.complete(e, {4, "heavy", 64, e.placement, 6.4, true});
  // One awake worker leaves nothing to reserve.
  Decision f = d.dispatch({5, &heavy, 64, 100.0}, {{0, 0, 1}}, table, at(4));
  CHECK(f.reserve == 0);
  d.complete(f, {5, "heavy", 64, f.placement, 6.4, true});
  // A FIFO placement (static's default) is DeepRecSys's baseline: left alone.
  Dispatcher fifo(devices, make("static"), 1000.0);
  fifo.set_bounded_wait({.on = true, .fraction = 0.5});
  Decision g = fifo.dispatch({6, &tight, 16, 1.0}, {{}}, table, at(5));
  fifo.complete(g, {6, "tight", 16, g.placement, 0.21, true});
  Decision h = fifo.dispatch({7, &heavy, 64, 100.0}, {{}}, table, at(6));
  CHECK(h.short_items == UINT32_MAX);
  CHECK(h.reserve == 0);
  // The tight model gone for longer than the window (1 s): the bound is heavy's again.
  Decision late = d.dispatch({8, &heavy, 64, 100.0}, {{}}, table, at(1500));
  CHECK(d.wait_bound_ms(0) > 40);
  CHECK(late.short_items == UINT32_MAX);
}

TEST_CASE("bounded waiting: the lane is sized from the tight models' rates and follows them") {
  // 16 workers; the lane is kLaneLoad (half) of a worker per reserved worker.
  const TightAndHeavy m;
  const ProfileTable& table = m.table;
  const ModelView &tight = m.tight, &heavy = m.heavy;
  const std::vector<DeviceInfo> devices = {{"cpu0", DeviceKind::kCpu, 16, 24.0}};
  double now_ms = 0;
  uint64_t id = 0;
  const auto at = &TightAndHeavy::at;
  auto send_tight = [&](Dispatcher& d, int n, double gap_ms) {
    for (int i = 0; i < n; ++i, now_ms += gap_ms) {
      Decision t = d.dispatch({++id, &tight, 16, 1.0}, {{}}, table, at(now_ms));
      REQUIRE(t.admitted());
      CHECK(t.reserve == 0);  // the tight queries themselves are never limited
      d.complete(t, {id, "tight", 16, t.placement, 0.21, true});
    }
  };
  auto heavy_reserve = [&](Dispatcher& d, DeviceLoad load) {
    Decision h = d.dispatch({++id, &heavy, 64, 100.0}, {load}, table, at(now_ms));
    REQUIRE(h.admitted());
    d.complete(h, {id, "heavy", 64, h.placement, 6.4, true});
    return h.reserve;
  };
  Dispatcher d(devices, make("static", {{"queue", "edf"}}), 1000.0);
  d.set_bounded_wait({.on = true, .fraction = 0.5});
  // One tight query every 0.1 ms: 2.1 workers' worth of its work, 5 reserved for it.
  send_tight(d, 60, 0.1);
  CHECK(heavy_reserve(d, {}) == 5);
  // Never more than all awake but one.
  CHECK(heavy_reserve(d, {0, 0, 4}) == 3);
  // The rate falls tenfold: within 60 queries the lane is down to one worker.
  send_tight(d, 60, 1.0);
  CHECK(heavy_reserve(d, {}) == 1);
  // And rises again as fast.
  send_tight(d, 60, 0.1);
  CHECK(heavy_reserve(d, {}) == 5);
  // A fixed lane ignores the rates.
  Dispatcher fixed(devices, make("static", {{"queue", "edf"}}), 1000.0);
  fixed.set_bounded_wait({.on = true, .fraction = 0.5, .lane_workers = 2});
  send_tight(fixed, 60, 0.1);
  CHECK(heavy_reserve(fixed, {}) == 2);
}

TEST_CASE("priority decides who is shed first: low before normal before high") {
  OneCpu c;
  Dispatcher d(c.devices, make("static"), Admission{1.0, 0.8, 0.5});
  // 60 items: 6.05 ms on one worker, against an SLA of 10 ms: within 1 x 10 (high) and
  // 0.8 x 10 (normal), beyond 0.5 x 10 (low).
  // (Each completes before the next is placed: an empty backlog for every one.)
  Decision high = d.dispatch({1, &c.model, 60, 10.0}, {{}}, c.table, Clock::now(), 1);
  CHECK(high.admitted());
  d.complete(high, {1, "m", 60, high.placement, 0, false});
  Decision normal = d.dispatch({2, &c.model, 60, 10.0}, {{}}, c.table, Clock::now(), 0);
  CHECK(normal.admitted());
  d.complete(normal, {2, "m", 60, normal.placement, 0, false});
  Decision low = d.dispatch({3, &c.model, 60, 10.0}, {{}}, c.table, Clock::now(), -1);
  CHECK_FALSE(low.admitted());
  CHECK(low.status.message().find("x 0.5 (priority -1)") != std::string::npos);
  // 90 items (9.05 ms): only high priority still gets in.
  CHECK_FALSE(d.dispatch({4, &c.model, 90, 10.0}, {{}}, c.table, Clock::now(), 0).admitted());
  CHECK(d.dispatch({5, &c.model, 90, 10.0}, {{}}, c.table, Clock::now(), 2).admitted());
}

TEST_CASE("admit_idle: a query that starts at once is admitted whatever its prediction") {
  OneCpu c;
  Admission a{1.0};
  a.admit_idle = true;
  Dispatcher d(c.devices, make("static"), a);
  // 256 items: 25.65 ms > 10 ms. A worker is free and nothing waits: admitted.
  Decision idle = d.dispatch({1, &c.model, 256, 10.0}, {{1, 1, 0}}, c.table, Clock::now());
  CHECK(idle.admitted());
  // Both workers busy with queries in flight: it would queue, so the bound applies.
  Decision busy = d.dispatch({2, &c.model, 256, 10.0}, {{2, 2, 0}}, c.table, Clock::now());
  CHECK_FALSE(busy.admitted());
  // Parked workers count: one awake and busy means it would wait.
  CHECK_FALSE(d.dispatch({3, &c.model, 256, 10.0}, {{1, 1, 1}}, c.table, Clock::now()).admitted());
  // A request's own target is a deadline: not admitted past it even when idle.
  CHECK_FALSE(
      d.dispatch({4, &c.model, 256, 10.0}, {{1, 1, 0}}, c.table, Clock::now(), 0, true).admitted());
}

TEST_CASE("a degraded device is left out while another is healthy") {
  const ProfileTable table = cpu_gpu_table();
  const ModelView model{"m", 50.0, 0.0};
  std::vector<DeviceInfo> devices = {{"cpu0", DeviceKind::kCpu, 1, 10.0},
                                     {"gpu0", DeviceKind::kGpu, 1, 70.0}};
  Dispatcher d(devices, make("earliest-finish"), 1000.0);
  // 1024 items: the GPU finishes far sooner (13.8 ms vs 102 ms).
  Decision a = d.dispatch({1, &model, 1024, 500.0}, {{}, {}}, table, Clock::now());
  REQUIRE(a.admitted());
  CHECK(a.placement.device == "gpu0");
  DeviceLoad degraded;
  degraded.degraded = true;
  Decision b = d.dispatch({2, &model, 1024, 500.0}, {{}, degraded}, table, Clock::now());
  REQUIRE(b.admitted());
  CHECK(b.placement.device == "cpu0");
  CHECK(b.device_index == 0);
  // Every device degraded: all are offered again (better a try than a certain refusal).
  Decision c = d.dispatch({3, &model, 1024, 500.0}, {degraded, degraded}, table, Clock::now());
  REQUIRE(c.admitted());
  CHECK(c.placement.device == "gpu0");
  CHECK(c.device_index == 1);
}


TEST_CASE("hopeless: the wait alone exceeds the bound on every device, checked before decoding") {
  OneCpu c;
  Dispatcher d(c.devices, make("static"), Admission{1.0});
  CHECK(d.hopeless("m", 10.0, {{}}).is_ok());
  // Queue work on the two workers: 4 x 25.65 ms / 2 = 51.3 ms of wait > 1 x 10 ms.
  d.set_reject_factor(1000);
  std::vector<Decision> held;
  for (uint64_t i = 1; i <= 4; ++i) {
    held.push_back(d.dispatch({i, &c.model, 256, 10.0}, {{}}, c.table, Clock::now()));
    REQUIRE(held.back().admitted());
  }
  CHECK(d.hopeless("m", 10.0, {{}}).is_ok());  // the factor is 1000: 51 ms < 10 s
  d.set_reject_factor(1.0);
  const std::string why = d.hopeless("m", 10.0, {{}}).message();
  CHECK(why.find("rejected before decoding") != std::string::npos);
  CHECK(why.find("51.3 ms") != std::string::npos);
  CHECK(d.hopeless("m", 60.0, {{}}).is_ok());  // a looser target still has room
  for (size_t i = 0; i < held.size(); ++i) {
    d.complete(held[i], {i + 1, "m", 256, held[i].placement, 20.0, true});
  }
  CHECK(d.hopeless("m", 10.0, {{}}).is_ok());
}

}  // namespace
}  // namespace recsched::policies
