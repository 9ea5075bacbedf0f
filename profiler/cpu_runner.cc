#include "profiler/cpu_runner.h"

#include <hwloc.h>

#include <chrono>

#include "engine/dense.h"

namespace recsched::profiler {

CpuRunner::CpuRunner(const Topology& topology, CpuDevice device)
    : topology_(topology), device_(std::move(device)) {}

Result<std::unique_ptr<CpuRunner>> CpuRunner::create(const Topology& topology,
                                                     const CpuDevice& device, int workers) {
  if (!topology.is_this_system()) {
    return invalid_argument("a CPU runner needs this machine's topology, not a loaded one");
  }
  // The device's cores, each as a cpuset: one core per worker, round robin.
  Result<Devices> cores = topology.devices(Partition::kCore);
  RECSCHED_RETURN_IF_ERROR(cores.status());
  std::vector<std::string> core_sets;
  {
    hwloc_bitmap_t dev = hwloc_bitmap_alloc();
    hwloc_bitmap_t c = hwloc_bitmap_alloc();
    hwloc_bitmap_list_sscanf(dev, device.cpuset.c_str());
    for (const CpuDevice& core : cores->cpus) {
      hwloc_bitmap_list_sscanf(c, core.cpuset.c_str());
      if (hwloc_bitmap_isincluded(c, dev)) core_sets.push_back(core.cpuset);
    }
    hwloc_bitmap_free(c);
    hwloc_bitmap_free(dev);
  }
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
    r->done_cv_.wait(lock, [&] { return r->started_ == workers; });
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
  done_cv_.notify_all();
  if (!bound.is_ok()) return;

  engine::Workspace ws;
  uint64_t seen = 0;
  while (true) {
    Job* job = nullptr;
    {
      std::unique_lock<std::mutex> lock(mu_);
      work_cv_.wait(lock,
                    [&] { return stopping_ || (job_.generation != seen && index < job_.workers); });
      if (stopping_) return;
      seen = job_.generation;
      job = &job_;
    }
    double busy = 0;
    while (true) {
      uint32_t sub;
      {
        std::lock_guard<std::mutex> lock(mu_);
        if (job->next >= job->num_subs || !job->first_error.is_ok()) break;
        sub = job->next++;
      }
      const uint32_t begin = sub * job->sub_batch;
      const uint32_t count = std::min(job->sub_batch, job->batch.batch_size - begin);
      const size_t k = job->model->spec().num_outputs();
      const auto t0 = std::chrono::steady_clock::now();
      Status st = job->model->forward(job->batch.slice(begin, count), ws,
                                      job->scores.subspan(begin * k, count * k));
      busy += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      if (!st.is_ok()) {
        std::lock_guard<std::mutex> lock(mu_);
        if (job->first_error.is_ok()) job->first_error = st;
      }
    }
    {
      std::lock_guard<std::mutex> lock(mu_);
      busy_seconds_ += busy;
      if (--job->active == 0) done_cv_.notify_all();
    }
  }
}

Status CpuRunner::run(const Model& model, const BatchView& batch, uint32_t sub_batch, int workers,
                      std::span<float> scores) {
  if (sub_batch == 0) return invalid_argument("sub-batch size must be at least 1");
  if (workers < 1 || workers > this->workers()) {
    return invalid_argument("workers must be in [1, " + std::to_string(this->workers()) + "]");
  }
  const size_t k = model.spec().num_outputs();
  if (scores.size() != size_t(batch.batch_size) * k) {
    return invalid_argument("scores buffer has the wrong size");
  }
  if (batch.batch_size == 0) return Status::ok();
  std::lock_guard<std::mutex> serial(run_mu_);
  const uint32_t num_subs = (batch.batch_size + sub_batch - 1) / sub_batch;
  workers = std::min<int>(workers, static_cast<int>(num_subs));
  {
    std::lock_guard<std::mutex> lock(mu_);
    job_.model = &model;
    job_.batch = batch;
    job_.sub_batch = sub_batch;
    job_.num_subs = num_subs;
    job_.workers = workers;
    job_.scores = scores;
    job_.next = 0;
    job_.active = workers;
    job_.first_error = Status::ok();
    ++job_.generation;
  }
  work_cv_.notify_all();
  std::unique_lock<std::mutex> lock(mu_);
  done_cv_.wait(lock, [&] { return job_.active == 0; });
  return job_.first_error;
}

double CpuRunner::busy_seconds() const {
  std::lock_guard<std::mutex> lock(mu_);
  return busy_seconds_;
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

}  // namespace recsched::profiler
