#include "sim/simulator.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <memory>
#include <queue>
#include <set>
#include <sstream>

#include "core/merge.h"
#include "core/pieces.h"
#include "policies/registry.h"

namespace recsched::sim {
namespace {

// Uniform in (0, 1) from 53 random bits.
double uniform(std::mt19937_64& rng) { return ((rng() >> 11) + 0.5) * 0x1.0p-53; }

// Standard normal by Box-Muller (one of the pair; simple and portable).
double normal(std::mt19937_64& rng) {
  const double u1 = uniform(rng), u2 = uniform(rng);
  return std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2);
}

uint32_t draw_size(const SizeDistribution& d, std::mt19937_64& rng) {
  double x = d.fixed;
  switch (d.kind) {
    case SizeDistribution::Kind::kLognormal:
      x = std::exp(d.mu + d.sigma * normal(rng));
      break;
    case SizeDistribution::Kind::kNormal:
      x = d.mu + d.sigma * normal(rng);
      break;
    case SizeDistribution::Kind::kFixed:
      break;
  }
  return static_cast<uint32_t>(std::clamp(std::round(x), 1.0, double(std::max(1u, d.cap))));
}

double percentile(std::vector<double>& v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const size_t rank = static_cast<size_t>(std::ceil(p / 100.0 * v.size()));
  return v[std::clamp<size_t>(rank, 1, v.size()) - 1];
}

policies::Clock::time_point at(double ms) {
  return policies::Clock::time_point(std::chrono::duration_cast<policies::Clock::duration>(
      std::chrono::duration<double, std::milli>(ms)));
}

// A query admitted to a device: the runner's job.
struct Job {
  size_t query = 0;
  policies::Decision decision;
  uint32_t items = 0, sub = 1, taken = 0, finished = 0;
  uint32_t short_items = UINT32_MAX;  // bounded waiting (exec::Request::short_items)
  int reserve = 0;
  double urgent_ms = std::numeric_limits<double>::infinity();
  int cap = 1, running = 0;
  double key_ms = 0;  // its place in the queue: deadline (or arrival), then query index
};

// CpuRunner's order: earliest key first, then arrival.
bool earlier(const Job& a, const Job& b) {
  return a.key_ms != b.key_ms ? a.key_ms < b.key_ms : a.query < b.query;
}
struct EarlierKey {
  bool operator()(const std::shared_ptr<Job>& a, const std::shared_ptr<Job>& b) const {
    return earlier(*a, *b);
  }
};

// Options::queue other than kPolicy: the policy's placements, with that queue order, so
// that the dispatcher's backlog accounting and the runner agree on it.
class OrderOverride final : public policies::Policy {
 public:
  OrderOverride(std::unique_ptr<policies::Policy> inner, policies::QueueOrder order)
      : inner_(std::move(inner)), order_(order) {}
  std::string_view name() const override { return inner_->name(); }
  Result<policies::Placement> place(const policies::QueryInfo& q,
                                    const policies::ClusterView& view) override {
    Result<policies::Placement> p = inner_->place(q, view);
    if (p) p->order = order_;
    return p;
  }
  void observe(const policies::Completion& done) override { inner_->observe(done); }
  nlohmann::json params() const override { return inner_->params(); }
  Status configure(const nlohmann::json& params) override { return inner_->configure(params); }

 private:
  std::unique_ptr<policies::Policy> inner_;
  policies::QueueOrder order_;
};

enum class WorkerState { kIdle, kBusy, kParked };

// A piece a worker took (CpuRunner's Taken).
struct Taken {
  std::shared_ptr<Job> job;
  uint32_t count = 0;
  bool is_long = false;
  // A GPU pass: the queries merged into `job`'s (Options::gpu_batching), each run whole.
  std::vector<std::shared_ptr<Job>> merged;
};

// A piece interrupted at a yield point (Options::preemption): what is left of it.
struct Suspended {
  Taken piece;
  double remaining_ms = 0;
  double busy_w = 0;
};

struct Worker {
  WorkerState state = WorkerState::kIdle;
  double since_ms = 0;
  double busy_w = 0;  // power while this sub-batch runs
  std::shared_ptr<Job> job;
  uint32_t count = 0;  // items in the running sub-batch
  bool is_long = false;  // a long piece (exec::Request::short_items)
  std::vector<std::shared_ptr<Job>> merged;  // a GPU pass's other queries (Taken::merged)
  double started_ms = 0, end_ms = 0;  // of the running piece (since it last resumed)
  uint64_t gen = 0;  // the running piece's end event carries it: older ones are stale
  bool preempt_pending = false;  // a preemption event is queued for this worker
  std::vector<Suspended> suspended;  // innermost last
  double host_until_ms = 0;  // an idle worker's core runs host work until then
};

struct SimDevice {
  Device d;
  // Jobs with a sub-batch left and fewer than their cap running, in queue order.
  std::set<std::shared_ptr<Job>, EarlierKey> ready;
  size_t in_flight = 0;  // admitted, not finished
  std::vector<Worker> workers;
  int active = 0;  // awake workers
  int long_busy = 0;  // workers running a long piece
  double next_wake_ms = std::numeric_limits<double>::infinity();  // a wake event pending
  double energy_j = 0;
  uint64_t queries = 0;
};

struct Event {
  double t = 0;
  uint64_t seq = 0;
  size_t device = 0;
  size_t worker = 0;
  bool wake = false;  // no piece ends: a query left for a long lane turns urgent
  bool preempt = false;  // the worker's running piece reaches a yield point
  uint64_t gen = 0;      // Worker::gen when pushed
  bool operator>(const Event& o) const { return t != o.t ? t > o.t : seq > o.seq; }
};

class Simulation {
 public:
  Simulation(const std::vector<Query>& trace, const std::vector<Device>& devices,
             const ProfileTable& profiles, const std::vector<ModelTarget>& targets,
             std::unique_ptr<policies::Policy> policy, const Options& options)
      : trace_(trace), profiles_(profiles), options_(options), rng_(options.seed),
        outside_rng_(options.seed ^ 0x6f75747369646521ULL) {
    std::vector<policies::DeviceInfo> infos;
    for (const Device& d : devices) {
      if (host_device_ == kNoDevice && d.info.kind == policies::DeviceKind::kCpu) {
        host_device_ = devices_.size();
      }
      SimDevice s;
      s.d = d;
      s.workers.resize(std::max(1, d.info.workers));
      s.active = static_cast<int>(s.workers.size());
      devices_.push_back(std::move(s));
      infos.push_back(d.info);
    }
    if (options.queue != Options::Queue::kPolicy) {
      policy = std::make_unique<OrderOverride>(std::move(policy),
                                               options.queue == Options::Queue::kDeadline
                                                   ? policies::QueueOrder::kDeadline
                                                   : policies::QueueOrder::kArrival);
    }
    dispatcher_ = std::make_unique<policies::Dispatcher>(std::move(infos), std::move(policy),
                                                         options.admission);
    dispatcher_->set_bounded_wait({.on = options.wait_bound_fraction > 0,
                                   .fraction = options.wait_bound_fraction,
                                   .preemption = options.preemption,
                                   .lane_workers = options.lane_workers});
    dispatcher_->set_gpu_merging(options.gpu_batching, options.gpu_merge_max_items);
    for (const ModelTarget& t : targets) {
      ModelState& m = models_[t.model];
      m.view = {t.model, t.sla_ms, 0.0};
      if (auto o = options.outside_ms.find(t.model); o != options.outside_ms.end()) {
        m.outside = o->second;
      }
    }
  }

  Report run() {
    const double span = trace_.empty() ? 0 : trace_.back().arrival_ms;
    warmup_ms_ = span * options_.warmup_fraction;
    size_t next = 0;
    while (next < trace_.size() || !events_.empty()) {
      if (next < trace_.size() && (events_.empty() || trace_[next].arrival_ms <= events_.top().t)) {
        arrive(next++);
      } else {
        const Event e = events_.top();
        events_.pop();
        finish(e);
      }
    }
    return report(span);
  }

 private:
  struct ModelState {
    policies::ModelView view;
    std::vector<double> latencies;  // after warm-up, as the client sees them (outside_ms)
    std::vector<double> recent;     // the last 64, for the view's recent p95 (the daemon's)
    OutsideLatency outside;         // Options::outside_ms
    uint64_t offered = 0, rejected = 0;
    uint64_t done_in_span = 0;  // completed while the trace ran, after the warm-up
  };

  double worker_w(const SimDevice& s, WorkerState st, double busy_w) const {
    switch (st) {
      case WorkerState::kBusy:
        return busy_w;
      case WorkerState::kIdle:
        return s.d.info.idle_w / s.workers.size();
      case WorkerState::kParked:
        return s.d.parked_w_per_worker;
    }
    return 0;
  }

  void set_state(SimDevice& s, Worker& w, WorkerState st, double now) {
    s.energy_j += worker_w(s, w.state, w.busy_w) * (now - w.since_ms) / 1e3;
    w.state = st;
    w.since_ms = now;
  }

  // Parks or wakes idle workers to match s.active (busy ones finish first).
  void apply_active(SimDevice& s, double now) {
    for (size_t i = 0; i < s.workers.size(); ++i) {
      Worker& w = s.workers[i];
      if (w.state == WorkerState::kBusy) continue;
      const WorkerState want =
          static_cast<int>(i) < s.active ? WorkerState::kIdle : WorkerState::kParked;
      if (w.state != want) set_state(s, w, want, now);
    }
  }

  // Options::host_cpu_ms: `ms` of host work on the first CPU device's cores at `now`.
  void host_work(double ms, double now) {
    if (!(ms > 0) || host_device_ >= devices_.size()) return;
    SimDevice& s = devices_[host_device_];
    // A parked core runs it for free; an idle one is taken for that long.
    size_t idle = s.workers.size();
    for (size_t i = 0; i < s.workers.size(); ++i) {
      const Worker& w = s.workers[i];
      if (w.state == WorkerState::kParked) return;
      if (w.state == WorkerState::kIdle && w.host_until_ms <= now && idle == s.workers.size()) {
        idle = i;
      }
    }
    if (idle < s.workers.size()) {
      s.workers[idle].host_until_ms = now + ms;
      events_.push({now + ms, seq_++, host_device_, 0, true});  // then start_work again
      return;
    }
    // Every core busy: the kernel runs it in one worker's place, whose piece ends later.
    std::vector<size_t> busy;
    for (size_t i = 0; i < s.workers.size(); ++i) {
      if (s.workers[i].state == WorkerState::kBusy) busy.push_back(i);
    }
    if (busy.empty()) {
      // Every core already runs host work: this waits for the first to be done.
      Worker* first = &s.workers[0];
      for (Worker& w : s.workers) {
        if (w.host_until_ms < first->host_until_ms) first = &w;
      }
      first->host_until_ms += ms;
      events_.push({first->host_until_ms, seq_++, host_device_, 0, true});
      return;
    }
    const size_t i = busy[rng_() % busy.size()];
    Worker& w = s.workers[i];
    w.end_ms += ms;
    events_.push({w.end_ms, seq_++, host_device_, i, false, false, ++w.gen});
  }

  void arrive(size_t index) {
    const Query& q = trace_[index];
    if (auto h = options_.host_cpu_ms.find(q.model); h != options_.host_cpu_ms.end()) {
      host_work(h->second, q.arrival_ms);
    }
    ModelState& m = models_.at(q.model);
    const bool counted = q.arrival_ms >= warmup_ms_;
    if (counted) ++m.offered;
    loads_.clear();
    for (const SimDevice& s : devices_) {
      int busy = 0;
      for (const Worker& w : s.workers) busy += w.state == WorkerState::kBusy;
      loads_.push_back(
          {busy, s.in_flight, s.active < static_cast<int>(s.workers.size()) ? s.active : 0});
    }
    const policies::QueryInfo info{index + 1, &m.view, q.items, m.view.sla_ms};
    policies::Decision decision = dispatcher_->dispatch(info, loads_, profiles_, at(q.arrival_ms));
    if (!decision.admitted()) {
      if (counted) ++m.rejected;
      return;
    }
    SimDevice& s = devices_[decision.device_index];
    if (options_.max_queue > 0 && s.in_flight >= options_.max_queue) {
      // The runner refuses it (recschedd: 503): its backlog is settled at once.
      dispatcher_->complete(decision, {index + 1, q.model, q.items, decision.placement, 0, false});
      if (counted) ++m.rejected;
      return;
    }
    ++s.queries;
    if (decision.placement.active_workers > 0) {
      s.active = std::min<int>(decision.placement.active_workers, s.workers.size());
      apply_active(s, q.arrival_ms);
    }
    auto job = std::make_shared<Job>();
    job->query = index;
    job->items = q.items;
    job->sub = std::max<uint32_t>(1, decision.placement.sub_batch);
    job->cap = std::max(1, decision.placement.workers);
    job->short_items = decision.short_items;
    job->reserve = decision.reserve;
    if (decision.urgent_at != policies::Clock::time_point::max()) {
      job->urgent_ms = std::chrono::duration<double, std::milli>(
                           decision.urgent_at.time_since_epoch()).count();
    }
    // Every device serves in the placement's order (GPUs too: exec::WholeQueryRunner), and a
    // GPU runs each query whole, one stream at a time.
    const bool by_deadline = decision.placement.order == policies::QueueOrder::kDeadline;
    job->key_ms = q.arrival_ms + (by_deadline ? m.view.sla_ms : 0.0);
    if (s.d.info.kind == policies::DeviceKind::kGpu) {
      job->sub = q.items;
      job->cap = 1;
    }
    job->decision = std::move(decision);
    s.ready.insert(std::move(job));
    ++s.in_flight;
    start_work(job_device(s), q.arrival_ms);
  }

  size_t job_device(const SimDevice& s) const { return &s - devices_.data(); }

  // The runner's rule (core/pieces.h): the sub-batch, or a short piece while the long
  // lanes are full, or 0.
  static uint32_t piece(const Job& job, int long_busy, int awake, double now, bool* is_long) {
    return next_piece({job.items - job.taken, job.sub, job.short_items, job.reserve,
                       now >= job.urgent_ms},
                      long_busy, awake, is_long);
  }

  // The first query in queue order (only those due before `before`, when given) with items
  // left, fewer than its cap running and a piece this worker may take now (CpuRunner's
  // take_locked); a nested piece (run at a yield point) leaves the long lanes as they are.
  bool take(SimDevice& s, double now, const Job* before, bool nested, Taken* out,
            double* wake) {
    size_t looked = 0;
    for (const std::shared_ptr<Job>& j : s.ready) {
      if (++looked > kMaxQueriesLooked) break;
      if (before != nullptr && !earlier(*j, *before)) break;
      bool is_long = false;
      const uint32_t count = piece(*j, nested ? 0 : s.long_busy, s.active, now, &is_long);
      if (count > 0) {
        *out = {j, count, is_long && !nested, {}};
        j->taken += count;
        ++j->running;
        if (out->is_long) ++s.long_busy;
        if (j->taken == j->items || j->running == j->cap) s.ready.erase(j);
        return true;
      }
      if (wake != nullptr) *wake = std::min(*wake, j->urgent_ms);
    }
    return false;
  }

  // Starts `p` on worker i of `device` now: its service time from the profile, with noise.
  void begin_piece(size_t device, size_t i, const Taken& p, double now) {
    SimDevice& s = devices_[device];
    Worker& w = s.workers[i];
    const Query& q = trace_[p.job->query];
    uint32_t items = p.count;  // a merged GPU pass: every query's items, one pass
    for (const std::shared_ptr<Job>& j : p.merged) items += j->items;
    double ms = policies::predict_service_ms(profiles_, q.model, s.d.info.id, items, items, 1)
                    .value_or(0) *
                stream_stretch(s, q.model, items);
    if (options_.noise > 0) {
      const double sg = options_.noise;
      ms *= std::exp(sg * normal(rng_) - sg * sg / 2);
    }
    set_state(s, w, WorkerState::kBusy, now);
    w.busy_w = busy_power(q.model, s, items);
    w.job = p.job;
    w.count = p.count;
    w.is_long = p.is_long;
    w.merged = p.merged;
    run_until(device, i, now, now + ms);
  }

  // A GPU pass that starts while others run there takes as long as the profile's measured
  // rate with that many passes at once gives: n passes of this size at once deliver
  // streams_items_per_s together, each alone items_per_s, so each takes
  // n x items_per_s / streams_items_per_s of its time alone (never less). A pass started
  // alone takes its time alone, and one already running keeps its end when another
  // starts: an approximation of how streams share the GPU. 1 where the profile did not
  // measure streams (profiles from before 2026-12-06), as before.
  double stream_stretch(const SimDevice& s, const std::string& model, uint32_t items) const {
    if (s.d.info.kind != policies::DeviceKind::kGpu) return 1;
    int running = 1;  // this pass
    for (const Worker& w : s.workers) running += w.state == WorkerState::kBusy ? 1 : 0;
    if (running == 1) return 1;
    const std::optional<ProfilePoint> p = profiles_.estimate(model, s.d.info.id, items);
    if (!p || !(p->streams_items_per_s > 0) || !(p->items_per_s > 0)) return 1;
    return std::max(1.0, running * p->items_per_s / p->streams_items_per_s);
  }

  void run_until(size_t device, size_t i, double now, double end) {
    Worker& w = devices_[device].workers[i];
    w.started_ms = now;
    w.end_ms = end;
    events_.push({end, seq_++, device, i, false, false, ++w.gen});
  }

  // Every free awake worker takes a piece of the first query in queue order that has items
  // left, fewer than its cap running and a piece it may take now (CpuRunner's rule).
  void start_work(size_t device, double now) {
    SimDevice& s = devices_[device];
    for (size_t i = 0; i < s.workers.size() && static_cast<int>(i) < s.active; ++i) {
      Worker& w = s.workers[i];
      if (w.state != WorkerState::kIdle || w.host_until_ms > now) continue;
      Taken p;
      double wake = std::numeric_limits<double>::infinity();
      if (!take(s, now, nullptr, false, &p, &wake)) {
        // As the runner's worker does: wait until the first of those left turns urgent.
        if (std::isfinite(wake) && wake > now && wake < s.next_wake_ms) {
          s.next_wake_ms = wake;
          events_.push({wake, seq_++, device, 0, true});
        }
        return;
      }
      if (options_.gpu_batching && s.d.info.kind == policies::DeviceKind::kGpu) {
        merge_pass(s, &p, now);
      }
      begin_piece(device, i, p, now);
    }
    maybe_preempt(device, now);
  }

  // Options::gpu_batching: the queued queries of the head's model that core/merge.h's rule
  // lets join its pass (as exec::WholeQueryRunner), out of the queue, whole.
  void merge_pass(SimDevice& s, Taken* p, double now) {
    const std::string& model = trace_[p->job->query].model;
    const std::string& device = s.d.info.id;
    std::vector<std::shared_ptr<Job>> same;
    std::vector<MergeQuery> waiting;
    size_t looked = 0;
    for (const std::shared_ptr<Job>& j : s.ready) {
      if (++looked > kMaxQueriesLooked) break;
      if (trace_[j->query].model != model || j->taken > 0) continue;
      same.push_back(j);
      waiting.push_back({j->items, j->key_ms - now});
    }
    if (same.empty()) return;
    auto predict = [&](uint32_t n) {
      return policies::predict_service_ms(profiles_, model, device, n, n, 1).value_or(0);
    };
    for (size_t i : merge_into({p->job->items, p->job->key_ms - now}, waiting,
                               options_.gpu_merge_max_items, predict)) {
      const std::shared_ptr<Job>& j = same[i];
      s.ready.erase(j);
      j->taken = j->items;
      j->running = 1;
      p->merged.push_back(j);
    }
    ++gpu_passes_;
    if (!p->merged.empty()) {
      ++merged_passes_;
      merged_queries_ += p->merged.size() + 1;
    }
  }

  // Options::preemption: with every awake worker busy, the query first in queue order
  // interrupts the busy worker whose piece is due latest (and later than it) at that
  // piece's next yield point, unless the piece ends first.
  void maybe_preempt(size_t device, double now) {
    SimDevice& s = devices_[device];
    if (!options_.preemption || s.d.info.kind != policies::DeviceKind::kCpu || s.ready.empty()) {
      return;
    }
    const std::shared_ptr<Job>& first = *s.ready.begin();
    size_t best = s.workers.size();
    for (size_t i = 0; i < s.workers.size() && static_cast<int>(i) < s.active; ++i) {
      const Worker& w = s.workers[i];
      if (w.state != WorkerState::kBusy) return;  // a free worker takes what it may
      if (w.preempt_pending || w.suspended.size() >= size_t{kMaxSuspended} ||
          !earlier(*first, *w.job)) {
        continue;
      }
      if (best == s.workers.size() || earlier(*s.workers[best].job, *w.job)) best = i;
    }
    if (best == s.workers.size()) return;
    Worker& w = s.workers[best];
    const double step = std::max(1e-6, options_.yield_stretch_ms);
    // The next point after now: a piece's first comes one stretch after it starts.
    const double at = w.started_ms + (std::floor((now - w.started_ms) / step) + 1) * step;
    if (at >= w.end_ms) return;
    w.preempt_pending = true;
    events_.push({at, seq_++, device, best, false, true, w.gen});
  }

  // A preemption event: the worker's running piece stops at its yield point for the first
  // query due before it, if one is still there, and resumes once that piece is done.
  void preempt(const Event& e) {
    SimDevice& s = devices_[e.device];
    Worker& w = s.workers[e.worker];
    w.preempt_pending = false;
    if (e.gen != w.gen || w.state != WorkerState::kBusy) return;  // it ended meanwhile
    Taken p;
    if (!take(s, e.t, w.job.get(), true, &p, nullptr)) return;
    ++preemptions_;
    w.suspended.push_back({{std::move(w.job), w.count, w.is_long, {}}, w.end_ms - e.t, w.busy_w});
    begin_piece(e.device, e.worker, p, e.t);
  }

  // After a piece run at a yield point: another due before the suspended one, or that one
  // resumes where it stopped.
  void after_nested(size_t device, size_t i, double now) {
    SimDevice& s = devices_[device];
    Worker& w = s.workers[i];
    Taken p;
    if (take(s, now, w.suspended.back().piece.job.get(), true, &p, nullptr)) {
      ++preemptions_;
      return begin_piece(device, i, p, now);
    }
    Suspended back = std::move(w.suspended.back());
    w.suspended.pop_back();
    set_state(s, w, WorkerState::kBusy, now);  // the energy so far at the nested piece's power
    w.busy_w = back.busy_w;
    w.job = std::move(back.piece.job);
    w.count = back.piece.count;
    w.is_long = back.piece.is_long;
    run_until(device, i, now, now + back.remaining_ms);
  }

  // The profile's power per busy worker at this size (policies::busy_w_per_worker, which
  // min-energy predicts with).
  double busy_power(const std::string& model, const SimDevice& s, uint32_t count) const {
    const auto& pts = profiles_.points(model, s.d.info.id);
    return pts.empty() ? 0 : policies::busy_w_per_worker(pts, count);
  }

  void finish(const Event& e) {
    SimDevice& s = devices_[e.device];
    if (e.wake) {
      if (e.t == s.next_wake_ms) s.next_wake_ms = std::numeric_limits<double>::infinity();
      return start_work(e.device, e.t);
    }
    if (e.preempt) return preempt(e);
    Worker& w = s.workers[e.worker];
    if (e.gen != w.gen) return;  // the piece was interrupted: it ends later
    std::shared_ptr<Job> job = std::move(w.job);
    if (w.is_long) --s.long_busy;
    const bool nested = !w.suspended.empty();
    if (!nested) {
      set_state(s, w,
                static_cast<int>(e.worker) < s.active ? WorkerState::kIdle : WorkerState::kParked,
                e.t);
    }
    std::vector<std::shared_ptr<Job>> merged = std::move(w.merged);
    w.merged.clear();
    piece_done(s, std::move(job), w.count, e.t);
    for (const std::shared_ptr<Job>& j : merged) piece_done(s, j, j->items, e.t);
    if (nested) after_nested(e.device, e.worker, e.t);
    start_work(e.device, e.t);
  }

  // A piece of `job` (`count` items) ended at t: back in the queue if it has pieces left
  // and had its cap running, and settled once its last piece is done.
  void piece_done(SimDevice& s, std::shared_ptr<Job> job, uint32_t count, double t) {
    if (job->running-- == job->cap && job->taken < job->items) s.ready.insert(job);
    job->finished += count;
    if (job->finished == job->items) {
      --s.in_flight;
      const Query& q = trace_[job->query];
      const double latency = t - q.arrival_ms;
      ModelState& m = models_.at(q.model);
      if (q.arrival_ms >= warmup_ms_) m.latencies.push_back(latency + outside(m.outside));
      if (t >= warmup_ms_ && t <= trace_.back().arrival_ms) ++done_in_span_, ++m.done_in_span;
      m.recent.push_back(latency);
      if (m.recent.size() > 64) m.recent.erase(m.recent.begin());
      if (++completions_ % 16 == 0) {
        std::vector<double> r = m.recent;
        m.view.recent_p95_ms = percentile(r, 95);
      }
      end_ms_ = std::max(end_ms_, t);
      dispatcher_->complete(job->decision, {job->query + 1, q.model, q.items,
                                            job->decision.placement, latency, true});
    }
  }

  Report report(double span) {
    Report r;
    r.policy = std::string(dispatcher_->policy().name());
    r.policy_params = dispatcher_->policy().params();
    r.preemptions = preemptions_;
    r.gpu_passes = gpu_passes_;
    r.merged_passes = merged_passes_;
    r.merged_queries = merged_queries_;
    const double end = std::max(end_ms_, span);
    uint64_t offered = 0, rejected = 0, completed = 0;
    bool ok = true;
    for (auto& [name, m] : models_) {
      if (m.offered == 0) {
        // A model with a target that received no queries: nothing shows it met the target.
        ok = ok && !options_.judge_every_target;
        continue;
      }
      ModelReport mr;
      mr.model = name;
      mr.sla_ms = m.view.sla_ms;
      mr.offered = m.offered;
      mr.rejected = m.rejected;
      mr.completed = m.latencies.size();
      mr.violations = m.latencies.empty()
                          ? 0
                          : double(std::count_if(m.latencies.begin(), m.latencies.end(),
                                                 [&](double l) { return l > m.view.sla_ms; })) /
                                m.latencies.size();
      mr.p50_ms = percentile(m.latencies, 50);
      mr.p95_ms = percentile(m.latencies, 95);
      mr.p99_ms = percentile(m.latencies, 99);
      mr.max_ms = m.latencies.empty() ? 0 : m.latencies.back();
      // recsched-load's rule (bench/load): the p95 within the target and at most 1 % of the
      // model's own queries rejected.
      ok = ok && mr.completed > 0 && mr.p95_ms <= mr.sla_ms && mr.rejected <= 0.01 * mr.offered;
      offered += mr.offered;
      rejected += mr.rejected;
      completed += mr.completed;
      r.models.push_back(mr);
    }
    for (SimDevice& s : devices_) {
      for (Worker& w : s.workers) set_state(s, w, w.state, end);
      r.energy_j += s.energy_j;
      r.queries_per_device[s.d.info.id] = s.queries;
    }
    const double counted_s = (span - warmup_ms_) / 1e3;
    r.offered_qps = counted_s > 0 ? offered / counted_s : 0;
    r.achieved_qps = counted_s > 0 ? completed / counted_s : 0;
    r.throughput_qps = counted_s > 0 ? done_in_span_ / counted_s : 0;
    // The mix in its proportions: the rate of the model that keeps up least, over its share.
    r.mix_throughput_qps = r.throughput_qps;
    for (const auto& [name, m] : models_) {
      if (m.offered == 0 || offered == 0 || !(counted_s > 0)) continue;
      const double share = double(m.offered) / offered;
      r.mix_throughput_qps = std::min(r.mix_throughput_qps, m.done_in_span / counted_s / share);
    }
    uint64_t admitted = 0;
    for (const SimDevice& s : devices_) admitted += s.queries;
    r.energy_per_query_j = r.energy_j / std::max<uint64_t>(1, admitted);
    r.seconds = end / 1e3;
    r.meets_sla = ok && offered > 0;
    return r;
  }

  const std::vector<Query>& trace_;
  const ProfileTable& profiles_;
  Options options_;
  std::mt19937_64 rng_;
  std::mt19937_64 outside_rng_;  // Options::outside_ms's draws alone

  // One query's latency outside the daemon (Options::outside_ms).
  double outside(const OutsideLatency& o) {
    if (!(o.p95_ms > o.p50_ms) || !(o.p50_ms > 0)) return o.p50_ms;
    const double sigma = std::log(o.p95_ms / o.p50_ms) / 1.6448536269514722;  // z of 0.95
    return o.p50_ms * std::exp(sigma * normal(outside_rng_));
  }
  static constexpr size_t kNoDevice = std::numeric_limits<size_t>::max();
  size_t host_device_ = kNoDevice;  // the first CPU device: where Options::host_cpu_ms lands
  std::vector<SimDevice> devices_;
  std::unique_ptr<policies::Dispatcher> dispatcher_;
  std::map<std::string, ModelState> models_;
  std::priority_queue<Event, std::vector<Event>, std::greater<>> events_;
  std::vector<policies::DeviceLoad> loads_;
  uint64_t seq_ = 0, completions_ = 0, done_in_span_ = 0, preemptions_ = 0;
  uint64_t gpu_passes_ = 0, merged_passes_ = 0, merged_queries_ = 0;  // Options::gpu_batching
  double warmup_ms_ = 0, end_ms_ = 0;
};

}  // namespace

std::vector<Query> poisson_trace(const TraceOptions& o) {
  std::mt19937_64 rng(o.seed);
  double total = 0;
  for (const auto& [m, w] : o.mix) total += w;
  std::vector<Query> out;
  if (o.qps <= 0 || total <= 0) return out;
  double t = 0;
  while (true) {
    t += -std::log(uniform(rng)) / o.qps * 1e3;
    if (t > o.seconds * 1e3) break;
    double pick = uniform(rng) * total;
    size_t i = 0;
    while (i + 1 < o.mix.size() && pick >= o.mix[i].second) pick -= o.mix[i++].second;
    out.push_back({t, o.mix[i].first, draw_size(o.sizes, rng)});
  }
  return out;
}

Result<Report> simulate(const std::vector<Query>& trace, const std::vector<Device>& devices,
                        const ProfileTable& profiles, const std::vector<ModelTarget>& targets,
                        std::unique_ptr<policies::Policy> policy, const Options& options) {
  std::set<std::string> ids;
  for (const Device& d : devices) {
    if (!ids.insert(d.info.id).second)
      return invalid_argument("simulate: device '" + d.info.id + "' given twice");
  }
  std::set<std::string> known;
  for (const ModelTarget& t : targets) known.insert(t.model);
  for (const Query& q : trace) {
    if (!known.count(q.model))
      return invalid_argument("simulate: model '" + q.model + "' in the trace has no target");
  }
  if (policy == nullptr) return invalid_argument("simulate: no policy");
  return Simulation(trace, devices, profiles, targets, std::move(policy), options).run();
}

Result<Report> find_max_qps(TraceOptions trace, const std::vector<Device>& devices,
                            const ProfileTable& profiles, const std::vector<ModelTarget>& targets,
                            const std::string& policy, const nlohmann::json& params,
                            const Options& options, double start_qps) {
  const nlohmann::json knobs = params.is_null() ? nlohmann::json::object() : params;
  // The rarest model's share of the mix (an empty mix is every target's model, equally).
  double total = 0, rarest = std::numeric_limits<double>::infinity();
  for (const auto& [model, w] : trace.mix) total += w, rarest = std::min(rarest, w);
  const double share = trace.mix.empty() ? 1.0 / std::max<size_t>(1, targets.size())
                                         : rarest / std::max(total, 1e-12);
  const double seconds = trace.seconds;
  auto run = [&](double qps) -> Result<Report> {
    trace.qps = qps;
    trace.seconds = std::max(seconds, kMinQueriesPerModel / (qps * std::max(share, 1e-6) *
                                                             (1 - options.warmup_fraction)));
    RECSCHED_ASSIGN_OR_RETURN(auto p, policies::create_policy(policy, knobs));
    return simulate(poisson_trace(trace), devices, profiles, targets, std::move(p), options);
  };
  Report best;
  double lo = 0, hi = start_qps;
  while (true) {  // ramp: double until a run fails
    RECSCHED_ASSIGN_OR_RETURN(Report r, run(hi));
    if (!r.meets_sla) break;
    best = r;
    lo = hi;
    hi *= 2;
    if (hi > 1e7) return invalid_argument("find_max_qps: no failure below 10M qps");
  }
  // Bisect to within 2 %; below 1/100 of the starting rate, nothing passes.
  while (hi - lo > 0.02 * hi && hi > start_qps / 100) {
    const double mid = (lo + hi) / 2;
    RECSCHED_ASSIGN_OR_RETURN(Report r, run(mid));
    if (r.meets_sla) {
      best = r;
      lo = mid;
    } else {
      hi = mid;
    }
  }
  if (best.policy.empty()) best.policy = policy;
  return best;
}

Result<Report> saturation_qps(TraceOptions trace, const std::vector<Device>& devices,
                              const ProfileTable& profiles, const std::vector<std::string>& models,
                              const std::string& policy, Options options, double start_qps) {
  // No target: every query admitted, and every model equally loose (so the queue is
  // served in arrival order and nothing is reserved).
  std::vector<ModelTarget> targets;
  for (const std::string& m : models) targets.push_back({m, 1e9});
  options.admission.reject_factor = 1e9;
  // recschedd's default limits.max_queue: past saturation the queue stops growing (as the
  // daemon's does) instead of holding the whole trace.
  if (options.max_queue == 0) options.max_queue = 1024;
  Report best;
  double previous = 0;
  for (double qps = start_qps; qps < 1e7; qps *= 2) {
    trace.qps = qps;
    RECSCHED_ASSIGN_OR_RETURN(auto p, policies::create_policy(policy, nlohmann::json::object()));
    RECSCHED_ASSIGN_OR_RETURN(
        Report r, simulate(poisson_trace(trace), devices, profiles, targets, std::move(p), options));
    // The mix in its proportions (Report::mix_throughput_qps): a policy that serves the
    // cheap models and lets the queue bound turn the others away completes more queries
    // per second, but not more of the mix (min-energy sent all but NCF to the one GPU
    // stream and "completed" 95,000 q/s of a mix whose slowest model alone takes 2,400).
    r.throughput_qps = r.mix_throughput_qps;
    if (r.throughput_qps > best.throughput_qps) best = r;
    // Past saturation: completions fall short of arrivals, and doubling the load added
    // nothing (within 2 %).
    if (r.throughput_qps < 0.8 * r.offered_qps && r.throughput_qps < 1.02 * previous) break;
    previous = r.throughput_qps;
  }
  if (best.policy.empty()) best.policy = policy;
  return best;
}

nlohmann::json Report::to_json() const {
  nlohmann::json ms = nlohmann::json::array();
  for (const ModelReport& m : models) {
    ms.push_back({{"model", m.model},
                  {"sla_ms", m.sla_ms},
                  {"offered", m.offered},
                  {"completed", m.completed},
                  {"rejected", m.rejected},
                  {"p50_ms", m.p50_ms},
                  {"p95_ms", m.p95_ms},
                  {"p99_ms", m.p99_ms},
                  {"max_ms", m.max_ms},
                  {"violations", m.violations}});
  }
  return {{"policy", policy},
          {"policy_params", policy_params},
          {"offered_qps", offered_qps},
          {"achieved_qps", achieved_qps},
          {"throughput_qps", throughput_qps},
          {"mix_throughput_qps", mix_throughput_qps},
          {"energy_j", energy_j},
          {"energy_per_query_j", energy_per_query_j},
          {"preemptions", preemptions},
          {"gpu_passes", gpu_passes},
          {"merged_passes", merged_passes},
          {"merged_queries", merged_queries},
          {"seconds", seconds},
          {"meets_sla", meets_sla},
          {"queries_per_device", queries_per_device},
          {"models", ms}};
}

Result<ProfileTable> load_profiles(const std::string& path, std::string* note) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) return invalid_argument(path + " is a directory, not profiles");
  std::ifstream f(path);
  if (!f) return not_found("cannot open profiles " + path);
  nlohmann::json j = nlohmann::json::parse(f, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return invalid_argument(path + ": not a JSON object");
  const char* key = j.contains("profiles") ? "profiles" : "entries";
  if (!j.contains(key) || !j[key].is_array())
    return invalid_argument(path + ": no 'profiles' or 'entries' array");
  ProfileTable table;
  size_t derived = 0;
  try {
    for (const auto& e : j[key]) {
      const std::string model = e.at("model"), device = e.at("device");
      for (const auto& p : e.at("points")) {
        ProfilePoint pt;
        pt.batch_size = p.at("batch_size");
        pt.p50_us = p.at("p50_us");
        pt.p95_us = p.value("p95_us", pt.p50_us);
        pt.items_per_s = p.value("items_per_s", 0.0);
        pt.power_w = p.value("power_w", 0.0);
        pt.energy_per_item_j = p.value("energy_per_item_j", 0.0);
        pt.power_source = p.value("power_source", std::string("estimated"));
        pt.best_sub_batch = p.value("best_sub_batch", pt.batch_size);
        pt.best_workers = std::max<uint32_t>(1, p.value("best_workers", 1u));
        pt.best_streams = p.value("best_streams", 0u);
        pt.streams_items_per_s = p.value("streams_items_per_s", 0.0);
        if (p.contains("p50_single_us")) {
          pt.p50_single_us = p.at("p50_single_us");
        } else {
          pt.p50_single_us = pt.p50_us * pt.best_workers;
          ++derived;
        }
        if (pt.batch_size < 1 || !(pt.p50_single_us > 0))
          return invalid_argument(path + ": " + model + " on " + device + ": bad point");
        table.add(model, device, pt);
      }
    }
  } catch (const nlohmann::json::exception& ex) {
    return invalid_argument(path + ": " + ex.what());
  }
  if (note != nullptr) {
    *note = derived == 0 ? ""
                         : std::to_string(derived) +
                               " points had no p50_single_us (written before it existed): "
                               "taken as p50_us x best_workers";
  }
  return table;
}

}  // namespace recsched::sim
