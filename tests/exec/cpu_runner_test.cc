#include "exec/cpu_runner.h"

#include <doctest/doctest.h>
#include <sys/resource.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <filesystem>
#include <fstream>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <optional>
#include <semaphore>
#include <set>
#include <string>
#include <thread>

#include "core/failpoint.h"
#include "core/pieces.h"
#include "engine/inputs.h"

namespace recsched::exec {

using hw::CpuDevice;
using hw::Devices;
using hw::Partition;
using hw::Topology;

namespace {

struct HostDevice {
  Topology topology = std::move(Topology::host().value());
  CpuDevice device = topology.devices(Partition::kNuma)->cpus.at(0);
};

engine::ModelSpec golden_spec() {
  return engine::load_model_spec(std::string(RECSCHED_SOURCE_DIR) +
                                 "/tests/fixtures/golden/wide.model.json")
      .value();
}

std::vector<float> whole(const Model& model, const Batch& batch) {
  engine::Workspace ws;
  std::vector<float> out(batch.batch_size * model.spec().num_outputs());
  REQUIRE(model.forward(view_of(batch), ws, out).is_ok());
  return out;
}

TEST_CASE("workers bind themselves to the device's cores") {
  HostDevice host;
  auto runner = CpuRunner::create(host.topology, host.device);
  REQUIRE_MESSAGE(runner.has_value(), runner.status().to_string());
  CHECK((*runner)->workers() == static_cast<int>(host.device.cores));
  const Devices cores = host.topology.devices(Partition::kCore).value();
  for (int w = 0; w < (*runner)->workers(); ++w) {
    CAPTURE(w);
    // Each worker sits on exactly one core of the device, worker w on the w-th core.
    CHECK((*runner)->bindings()[w] == cores.cpus[w % cores.cpus.size()].cpuset);
  }
  // Each worker is named for its device and index ("cpu0-w1": top -H, perf, and
  // bench/host_cost.py, which tells the workers' CPU time from the rest by it).
  std::set<std::string> names;
  for (const auto& t : std::filesystem::directory_iterator("/proc/self/task")) {
    std::ifstream comm(t.path() / "comm");
    std::string name;
    std::getline(comm, name);
    names.insert(name);
  }
  for (int w = 0; w < (*runner)->workers(); ++w) {
    CHECK(names.count(host.device.id + "-w" + std::to_string(w)) == 1);
  }
}

TEST_CASE("a query run as sub-batches across workers scores like the whole batch") {
  HostDevice host;
  auto runner = std::move(CpuRunner::create(host.topology, host.device).value());
  const engine::ModelSpec spec = golden_spec();
  auto model = runner->load(spec, {});
  REQUIRE_MESSAGE(model.has_value(), model.status().to_string());
  const Batch batch = engine::random_batch(spec, 37, 3);
  const std::vector<float> want = whole(**model, batch);
  for (uint32_t sub : {1u, 5u, 16u, 37u, 100u}) {
    for (int workers = 1; workers <= runner->workers(); ++workers) {
      CAPTURE(sub);
      CAPTURE(workers);
      std::vector<float> got(want.size(), -1.0f);
      REQUIRE(runner->run(**model, view_of(batch), sub, workers, got).is_ok());
      for (size_t i = 0; i < want.size(); ++i)
        CHECK(got[i] == doctest::Approx(want[i]).epsilon(1e-5));
    }
  }
  CHECK(runner->busy_seconds() > 0.0);
}

TEST_CASE("concurrent callers are served one at a time, each with its own scores") {
  HostDevice host;
  auto runner = std::move(CpuRunner::create(host.topology, host.device).value());
  const engine::ModelSpec spec = golden_spec();
  auto model = std::move(runner->load(spec, {}).value());
  const Batch a = engine::random_batch(spec, 50, 1), b = engine::random_batch(spec, 23, 2);
  const std::vector<float> want_a = whole(*model, a), want_b = whole(*model, b);
  std::vector<float> got_a(want_a.size()), got_b(want_b.size());
  Status st_a, st_b;
  std::thread t([&] {
    for (int i = 0; i < 20; ++i)
      st_a = runner->run(*model, view_of(a), 7, runner->workers(), got_a);
  });
  for (int i = 0; i < 20; ++i) st_b = runner->run(*model, view_of(b), 3, 1, got_b);
  t.join();
  CHECK(st_a.is_ok());
  CHECK(st_b.is_ok());
  for (size_t i = 0; i < want_a.size(); ++i)
    CHECK(got_a[i] == doctest::Approx(want_a[i]).epsilon(1e-5));
  for (size_t i = 0; i < want_b.size(); ++i)
    CHECK(got_b[i] == doctest::Approx(want_b[i]).epsilon(1e-5));
}

TEST_CASE("bad runs are refused, and a bad id fails the query, not the runner") {
  HostDevice host;
  auto runner = std::move(CpuRunner::create(host.topology, host.device).value());
  const engine::ModelSpec spec = golden_spec();
  auto model = std::move(runner->load(spec, {}).value());
  Batch batch = engine::random_batch(spec, 8, 1);
  std::vector<float> out(8);
  CHECK(runner->run(*model, view_of(batch), 0, 1, out).code() == StatusCode::kInvalidArgument);
  CHECK(runner->run(*model, view_of(batch), 4, runner->workers() + 1, out).code() ==
        StatusCode::kInvalidArgument);
  std::vector<float> short_out(3);
  CHECK(runner->run(*model, view_of(batch), 4, 1, short_out).code() ==
        StatusCode::kInvalidArgument);
  batch.sparse.indices.back() = spec.table_rows.back();
  CHECK(runner->run(*model, view_of(batch), 2, runner->workers(), out).code() ==
        StatusCode::kInvalidArgument);
  const Batch good = engine::random_batch(spec, 8, 1);
  CHECK(runner->run(*model, view_of(good), 2, runner->workers(), out).is_ok());
}

// A model that records which thread ran each pass and with which workspace; fails on demand.
class WarmProbe final : public Model {
 public:
  explicit WarmProbe(engine::ModelSpec spec) : spec_(std::move(spec)) {}
  const engine::ModelSpec& spec() const override { return spec_; }
  engine::Isa isa() const override { return engine::Isa::kGeneric; }
  Status forward(const BatchView& batch, engine::Workspace& ws,
                 std::span<float> scores) const override {
    std::lock_guard<std::mutex> lock(mu_);
    threads_.insert(std::this_thread::get_id());
    workspaces_.insert(&ws);
    ++passes_;
    items_ = batch.batch_size;
    // A yield point as serving offers them: it must not preempt, nor touch the runner's
    // state for a query that is not there.
    ws.yield_point();
    std::fill(scores.begin(), scores.end(), 0.5f);
    return fail_ ? internal_error("probe failed") : Status::ok();
  }
  std::vector<engine::TensorToWrite> tensors() const override { return {}; }
  mutable std::mutex mu_;
  mutable std::set<std::thread::id> threads_;
  mutable std::set<const engine::Workspace*> workspaces_;
  mutable int passes_ = 0;
  mutable uint32_t items_ = 0;
  bool fail_ = false;

 private:
  engine::ModelSpec spec_;
};

TEST_CASE("warm_up runs the batch on every worker, parked ones too, in each of its workspaces") {
  HostDevice host;
  auto runner = std::move(CpuRunner::create(host.topology, host.device, 2).value());
  runner->set_preemption(true);
  runner->set_active_workers(1);  // one parked: it is warmed as well
  const engine::ModelSpec spec = golden_spec();
  WarmProbe model(spec);
  const Batch batch = engine::random_batch(spec, 16, 1);
  REQUIRE(runner->warm_up(model, view_of(batch)).is_ok());
  constexpr int kLevels = CpuRunner::kMaxNesting + 1;
  CHECK(model.passes_ == 2 * kLevels);
  CHECK(model.threads_.size() == 2);
  CHECK(model.workspaces_.size() == 2 * kLevels);
  CHECK(model.items_ == 16);
  CHECK(runner->preemptions() == 0);
  // The first failure comes back; the runner still serves.
  model.fail_ = true;
  const Status st = runner->warm_up(model, view_of(batch));
  CHECK(st.code() == StatusCode::kInternal);
  CHECK(st.message().find("probe failed") != std::string::npos);
  model.fail_ = false;
  std::vector<float> scores(16 * spec.num_outputs());
  CHECK(runner->run(model, view_of(batch), 16, 1, scores).is_ok());
  // Queries served after it run in the workspaces it warmed.
  CHECK(model.workspaces_.size() == 2 * kLevels);
  // It serves no query, so it leaves a rehearsed failure for the first query that does.
  REQUIRE(failpoint::set("forward." + host.device.id, "1*error").is_ok());
  CHECK(runner->warm_up(model, view_of(batch)).is_ok());
  CHECK_FALSE(runner->run(model, view_of(batch), 16, 1, scores).is_ok());
  CHECK(runner->run(model, view_of(batch), 16, 1, scores).is_ok());
  failpoint::clear();
}

// A model that records, inside each forward pass, the nice value of the thread running it.
class NiceProbe final : public Model {
 public:
  explicit NiceProbe(engine::ModelSpec spec) : spec_(std::move(spec)) {}
  const engine::ModelSpec& spec() const override { return spec_; }
  engine::Isa isa() const override { return engine::Isa::kGeneric; }
  Status forward(const BatchView&, engine::Workspace&, std::span<float> scores) const override {
    errno = 0;
    seen_ = getpriority(PRIO_PROCESS, static_cast<id_t>(gettid()));
    std::fill(scores.begin(), scores.end(), 0.5f);
    return Status::ok();
  }
  std::vector<engine::TensorToWrite> tensors() const override { return {}; }
  int seen() const { return seen_; }

 private:
  engine::ModelSpec spec_;
  mutable std::atomic<int> seen_{-100};
};

TEST_CASE("workers lower their own priority to the nice value asked for, and only theirs") {
  HostDevice host;
  const int before = getpriority(PRIO_PROCESS, 0);
  // Above the caller's own value (under a niced CI too); the workers only ever lower theirs.
  const int want = std::min(19, std::max(7, before + 1));
  REQUIRE(want > before);
  auto runner = CpuRunner::create(host.topology, host.device, 1, want);
  REQUIRE_MESSAGE(runner.has_value(), runner.status().to_string());
  const engine::ModelSpec spec = golden_spec();
  const NiceProbe model(spec);
  const Batch batch = engine::random_batch(spec, 2, 1);
  std::vector<float> scores(2 * spec.num_outputs());
  REQUIRE((*runner)->run(model, view_of(batch), 2, 1, scores).is_ok());
  CHECK(model.seen() == want);
  CHECK(getpriority(PRIO_PROCESS, 0) == before);  // the calling thread's is untouched
  CHECK(CpuRunner::create(host.topology, host.device, 1, 20).status().code() ==
        StatusCode::kInvalidArgument);
  CHECK(CpuRunner::create(host.topology, host.device, 1, -1).status().code() ==
        StatusCode::kInvalidArgument);
}

TEST_CASE("a runner needs this machine's topology") {
  Topology t = std::move(Topology::synthetic("pack:1 core:2 pu:1").value());
  const CpuDevice d = t.devices(Partition::kNuma)->cpus.at(0);
  CHECK(CpuRunner::create(t, d).status().code() == StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace recsched::exec

namespace recsched::exec {
namespace {

TEST_CASE("submit runs whole queries side by side, one per worker, and bounds the queue") {
  Topology topo = std::move(Topology::host().value());
  const CpuDevice dev = topo.devices(Partition::kNuma)->cpus.at(0);
  auto runner = std::move(CpuRunner::create(topo, dev).value());
  const engine::ModelSpec spec = engine::load_model_spec(std::string(RECSCHED_SOURCE_DIR) +
                                                         "/tests/fixtures/golden/wide.model.json")
                                     .value();
  auto model = std::move(runner->load(spec, {}).value());
  constexpr int kQueries = 12;
  std::vector<Batch> batches;
  for (int q = 0; q < kQueries; ++q) batches.push_back(engine::random_batch(spec, 9 + q, q));
  std::vector<std::vector<float>> scores(kQueries);
  std::mutex mu;
  std::condition_variable cv;
  int done = 0;
  std::vector<Status> statuses(kQueries);
  for (int q = 0; q < kQueries; ++q) {
    scores[q].resize(batches[q].batch_size);
    REQUIRE(runner
                ->submit({.model = model.get(),
                          .batch = view_of(batches[q]),
                          .scores = scores[q],
                          .sub_batch = batches[q].batch_size,
                          .workers = 1,
                          .done =
                              [&, q](Status st) {
                                std::lock_guard<std::mutex> lock(mu);
                                statuses[q] = st;
                                ++done;
                                cv.notify_all();
                              }})
                .is_ok());
  }
  std::unique_lock<std::mutex> lock(mu);
  cv.wait(lock, [&] { return done == kQueries; });
  for (int q = 0; q < kQueries; ++q) {
    CHECK(statuses[q].is_ok());
    engine::Workspace ws;
    std::vector<float> want(batches[q].batch_size);
    REQUIRE(model->forward(view_of(batches[q]), ws, want).is_ok());
    CHECK(scores[q] == want);  // one worker ran it whole: same kernels, same floats
  }
  CHECK(runner->load().queries == 0);
  std::vector<float> out(batches[0].batch_size);
  CHECK(runner
            ->submit({.model = model.get(),
                      .batch = view_of(batches[0]),
                      .scores = out,
                      .sub_batch = 4,
                      .workers = 1,
                      .done = [](Status) {}},
                     0)
            .code() == StatusCode::kUnavailable);
}

// A model that records how many forward passes ran at once. With expect_pair(true) the
// first pass of a run waits (up to 30 s) until a second one has started, so two workers
// that can run together are seen together however slow or loaded the machine: a
// rendezvous, not a sleep that hopes for overlap.
class Overlap final : public Model {
 public:
  explicit Overlap(engine::ModelSpec spec) : spec_(std::move(spec)) {}
  const engine::ModelSpec& spec() const override { return spec_; }
  engine::Isa isa() const override { return engine::Isa::kGeneric; }
  Status forward(const BatchView&, engine::Workspace&, std::span<float> scores) const override {
    const int now = ++running_;
    for (int seen = most_; now > seen && !most_.compare_exchange_weak(seen, now);) {
    }
    {
      std::lock_guard<std::mutex> lock(mu_);
      threads_.insert(std::this_thread::get_id());
    }
    if (pair_) {
      const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(30);
      while (most_.load() < 2 && std::chrono::steady_clock::now() < give_up) std::this_thread::yield();
    }
    std::fill(scores.begin(), scores.end(), 0.5f);
    --running_;
    return Status::ok();
  }
  std::vector<engine::TensorToWrite> tensors() const override { return {}; }
  int most() const { return most_.exchange(0); }
  void expect_pair(bool on) const { pair_ = on; }
  /// Distinct worker threads that ran a pass since the last call.
  size_t threads() const {
    std::lock_guard<std::mutex> lock(mu_);
    const size_t n = threads_.size();
    threads_.clear();
    return n;
  }

 private:
  engine::ModelSpec spec_;
  mutable std::atomic<bool> pair_{false};
  mutable std::mutex mu_;
  mutable std::set<std::thread::id> threads_;
  mutable std::atomic<int> running_{0};
  mutable std::atomic<int> most_{0};
};

TEST_CASE("parked workers take no sub-batches until woken") {
  HostDevice host;
  // Two workers even on a one-core device: parking is about workers, not cores.
  auto runner = std::move(CpuRunner::create(host.topology, host.device, 2).value());
  const engine::ModelSpec spec = golden_spec();
  const Overlap model(spec);
  const Batch batch = engine::random_batch(spec, 200, 5);
  // 200 one-item sub-batches on up to 2 workers: the most that ran at once.
  auto most_at_once = [&] {
    model.expect_pair(runner->active_workers() >= 2);
    std::vector<float> scores(batch.batch_size * spec.num_outputs());
    REQUIRE(runner->run(model, view_of(batch), 1, 2, scores).is_ok());
    return model.most();
  };
  CHECK(runner->active_workers() == 2);
  CHECK(most_at_once() == 2);
  CHECK(model.threads() == 2);
  runner->set_active_workers(1);
  CHECK(runner->active_workers() == 1);
  CHECK(most_at_once() == 1);
  CHECK(model.threads() == 1);  // the parked worker took none of the 200 sub-batches
  runner->set_active_workers(0);  // clamped: one worker always takes work
  CHECK(runner->active_workers() == 1);
  // One of two workers parked for at least the sleep below.
  const double parked0 = runner->parked_seconds();
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  CHECK(runner->parked_seconds() - parked0 >= 0.05);
  runner->set_active_workers(5);
  CHECK(runner->active_workers() == 2);
  const double parked1 = runner->parked_seconds();
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  CHECK(runner->parked_seconds() == parked1);  // nobody parked: it stands still
  CHECK(most_at_once() == 2);
}

// Where a test model's forward pass stops until the test lets it through: it counts what
// reached it and hands out permits (Gate and Stepper below).
class Turnstile {
 public:
  // Waits until `n` passes (or steps) have reached it in all.
  void wait_entered(int n) const {
    for (int seen = entered_.load(); seen < n; seen = entered_.load()) entered_.wait(seen);
  }
  // The same for at most `limit`: whether they did.
  bool wait_entered_for(int n, std::chrono::milliseconds limit) const {
    const auto give_up = std::chrono::steady_clock::now() + limit;
    while (entered_.load() < n) {
      if (std::chrono::steady_clock::now() > give_up) return false;
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    return true;
  }
  void release(int n) const { permits_.release(n); }

 protected:
  void pass() const {
    entered_.fetch_add(1);
    entered_.notify_all();
    permits_.acquire();
  }

 private:
  mutable std::atomic<int> entered_{0};
  mutable std::counting_semaphore<1024> permits_{0};
};

// A model whose every forward pass waits for a permit from the test: while the one worker
// of a runner is held inside it, the test queues queries, then releases the permits and
// reads the order in which the queries were answered. Deterministic: no sleeps.
class Gate final : public Model, public Turnstile {
 public:
  explicit Gate(engine::ModelSpec spec) : spec_(std::move(spec)) {}
  const engine::ModelSpec& spec() const override { return spec_; }
  engine::Isa isa() const override { return engine::Isa::kGeneric; }
  Status forward(const BatchView& batch, engine::Workspace&,
                 std::span<float> scores) const override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      sizes_.push_back(batch.batch_size);
    }
    pass();
    std::fill(scores.begin(), scores.end(), 0.5f);
    return Status::ok();
  }
  std::vector<engine::TensorToWrite> tensors() const override { return {}; }
  /// The batch size of every forward pass, in the order they entered.
  std::vector<uint32_t> sizes() const {
    std::lock_guard<std::mutex> lock(mu_);
    return sizes_;
  }

 private:
  engine::ModelSpec spec_;
  mutable std::mutex mu_;
  mutable std::vector<uint32_t> sizes_;
};

// Bounded waiting's fields of a request (Request::short_items, reserve, urgent_at).
struct Lanes {
  uint32_t short_items = UINT32_MAX;
  int reserve = 0;
  Clock::time_point urgent_at = Clock::time_point::max();
};

// Queries submitted to a runner (one worker unless asked) whose worker is held on a first
// query; the names in the order their callbacks ran.
struct Ordered {
  HostDevice host;
  engine::ModelSpec spec = golden_spec();
  Gate model{spec};
  std::vector<Batch> batches;
  std::vector<std::vector<float>> scores;
  std::mutex mu;
  std::condition_variable cv;
  std::vector<std::string> order;
  int submitted = 0;
  // Last, so it is destroyed (its worker joined) before anything its callbacks touch.
  std::unique_ptr<CpuRunner> runner;

  explicit Ordered(int workers = 1)
      : runner(std::move(CpuRunner::create(host.topology, host.device, workers).value())) {
    batches.reserve(128);
    scores.reserve(128);
  }
  void submit(const std::string& name, uint32_t items, uint32_t sub,
              std::optional<Clock::time_point> deadline, int workers = 1, Lanes lanes = {}) {
    batches.push_back(engine::random_batch(spec, items, batches.size()));
    scores.emplace_back(items * spec.num_outputs());
    ++submitted;
    REQUIRE(runner
                ->submit({.model = &model,
                          .batch = view_of(batches.back()),
                          .scores = scores.back(),
                          .sub_batch = sub,
                          .workers = workers,
                          .short_items = lanes.short_items,
                          .reserve = lanes.reserve,
                          .urgent_at = lanes.urgent_at,
                          .deadline = deadline,
                          .done =
                              [this, name](Status st) {
                                CHECK(st.is_ok());
                                std::lock_guard<std::mutex> lock(mu);
                                order.push_back(name);
                                cv.notify_all();
                              }})
                .is_ok());
  }
  // Lets every forward pass through and waits for every answer.
  std::vector<std::string> finish() {
    model.release(1024);
    std::unique_lock<std::mutex> lock(mu);
    cv.wait(lock, [&] { return static_cast<int>(order.size()) == submitted; });
    return order;
  }
};

TEST_CASE("the runner takes the earliest deadline first, equal deadlines stay in order") {
  Ordered o;
  const auto t0 = Clock::now();
  const auto ms = [](int n) { return std::chrono::milliseconds(n); };
  o.submit("hold", 1, 1, t0);  // the worker takes it and waits inside
  o.model.wait_entered(1);
  o.submit("loose", 1, 1, t0 + ms(100));
  o.submit("tight", 1, 1, t0 + ms(10));  // later, tighter: overtakes "loose"
  o.submit("tight-2", 1, 1, t0 + ms(10));  // same deadline as "tight": after it
  o.submit("mid", 1, 1, t0 + ms(50));
  o.submit("mid-2", 1, 1, t0 + ms(50));
  o.submit("mid-3", 1, 1, t0 + ms(50));
  CHECK(o.runner->load().queries == 7);
  CHECK(o.finish() ==
        std::vector<std::string>{"hold", "tight", "tight-2", "mid", "mid-2", "mid-3", "loose"});
}

TEST_CASE("without deadlines (or with each query's arrival as its deadline) the runner is FIFO") {
  Ordered o;
  o.submit("hold", 1, 1, std::nullopt);
  o.model.wait_entered(1);
  for (const char* name : {"a", "b", "c", "d"}) o.submit(name, 1, 1, std::nullopt);
  // Due when submitted: ahead of a query due later, behind none submitted before it.
  o.submit("later", 1, 1, Clock::now() + std::chrono::hours(1));
  o.submit("e", 1, 1, std::nullopt);
  CHECK(o.finish() == std::vector<std::string>{"hold", "a", "b", "c", "d", "e", "later"});
}

TEST_CASE("a tighter query overtakes another between its sub-batches") {
  Ordered o;
  const auto t0 = Clock::now();
  // Three one-item sub-batches on the one worker; the first is running when "tight" comes.
  o.submit("long", 3, 1, t0 + std::chrono::milliseconds(100));
  o.model.wait_entered(1);
  o.submit("tight", 1, 1, t0 + std::chrono::milliseconds(10));
  CHECK(o.finish() == std::vector<std::string>{"tight", "long"});
}

// Calls run_here until the runner's idle worker has gone to sleep and it runs (true), or
// for 30 s (false): a worker just created may not be waiting yet.
bool run_here_when_idle(CpuRunner& runner, Request& request) {
  const auto give_up = Clock::now() + std::chrono::seconds(30);
  while (!runner.run_here(request)) {
    if (Clock::now() > give_up) return false;
    std::this_thread::yield();
  }
  return true;
}

// Runs a one-piece query of `o`'s model with run_here on a thread of its own, once a
// worker is idle: *ran says whether it did, *answered_on which thread answered it.
std::thread run_here_on_a_thread(Ordered& o, const Batch& batch, std::span<float> scores,
                                 bool* ran, std::thread::id* answered_on) {
  return std::thread([&o, &batch, scores, ran, answered_on] {
    Request r{.model = &o.model,
              .batch = view_of(batch),
              .scores = scores,
              .sub_batch = batch.batch_size,
              .workers = 1,
              .done = [answered_on](Status st) {
                CHECK(st.is_ok());
                *answered_on = std::this_thread::get_id();
              }};
    *ran = run_here_when_idle(*o.runner, r);
    if (!*ran) o.model.release(1);  // (so the test fails instead of waiting forever)
  });
}

TEST_CASE("run_here: a one-piece query runs on the calling thread in an idle worker's place") {
  HostDevice host;
  auto runner = std::move(CpuRunner::create(host.topology, host.device, 1).value());
  const engine::ModelSpec spec = golden_spec();
  auto model = std::move(runner->load(spec, {}).value());
  const Batch batch = engine::random_batch(spec, 7, 3);
  std::vector<float> scores(batch.batch_size * spec.num_outputs());
  std::thread::id answered_on;
  Status answer = internal_error("not answered");
  Clock::time_point started;
  Request r{.model = model.get(),
            .batch = view_of(batch),
            .scores = scores,
            .sub_batch = batch.batch_size,
            .workers = 1,
            .done =
                [&](Status st) {
                  answered_on = std::this_thread::get_id();
                  answer = st;
                },
            .started = &started};
  const auto before = Clock::now();
  REQUIRE(run_here_when_idle(*runner, r));
  CHECK(answered_on == std::this_thread::get_id());  // answered before it returned, here
  CHECK(answer.is_ok());
  CHECK(started >= before);
  CHECK(scores == whole(*model, batch));  // the same kernels as a worker's: the same floats
  CHECK(runner->ran_here() == 1);
  CHECK(runner->load().queries == 0);
  CHECK(runner->load().busy_workers == 0);
  CHECK(runner->busy_seconds() > 0);  // its pass counts as its device's busy time

  // Declined, the request left as it was for submit(): two pieces, a full queue, a
  // malformed request, an empty one.
  bool called = false;
  r.done = [&](Status) { called = true; };
  r.sub_batch = 3;
  CHECK_FALSE(runner->run_here(r));
  r.sub_batch = batch.batch_size;
  CHECK_FALSE(runner->run_here(r, 0));
  r.workers = 2;
  CHECK_FALSE(runner->run_here(r));
  r.workers = 1;
  CHECK(runner->ran_here() == 1);
  CHECK(r.done);
  CHECK_FALSE(called);
  // The worker whose place it took serves as before.
  std::vector<float> again(scores.size());
  CHECK(runner->run(*model, view_of(batch), 2, 1, again).is_ok());
  CHECK(again == scores);
}

TEST_CASE("run_here: the lent worker takes no work meanwhile, and what was queued runs after") {
  Ordered o;  // one worker, the Gate model: its passes wait for the test's permits
  const Batch batch = engine::random_batch(o.spec, 2, 99);
  std::vector<float> scores(batch.batch_size * o.spec.num_outputs());
  std::thread::id answered_on;
  bool ran = false;
  std::thread caller = run_here_on_a_thread(o, batch, scores, &ran, &answered_on);
  const std::thread::id caller_id = caller.get_id();
  o.model.wait_entered(1);  // the caller is inside its pass, on the worker's workspace
  CHECK(o.runner->load().busy_workers == 1);
  {
    // No worker is idle now: another caller is declined.
    std::vector<float> other(scores.size());
    Request r{.model = &o.model,
              .batch = view_of(batch),
              .scores = other,
              .sub_batch = batch.batch_size,
              .workers = 1,
              .done = [](Status) {}};
    CHECK_FALSE(o.runner->run_here(r));
  }
  o.submit("queued", 3, 3, std::nullopt);  // waits: the one worker is lent
  CHECK(o.runner->load().queries == 2);
  o.model.release(1);  // the caller's pass ends
  caller.join();
  CHECK(ran);
  CHECK(answered_on == caller_id);
  // Woken when its state came back, the worker runs what was queued meanwhile.
  CHECK(o.finish() == std::vector<std::string>{"queued"});
  CHECK(o.model.sizes() == std::vector<uint32_t>{2, 3});
  CHECK(o.runner->ran_here() == 1);
}

TEST_CASE("run_here: while one worker is lent, the others take what is queued") {
  Ordered o(2);
  const Batch batch = engine::random_batch(o.spec, 2, 99);
  std::vector<float> scores(batch.batch_size * o.spec.num_outputs());
  bool ran = false;
  std::thread::id answered_on;
  std::thread caller = run_here_on_a_thread(o, batch, scores, &ran, &answered_on);
  o.model.wait_entered(1);
  o.submit("queued", 3, 3, std::nullopt);
  // The other worker is woken for it (not the lent one, which would sleep again) and runs
  // it while the caller's pass is still held.
  CHECK(o.model.wait_entered_for(2, std::chrono::seconds(10)));
  // Both passes may go on (one permit could go to either: the caller's would then wait).
  o.model.release(2);
  caller.join();
  CHECK(ran);
  CHECK(o.finish() == std::vector<std::string>{"queued"});
}

TEST_CASE("bounded waiting: a reserved worker runs only short pieces, the other whole sub-batches") {
  const auto t0 = Clock::now();
  for (const int reserve : {0, 1}) {
    CAPTURE(reserve);
    Ordered o(2);
    // 12 items in sub-batches of 4, pieces over 2 items long, on up to both workers.
    o.submit("long", 12, 4, t0 + std::chrono::milliseconds(100), 2,
             {.short_items = 2, .reserve = reserve});
    o.model.wait_entered(2);
    std::vector<uint32_t> first = o.model.sizes();
    std::sort(first.begin(), first.end());
    // With one reserved, the second worker may take only a short piece while the first runs
    // a long one; without, both take a sub-batch.
    CHECK(first == (reserve == 1 ? std::vector<uint32_t>{2, 4} : std::vector<uint32_t>{4, 4}));
    CHECK(o.finish() == std::vector<std::string>{"long"});
    uint32_t items = 0;
    for (uint32_t n : o.model.sizes()) items += n;
    CHECK(items == 12);
  }
}

TEST_CASE("bounded waiting: a lane of two of four workers leaves two long lanes (core/pieces.h)") {
  // The rule the runner and the simulator share, for a lane sized above one
  // (policies::BoundedWait sizes it from the tight models' rates): sub-batches of 8 items
  // are long beyond 2.
  const PieceQuery q{.left = 64, .sub_batch = 8, .short_items = 2, .reserve = 2};
  bool is_long = false;
  for (int long_busy = 0; long_busy < 2; ++long_busy) {
    CHECK(next_piece(q, long_busy, 4, &is_long) == 8);
    CHECK(is_long);
  }
  // Two long lanes taken: the lane's workers take short pieces only...
  CHECK(next_piece(q, 2, 4, &is_long) == 2);
  CHECK_FALSE(is_long);
  CHECK(next_piece(q, 3, 4, &is_long) == 2);
  // ...unless the query is urgent.
  PieceQuery urgent = q;
  urgent.urgent = true;
  CHECK(next_piece(urgent, 2, 4, &is_long) == 8);
  CHECK(is_long);
  // A lane as large as the awake workers still leaves one long lane.
  PieceQuery all = q;
  all.reserve = 4;
  CHECK(next_piece(all, 0, 4, &is_long) == 8);
  CHECK(next_piece(all, 1, 4, &is_long) == 2);
}

TEST_CASE("bounded waiting: a query with no short piece leaves the reserved worker to others") {
  Ordered o(2);
  const auto t0 = Clock::now();
  const auto ms = [](int n) { return std::chrono::milliseconds(n); };
  // Sub-batches of 4, none short: the first worker takes one, the reserved one may not.
  o.submit("long", 8, 4, t0 + ms(100), 2, {.short_items = 0, .reserve = 1});
  o.model.wait_entered(1);
  // A later-due query of one item: the second worker takes it, passing over "long".
  o.submit("other", 1, 1, t0 + ms(200));
  o.model.wait_entered(2);
  CHECK(o.model.sizes() == std::vector<uint32_t>{4, 1});
  // An urgent one (its urgent_at passed) may run long on the last worker: once one of the
  // two running passes ends, the freed worker takes the earliest-due query it may, "long"
  // (its own long lane free again) or "urgent"; either way a 4-item piece.
  o.submit("urgent", 4, 4, t0 + ms(300), 1, {.short_items = 0, .reserve = 1, .urgent_at = t0});
  o.model.release(1);
  o.model.wait_entered(3);
  CHECK(o.model.sizes()[2] == 4);
  o.finish();
}

TEST_CASE("bounded waiting: a worker waits for a query's urgent_at, then takes it") {
  Ordered o(2);
  const auto t0 = Clock::now();
  o.submit("long", 8, 4, t0 + std::chrono::milliseconds(1000), 2,
           {.short_items = 0, .reserve = 1});
  o.model.wait_entered(1);
  const auto urgent = Clock::now() + std::chrono::milliseconds(30);
  // Nothing else to do: the second worker sleeps until "late" turns urgent, and no sooner.
  o.submit("late", 4, 4, t0 + std::chrono::milliseconds(2000), 1,
           {.short_items = 0, .reserve = 1, .urgent_at = urgent});
  o.model.wait_entered(2);
  CHECK(Clock::now() >= urgent);
  CHECK(o.model.sizes() == std::vector<uint32_t>{4, 4});
  o.finish();
}

TEST_CASE("bounded waiting: a free worker looks at kMaxQueriesLooked queued queries at most") {
  const auto t0 = Clock::now();
  const auto ms = [](int n) { return std::chrono::milliseconds(n); };
  for (const size_t blocked : {kMaxQueriesLooked - 2, kMaxQueriesLooked - 1}) {
    CAPTURE(blocked);
    Ordered o(2);
    // "long" holds the one long lane (reserve 1 keeps the other worker for short pieces).
    o.submit("long", 8, 4, t0 + ms(100), 2, {.short_items = 0, .reserve = 1});
    o.model.wait_entered(1);
    // Queries due before "other" of which the free worker may take no piece.
    for (size_t i = 0; i < blocked; ++i) {
      o.submit("blocked", 4, 4, t0 + ms(200), 1, {.short_items = 0, .reserve = 1});
    }
    o.submit("other", 1, 1, t0 + ms(300));
    if (blocked + 2 <= kMaxQueriesLooked) {
      // "long" (its second sub-batch), the blocked ones, then "other": all looked at.
      o.model.wait_entered(2);
      CHECK(o.model.sizes() == std::vector<uint32_t>{4, 1});
    } else {
      // "other" is one past the look: it waits for the long piece to end.
      std::this_thread::sleep_for(ms(50));
      CHECK(o.model.sizes() == std::vector<uint32_t>{4});
    }
    o.finish();
  }
}

// A model whose forward pass is `steps` steps, each waiting for a permit from the test,
// with a yield point between them (as the engine's models offer one between tables and
// layers): the test sees exactly where a worker interrupts a pass.
class Stepper final : public Model, public Turnstile {
 public:
  Stepper(engine::ModelSpec spec, int steps) : spec_(std::move(spec)), steps_(steps) {}
  const engine::ModelSpec& spec() const override { return spec_; }
  engine::Isa isa() const override { return engine::Isa::kGeneric; }
  Status forward(const BatchView& batch, engine::Workspace& ws,
                 std::span<float> scores) const override {
    for (int step = 0; step < steps_; ++step) {
      {
        std::lock_guard<std::mutex> lock(mu_);
        log_.push_back(std::to_string(batch.batch_size) + "." + std::to_string(step));
      }
      pass();
      if (step + 1 < steps_) ws.yield_point();
    }
    std::fill(scores.begin(), scores.end(), 0.5f);
    return Status::ok();
  }
  std::vector<engine::TensorToWrite> tensors() const override { return {}; }
  // "items.step" for every step begun, in order: which pass ran where.
  std::vector<std::string> log() const {
    std::lock_guard<std::mutex> lock(mu_);
    return log_;
  }

 private:
  engine::ModelSpec spec_;
  int steps_;
  mutable std::mutex mu_;
  mutable std::vector<std::string> log_;
};

// A one-worker runner serving Stepper passes; each query is named by its item count.
struct Stepped {
  HostDevice host;
  engine::ModelSpec spec = golden_spec();
  Stepper model{spec, 2};
  std::vector<Batch> batches;
  std::vector<std::vector<float>> scores;
  std::mutex mu;
  std::condition_variable cv;
  std::vector<uint32_t> answered;  // item counts, in the order answered
  std::vector<double> suspended;   // each query's Request::suspended_ms, in submission order
  int submitted = 0;
  // Last, so it is destroyed (its worker joined) before anything its callbacks touch.
  std::unique_ptr<CpuRunner> runner =
      std::move(CpuRunner::create(host.topology, host.device, 1).value());

  explicit Stepped(bool preemption) {
    batches.reserve(16);
    scores.reserve(16);
    suspended.reserve(16);
    runner->set_preemption(preemption);
  }
  void submit(uint32_t items, std::optional<Clock::time_point> deadline) {
    batches.push_back(engine::random_batch(spec, items, items));
    scores.emplace_back(items * spec.num_outputs());
    suspended.push_back(-1);
    ++submitted;
    REQUIRE(runner
                ->submit({.model = &model,
                          .batch = view_of(batches.back()),
                          .scores = scores.back(),
                          .deadline = deadline,
                          .done =
                              [this, items](Status st) {
                                CHECK(st.is_ok());
                                std::lock_guard<std::mutex> lock(mu);
                                answered.push_back(items);
                                cv.notify_all();
                              },
                          .suspended_ms = &suspended.back()})
                .is_ok());
  }
  // Lets every step through and waits for every answer.
  std::vector<uint32_t> finish() {
    model.release(1024);
    std::unique_lock<std::mutex> lock(mu);
    cv.wait(lock, [&] { return static_cast<int>(answered.size()) == submitted; });
    return answered;
  }
};

TEST_CASE("preemption: a tighter query runs at the running pass's next yield point, and the "
          "pass then resumes where it stopped") {
  const auto t0 = Clock::now();
  const auto ms = [](int n) { return std::chrono::milliseconds(n); };
  for (const bool on : {false, true}) {
    CAPTURE(on);
    Stepped s(on);
    s.submit(4, t0 + ms(100));  // the long pass: its first step is running
    s.model.wait_entered(1);
    s.submit(1, t0 + ms(10));  // due sooner
    s.model.release(1);        // the long pass reaches its yield point
    s.model.wait_entered(2);
    // Preemptive: the tight query begins at that point, one step into the long pass;
    // without, it waits for the whole pass.
    CHECK(s.model.log() == (on ? std::vector<std::string>{"4.0", "1.0"}
                               : std::vector<std::string>{"4.0", "4.1"}));
    CHECK(s.finish() == (on ? std::vector<uint32_t>{1, 4} : std::vector<uint32_t>{4, 1}));
    CHECK(s.model.log() == (on ? std::vector<std::string>{"4.0", "1.0", "1.1", "4.1"}
                               : std::vector<std::string>{"4.0", "4.1", "1.0", "1.1"}));
    CHECK(s.runner->preemptions() == (on ? 1u : 0u));
    CHECK(s.runner->load().busy_workers == 0);
    // The long query reports the time it was suspended (what the daemon does not learn as
    // its own service); the tight one was never suspended.
    if (on) {
      CHECK(s.suspended[0] > 0);
    } else {
      CHECK(s.suspended[0] == 0);
    }
    CHECK(s.suspended[1] == 0);
  }
}

TEST_CASE("preemption: a query due later, or queries with no deadline, never interrupt") {
  const auto t0 = Clock::now();
  for (const bool deadlines : {false, true}) {
    CAPTURE(deadlines);
    Stepped s(true);
    // With no deadline each is due on arrival: the first is due soonest.
    s.submit(4, deadlines ? std::optional(t0 + std::chrono::milliseconds(10)) : std::nullopt);
    s.model.wait_entered(1);
    s.submit(1, deadlines ? std::optional(t0 + std::chrono::milliseconds(100)) : std::nullopt);
    CHECK(s.finish() == std::vector<uint32_t>{4, 1});
    CHECK(s.model.log() == std::vector<std::string>{"4.0", "4.1", "1.0", "1.1"});
    CHECK(s.runner->preemptions() == 0);
  }
}

TEST_CASE("preemption: passes nest kMaxNesting deep on a worker, and no deeper") {
  static_assert(CpuRunner::kMaxNesting == 2);
  const auto t0 = Clock::now();
  const auto ms = [](int n) { return std::chrono::milliseconds(n); };
  Stepped s(true);
  s.submit(4, t0 + ms(100));
  s.model.wait_entered(1);
  s.submit(3, t0 + ms(50));  // interrupts "4" at its yield point
  s.model.release(1);
  s.model.wait_entered(2);
  s.submit(2, t0 + ms(10));  // interrupts "3": two passes suspended
  s.model.release(1);
  s.model.wait_entered(3);
  s.submit(1, t0 + ms(1));  // due soonest, but "2" is as deep as a pass may go: it waits
  CHECK(s.finish() == std::vector<uint32_t>{2, 1, 3, 4});
  // "1" runs at "3"'s yield point once "2" is done, on the level "2" used.
  CHECK(s.model.log() ==
        std::vector<std::string>{"4.0", "3.0", "2.0", "2.1", "1.0", "1.1", "3.1", "4.1"});
  CHECK(s.runner->preemptions() == 3);
}

TEST_CASE("preemption with the zoo's models: every interrupted and interrupting query scores "
          "exactly as alone") {
  HostDevice host;
  auto runner = std::move(CpuRunner::create(host.topology, host.device, 1).value());
  runner->set_preemption(true);
  const auto spec_of = [](const std::string& name) {
    return engine::load_model_spec(std::string(RECSCHED_SOURCE_DIR) + "/tests/fixtures/golden/" +
                                   name + ".model.json")
        .value();
  };
  const engine::ModelSpec long_spec = spec_of("dien"), tight_spec = spec_of("ncf");
  const auto long_model = std::move(engine::load_model(long_spec, {}).value());
  const auto tight_model = std::move(engine::load_model(tight_spec, {}).value());
  const Batch long_batch = engine::random_batch(long_spec, 2048, 1);
  const Batch tight_batch = engine::random_batch(tight_spec, 3, 2);
  // Alone, as a worker runs a pass (its workspace yields, so its longest steps are cut
  // into blocks), with nothing to interrupt it.
  struct Pass final : engine::YieldPoint {
    void at_yield_point() override {}
  } pass;
  auto alone = [&](const Model& model, const Batch& batch) {
    engine::Workspace ws;
    ws.set_yield(&pass);
    std::vector<float> out(batch.batch_size * model.spec().num_outputs());
    REQUIRE(model.forward(view_of(batch), ws, out).is_ok());
    return out;
  };
  const std::vector<float> long_alone = alone(*long_model, long_batch);
  const std::vector<float> tight_alone = alone(*tight_model, tight_batch);
  // Tight queries keep arriving while the long pass runs, until one has interrupted it (a
  // slow machine may finish a pass before the first arrives: then it tries again).
  for (int attempt = 0; attempt < 20 && runner->preemptions() == 0; ++attempt) {
    std::vector<float> long_scores(long_alone.size());
    std::atomic<bool> long_done{false};
    REQUIRE(runner
                ->submit({.model = long_model.get(),
                          .batch = view_of(long_batch),
                          .scores = long_scores,
                          .deadline = Clock::now() + std::chrono::seconds(10),
                          .done =
                              [&](Status st) {
                                CHECK(st.is_ok());
                                long_done = true;
                              }})
                .is_ok());
    std::vector<std::vector<float>> tight_scores;
    while (!long_done) {
      std::vector<float> out(tight_alone.size());
      REQUIRE(runner
                  ->run({.model = tight_model.get(),
                         .batch = view_of(tight_batch),
                         .scores = out,
                         .deadline = Clock::now()})
                  .is_ok());
      tight_scores.push_back(std::move(out));
    }
    CHECK(long_scores == long_alone);
    for (const std::vector<float>& out : tight_scores) CHECK(out == tight_alone);
  }
  CHECK(runner->preemptions() > 0);
}

}  // namespace
}  // namespace recsched::exec
