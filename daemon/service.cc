#include "daemon/service.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>

#include "policies/policy.h"
#include "policies/registry.h"
#include "engine/inputs.h"
#include "exec/whole_query_runner.h"
#include "profiler/profile_cache.h"
#include "profiler/profiler.h"
#include "sim/tune.h"

namespace recsched::daemon {

ServerOptions server_options(const LimitsConfig& l) {
  ServerOptions o;
  o.max_body_bytes = l.max_body_bytes;
  o.max_header_bytes = l.max_header_bytes;
  o.max_headers = l.max_headers;
  o.max_connections = l.max_connections;
  o.header_timeout_ms = l.header_timeout_ms;
  o.read_timeout_ms = l.read_timeout_ms;
  o.idle_timeout_ms = l.idle_timeout_ms;
  o.io_threads = static_cast<int>(l.io_threads);
  o.idle_poll_us = l.idle_poll_us;
  return o;
}

std::unique_ptr<HttpServer> create_server(Service& svc, const LimitsConfig& limits) {
  auto server = HttpServer::create(server_options(limits), [&svc](HttpRequest req,
                                                                  Responder respond) {
    svc.handle(std::move(req), std::move(respond));
  });
  server->set_poll_gate([&svc] { return svc.in_flight() == 0; });
  svc.watch_io(server->io_counters(), limits.idle_poll_us);
  return server;
}

namespace {

policies::Admission admission(const LimitsConfig& l) {
  policies::Admission a;
  a.reject_factor = l.reject_factor;
  a.normal_share = l.normal_priority_share;
  a.low_share = l.low_priority_share;
  a.late_budget = l.late_budget;
  // The prediction is already the corrected one (the profile table corrected by
  // ServiceCorrection, plus the learnt time outside the runner): the dispatcher's own
  // latency ratio on top (mean + 1.645 sd, queueing noise included; since removed) turned
  // away queries that met their targets. In the simulator, on the 2-worker mix at the medium
  // targets, it cost earliest-finish 100.7 -> 59.8 q/s and min-energy 104.3 -> 55.1 (docs/
  // policies.md). One rule here and in the simulator: the prediction against
  // reject_factor x the target, and a query that waits for no one is admitted.
  a.admit_idle = true;
  return a;
}

policies::BoundedWait bounded_wait(const LimitsConfig& l) {
  policies::BoundedWait b;
  b.on = l.wait_bound_fraction > 0;
  b.fraction = l.wait_bound_fraction;
  b.preemption = l.preemption;
  return b;
}

}  // namespace

// Latency histogram buckets (seconds) for /metrics.
const std::vector<double>& latency_buckets() {
  static const std::vector<double> kBuckets = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                                               0.05,   0.1,   0.25,   0.5,   1.0,  2.5};
  return kBuckets;
}

void LatencyWindow::add(double ms) {
  samples_.push_back(ms);
  sorted_.insert(std::upper_bound(sorted_.begin(), sorted_.end(), ms), ms);
  while (samples_.size() > capacity_) {
    sorted_.erase(std::lower_bound(sorted_.begin(), sorted_.end(), samples_.front()));
    samples_.pop_front();
  }
}

double LatencyWindow::percentile(double p) const {
  if (sorted_.empty()) return 0;
  const size_t rank = static_cast<size_t>(std::ceil(p / 100.0 * sorted_.size()));
  return sorted_[std::clamp<size_t>(rank, 1, sorted_.size()) - 1];
}

// Start-up, in the order it happens: each step a call whose name says what it does.
Result<std::unique_ptr<Service>> Service::create(DaemonConfig config,
                                                 std::function<void(const std::string&)> progress) {
  std::unique_ptr<Service> s(new Service());
  s->config_ = std::move(config);
  s->shm_ = std::make_unique<SystemSharedMemory>(s->config_.limits.max_shm_regions);
  s->hold_cpu_latency();
  RECSCHED_RETURN_IF_ERROR(s->discover_topology(progress));
  s->load_policy_plugins();
  RECSCHED_RETURN_IF_ERROR(s->open_devices(progress));
  auto policy = s->make_policy(s->config_.policy.name, s->config_.policy.params);
  if (!policy) return invalid_argument("policy: " + policy.status().message());
  RECSCHED_RETURN_IF_ERROR(s->load_models(progress));
  RECSCHED_RETURN_IF_ERROR(s->load_or_measure_profiles(progress));
  s->warm_up(progress);
  {
    // deeprecsched is tuned before serving, as DeepRecSys does, now that profiles exist.
    const nlohmann::json& given = s->config_.policy.params;
    const nlohmann::json tuned = s->with_tuning(s->config_.policy.name, given);
    if (tuned != given) {
      Status st = (*policy)->configure(tuned);
      if (!st.is_ok()) return internal_error("policy: the tuned settings were refused: " + st.message());
    }
  }
  s->start_dispatcher(std::move(policy).value());
  s->write_nfd_features();
  s->ready_ = true;
  return s;
}

void Service::hold_cpu_latency() {
  cpu_latency_ = CpuLatencyHold::take(config_.limits.cpu_latency_us);
  if (!cpu_latency_.asked()) return;
  if (!cpu_latency_.held()) {
    spdlog::warn("limits.cpu_latency_us = {}: not held, idle cores may sleep deeper: {}",
                 *config_.limits.cpu_latency_us, cpu_latency_.error());
    return;
  }
  spdlog::info("limits.cpu_latency_us = {}: CPU latency QoS held ({} in effect): idle cores "
               "wake within it, at the cost of idle power",
               *config_.limits.cpu_latency_us, cpu_latency_.in_effect());
}

Status Service::discover_topology(const Progress& progress) {
  const DaemonConfig& c = config_;
  progress("discovering topology");
  RECSCHED_ASSIGN_OR_RETURN(hw::Topology topo, hw::Topology::host());
  topology_ = std::make_unique<hw::Topology>(std::move(topo));
  RECSCHED_ASSIGN_OR_RETURN(hardware_, topology_->devices(c.partition));
  spdlog::info("topology: {} (fingerprint {})", topology_->summary(),
               topology_->fingerprint());
  return Status::ok();
}

// External policies first: the configured policy may be one of them.
void Service::load_policy_plugins() {
  const DaemonConfig& c = config_;
  if (!c.policy.plugin_dir.empty()) {
    auto outcomes = plugins_.load_dir(c.policy.plugin_dir, policies::policy_names());
    if (!outcomes) {
      spdlog::error("{}", outcomes.status().message());
    } else {
      for (const auto& o : *outcomes) {
        if (o.error.empty()) {
          spdlog::info("policy plugin {}: loaded '{}'", o.path, o.name);
        } else {
          spdlog::error("policy plugin {} refused: {}", o.path, o.error);
        }
      }
      plugin_outcomes_ = std::move(outcomes).value();
    }
  }
}

// The devices to serve on: the configured ones, or every CPU device (and GPU).
Status Service::open_devices(const Progress& progress) {
  const DaemonConfig& c = config_;
  std::string gpu_why;
  std::vector<std::unique_ptr<ServingDevice>> gpus;
  const bool want_gpus =
      c.gpus && (c.devices.empty() || std::any_of(c.devices.begin(), c.devices.end(),
                                                  [](auto& d) { return d.rfind("gpu", 0) == 0; }));
  if (want_gpus) {
    progress("looking for GPUs");
    gpus = make_gpu_devices(*topology_, c.power, {c.gpu_graph_max_items, c.gpu_table_batched},
                            &gpu_why);
    if (gpus.empty()) spdlog::info("GPUs: none served ({})", gpu_why);
  }
  auto wanted = [&](const std::string& id) {
    return c.devices.empty() ||
           std::find(c.devices.begin(), c.devices.end(), id) != c.devices.end();
  };
  for (const std::string& id : c.devices) {
    const bool cpu = std::any_of(hardware_.cpus.begin(), hardware_.cpus.end(),
                                 [&](const auto& d) { return d.id == id; });
    const bool gpu =
        std::any_of(gpus.begin(), gpus.end(), [&](const auto& d) { return d->id() == id; });
    if (!cpu && !gpu) {
      std::string have;
      for (const auto& d : hardware_.cpus) have += " " + d.id;
      for (const auto& d : gpus) have += " " + d->id();
      return invalid_argument("devices: '" + id + "' is not a device of this host with partition " +
                              std::string(hw::to_string(c.partition)) + " (have:" + have +
                              (gpu_why.empty() ? "" : "; GPUs: " + gpu_why) + ")");
    }
  }
  for (const hw::CpuDevice& d : hardware_.cpus) {
    if (!wanted(d.id)) continue;
    RECSCHED_ASSIGN_OR_RETURN(auto dev,
                              make_cpu_device(*topology_, d, c.power, int(c.limits.worker_nice)));
    // Before profiling, so that the profiles measure passes as serving runs them (with
    // preemption on, the long steps cut into blocks).
    dev->runner().set_preemption(c.limits.preemption);
    spdlog::info("{}: {} workers on CPUs {} (NUMA node {}); power: {}", d.id, dev->workers(),
                 d.cpuset, d.numa_node, dev->power_note());
    devices_.push_back(std::move(dev));
  }
  for (auto& g : gpus) {
    if (!wanted(g->id())) continue;
    spdlog::info("{}: {}; power: {}", g->id(), g->describe().dump(), g->power_note());
    devices_.push_back(std::move(g));
  }
  if (devices_.empty()) return invalid_argument("devices: nothing to serve on");
  // A policy pinned to one device (static's "device") must name a served one.
  if (c.policy.params.contains("device") && c.policy.params["device"].is_string()) {
    const std::string want = c.policy.params["device"];
    if (std::none_of(devices_.begin(), devices_.end(),
                     [&](const auto& d) { return d->id() == want; })) {
      return invalid_argument("policy.params.device: '" + want + "' is not a served device");
    }
  }
  return Status::ok();
}

// Every model on every device (a GPU it does not fit is left out for that model).
Status Service::load_models(const Progress& progress) {
  const DaemonConfig& c = config_;
  for (size_t i = 0; i < c.models.size(); ++i) {
    const ModelConfig& mc = c.models[i];
    progress("loading " + mc.spec.name + " (" + std::to_string(i + 1) + "/" +
             std::to_string(c.models.size()) + ")");
    auto state = std::make_unique<ModelState>();
    state->cfg = mc;
    state->window = LatencyWindow(c.limits.window);
    state->per_device.assign(devices_.size(), 0);
    engine::LoadOptions lo;
    lo.weights_path = mc.weights_path;
    for (const auto& dev : devices_) {
      auto model = dev->load_model(mc.spec, lo);
      if (!model && dev->kind() == policies::DeviceKind::kCpu) {
        return Status(model.status().code(), mc.spec.name + ": " + model.status().message());
      }
      if (!model) {
        // A model that does not fit one GPU is still served on the CPUs.
        spdlog::warn("{} not on {}: {}", mc.spec.name, dev->id(), model.status().message());
        state->on.push_back(nullptr);
        continue;
      }
      state->on.push_back(std::move(model).value());
    }
    RECSCHED_ASSIGN_OR_RETURN(state->spec_hash, profiler::spec_hash(mc.spec_path, mc.weights_path));
    spdlog::info("model {}: {} tables, {:.2f} GiB of embeddings, SLA p{:g} {:g} ms", mc.spec.name,
                 mc.spec.num_tables(), mc.spec.table_bytes() / double(1 << 30), mc.sla_percentile,
                 mc.sla_ms);
    models_.push_back(std::move(state));
  }
  return Status::ok();
}

void Service::warm_up(const Progress& progress) {
  // Each model runs once on every worker of every device it is served on, at the largest
  // size a query is likely to have (DeepRecInfra's sizes: lognormal with a 1024 cap), so
  // that the first queries served find their scratch memory allocated and touched (a
  // model's first pass on a worker ran 10-25x its steady time on this VM; with the
  // profiles from the cache nothing had run before serving). A failure is logged: the
  // device fails that model's queries as it would have.
  const auto t0 = std::chrono::steady_clock::now();
  const uint32_t items = std::min<uint32_t>(kWarmUpItems, config_.limits.max_items);
  progress("warming up " + std::to_string(models_.size()) + " models at " +
           std::to_string(items) + " items");
  for (const auto& m : models_) {
    const Batch batch = engine::random_batch(m->cfg.spec, items, /*seed=*/1);
    for (size_t di = 0; di < devices_.size(); ++di) {
      if (!m->on[di]) continue;
      Status st = devices_[di]->runner().warm_up(*m->on[di], view_of(batch));
      if (!st.is_ok()) {
        spdlog::warn("warm-up of {} on {} failed: {}", m->cfg.spec.name, devices_[di]->id(),
                     st.message());
      }
    }
  }
  spdlog::info("warmed up {} models at {} items in {:.2f} s", models_.size(), items,
               std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
}

// Profiles: from the cache when it matches this hardware, build and spec; else measured.
Status Service::load_or_measure_profiles(const Progress& progress) {
  const DaemonConfig& c = config_;
  const auto t0 = std::chrono::steady_clock::now();
  const profiler::CacheIdentity identity{
      topology_->fingerprint(), profiler::build_id(),
      profiler::measuring_conditions(
          {c.profile, c.power, c.gpu_graph_max_items, c.gpu_table_batched,
           cpu_latency_.held_us()})};
  const std::string cache_path = c.state_dir + "/profiles.json";
  profiler::CacheLoad cached = profiler::load_profile_cache(cache_path, identity);
  for (const std::string& w : cached.warnings) spdlog::warn("{}", w);
  auto table = std::make_shared<ProfileTable>();
  std::vector<profiler::CachedProfile> entries;
  size_t measured = 0, from_cache = 0;
  const size_t total = models_.size() * devices_.size();
  for (size_t i = 0; i < models_.size(); ++i) {
    ModelState& m = *models_[i];
    for (size_t di = 0; di < devices_.size(); ++di) {
      ServingDevice& dev = *devices_[di];
      if (!m.on[di]) continue;
      const profiler::CachedProfile* hit = nullptr;
      for (const auto& e : cached.entries) {
        if (e.model == m.cfg.spec.name && e.spec_hash == m.spec_hash && e.device == dev.id()) {
          hit = &e;
        }
      }
      std::vector<ProfilePoint> points;
      if (hit != nullptr) {
        points = hit->points;
        ++from_cache;
      } else {
        progress("profiling " + m.cfg.spec.name + " on " + dev.id() + " (" +
                 std::to_string(measured + from_cache + 1) + "/" + std::to_string(total) + ")");
        RECSCHED_ASSIGN_OR_RETURN(points, dev.profile(*m.on[di], c.profile));
        ++measured;
      }
      for (const ProfilePoint& p : points) table->add(m.cfg.spec.name, dev.id(), p);
      entries.push_back({m.cfg.spec.name, m.spec_hash, dev.id(), points});
    }
  }
  // Entries of devices not served this time stay in the cache for the next start.
  for (const auto& e : cached.entries) {
    if (std::none_of(entries.begin(), entries.end(),
                     [&](const auto& x) { return x.model == e.model && x.device == e.device; })) {
      entries.push_back(e);
    }
  }
  if (measured > 0) {
    Status st = profiler::save_profile_cache(cache_path, identity, entries);
    if (!st.is_ok()) spdlog::warn("serving without a profile cache: {}", st.message());
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    set_measured_profiles(table);
  }
  for (auto& dev : devices_) dev->mark_busy_fed();  // the sweeps fed their own busy time
  // Before the dispatcher counts each device's workers: a GPU's passes at once. Set here
  // only, so a re-profile's streams apply from the next start.
  for (auto& dev : devices_) {
    if (dev->kind() != policies::DeviceKind::kGpu) continue;
    const uint32_t measured = streams_paying(*table, dev->id());
    dev->set_streams(measured);
    spdlog::info("{}: {} passes at once ({})", dev->id(), dev->workers(),
                 measured > 0 ? "as many as its profile found paying"
                              : "the default: its profile did not measure streams");
  }
  profile_seconds_ =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  spdlog::info("profiles: {} measured, {} from the cache, in {:.1f} s", measured, from_cache,
               profile_seconds_);
  return Status::ok();
}

void Service::start_dispatcher(std::unique_ptr<policies::Policy> policy) {
  const DaemonConfig& c = config_;
  dispatcher_ = std::make_unique<policies::Dispatcher>(device_infos(), std::move(policy),
                                                       admission(c.limits));
  dispatcher_->set_bounded_wait(bounded_wait(c.limits));
  dispatcher_->set_gpu_merging(c.limits.gpu_merging, kMaxMergedItems);
  spdlog::info("policy: {} {}", c.policy.name, dispatcher_->policy().params().dump());
}

std::vector<policies::DeviceInfo> Service::device_infos() const {
  std::vector<policies::DeviceInfo> infos;
  for (const auto& dev : devices_) {
    infos.push_back({dev->id(), dev->kind(), dev->workers(), dev->idle_w()});
  }
  return infos;
}

Service::~Service() {
  // The queries the runners still finish below must not look at the other devices (the
  // ORCA header's capacity does): they are being destroyed one by one.
  closing_ = true;
  if (reprofile_.joinable()) reprofile_.join();
  devices_.clear();  // each runner finishes every queued query first
}

Service::ModelState* Service::find(const std::string& name) const {
  for (const auto& m : models_) {
    if (m->cfg.spec.name == name) return m.get();
  }
  return nullptr;
}

void Service::set_measured_profiles(std::shared_ptr<const ProfileTable> table) {
  measured_profiles_ = table;
  profiles_ = std::move(table);
  correction_ = {};
  learnt_since_publish_ = 0;
  apply_gpu_merging();
}

void Service::apply_gpu_merging() {
  for (const auto& dev : devices_) {
    auto* runner = dynamic_cast<exec::WholeQueryRunner*>(&dev->runner());
    if (dev->kind() != policies::DeviceKind::kGpu || runner == nullptr) continue;
    exec::WholeQueryRunner::Merging m;
    m.on = config_.limits.gpu_merging && measured_profiles_ != nullptr;
    m.max_items = kMaxMergedItems;
    // A snapshot: the rule runs under the runner's lock and must not take the service's.
    m.service_ms = [table = measured_profiles_, id = dev->id()](const engine::Model& model,
                                                                uint32_t items) {
      return policies::predict_service_ms(*table, model.spec().name, id, items, items, 1)
          .value_or(0.0);
    };
    runner->set_merging(std::move(m));
  }
}

std::shared_ptr<const ProfileTable> Service::profiles() const {
  std::lock_guard<std::mutex> lock(mu_);
  return profiles_;
}

std::vector<std::string> Service::policy_names() const {
  std::vector<std::string> names = policies::policy_names();
  for (const std::string& n : plugins_.names()) names.push_back(n);
  return names;
}

Result<std::unique_ptr<policies::Policy>> Service::make_policy(const std::string& name,
                                                               const nlohmann::json& params) const {
  auto p = plugins_.has(name) ? plugins_.create(name, params) : policies::create_policy(name, params);
  if (!p && p.status().code() == StatusCode::kNotFound && !plugins_.has(name)) {
    std::string known;
    for (const std::string& n : policy_names()) known += (known.empty() ? "" : ", ") + n;
    return invalid_argument("unknown policy '" + name + "' (available: " + known + ")");
  }
  // A policy pinned to one device (static's "device") and not told which takes the first
  // served one: its own default, cpu0, may not be served here (config "devices").
  if (p && !devices_.empty() && !params.contains("device") && (*p)->params().contains("device")) {
    RECSCHED_RETURN_IF_ERROR((*p)->configure({{"device", devices_.front()->id()}}));
  }
  return p;
}

nlohmann::json Service::with_tuning(const std::string& name, nlohmann::json params) const {
  if (name != "deeprecsched" || !params.is_object() || params.contains("models") ||
      (params.contains("tune") && params["tune"] == false)) {
    return params;
  }
  std::vector<sim::Device> devices;
  std::string key;  // what the tuning depends on besides the profile table
  for (const policies::DeviceInfo& info : device_infos()) {
    devices.push_back({info, 0});
    key += info.id + "x" + std::to_string(info.workers) + ",";
  }
  std::vector<sim::ModelTarget> targets;
  sim::DrsTuneOptions options;  // DeepRecInfra's lognormal query sizes
  std::shared_ptr<const ProfileTable> table;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (const auto& m : models_) {
      targets.push_back({m->cfg.spec.name, m->cfg.sla_ms});
      key += m->cfg.spec.name + "=" + std::to_string(m->cfg.sla_ms) + ",";
    }
    options.sim.admission = admission(config_.limits);
    options.sim.wait_bound_fraction = config_.limits.wait_bound_fraction;
    options.sim.preemption = config_.limits.preemption;
    options.sim.max_queue = config_.limits.max_queue;
    // The profiles as measured: the learnt corrections move every 16 answers, and a
    // re-tuning each time would cost seconds of CPU per policy switch under load.
    table = measured_profiles_;
  }
  key += std::to_string(options.sim.admission.reject_factor) + "," +
         std::to_string(options.sim.admission.normal_share) + "," +
         std::to_string(options.sim.admission.late_budget) + "," +
         std::to_string(options.sim.wait_bound_fraction) + "," +
         std::to_string(options.sim.preemption) + "," +
         std::to_string(options.sim.max_queue);
  std::lock_guard<std::mutex> lock(tuning_mu_);
  if (tuning_.table != table || tuning_.key != key) {
    const auto t0 = std::chrono::steady_clock::now();
    Result<sim::DrsTuning> tuning = sim::tune_deeprecsched(devices, *table, targets, options);
    if (!tuning) {
      spdlog::warn("deeprecsched: not tuned before serving ({}); it hill-climbs online",
                   tuning.status().message());
      return params;
    }
    std::string summary;
    for (const sim::DrsModelTuning& m : tuning->models) {
      summary += " " + m.model + " b=" + std::to_string(m.best.sub_batch) + " threshold=" +
                 (m.best.threshold ? std::to_string(*m.best.threshold) : "never");
    }
    spdlog::info("deeprecsched tuned before serving on the measured profiles in {:.1f} s:{}",
                 std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(),
                 summary);
    tuning_ = {table, key, tuning->params()["models"]};
  }
  params["models"] = tuning_.models;
  return params;
}

Status Service::set_policy(const std::string& name, const nlohmann::json& given) {
  const nlohmann::json params = with_tuning(name, given);
  if (params.contains("device") && params["device"].is_string()) {
    const std::string want = params["device"];
    if (std::none_of(devices_.begin(), devices_.end(),
                     [&](const auto& d) { return d->id() == want; })) {
      return invalid_argument("params: device '" + want + "' is not a served device");
    }
  }
  {
    std::lock_guard<std::mutex> lock(dispatch_mu_);
    if (dispatcher_->policy().name() == name) {
      // The same policy re-tuned in place: it keeps what it has learnt.
      RECSCHED_RETURN_IF_ERROR(dispatcher_->policy().configure(params));
    } else {
      RECSCHED_ASSIGN_OR_RETURN(auto next, make_policy(name, params));
      dispatcher_->set_policy(std::move(next));
    }
  }
  std::lock_guard<std::mutex> lock(mu_);
  config_.policy.name = name;
  config_.policy.params = given;  // as configured: a reload with the same params is no change
  return Status::ok();
}

std::string Service::reload(const DaemonConfig& next) {
  std::vector<std::string> ignored;
  if (!(next.listen == config_.listen)) ignored.push_back("listen");
  if (next.models.size() != config_.models.size()) ignored.push_back("models");
  if (next.partition != config_.partition) ignored.push_back("partition");
  if (!(next.fleet == config_.fleet)) ignored.push_back("fleet");  // read without mu_
  std::unique_lock<std::mutex> lock(mu_);
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
  if (!(server_options(a) == server_options(b)) || a.window != b.window ||
      a.max_shm_regions != b.max_shm_regions) {
    ignored.push_back(
        "limits.{max_body_bytes,max_header_bytes,max_headers,max_connections,"
        "header_timeout_ms,read_timeout_ms,idle_timeout_ms,io_threads,idle_poll_us,window,"
        "max_shm_regions}");
  }
  if (a.cpu_latency_us != b.cpu_latency_us) ignored.push_back("limits.cpu_latency_us");
  // The workers lowered their own priority at start; raising it back needs privilege.
  if (a.worker_nice != b.worker_nice) ignored.push_back("limits.worker_nice");
  config_.limits.max_queue = b.max_queue;
  config_.limits.inline_max_ms = b.inline_max_ms;
  config_.limits.inline_idle_max_ms = b.inline_idle_max_ms;
  config_.limits.max_items = b.max_items;
  config_.limits.max_elements = b.max_elements;
  config_.limits.max_json_depth = b.max_json_depth;
  config_.limits.reject_factor = b.reject_factor;
  config_.limits.normal_priority_share = b.normal_priority_share;
  config_.limits.low_priority_share = b.low_priority_share;
  config_.limits.late_budget = b.late_budget;
  config_.limits.wait_bound_fraction = b.wait_bound_fraction;
  config_.limits.preemption = b.preemption;
  for (const auto& dev : devices_) dev->runner().set_preemption(b.preemption);
  config_.limits.gpu_merging = b.gpu_merging;
  apply_gpu_merging();
  config_.limits.degraded_ms = b.degraded_ms;
  config_.limits.placement_log = b.placement_log;
  config_.token = next.token;
  {
    std::lock_guard<std::mutex> d(dispatch_mu_);
    dispatcher_->set_admission(admission(b));
    dispatcher_->set_bounded_wait(bounded_wait(b));
    dispatcher_->set_gpu_merging(b.gpu_merging, kMaxMergedItems);
  }
  std::string out =
      "reloaded SLA targets, admission limits (max_queue, inline_max_ms, inline_idle_max_ms, max_items, max_elements, "
      "max_json_depth, reject_factor, priority shares, late_budget, wait_bound_fraction, "
      "preemption, gpu_merging, degraded_ms, "
      "placement_log), token";
  if (!(next.policy.name == config_.policy.name && next.policy.params == config_.policy.params)) {
    lock.unlock();
    Status st = set_policy(next.policy.name, next.policy.params);
    lock.lock();
    out += st.is_ok() ? " and policy " + next.policy.name : "; policy kept (" + st.message() + ")";
  }
  if (next.policy.plugin_dir != config_.policy.plugin_dir) ignored.push_back("policy.plugin_dir");
  if (next.devices != config_.devices) ignored.push_back("devices");
  if (!ignored.empty()) {
    out += "; needs a restart to change:";
    for (const std::string& k : ignored) out += " " + k;
  }
  return out;
}

}  // namespace recsched::daemon

namespace recsched::daemon {

// The fleet's view of this host (fleet.h): capacity, the balancer's agent, NFD's labels.

policies::HostCapacity Service::capacity() const {
  const std::shared_ptr<const ProfileTable> table = profiles();
  std::vector<bool> degraded;
  uint32_t degraded_ms;
  std::vector<policies::ModelDemand> demand;
  policies::CapacityOptions options;
  options.max_utilisation = config_.fleet.max_utilisation;  // fleet keys need a restart
  {
    std::lock_guard<std::mutex> lock(mu_);
    degraded_ms = config_.limits.degraded_ms;
    options.bound_share = config_.limits.reject_factor * config_.limits.normal_priority_share;
    const double now = seconds(Clock::now());
    for (const auto& m : models_) {
      demand.push_back({m->cfg.spec.name, m->cfg.sla_ms, m->mean_items, m->offered.rate(now),
                        m->served.rate(now)});
    }
  }
  for (const auto& d : devices_) degraded.push_back(d->health(degraded_ms).degraded);
  return policies::host_capacity(*table, device_infos(), degraded, demand, options);
}

FleetState Service::fleet_state() const {
  FleetState s;
  s.ready = ready();
  s.draining = draining();
  uint32_t degraded_ms;
  {
    std::lock_guard<std::mutex> lock(mu_);
    degraded_ms = config_.limits.degraded_ms;
  }
  s.devices = static_cast<int>(devices_.size());
  for (const auto& d : devices_) s.degraded_devices += d->health(degraded_ms).degraded ? 1 : 0;
  return s;
}

std::string Service::agent_status() const {
  return agent_reply(capacity(), fleet_state(), config_.fleet.agent_weight_qps);
}

std::string Service::orca_header() const {
  const Clock::time_point now = Clock::now();
  {
    std::lock_guard<std::mutex> lock(capacity_mu_);
    if (!orca_cache_.second.empty() && now - orca_cache_.first < kCapacityCacheFor) {
      return orca_cache_.second;
    }
  }
  double errors = 0;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (const auto& m : models_) errors += m->errors.rate(seconds(now));
  }
  std::string text = orca_load_report(capacity(), errors);
  std::lock_guard<std::mutex> lock(capacity_mu_);
  orca_cache_ = {now, text};
  return text;
}

void Service::write_nfd_features() const {
  const std::string& path = config_.fleet.nfd_feature_file;
  if (path.empty()) return;
  int cpus = 0, gpus = 0;
  for (const auto& d : devices_) (d->kind() == DeviceKind::kGpu ? gpus : cpus) += 1;
  Status st = write_file_atomically(path, nfd_features(capacity(), cpus, gpus));
  if (!st.is_ok()) {
    spdlog::warn("node features not written: {}", st.message());
  } else {
    spdlog::info("node features written to {}", path);
  }
}

}  // namespace recsched::daemon
