#include "daemon/device.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>

#include "exec/cpu_runner.h"
#include "exec/whole_query_runner.h"

#if defined(RECSCHED_WITH_CUDA)
#include "engine/cuda/cuda_model.h"
#endif

namespace recsched::daemon {

// ---- ServingDevice ----

Result<double> ServingDevice::energy_joules() {
  std::lock_guard<std::mutex> lock(energy_mu_);
  if (auto* estimator = dynamic_cast<profiler::EstimatedMeter*>(meter_.get())) {
    const double busy = runner_->busy_seconds();
    estimator->add_busy((busy - busy_fed_s_) / std::max(1, workers()));
    busy_fed_s_ = busy;
    const double parked = runner_->parked_seconds();
    estimator->add_parked((parked - parked_fed_s_) / std::max(1, workers()));
    parked_fed_s_ = parked;
  }
  return meter_->energy_joules();
}

void ServingDevice::mark_busy_fed() {
  std::lock_guard<std::mutex> lock(energy_mu_);
  busy_fed_s_ = runner_->busy_seconds();
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
  CpuServingDevice(const hw::CpuDevice& d, std::unique_ptr<exec::CpuRunner> runner,
                   profiler::MeterChoice meter, double idle_w)
      : ServingDevice(d.id, policies::DeviceKind::kCpu), device_(d), cpu_(runner.get()) {
    runner_ = std::move(runner);
    meter_ = std::move(meter.meter);
    meter_note_ = std::move(meter.note);
    idle_w_ = idle_w;
  }
  Result<std::unique_ptr<engine::Model>> load_model(const engine::ModelSpec& spec,
                                                    const engine::LoadOptions& lo) override {
    return cpu_->load(spec, lo);
  }
  Result<std::vector<ProfilePoint>> profile(const engine::Model& model,
                                            const profiler::ProfileOptions& o) override {
    return profiler::profile_cpu(*cpu_, model, *meter_, o);
  }
  nlohmann::json describe() const override {
    return {{"kind", "cpu"},
            {"cpuset", device_.cpuset},
            {"cores", device_.cores},
            {"numa_node", device_.numa_node}};
  }

 private:
  hw::CpuDevice device_;
  exec::CpuRunner* cpu_;  // runner_, as the CPU runner it is
};

#if defined(RECSCHED_WITH_CUDA)
class GpuServingDevice final : public ServingDevice {
 public:
  GpuServingDevice(hw::GpuDevice d, int index, profiler::MeterChoice meter, double idle_w,
                   std::function<void()> bind, GpuRunOptions run)
      : ServingDevice(d.id, policies::DeviceKind::kGpu),
        device_(std::move(d)),
        index_(index),
        run_(run) {
    meter_ = std::move(meter.meter);
    meter_note_ = std::move(meter.note);
    idle_w_ = idle_w;
    auto runner = std::make_unique<exec::WholeQueryRunner>(engine::cuda::kServingStreams,
                                                           std::move(bind), id_);
    whole_ = runner.get();
    whole_->set_streams(kDefaultStreams);
    runner_ = std::move(runner);
  }
  Result<std::unique_ptr<engine::Model>> load_model(const engine::ModelSpec& spec,
                                                    const engine::LoadOptions& lo) override {
    engine::cuda::CudaOptions co;
    co.device = index_;
    co.streams = engine::cuda::kServingStreams;
    co.graph_max_items = static_cast<int>(run_.graph_max_items);
    co.table_batched = run_.table_batched;
    return engine::cuda::load_cuda_model(spec, lo, co);
  }
  Result<std::vector<ProfilePoint>> profile(const engine::Model& model,
                                            const profiler::ProfileOptions& o) override {
    return profiler::profile_whole(model, *meter_, o, engine::cuda::kServingStreams);
  }
  void set_streams(uint32_t measured) override {
    whole_->set_streams(measured > 0 ? int(measured) : kDefaultStreams);
  }
  nlohmann::json describe() const override {
    return {{"kind", "gpu"},
            {"model", device_.model},
            {"pci_bus_id", device_.pci_bus_id},
            {"memory_bytes", device_.memory_bytes},
            {"numa_node", device_.numa_node}};
  }

 private:
  // Each model is loaded with kServingStreams streams and the runner has as many threads;
  // the profile says how many of them pay (profile_whole with streams), else
  // kDefaultStreams (CudaOptions' default: one pass's copies overlap another's kernels).
  static constexpr int kDefaultStreams = 2;
  hw::GpuDevice device_;
  int index_;
  GpuRunOptions run_;
  exec::WholeQueryRunner* whole_;  // runner_, as the whole-query runner it is
};
#endif

}  // namespace

Result<std::unique_ptr<ServingDevice>> make_cpu_device(const hw::Topology& topology,
                                                       const hw::CpuDevice& device,
                                                       const profiler::PowerConfig& power,
                                                       int worker_nice) {
  RECSCHED_ASSIGN_OR_RETURN(auto runner,
                            exec::CpuRunner::create(topology, device, 0, worker_nice));
  const int cores = static_cast<int>(std::max<uint32_t>(1, device.cores));
  profiler::MeterChoice meter = profiler::cpu_meter(power, {}, cores);
  return std::unique_ptr<ServingDevice>(new CpuServingDevice(
      device, std::move(runner), std::move(meter), power.cpu_idle_w_per_core * cores));
}

std::vector<std::unique_ptr<ServingDevice>> make_gpu_devices(const hw::Topology& topology,
                                                             const profiler::PowerConfig& power,
                                                             const GpuRunOptions& run,
                                                             std::string* why) {
  std::vector<std::unique_ptr<ServingDevice>> out;
#if defined(RECSCHED_WITH_CUDA)
  for (const auto& g : engine::cuda::list_devices(why)) {
    std::string bus = g.pci_bus_id;
    std::transform(bus.begin(), bus.end(), bus.begin(), ::tolower);
    hw::GpuDevice gd = topology.pci_locality(bus).value_or(hw::GpuDevice{});
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
                                                     power.gpu_idle_w, std::move(bind), run));
  }
#else
  (void)topology;
  (void)power;
  (void)run;
  if (why != nullptr) *why = "this build has no CUDA runner";
#endif
  return out;
}

}  // namespace recsched::daemon
