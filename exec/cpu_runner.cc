#include "exec/cpu_runner.h"

#include <algorithm>
#include <chrono>
#include <future>

#include "engine/dense.h"

namespace recsched::exec {

// One query: its sub-batches are taken in order; the last one to finish reports.
struct CpuRunner::Job {
  const Model* model = nullptr;
  BatchView batch;
  uint32_t sub_batch = 0;
  uint32_t num_subs = 0;
  int max_workers = 0;
  std::span<float> scores;
  DoneFn done;
  Clock::time_point deadline;  // the order key with seq (fixed before it is queued)
  uint64_t seq = 0;
  uint32_t next = 0;      // next sub-batch to hand out (under mu_)
  uint32_t finished = 0;  // sub-batches done (under mu_)
  int active = 0;         // workers on it now (under mu_)
  Status first_error;     // (under mu_)
};

bool CpuRunner::EarlierDeadline::operator()(const std::shared_ptr<Job>& a,
                                            const std::shared_ptr<Job>& b) const {
  return a->deadline != b->deadline ? a->deadline < b->deadline : a->seq < b->seq;
}

CpuRunner::CpuRunner(const hw::Topology& topology, hw::CpuDevice device)
    : topology_(topology), device_(std::move(device)) {}

Result<std::unique_ptr<CpuRunner>> CpuRunner::create(const hw::Topology& topology,
                                                     const hw::CpuDevice& device, int workers) {
  if (!topology.is_this_system()) {
    return invalid_argument("a CPU runner needs this machine's topology, not a loaded one");
  }
  // The device's cores, each as a cpuset: one core per worker, round robin.
  RECSCHED_ASSIGN_OR_RETURN(std::vector<std::string> core_sets, topology.core_cpusets(device));
  if (core_sets.empty()) return invalid_argument("device " + device.id + " has no whole core");
  if (workers <= 0) workers = static_cast<int>(core_sets.size());

  std::unique_ptr<CpuRunner> r(new CpuRunner(topology, device));
  r->bindings_.resize(workers);
  r->bind_status_.resize(workers);
  for (int w = 0; w < workers; ++w) {
    r->threads_.emplace_back(&CpuRunner::worker_main, r.get(), w, core_sets[w % core_sets.size()]);
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
  }
  work_cv_.notify_all();
  for (std::thread& t : threads_) t.join();
}

void CpuRunner::worker_main(int index, const std::string& cpuset) {
  Status bound = topology_.bind_thread(cpuset);
  if (bound.is_ok() && device_.numa_node >= 0) {
    // Scratch memory (workspaces) comes from the device's own node too.
    bound = topology_.bind_memory_to_node(device_.numa_node);
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

  engine::Workspace ws;
  std::unique_lock<std::mutex> lock(mu_);
  while (true) {
    // The earliest-deadline query with a sub-batch left and room under its worker cap.
    std::shared_ptr<Job> job;
    work_cv_.wait(lock, [&] {
      // A parked worker takes no work (its core may sleep) until woken or stopping.
      if (index < active_workers_ && !ready_.empty()) {
        job = *ready_.begin();
        return true;
      }
      // Stop only once every queued query has been handed out: nothing is dropped.
      return stopping_ && untaken_ == 0;
    });
    if (!job) return;
    const uint32_t sub = job->next++;
    // Once a sub-batch has failed the query's answer is that error: skip the rest.
    const bool skip = !job->first_error.is_ok();
    ++job->active;
    ++busy_workers_;
    if (job->next == job->num_subs) --untaken_;
    if (job->next == job->num_subs || job->active == job->max_workers) ready_.erase(ready_.begin());
    lock.unlock();

    Status st;
    const auto t0 = std::chrono::steady_clock::now();
    if (!skip) {
      const uint32_t begin = sub * job->sub_batch;
      const uint32_t count = std::min(job->sub_batch, job->batch.batch_size - begin);
      const size_t k = job->model->spec().num_outputs();
      // A worker that throws would end the process: the query fails instead, and its
      // caller sees the device's fault (the daemon marks it degraded).
      st = engine::guarded_forward(*job->model, job->batch.slice(begin, count), ws,
                                   job->scores.subspan(size_t(begin) * k, size_t(count) * k),
                                   device_.id);
    }
    const double busy =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

    lock.lock();
    busy_seconds_ += busy;
    --busy_workers_;
    // At its cap until now, with sub-batches left: it may be taken again.
    const bool again = job->active-- == job->max_workers && job->next < job->num_subs;
    if (again) ready_.insert(job);
    if (!st.is_ok() && job->first_error.is_ok()) job->first_error = st;
    const bool last = ++job->finished == job->num_subs;
    if (last) --in_flight_;
    if (again || last) work_cv_.notify_all();
    if (last) {
      lock.unlock();
      job->done(job->first_error);
      lock.lock();
    }
  }
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
  auto job = std::make_shared<Job>();
  job->model = request.model;
  job->batch = batch;
  job->sub_batch = std::min(sub_batch, batch.batch_size);
  job->num_subs = (batch.batch_size + job->sub_batch - 1) / job->sub_batch;
  job->max_workers = std::min<int>(workers, static_cast<int>(job->num_subs));
  job->scores = request.scores;
  job->done = std::move(request.done);
  job->deadline = request.deadline.value_or(Clock::now());
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_) return unavailable("device " + device_.id + " is shutting down");
    if (in_flight_ >= max_queued) {
      return unavailable("device " + device_.id + " has " + std::to_string(in_flight_) +
                         " queries queued (limit " + std::to_string(max_queued) + ")");
    }
    job->seq = next_seq_++;
    ready_.insert(job);
    ++untaken_;
    ++in_flight_;
  }
  work_cv_.notify_all();
  return Status::ok();
}

Status CpuRunner::run(const Model& model, const BatchView& batch, uint32_t sub_batch, int workers,
                      std::span<float> scores) {
  return run(Request{.model = &model,
                     .batch = batch,
                     .scores = scores,
                     .sub_batch = sub_batch,
                     .workers = workers});
}

void CpuRunner::set_active_workers(int n) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    (void)parked_seconds_locked();
    active_workers_ = std::clamp(n, 1, workers());
  }
  work_cv_.notify_all();
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
