#include "daemon/device.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>

#if defined(RECSCHED_WITH_CUDA)
#include "engine/cuda/cuda_model.h"
#endif

namespace recsched::daemon {

// ---- WholeQueryRunner ----

WholeQueryRunner::WholeQueryRunner(int threads, std::function<void()> bind, std::string name)
    : name_(std::move(name)) {
  for (int i = 0; i < std::max(1, threads); ++i) {
    threads_.emplace_back([this, bind] {
      if (bind) bind();
      main();
    });
  }
}

WholeQueryRunner::~WholeQueryRunner() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  for (std::thread& t : threads_) t.join();
}

Status WholeQueryRunner::submit(const engine::Model& model, const BatchView& batch,
                                std::span<float> scores, DoneFn done, size_t max_queued) {
  if (scores.size() != size_t(batch.batch_size) * model.spec().num_outputs()) {
    return invalid_argument("scores buffer has the wrong size");
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_) return unavailable("device is shutting down");
    if (in_flight_ >= max_queued) {
      return unavailable("device has " + std::to_string(in_flight_) + " queries queued (limit " +
                         std::to_string(max_queued) + ")");
    }
    queue_.push_back({&model, batch, scores, std::move(done)});
    ++in_flight_;
  }
  cv_.notify_one();
  return Status::ok();
}

void WholeQueryRunner::main() {
  engine::Workspace ws;
  std::unique_lock<std::mutex> lock(mu_);
  while (true) {
    cv_.wait(lock, [&] { return !queue_.empty() || stopping_; });
    if (queue_.empty()) return;  // stopping, and everything was handed out
    Job job = std::move(queue_.front());
    queue_.pop_front();
    ++busy_;
    lock.unlock();
    const auto t0 = std::chrono::steady_clock::now();
    // A throwing worker would end the process: the query fails instead (see CpuRunner).
    Status st = engine::guarded_forward(*job.model, job.batch, ws, job.scores, name_);
    const double busy =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    job.done(std::move(st));
    lock.lock();
    --busy_;
    --in_flight_;
    busy_seconds_ += busy;
  }
}

profiler::CpuRunner::Load WholeQueryRunner::current_load() const {
  std::lock_guard<std::mutex> lock(mu_);
  return {in_flight_, busy_};
}

double WholeQueryRunner::busy_seconds() const {
  std::lock_guard<std::mutex> lock(mu_);
  return busy_seconds_;
}

// ---- ServingDevice ----

Result<double> ServingDevice::energy_joules() {
  std::lock_guard<std::mutex> lock(energy_mu_);
  if (auto* estimator = dynamic_cast<profiler::EstimatedMeter*>(meter_.get())) {
    const double busy = busy_seconds();
    estimator->add_busy((busy - busy_fed_s_) / std::max(1, workers()));
    busy_fed_s_ = busy;
    const double parked = parked_seconds();
    estimator->add_parked((parked - parked_fed_s_) / std::max(1, workers()));
    parked_fed_s_ = parked;
  }
  return meter_->energy_joules();
}

void ServingDevice::mark_busy_fed() {
  std::lock_guard<std::mutex> lock(energy_mu_);
  busy_fed_s_ = busy_seconds();
}

void ServingDevice::record_outcome(const Status& st) {
  if (st.is_ok()) return;
  std::lock_guard<std::mutex> lock(health_mu_);
  ++failures_;
  last_error_ = st.message();
  last_failure_ = std::chrono::steady_clock::now();
}

ServingDevice::Health ServingDevice::health(uint32_t degraded_ms) const {
  std::lock_guard<std::mutex> lock(health_mu_);
  Health h;
  h.failures = failures_;
  h.last_error = last_error_;
  if (failures_ > 0) {
    h.since_failure_s =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - last_failure_).count();
    h.degraded = h.since_failure_s * 1000 < degraded_ms;
  }
  return h;
}

namespace {

class CpuServingDevice final : public ServingDevice {
 public:
  CpuServingDevice(const profiler::CpuDevice& d, std::unique_ptr<profiler::CpuRunner> runner,
                   profiler::MeterChoice meter, double idle_w)
      : ServingDevice(d.id, policies::DeviceKind::kCpu), device_(d), runner_(std::move(runner)) {
    meter_ = std::move(meter.meter);
    meter_note_ = std::move(meter.note);
    idle_w_ = idle_w;
  }
  int workers() const override { return runner_->workers(); }
  policies::DeviceLoad load() const override {
    const auto l = runner_->current_load();
    const int active = runner_->active_workers();
    return {l.busy_workers, l.queries, active < runner_->workers() ? active : 0};
  }
  void set_active_workers(int n) override { runner_->set_active_workers(n); }
  double busy_seconds() const override { return runner_->busy_seconds(); }
  double parked_seconds() const override { return runner_->parked_seconds(); }
  Result<std::unique_ptr<engine::Model>> load_model(const engine::ModelSpec& spec,
                                                    const engine::LoadOptions& lo) override {
    return runner_->load(spec, lo);
  }
  Status submit(const engine::Model& model, const BatchView& batch, uint32_t sub_batch, int workers,
                std::span<float> scores, DoneFn done, size_t max_queued,
                std::chrono::steady_clock::time_point deadline) override {
    return runner_->submit(model, batch, sub_batch, std::clamp(workers, 1, runner_->workers()),
                           scores, std::move(done), max_queued, deadline);
  }
  Result<std::vector<ProfilePoint>> profile(const engine::Model& model,
                                            const profiler::ProfileOptions& o) override {
    return profiler::profile_cpu(*runner_, model, *meter_, o);
  }
  nlohmann::json describe() const override {
    return {{"kind", "cpu"},
            {"cpuset", device_.cpuset},
            {"cores", device_.cores},
            {"numa_node", device_.numa_node}};
  }

 private:
  profiler::CpuDevice device_;
  std::unique_ptr<profiler::CpuRunner> runner_;
};

#if defined(RECSCHED_WITH_CUDA)
class GpuServingDevice final : public ServingDevice {
 public:
  GpuServingDevice(profiler::GpuDevice d, int index, profiler::MeterChoice meter, double idle_w,
                   std::function<void()> bind)
      : ServingDevice(d.id, policies::DeviceKind::kGpu), device_(std::move(d)), index_(index) {
    meter_ = std::move(meter.meter);
    meter_note_ = std::move(meter.note);
    idle_w_ = idle_w;
    runner_ = std::make_unique<WholeQueryRunner>(kStreams, std::move(bind), id_);
  }
  int workers() const override { return runner_->threads(); }
  policies::DeviceLoad load() const override {
    const auto l = runner_->current_load();
    return {l.busy_workers, l.queries, 0};
  }
  double busy_seconds() const override { return runner_->busy_seconds(); }
  Result<std::unique_ptr<engine::Model>> load_model(const engine::ModelSpec& spec,
                                                    const engine::LoadOptions& lo) override {
    engine::cuda::CudaOptions co;
    co.device = index_;
    co.streams = kStreams;
    return engine::cuda::load_cuda_model(spec, lo, co);
  }
  Status submit(const engine::Model& model, const BatchView& batch, uint32_t, int,
                std::span<float> scores, DoneFn done, size_t max_queued,
                std::chrono::steady_clock::time_point) override {
    return runner_->submit(model, batch, scores, std::move(done), max_queued);
  }
  Result<std::vector<ProfilePoint>> profile(const engine::Model& model,
                                            const profiler::ProfileOptions& o) override {
    return profiler::profile_whole(model, *meter_, o);
  }
  nlohmann::json describe() const override {
    return {{"kind", "gpu"},
            {"model", device_.model},
            {"pci_bus_id", device_.pci_bus_id},
            {"memory_bytes", device_.memory_bytes},
            {"numa_node", device_.numa_node}};
  }

 private:
  static constexpr int kStreams = 2;  // as CudaOptions' default: one copy overlaps one kernel
  profiler::GpuDevice device_;
  int index_;
  std::unique_ptr<WholeQueryRunner> runner_;
};
#endif

}  // namespace

Result<std::unique_ptr<ServingDevice>> make_cpu_device(const profiler::Topology& topology,
                                                       const profiler::CpuDevice& device,
                                                       const profiler::PowerConfig& power) {
  RECSCHED_ASSIGN_OR_RETURN(auto runner, profiler::CpuRunner::create(topology, device));
  const int cores = static_cast<int>(std::max<uint32_t>(1, device.cores));
  profiler::MeterChoice meter = profiler::cpu_meter(power, {}, cores);
  return std::unique_ptr<ServingDevice>(new CpuServingDevice(
      device, std::move(runner), std::move(meter), power.cpu_idle_w_per_core * cores));
}

std::vector<std::unique_ptr<ServingDevice>> make_gpu_devices(const profiler::Topology& topology,
                                                             const profiler::PowerConfig& power,
                                                             std::string* why) {
  std::vector<std::unique_ptr<ServingDevice>> out;
#if defined(RECSCHED_WITH_CUDA)
  for (const auto& g : engine::cuda::list_devices(why)) {
    std::string bus = g.pci_bus_id;
    std::transform(bus.begin(), bus.end(), bus.begin(), ::tolower);
    profiler::GpuDevice gd = topology.pci_locality(bus).value_or(profiler::GpuDevice{});
    gd.id = "gpu" + std::to_string(g.index);
    gd.pci_bus_id = bus;
    gd.model = g.name;
    gd.memory_bytes = g.memory_bytes;
    gd.backend = "CUDA";
    // The threads that feed the GPU (packing queries into pinned memory) run near it.
    std::function<void()> bind;
    if (!gd.local_cpuset.empty()) {
      bind = [&topology, cpuset = gd.local_cpuset, node = gd.numa_node, id = gd.id] {
        Status st = topology.bind_thread(cpuset);
        if (st.is_ok() && node >= 0) st = topology.bind_memory_to_node(node);
        if (!st.is_ok()) spdlog::warn("{}: feeding thread not bound: {}", id, st.message());
      };
    }
    profiler::MeterChoice meter = profiler::gpu_meter(power, g.index, bus);
    out.push_back(std::make_unique<GpuServingDevice>(gd, g.index, std::move(meter),
                                                     power.gpu_idle_w, std::move(bind)));
  }
#else
  (void)topology;
  (void)power;
  if (why != nullptr) *why = "this build has no CUDA runner";
#endif
  return out;
}

}  // namespace recsched::daemon
