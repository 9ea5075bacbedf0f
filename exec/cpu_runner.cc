#include "exec/cpu_runner.h"

#include <pthread.h>

#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <chrono>
#include <future>

#include "core/pieces.h"
#include "engine/dense.h"

namespace recsched::exec {

// One query: its items are taken in order, a piece at a time; the last piece to finish
// reports.
struct CpuRunner::Job {
  const Model* model = nullptr;
  BatchView batch;
  uint32_t sub_batch = 0;    // a piece's size (the last may be smaller)
  uint32_t short_items = 0;  // pieces larger than this are long (Request::short_items)
  int reserve = 0;           // workers kept from its long pieces (Request::reserve)
  Clock::time_point urgent_at;  // from then on, no workers kept (Request::urgent_at)
  int max_workers = 0;
  std::span<float> scores;
  DoneFn done;
  Clock::time_point* started = nullptr;  // Request::started
  double* suspended_ms = nullptr;        // Request::suspended_ms
  double suspended_s = 0;  // its pieces' time suspended, summed (under mu_)
  uint32_t pieces = 0;     // pieces taken (under mu_)
  Clock::time_point deadline;  // the order key with seq (fixed before it is queued)
  uint64_t seq = 0;
  uint32_t taken = 0;     // items handed out (under mu_)
  uint32_t finished = 0;  // items done (under mu_)
  int active = 0;         // workers on it now (under mu_)
  Status first_error;     // (under mu_)
  uint32_t left() const { return batch.batch_size - taken; }
};

// The piece a worker may take of `job` now (core/pieces.h's rule).
uint32_t CpuRunner::piece(const Job& job, int long_busy, int awake, Clock::time_point now,
                          bool* is_long) {
  return next_piece({job.left(), job.sub_batch, job.short_items, job.reserve, now >= job.urgent_at},
                    long_busy, awake, is_long);
}

bool CpuRunner::earlier(const Job& a, const Job& b) {
  return a.deadline != b.deadline ? a.deadline < b.deadline : a.seq < b.seq;
}

// One piece a worker took.
struct CpuRunner::Taken {
  std::shared_ptr<Job> job;
  uint32_t begin = 0;
  uint32_t count = 0;
  bool is_long = false;  // counted in long_busy_ (a worker's own piece only)
  bool nested = false;   // run at a yield point, in another pass's place
  bool skip = false;     // a piece of the query already failed: not run
};

// A worker's state beside its thread: a workspace per level of passes it may have
// suspended, and the query running at each level. Touched only by its own thread.
class CpuRunner::Worker final : public engine::YieldPoint {
 public:
  Worker(CpuRunner& runner, int index) : index(index), runner_(runner) {
    for (engine::Workspace& w : ws) w.set_yield(this);
  }
  void at_yield_point() override {
    if (!lent) runner_.preempt_at(*this);
  }
  // Passes cut their long steps into blocks only while preemption is on.
  bool active() const override { return runner_.preemption(); }

  const int index;
  // Run by a run_here() caller's thread now: its yield points preempt nothing (a more
  // urgent query waits for a worker, not for a thread that reads requests).
  bool lent = false;
  int depth = 0;  // passes running on this worker now: the innermost is running[depth - 1]
  std::array<engine::Workspace, kMaxNesting + 1> ws;
  std::array<const Job*, kMaxNesting + 1> running{};
  // Seconds spent in passes run at the yield points of the pass at each level.
  std::array<double, kMaxNesting + 1> nested_seconds{};

 private:
  CpuRunner& runner_;
};

CpuRunner::CpuRunner(const hw::Topology& topology, hw::CpuDevice device)
    : topology_(topology), device_(std::move(device)) {}

Result<std::unique_ptr<CpuRunner>> CpuRunner::create(const hw::Topology& topology,
                                                     const hw::CpuDevice& device, int workers,
                                                     int nice) {
  if (!topology.is_this_system()) {
    return invalid_argument("a CPU runner needs this machine's topology, not a loaded one");
  }
  if (nice < 0 || nice > 19) {
    return invalid_argument("worker nice value " + std::to_string(nice) + " is outside [0, 19]");
  }
  // The device's cores, each as a cpuset: one core per worker, round robin.
  RECSCHED_ASSIGN_OR_RETURN(std::vector<std::string> core_sets, topology.core_cpusets(device));
  if (core_sets.empty()) return invalid_argument("device " + device.id + " has no whole core");
  if (workers <= 0) workers = static_cast<int>(core_sets.size());

  std::unique_ptr<CpuRunner> r(new CpuRunner(topology, device));
  r->bindings_.resize(workers);
  r->bind_status_.resize(workers);
  r->num_workers_ = workers;  // before any worker starts: they read it, threads_ is growing
  for (int w = 0; w < workers; ++w) {
    r->sleepers_.push_back(std::make_unique<Sleeper>());
    r->worker_state_.push_back(std::make_unique<Worker>(*r, w));
  }
  for (int w = 0; w < workers; ++w) {
    r->threads_.emplace_back(&CpuRunner::worker_main, r.get(), w, core_sets[w % core_sets.size()],
                             nice);
  }
  // Wait until every worker has bound itself (or failed to).
  {
    std::unique_lock<std::mutex> lock(r->mu_);
    r->started_cv_.wait(lock, [&] { return r->started_ == workers; });
  }
  for (int w = 0; w < workers; ++w) {
    if (!r->bind_status_[w].is_ok()) {
      return Status(r->bind_status_[w].code(), "worker " + std::to_string(w) + " of " + device.id +
                                                   ": " + r->bind_status_[w].message());
    }
  }
  return r;
}

CpuRunner::~CpuRunner() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
    wake_for_work(-1);
  }
  for (std::thread& t : threads_) t.join();
}

void CpuRunner::wake_for_work(int self) {
  int wanted = num_workers_;
  if (!stopping_) {
    // A bound on the workers the ready queries could take a piece each: the pieces left
    // (at the short size, the smallest a piece may be), up to each query's worker cap.
    wanted = 0;
    size_t looked = 0;
    for (const std::shared_ptr<Job>& j : ready_) {
      if (++looked > kMaxQueriesLooked || wanted >= num_workers_) break;
      const uint32_t size =
          j->short_items > 0 ? std::min(j->short_items, j->sub_batch) : j->sub_batch;
      const int64_t pieces = (int64_t{j->left()} + size - 1) / size;
      wanted += static_cast<int>(std::min<int64_t>(pieces, j->max_workers - j->active));
    }
    if (self >= 0 && self < active_workers_) --wanted;
  }
  // Parked workers (index >= active) take no work: only a stop wakes them.
  const int eligible = stopping_ ? num_workers_ : std::min(active_workers_, num_workers_);
  for (int w = 0; w < eligible && wanted > 0; ++w) {
    Sleeper& s = *sleepers_[w];
    if (!s.waiting || s.lent) continue;
    s.waiting = false;
    s.cv.notify_one();
    --wanted;
  }
}

void CpuRunner::worker_main(int index, const std::string& cpuset, int nice) {
  // "cpu0-w1" in top -H, perf and /proc/<pid>/task/*/comm (at most 15 characters).
  pthread_setname_np(pthread_self(), (device_.id + "-w" + std::to_string(index)).substr(0, 15).c_str());
  Status bound = topology_.bind_thread(cpuset);
  if (bound.is_ok() && device_.numa_node >= 0) {
    // Scratch memory (workspaces) comes from the device's own node too.
    bound = topology_.bind_memory_to_node(device_.numa_node);
  }
  // On Linux a nice value is per thread: this worker's alone. Only ever lowered: a process
  // already started at a higher nice value keeps it (raising priority needs privilege).
  if (bound.is_ok() && nice > 0) {
    const id_t tid = static_cast<id_t>(gettid());
    errno = 0;
    const int now = getpriority(PRIO_PROCESS, tid);
    if (!(errno == 0 && now >= nice) && setpriority(PRIO_PROCESS, tid, nice) != 0) {
      bound = unavailable("setpriority(nice " + std::to_string(nice) +
                          "): " + std::strerror(errno));
    }
  }
  Result<std::string> actual = topology_.thread_binding();
  engine::set_blas_threads(1);  // parallelism comes from sub-batches, not inside a GEMM
  {
    std::lock_guard<std::mutex> lock(mu_);
    bind_status_[index] = bound;
    bindings_[index] = actual ? *actual : "";
    ++started_;
  }
  started_cv_.notify_all();
  if (!bound.is_ok()) return;

  Worker& worker = *worker_state_[index];
  std::unique_lock<std::mutex> lock(mu_);
  while (true) {
    Taken taken;
    while (true) {
      // A query left for a long lane becomes urgent at a known time: wake up then.
      Clock::time_point wake = Clock::time_point::max();
      Sleeper& sleeper = *sleepers_[index];
      // Lent to a run_here() caller: its state is in use; the caller wakes it when done
      // if there is work, a chore or a stop.
      if (!sleeper.lent) {
        if (sleeper.chore) {
          const std::function<void(Worker&)> chore = std::move(sleeper.chore);
          sleeper.chore = nullptr;
          lock.unlock();
          chore(worker);
          lock.lock();
          continue;
        }
        if (take_locked(index, nullptr, false, &taken, &wake)) break;
        // Stop only once every queued query has been handed out: nothing is dropped.
        if (stopping_ && untaken_ == 0) return;
      }
      sleeper.waiting = true;
      if (wake == Clock::time_point::max()) {
        sleeper.cv.wait(lock);
      } else {
        sleeper.cv.wait_until(lock, wake);
      }
      sleeper.waiting = false;
    }
    lock.unlock();
    double busy = 0, suspended = 0;
    const Status st = run_taken(worker, taken, &busy, &suspended);
    lock.lock();
    settle_locked(lock, index, taken, st, busy, suspended);
  }
}

bool CpuRunner::take_locked(int index, const Job* before, bool nested, Taken* out,
                            Clock::time_point* wake) {
  // A parked worker takes no work (its core may sleep) until woken or stopping.
  if (index >= active_workers_) return false;
  const int awake = std::min(active_workers_, num_workers_);
  const Clock::time_point now = Clock::now();
  // A piece run at a yield point leaves the long lanes as they are: its worker is
  // already counted in them, or not, by the pass it interrupts.
  const int long_busy = nested ? 0 : long_busy_;
  std::shared_ptr<Job> job;
  uint32_t count = 0;
  bool is_long = false;
  size_t looked = 0;
  for (const std::shared_ptr<Job>& j : ready_) {
    if (++looked > kMaxQueriesLooked) break;
    if (before != nullptr && !earlier(*j, *before)) break;
    count = piece(*j, long_busy, awake, now, &is_long);
    if (count > 0) {
      job = j;
      break;
    }
    if (wake != nullptr) *wake = std::min(*wake, j->urgent_at);
  }
  if (!job) return false;
  out->job = job;
  out->begin = job->taken;
  out->count = count;
  out->is_long = is_long && !nested;
  out->nested = nested;
  if (out->begin == 0 && job->started != nullptr) *job->started = Clock::now();
  job->taken += count;
  ++job->pieces;
  // Once a piece has failed the query's answer is that error: skip the rest.
  out->skip = !job->first_error.is_ok();
  ++job->active;
  if (!nested) ++busy_workers_;  // a nested piece's worker is busy already
  if (out->is_long) ++long_busy_;
  if (nested) ++preemptions_;
  if (job->left() == 0) --untaken_;
  if (job->left() == 0 || job->active == job->max_workers) {
    ready_.erase(job);
    ready_changed_locked();
  }
  return true;
}

Status CpuRunner::run_taken(Worker& worker, const Taken& taken, double* busy,
                           double* suspended) {
  const Job& job = *taken.job;
  const int level = worker.depth++;
  worker.running[level] = &job;
  worker.nested_seconds[level] = 0;
  Status st;
  const auto t0 = std::chrono::steady_clock::now();
  if (!taken.skip) {
    const size_t k = job.model->spec().num_outputs();
    // A worker that throws would end the process: the query fails instead, and its
    // caller sees the device's fault (the daemon marks it degraded).
    st = engine::guarded_forward(*job.model, job.batch.slice(taken.begin, taken.count),
                                 worker.ws[level],
                                 job.scores.subspan(size_t(taken.begin) * k, size_t(taken.count) * k),
                                 device_.id);
  }
  const double elapsed =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  // Busy time is counted once: the passes run at this one's yield points count their own.
  *busy = elapsed - worker.nested_seconds[level];
  *suspended = worker.nested_seconds[level];
  if (level > 0) worker.nested_seconds[level - 1] += elapsed;
  worker.running[level] = nullptr;
  worker.depth = level;
  return st;
}

void CpuRunner::settle_locked(std::unique_lock<std::mutex>& lock, int index, const Taken& taken,
                              const Status& st, double busy, double suspended) {
  Job& job = *taken.job;
  busy_seconds_ += busy;
  job.suspended_s += suspended;
  if (!taken.nested) --busy_workers_;
  if (taken.is_long) --long_busy_;
  // At its cap until now, with items left: it may be taken again.
  const bool again = job.active-- == job.max_workers && job.left() > 0;
  if (again) {
    ready_.insert(taken.job);
    ready_changed_locked();
  }
  if (!st.is_ok() && job.first_error.is_ok()) job.first_error = st;
  job.finished += taken.count;
  const bool last = job.finished == job.batch.batch_size;
  if (last) --in_flight_;
  // Work this worker may not take alone: the query's next pieces, or a waiting long
  // piece that the freed long lane lets start; and a stop waits for the last one.
  if (again || taken.is_long || (last && stopping_)) wake_for_work(taken.nested ? -1 : index);
  if (last) {
    if (job.suspended_ms != nullptr) {
      const uint32_t at_once = std::max<uint32_t>(
          1, std::min<uint32_t>(job.pieces, static_cast<uint32_t>(job.max_workers)));
      *job.suspended_ms = job.suspended_s * 1e3 / at_once;
    }
    lock.unlock();
    job.done(job.first_error);
    lock.lock();
  }
}

void CpuRunner::preempt_at(Worker& worker) {
  if (!preemption_.load(std::memory_order_relaxed) || worker.depth > kMaxNesting) return;
  const Job& running = *worker.running[worker.depth - 1];
  // The common case, nothing due before the running query: one load, no lock. (A query
  // due at the same instant but submitted earlier is left to the next free worker.)
  if (earliest_ready_.load(std::memory_order_relaxed) >=
      running.deadline.time_since_epoch().count()) {
    return;
  }
  std::unique_lock<std::mutex> lock(mu_);
  while (worker.depth <= kMaxNesting && preemption_.load(std::memory_order_relaxed)) {
    // An awake worker that is free (or just woken) takes the query itself: interrupting
    // this pass would only delay it.
    if (busy_workers_ < std::min(active_workers_, num_workers_)) return;
    Taken taken;
    if (!take_locked(worker.index, &running, true, &taken, nullptr)) return;
    lock.unlock();
    double busy = 0, suspended = 0;
    const Status st = run_taken(worker, taken, &busy, &suspended);
    lock.lock();
    settle_locked(lock, worker.index, taken, st, busy, suspended);
  }
}

void CpuRunner::ready_changed_locked() {
  earliest_ready_.store(
      ready_.empty() ? INT64_MAX : (*ready_.begin())->deadline.time_since_epoch().count(),
      std::memory_order_relaxed);
}

uint64_t CpuRunner::preemptions() const {
  std::lock_guard<std::mutex> lock(mu_);
  return preemptions_;
}

Status CpuRunner::submit(Request request, size_t max_queued) {
  RECSCHED_RETURN_IF_ERROR(check_request(request));
  const uint32_t sub_batch = request.sub_batch;
  const int workers = request.workers;
  const BatchView& batch = request.batch;
  if (sub_batch == 0) return invalid_argument("sub-batch size must be at least 1");
  if (workers < 1 || workers > this->workers()) {
    return invalid_argument("workers must be in [1, " + std::to_string(this->workers()) + "]");
  }
  if (batch.batch_size == 0) {
    request.done(Status::ok());
    return Status::ok();
  }
  std::shared_ptr<Job> job = make_job(request);
  job->done = std::move(request.done);
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_) return unavailable("device " + device_.id + " is shutting down");
    if (in_flight_ >= max_queued) {
      return unavailable("device " + device_.id + " has " + std::to_string(in_flight_) +
                         " queries queued (limit " + std::to_string(max_queued) + ")");
    }
    job->seq = next_seq_++;
    ready_.insert(job);
    ready_changed_locked();
    ++untaken_;
    ++in_flight_;
    wake_for_work(-1);
  }
  return Status::ok();
}

std::shared_ptr<CpuRunner::Job> CpuRunner::make_job(const Request& request) {
  auto job = std::make_shared<Job>();
  job->model = request.model;
  job->batch = request.batch;
  job->sub_batch = std::min(request.sub_batch, request.batch.batch_size);
  job->short_items = request.short_items;
  job->reserve = std::max(0, request.reserve);
  job->urgent_at = request.urgent_at;
  job->max_workers = request.workers;
  job->scores = request.scores;
  job->started = request.started;
  job->suspended_ms = request.suspended_ms;
  job->deadline = request.deadline.value_or(Clock::now());
  return job;
}

bool CpuRunner::run_here(Request& request, size_t max_queued) {
  const uint32_t n = request.batch.batch_size;
  if (!check_request(request).is_ok() || n == 0 || request.sub_batch < n ||
      request.workers < 1 || request.workers > workers()) {
    return false;  // submit() answers for a malformed request; an empty one needs no worker
  }
  Taken taken;
  Sleeper* lender = nullptr;
  Worker* worker = nullptr;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_ || !ready_.empty() || in_flight_ >= max_queued) return false;
    const int awake = std::min(active_workers_, num_workers_);
    for (int w = 0; w < awake && busy_workers_ < awake; ++w) {
      Sleeper& s = *sleepers_[w];
      if (s.waiting && !s.lent && !s.chore) {
        lender = &s;
        worker = worker_state_[w].get();
        break;
      }
    }
    if (lender == nullptr) return false;  // declined before anything is allocated
    lender->lent = true;
    std::shared_ptr<Job> job = make_job(request);
    taken = {.job = job, .begin = 0, .count = n};
    job->done = std::move(request.done);
    job->seq = next_seq_++;
    job->taken = n;
    job->pieces = 1;
    job->active = 1;
    ++in_flight_;
    ++busy_workers_;
    ++ran_here_;
    if (job->started != nullptr) *job->started = Clock::now();
  }
  // As on a worker: one thread per GEMM (the caller's OpenMP default is one per core,
  // a team to fork for every pass).
  thread_local const bool one_blas_thread = (engine::set_blas_threads(1), true);
  (void)one_blas_thread;
  worker->lent = true;
  double busy = 0, suspended = 0;
  const Status st = run_taken(*worker, taken, &busy, &suspended);
  worker->lent = false;
  std::unique_lock<std::mutex> lock(mu_);
  lender->lent = false;
  // What it may have missed while lent: work queued meanwhile, a warm-up chore, a stop.
  if (lender->waiting && (lender->chore || stopping_ || !ready_.empty())) {
    lender->waiting = false;
    lender->cv.notify_one();
  }
  settle_locked(lock, -1, taken, st, busy, suspended);  // calls done, mu_ released around it
  return true;
}

uint64_t CpuRunner::ran_here() const {
  std::lock_guard<std::mutex> lock(mu_);
  return ran_here_;
}

Status CpuRunner::run(const Model& model, const BatchView& batch, uint32_t sub_batch, int workers,
                      std::span<float> scores) {
  return run(Request{.model = &model,
                     .batch = batch,
                     .scores = scores,
                     .sub_batch = sub_batch,
                     .workers = workers});
}

namespace {
// Yield points that never preempt, with blocks as serving cuts them (the workspaces' slots
// then take the sizes serving asks of them).
class NoYield final : public engine::YieldPoint {
 public:
  explicit NoYield(bool blocks) : blocks_(blocks) {}
  void at_yield_point() override {}
  bool active() const override { return blocks_; }

 private:
  bool blocks_;
};
}  // namespace

Status CpuRunner::warm_up(const Model& model, const BatchView& batch) {
  // One warm-up at a time: each worker has one chore slot.
  std::lock_guard<std::mutex> one(warm_mu_);
  const size_t k = model.spec().num_outputs();
  std::vector<std::vector<float>> scores(sleepers_.size(),
                                         std::vector<float>(size_t(batch.batch_size) * k));
  std::mutex done_mu;
  std::condition_variable done_cv;
  int left = 0;
  Status first = Status::ok();
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_) return unavailable("the runner is stopping");
    left = static_cast<int>(sleepers_.size());
    for (size_t i = 0; i < sleepers_.size(); ++i) {
      sleepers_[i]->chore = [&, i](Worker& worker) {
        NoYield points(preemption());
        Status st = Status::ok();
        for (engine::Workspace& ws : worker.ws) {
          ws.set_yield(&points);
          // guarded_forward catches what the model throws; no fail point: this pass
          // serves no query.
          if (st.is_ok()) {
            st = engine::guarded_forward(model, batch, ws, scores[i], device_.id, false);
          }
          ws.set_yield(&worker);
        }
        std::lock_guard<std::mutex> done(done_mu);
        if (!st.is_ok() && first.is_ok()) first = st;
        if (--left == 0) done_cv.notify_all();
      };
      sleepers_[i]->cv.notify_one();
    }
  }
  std::unique_lock<std::mutex> done(done_mu);
  done_cv.wait(done, [&] { return left == 0; });
  return first;
}

void CpuRunner::set_active_workers(int n) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    (void)parked_seconds_locked();
    active_workers_ = std::clamp(n, 1, workers());
    wake_for_work(-1);  // workers unparked now may take what is queued
  }
}

int CpuRunner::active_workers() const {
  std::lock_guard<std::mutex> lock(mu_);
  return std::min(active_workers_, workers());
}

double CpuRunner::parked_seconds_locked() const {
  const auto now = std::chrono::steady_clock::now();
  const int parked = workers() - std::min(active_workers_, workers());
  parked_seconds_ += parked * std::chrono::duration<double>(now - parked_since_).count();
  parked_since_ = now;
  return parked_seconds_;
}

double CpuRunner::parked_seconds() const {
  std::lock_guard<std::mutex> lock(mu_);
  return parked_seconds_locked();
}

double CpuRunner::busy_seconds() const {
  std::lock_guard<std::mutex> lock(mu_);
  return busy_seconds_;
}

Load CpuRunner::load() const {
  std::lock_guard<std::mutex> lock(mu_);
  const int active = std::min(active_workers_, workers());
  return {in_flight_, busy_workers_, active < workers() ? active : 0};
}

Result<std::unique_ptr<Model>> CpuRunner::load(const ModelSpec& spec,
                                               const LoadOptions& options) const {
  // Load on a thread whose memory policy is the device's node: the tables' pages are
  // placed there as the loader writes them.
  Result<std::unique_ptr<Model>> out = internal_error("model loader did not run");
  std::thread loader([&] {
    if (device_.numa_node >= 0) {
      Status st = topology_.bind_memory_to_node(device_.numa_node);
      if (!st.is_ok()) {
        out = st;
        return;
      }
    }
    out = load_model(spec, options);
  });
  loader.join();
  return out;
}

}  // namespace recsched::exec
