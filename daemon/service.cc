#include "daemon/service.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>

#include "policies/policy.h"
#include "profiler/profile_cache.h"
#include "profiler/profiler.h"

namespace recsched::daemon {

// Latency histogram buckets (seconds) for /metrics.
const std::vector<double>& latency_buckets() {
  static const std::vector<double> kBuckets = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                                               0.05,   0.1,   0.25,   0.5,   1.0,  2.5};
  return kBuckets;
}

void LatencyWindow::add(double ms) {
  samples_.push_back(ms);
  while (samples_.size() > capacity_) samples_.pop_front();
}

double LatencyWindow::percentile(double p) const {
  if (samples_.empty()) return 0;
  std::vector<double> v(samples_.begin(), samples_.end());
  std::sort(v.begin(), v.end());
  const size_t rank = static_cast<size_t>(std::ceil(p / 100.0 * v.size()));
  return v[std::clamp<size_t>(rank, 1, v.size()) - 1];
}

Result<std::unique_ptr<Service>> Service::create(DaemonConfig config,
                                                 std::function<void(const std::string&)> progress) {
  std::unique_ptr<Service> s(new Service());
  s->config_ = std::move(config);
  const DaemonConfig& c = s->config_;

  progress("discovering topology");
  RECSCHED_ASSIGN_OR_RETURN(profiler::Topology topo, profiler::Topology::host());
  s->topology_ = std::make_unique<profiler::Topology>(std::move(topo));
  RECSCHED_ASSIGN_OR_RETURN(s->devices_, s->topology_->devices(c.partition));
  spdlog::info("topology: {} (fingerprint {})", s->topology_->summary(),
               s->topology_->fingerprint());

  // The static policy serves every query on one device, cpu0 unless its params say.
  s->device_id_ = c.policy.params.value("device", std::string("cpu0"));
  const profiler::CpuDevice* device = nullptr;
  for (const auto& d : s->devices_.cpus) {
    if (d.id == s->device_id_) device = &d;
  }
  if (device == nullptr) {
    return invalid_argument("policy device '" + s->device_id_ + "' is not a CPU device here");
  }
  RECSCHED_ASSIGN_OR_RETURN(s->runner_, profiler::CpuRunner::create(*s->topology_, *device));
  spdlog::info("{}: {} workers on CPUs {} (NUMA node {})", device->id, s->runner_->workers(),
               device->cpuset, device->numa_node);
  profiler::MeterChoice meter =
      profiler::cpu_meter(c.power, {}, static_cast<int>(std::max<uint32_t>(1, device->cores)));
  s->meter_ = std::move(meter.meter);
  s->meter_note_ = meter.note;
  spdlog::info("{} power: {}", device->id, meter.note);

  for (size_t i = 0; i < c.models.size(); ++i) {
    const ModelConfig& mc = c.models[i];
    progress("loading " + mc.spec.name + " (" + std::to_string(i + 1) + "/" +
             std::to_string(c.models.size()) + ")");
    engine::LoadOptions lo;
    lo.weights_path = mc.weights_path;
    auto model = s->runner_->load(mc.spec, lo);
    if (!model)
      return Status(model.status().code(), mc.spec.name + ": " + model.status().message());
    auto state = std::make_unique<ModelState>();
    state->cfg = mc;
    state->model = std::move(model).value();
    state->window = LatencyWindow(c.limits.window);
    RECSCHED_ASSIGN_OR_RETURN(state->spec_hash, profiler::spec_hash(mc.spec_path, mc.weights_path));
    spdlog::info("model {}: {} tables, {:.2f} GiB of embeddings, SLA p{:g} {:g} ms", mc.spec.name,
                 mc.spec.num_tables(), mc.spec.table_bytes() / double(1 << 30), mc.sla_percentile,
                 mc.sla_ms);
    s->models_.push_back(std::move(state));
  }

  // Profiles: from the cache when it matches this hardware, build and spec; else measured.
  const auto t0 = std::chrono::steady_clock::now();
  const profiler::CacheIdentity identity{s->topology_->fingerprint(), profiler::build_id()};
  const std::string cache_path = c.state_dir + "/profiles.json";
  profiler::CacheLoad cached = profiler::load_profile_cache(cache_path, identity);
  for (const std::string& w : cached.warnings) spdlog::warn("{}", w);
  auto table = std::make_shared<ProfileTable>();
  std::vector<profiler::CachedProfile> entries;
  size_t measured = 0;
  for (size_t i = 0; i < s->models_.size(); ++i) {
    ModelState& m = *s->models_[i];
    const profiler::CachedProfile* hit = nullptr;
    for (const auto& e : cached.entries) {
      if (e.model == m.cfg.spec.name && e.spec_hash == m.spec_hash && e.device == device->id) {
        hit = &e;
      }
    }
    std::vector<ProfilePoint> points;
    if (hit != nullptr) {
      points = hit->points;
    } else {
      progress("profiling " + m.cfg.spec.name + " (" + std::to_string(i + 1) + "/" +
               std::to_string(s->models_.size()) + ")");
      RECSCHED_ASSIGN_OR_RETURN(
          points, profiler::profile_cpu(*s->runner_, *m.model, *s->meter_, c.profile));
      ++measured;
    }
    for (const ProfilePoint& p : points) table->add(m.cfg.spec.name, device->id, p);
    entries.push_back({m.cfg.spec.name, m.spec_hash, device->id, points});
  }
  if (measured > 0) {
    Status st = profiler::save_profile_cache(cache_path, identity, entries);
    if (!st.is_ok()) spdlog::warn("serving without a profile cache: {}", st.message());
  }
  s->profiles_ = table;
  s->busy_fed_s_ = s->runner_->busy_seconds();  // the sweeps fed their own busy time
  s->profile_seconds_ =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  spdlog::info("profiles: {} measured, {} from the cache, in {:.1f} s", measured,
               s->models_.size() - measured, s->profile_seconds_);
  s->ready_ = true;
  return s;
}

Service::~Service() {
  if (reprofile_.joinable()) reprofile_.join();
  runner_.reset();  // finishes every queued query first
}

Service::ModelState* Service::find(const std::string& name) const {
  for (const auto& m : models_) {
    if (m->cfg.spec.name == name) return m.get();
  }
  return nullptr;
}

double Service::predict_ms(const ModelState& m, uint32_t items) const {
  std::shared_ptr<const ProfileTable> table;
  {
    std::lock_guard<std::mutex> lock(mu_);
    table = profiles_;
  }
  // A query runs whole on one worker (static placement); 0 when there is no profile.
  return policies::predict_service_ms(*table, m.cfg.spec.name, device_id_, items, items, 1)
      .value_or(0.0);
}

Result<double> Service::energy_joules() const {
  std::lock_guard<std::mutex> lock(energy_mu_);
  if (auto* estimator = dynamic_cast<profiler::EstimatedMeter*>(meter_.get())) {
    const double busy = runner_->busy_seconds();
    const double cores = std::max(1, runner_->workers());
    estimator->add_busy((busy - busy_fed_s_) / cores);
    busy_fed_s_ = busy;
  }
  return meter_->energy_joules();
}

void Service::record(Placement p) {
  std::lock_guard<std::mutex> lock(mu_);
  placements_.push_back(std::move(p));
  while (placements_.size() > config_.limits.placement_log) placements_.pop_front();
}

std::string Service::reload(const DaemonConfig& next) {
  std::vector<std::string> ignored;
  if (!(next.listen == config_.listen)) ignored.push_back("listen");
  if (next.models.size() != config_.models.size()) ignored.push_back("models");
  if (next.partition != config_.partition) ignored.push_back("partition");
  std::lock_guard<std::mutex> lock(mu_);
  for (const ModelConfig& mc : next.models) {
    if (ModelState* m = find(mc.spec.name)) {
      m->cfg.sla_ms = mc.sla_ms;
      m->cfg.sla_percentile = mc.sla_percentile;
    } else {
      ignored.push_back("models[" + mc.spec.name + "]");
    }
  }
  // The HTTP server's limits and the latency windows were sized at start.
  const LimitsConfig& a = config_.limits;
  const LimitsConfig& b = next.limits;
  if (a.max_body_bytes != b.max_body_bytes || a.max_connections != b.max_connections ||
      a.read_timeout_ms != b.read_timeout_ms || a.idle_timeout_ms != b.idle_timeout_ms ||
      a.window != b.window) {
    ignored.push_back(
        "limits.{max_body_bytes,max_connections,read_timeout_ms,idle_timeout_ms,window}");
  }
  config_.limits.max_queue = b.max_queue;
  config_.limits.max_items = b.max_items;
  config_.limits.reject_factor = b.reject_factor;
  config_.limits.placement_log = b.placement_log;
  config_.token = next.token;
  config_.policy.params = next.policy.params;
  std::string out =
      "reloaded SLA targets, admission limits (max_queue, max_items, reject_factor, "
      "placement_log), token and policy parameters";
  if (!ignored.empty()) {
    out += "; needs a restart to change:";
    for (const std::string& k : ignored) out += " " + k;
  }
  return out;
}

}  // namespace recsched::daemon
