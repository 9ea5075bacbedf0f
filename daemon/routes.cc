// Every route of recschedd, in one table (handle()), and what each one answers; an
// inference request goes on to the serving path (serving.cc).
//   KServe v2:  GET /v2, /v2/health/live, /v2/health/ready, /v2/models/{m},
//               /v2/models/{m}/ready;  POST /v2/models/{m}/infer;
//               /v2/systemsharedmemory/... (Triton's extension; unix socket only)
//   Control:    GET /v1/topology, /v1/devices, /v1/models, /v1/profiles,
//               /v1/placements?limit=N, /v1/stats, /v1/policy, /v1/capacity;
//               PUT /v1/policy, POST /v1/profile (unix socket, or TCP with the token)
//   Metrics:    GET /metrics (Prometheus text)
#include <spdlog/spdlog.h>

#include <chrono>
#include <cmath>
#include <iomanip>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string_view>

#include "core/device.h"
#include "daemon/http_util.h"
#include "daemon/kserve.h"
#include "daemon/service.h"
#include "profiler/profile_cache.h"
#include "profiler/profiler.h"

namespace recsched::daemon {

namespace {

using nlohmann::json;

// Compares in time that depends on the lengths only, not on where they first differ.
bool constant_time_equal(std::string_view a, std::string_view b) {
  unsigned char diff = a.size() == b.size() ? 0 : 1;
  const size_t n = std::max(a.size(), b.size());
  for (size_t i = 0; i < n; ++i) {
    const auto x = static_cast<unsigned char>(i < a.size() ? a[i] : 0);
    const auto y = static_cast<unsigned char>(i < b.size() ? b[i] : 0);
    diff |= static_cast<unsigned char>(x ^ y);
  }
  return diff == 0;
}

std::vector<std::string> split_path(const std::string& path) {
  std::vector<std::string> parts;
  std::stringstream ss(path);
  std::string part;
  while (std::getline(ss, part, '/')) {
    if (!part.empty()) parts.push_back(part);
  }
  return parts;
}

// Prometheus label values: backslash, quote and newline escaped.
std::string label(const std::string& v) {
  std::string out;
  for (char c : v) {
    if (c == '\\' || c == '"') out += '\\';
    if (c == '\n') {
      out += "\\n";
      continue;
    }
    out += c;
  }
  return out;
}

}  // namespace

void Service::handle(HttpRequest req, Responder respond) {
  const size_t q = req.target.find('?');
  const std::string path = req.target.substr(0, q);
  const std::string query = q == std::string::npos ? "" : req.target.substr(q + 1);
  const std::vector<std::string> p = split_path(path);
  const bool get = req.method == "GET", post = req.method == "POST", put = req.method == "PUT";
  auto reply = [&](HttpResponse r) { respond(std::move(r)); };
  auto method_not_allowed = [&] {
    reply(error_response(405, req.method + " not allowed on " + path));
  };
  // State-changing routes: the unix socket, or TCP with the configured bearer token.
  auto may_mutate = [&] {
    if (req.via_unix_socket) return true;
    std::string token;
    {
      std::lock_guard<std::mutex> lock(mu_);
      token = config_.token;
    }
    auto it = req.headers.find("authorization");
    return !token.empty() && it != req.headers.end() &&
           constant_time_equal(it->second, "Bearer " + token);
  };

  if (p.size() >= 1 && p[0] == "v2") {
    if (p.size() == 1) {
      if (!get) return method_not_allowed();
      return reply(json_response(200, {{"name", "recschedd"},
                                       {"version", RECSCHED_VERSION},
                                       {"extensions", shm_->enabled()
                                                          ? json{"binary_tensor_data", "parameters",
                                                                 "system_shared_memory"}
                                                          : json{"binary_tensor_data", "parameters"}}}));
    }
    if (p[1] == "systemsharedmemory") return reply(shared_memory_route(p, req));
    if (p.size() == 3 && p[1] == "health" && (p[2] == "live" || p[2] == "ready")) {
      if (!get) return method_not_allowed();
      if (p[2] == "live") return reply(json_response(200, {{"live", true}}));
      // Draining: still serving, but a balancer or Kubernetes should send no more.
      const bool serving = ready() && !draining();
      return reply(json_response(serving ? 200 : 503, {{"ready", serving}}));
    }
    if (p.size() >= 3 && p[1] == "models") {
      // Triton's clients may address a version: /v2/models/{m}/versions/{v}/...
      std::vector<std::string> rest(p.begin() + 3, p.end());
      if (rest.size() >= 2 && rest[0] == "versions") rest.erase(rest.begin(), rest.begin() + 2);
      ModelState* m = find(p[2]);
      if (m == nullptr) return reply(error_response(404, "unknown model '" + p[2] + "'"));
      if (rest.empty()) {
        if (!get) return method_not_allowed();
        return reply(json_response(200, model_metadata(m->cfg.spec)));
      }
      if (rest.size() == 1 && rest[0] == "ready") {
        if (!get) return method_not_allowed();
        const bool serving = ready() && !draining();
        return reply(json_response(serving ? 200 : 503, {{"name", p[2]}, {"ready", serving}}));
      }
      if (rest.size() == 1 && rest[0] == "infer") {
        if (!post) return method_not_allowed();
        return infer(p[2], std::move(req), std::move(respond));
      }
    }
  } else if (p.size() == 2 && p[0] == "v1") {
    const std::string& r = p[1];
    if (r == "policy" && put) {
      if (!may_mutate())
        return reply(
            error_response(403, "changing the policy needs the unix socket or the bearer token"));
      return reply(put_policy(req.body));
    }
    if (r == "profile" && post) {
      if (!may_mutate())
        return reply(error_response(403, "re-profiling needs the unix socket or the bearer token"));
      return reply(post_profile());
    }
    if (!get) return method_not_allowed();
    if (r == "topology") return reply(topology_json());
    if (r == "devices") return reply(devices_json());
    if (r == "models") return reply(models_json());
    if (r == "profiles") return reply(profiles_json());
    if (r == "stats") return reply(stats_json());
    if (r == "policy") return reply(policy_json());
    if (r == "capacity") return reply(capacity_response());
    if (r == "placements") {
      size_t limit = 100;
      if (query.rfind("limit=", 0) == 0) {
        try {
          limit = std::stoul(query.substr(6));
        } catch (const std::exception&) {
          return reply(error_response(400, "limit must be a non-negative integer"));
        }
      }
      return reply(placements_json(limit));
    }
  } else if (p.size() == 1 && p[0] == "metrics") {
    if (!get) return method_not_allowed();
    return reply(metrics());
  }
  reply(error_response(404, "no route " + req.method + " " + path));
}

HttpResponse Service::shared_memory_route(const std::vector<std::string>& p,
                                          const HttpRequest& req) {
  // /v2/systemsharedmemory/{status,unregister} or .../region/{name}/{status,register,unregister}
  std::string name, action;
  if (p.size() == 3) {
    action = p[2];
  } else if (p.size() == 5 && p[2] == "region") {
    name = p[3];
    action = p[4];
  }
  const bool get = req.method == "GET", post = req.method == "POST";
  const bool known = action == "status" ? get
                     : action == "register" ? post && !name.empty()
                     : action == "unregister" ? post
                                              : false;
  if (!known) {
    return error_response(action.empty() ? 404 : 405,
                          "no route " + req.method + " " + req.target +
                              " (GET .../status, POST .../region/{name}/register or .../unregister)");
  }
  if (!shm_->enabled()) {
    return error_response(400, "system shared memory is off (limits.max_shm_regions is 0)");
  }
  if (!req.via_unix_socket || !req.peer_uid) {
    return error_response(403, "system shared memory is served on the unix socket only: the "
                               "daemon must know the client's uid to check it owns the object");
  }
  if (action == "status") {
    Result<json> st = shm_->status(name, *req.peer_uid);
    if (!st) return error_response(400, st.status().message());
    return json_response(200, *st);
  }
  if (action == "unregister") {
    if (name.empty()) {
      shm_->unregister_all(*req.peer_uid);
      return json_response(200, json::object());
    }
    Status st = shm_->unregister(name, *req.peer_uid);
    return st.is_ok() ? json_response(200, json::object()) : error_response(400, st.message());
  }
  // register: {"key": "/name", "offset": N (optional, 0), "byte_size": N}
  json body;
  try {
    body = json::parse(req.body);
  } catch (const json::exception&) {
    return error_response(400, "register: the body is not valid JSON");
  }
  if (!body.is_object() || !body.contains("key") || !body["key"].is_string() ||
      !body.contains("byte_size") || !body["byte_size"].is_number_unsigned() ||
      (body.contains("offset") && !body["offset"].is_number_unsigned())) {
    return error_response(400, "register: the body must be {\"key\": string, \"offset\": "
                               "non-negative integer (optional), \"byte_size\": non-negative "
                               "integer}");
  }
  Status st = shm_->register_region(name, body["key"].get<std::string>(),
                                    body.value("offset", uint64_t{0}),
                                    body["byte_size"].get<uint64_t>(), *req.peer_uid);
  if (!st.is_ok()) return error_response(400, st.message());
  spdlog::info("shared memory: uid {} registered region '{}' ({} bytes of {})", *req.peer_uid,
               name, body["byte_size"].get<uint64_t>(), body["key"].get<std::string>());
  return json_response(200, json::object());
}

HttpResponse Service::metrics() const {
  std::ostringstream o;
  o << std::setprecision(12);
  // Taken before mu_: both take it themselves.
  const policies::HostCapacity cap = capacity();
  const FleetState fleet = fleet_state();
  std::lock_guard<std::mutex> lock(mu_);
  o << "# HELP recsched_requests_total Inference requests by model and outcome.\n"
       "# TYPE recsched_requests_total counter\n";
  for (const auto& m : models_) {
    const std::string l = "model=\"" + label(m->cfg.spec.name) + "\"";
    o << "recsched_requests_total{" << l << ",outcome=\"ok\"} " << m->ok << "\n"
      << "recsched_requests_total{" << l << ",outcome=\"invalid\"} " << m->invalid << "\n"
      << "recsched_requests_total{" << l << ",outcome=\"rejected\"} " << m->rejected << "\n"
      << "recsched_requests_total{" << l << ",outcome=\"failed\"} " << m->failed << "\n";
  }
  o << "# HELP recsched_items_total Items scored, by model.\n# TYPE recsched_items_total counter\n";
  for (const auto& m : models_) {
    o << "recsched_items_total{model=\"" << label(m->cfg.spec.name) << "\"} " << m->items << "\n";
  }
  o << "# HELP recsched_sla_violations_total Answered queries slower than the model's SLA.\n"
       "# TYPE recsched_sla_violations_total counter\n";
  for (const auto& m : models_) {
    o << "recsched_sla_violations_total{model=\"" << label(m->cfg.spec.name) << "\"} "
      << m->sla_violations << "\n";
  }
  o << "# HELP recsched_request_latency_seconds Latency of answered queries, arrival to "
       "scores.\n# TYPE recsched_request_latency_seconds histogram\n";
  for (const auto& m : models_) {
    const std::string l = "model=\"" + label(m->cfg.spec.name) + "\"";
    const auto& b = latency_buckets();
    for (size_t i = 0; i < b.size(); ++i) {
      o << "recsched_request_latency_seconds_bucket{" << l << ",le=\"" << b[i] << "\"} "
        << m->buckets[i] << "\n";
    }
    o << "recsched_request_latency_seconds_bucket{" << l << ",le=\"+Inf\"} " << m->ok << "\n"
      << "recsched_request_latency_seconds_sum{" << l << "} " << m->latency_sum_s << "\n"
      << "recsched_request_latency_seconds_count{" << l << "} " << m->ok << "\n";
  }
  o << "# HELP recsched_device_queries_total Queries answered by each device, by model.\n"
       "# TYPE recsched_device_queries_total counter\n";
  for (const auto& m : models_) {
    for (size_t i = 0; i < devices_.size(); ++i) {
      o << "recsched_device_queries_total{model=\"" << label(m->cfg.spec.name) << "\",device=\""
        << label(devices_[i]->id()) << "\"} " << m->per_device[i] << "\n";
    }
  }
  o << "# HELP recsched_policy_info The active placement policy.\n"
       "# TYPE recsched_policy_info gauge\n"
    << "recsched_policy_info{policy=\"" << label(config_.policy.name) << "\"} 1\n";
  o << "# HELP recsched_queue_depth Queries admitted and not yet answered, by device.\n"
       "# TYPE recsched_queue_depth gauge\n";
  std::vector<exec::Load> loads;
  for (const auto& d : devices_) loads.push_back(d->runner().load());
  for (size_t i = 0; i < devices_.size(); ++i) {
    o << "recsched_queue_depth{device=\"" << label(devices_[i]->id()) << "\"} " << loads[i].queries
      << "\n";
  }
  o << "# HELP recsched_busy_workers Workers running a sub-batch now, by device.\n"
       "# TYPE recsched_busy_workers gauge\n";
  for (size_t i = 0; i < devices_.size(); ++i) {
    o << "recsched_busy_workers{device=\"" << label(devices_[i]->id()) << "\"} "
      << loads[i].busy_workers << "\n";
  }
  o << "# HELP recsched_awake_workers Workers taking work (the others are parked), by device.\n"
       "# TYPE recsched_awake_workers gauge\n";
  for (size_t i = 0; i < devices_.size(); ++i) {
    o << "recsched_awake_workers{device=\"" << label(devices_[i]->id()) << "\"} "
      << (loads[i].active_workers > 0 ? loads[i].active_workers : devices_[i]->workers()) << "\n";
  }
  o << "# HELP recsched_device_degraded 1 while a device is avoided because a query failed "
       "there within limits.degraded_ms.\n# TYPE recsched_device_degraded gauge\n";
  std::vector<ServingDevice::Health> health;
  for (const auto& d : devices_) health.push_back(d->health(config_.limits.degraded_ms));
  for (size_t i = 0; i < devices_.size(); ++i) {
    o << "recsched_device_degraded{device=\"" << label(devices_[i]->id()) << "\"} "
      << (health[i].degraded ? 1 : 0) << "\n";
  }
  o << "# HELP recsched_device_failures_total Queries that failed on the device (a worker's "
       "exception or a device error).\n# TYPE recsched_device_failures_total counter\n";
  for (size_t i = 0; i < devices_.size(); ++i) {
    o << "recsched_device_failures_total{device=\"" << label(devices_[i]->id()) << "\"} "
      << health[i].failures << "\n";
  }
  o << "# HELP recsched_energy_joules_total Energy drawn by the device since start; source "
       "says whether it was measured (rapl, nvml) or estimated.\n"
       "# TYPE recsched_energy_joules_total counter\n";
  for (const auto& d : devices_) {
    Result<double> joules = d->energy_joules();
    o << "recsched_energy_joules_total{device=\"" << label(d->id()) << "\",source=\""
      << d->power_source() << "\"} " << (joules ? *joules : 0.0) << "\n";
  }
  // The capacity model (GET /v1/capacity; policies/capacity.h): modelled, not measured.
  auto gauge = [&](const char* name, const char* help) {
    o << "# HELP " << name << " " << help << "\n# TYPE " << name << " gauge\n";
  };
  gauge("recsched_capacity_qps",
        "Modelled queries per second of the model this host can take within its target.");
  for (const auto& m : cap.models) {
    o << "recsched_capacity_qps{model=\"" << label(m.model) << "\"} " << m.capacity_qps << "\n";
  }
  gauge("recsched_offered_qps", "Queries per second arriving for the model (last ~10 s).");
  for (const auto& m : cap.models) {
    o << "recsched_offered_qps{model=\"" << label(m.model) << "\"} " << m.offered_qps << "\n";
  }
  gauge("recsched_served_qps", "Queries per second answered with scores (last ~10 s).");
  for (const auto& m : cap.models) {
    o << "recsched_served_qps{model=\"" << label(m.model) << "\"} " << m.served_qps << "\n";
  }
  gauge("recsched_headroom_qps",
        "More queries per second of the model the host could take now (modelled).");
  for (const auto& m : cap.models) {
    o << "recsched_headroom_qps{model=\"" << label(m.model) << "\"} " << m.headroom_qps << "\n";
  }
  gauge("recsched_host_utilisation",
        "Sum over models of served over capacity: the modelled share of the host in use.");
  o << "recsched_host_utilisation " << cap.utilisation << "\n";
  gauge("recsched_draining", "1 while the daemon drains before stopping (fleet.drain_ms).");
  o << "recsched_draining " << (fleet.draining ? 1 : 0) << "\n";
  HttpResponse r;
  r.content_type = "text/plain; version=0.0.4";
  r.body = o.str();
  return r;
}

HttpResponse Service::topology_json() const {
  return json_response(200, {{"summary", topology_->summary()},
                             {"fingerprint", topology_->fingerprint()},
                             {"partition", std::string(hw::to_string(config_.partition))}});
}

HttpResponse Service::devices_json() const {
  json out = json::array();
  auto served = [&](const std::string& id) -> const ServingDevice* {
    for (const auto& d : devices_) {
      if (d->id() == id) return d.get();
    }
    return nullptr;
  };
  uint32_t degraded_ms;
  {
    std::lock_guard<std::mutex> lock(mu_);
    degraded_ms = config_.limits.degraded_ms;
  }
  auto with_load = [&](json j, const ServingDevice& d) {
    const exec::Load load = d.runner().load();
    const ServingDevice::Health h = d.health(degraded_ms);
    j["serving"] = true;
    j["health"] = h.degraded ? "degraded" : "ok";
    j["failures"] = h.failures;
    if (h.failures > 0) {
      j["last_error"] = h.last_error;
      j["seconds_since_failure"] = h.since_failure_s;
    }
    j["workers"] = d.workers();
    j["awake_workers"] = load.active_workers > 0 ? load.active_workers : d.workers();
    j["queued"] = load.queries;
    j["busy_workers"] = load.busy_workers;
    j["ran_on_io_thread"] = d.runner().ran_here();
    j["power"] = d.power_note();
    return j;
  };
  for (const auto& c : hardware_.cpus) {
    json j = {{"id", c.id},
              {"kind", "cpu"},
              {"cpuset", c.cpuset},
              {"cores", c.cores},
              {"numa_node", c.numa_node},
              {"serving", false}};
    if (const ServingDevice* d = served(c.id)) j = with_load(j, *d);
    out.push_back(j);
  }
  for (const auto& d : devices_) {
    if (d->kind() != policies::DeviceKind::kGpu) continue;
    json j = d->describe();
    j["id"] = d->id();
    out.push_back(with_load(j, *d));
  }
  // GPUs hwloc sees that are not served (no CUDA in this build, or left out by config).
  for (const auto& g : hardware_.gpus) {
    if (std::none_of(devices_.begin(), devices_.end(), [&](const auto& d) {
          return d->describe().value("pci_bus_id", "") == g.pci_bus_id;
        })) {
      out.push_back({{"id", g.id},
                     {"kind", "gpu"},
                     {"pci_bus_id", g.pci_bus_id},
                     {"model", g.model},
                     {"numa_node", g.numa_node},
                     {"serving", false}});
    }
  }
  return json_response(200, {{"devices", out}});
}

HttpResponse Service::models_json() const {
  json out = json::array();
  std::lock_guard<std::mutex> lock(mu_);
  for (const auto& m : models_) {
    out.push_back({{"name", m->cfg.spec.name},
                   {"type", std::string(engine::to_string(m->cfg.spec.type))},
                   {"spec", m->cfg.spec_path},
                   {"weights", m->cfg.weights_path.empty() ? "seeded" : m->cfg.weights_path},
                   {"tables", m->cfg.spec.num_tables()},
                   {"table_rows", m->cfg.spec.table_rows},
                   {"lookups_per_table", m->cfg.spec.lookups_per_table},
                   {"table_bytes", m->cfg.spec.table_bytes()},
                   {"sla_ms", m->cfg.sla_ms},
                   {"sla_percentile", m->cfg.sla_percentile},
                   {"devices", served_on(*m)}});
  }
  return json_response(200, {{"models", out}});
}

HttpResponse Service::profiles_json() const {
  std::shared_ptr<const ProfileTable> table, measured;
  json corrections;
  {
    std::lock_guard<std::mutex> lock(mu_);
    table = profiles_;
    measured = measured_profiles_;
    corrections = correction_.to_json();
  }
  // The points predicted with (corrected by what serving measured), each with the
  // profiler's own p50_single_us beside it.
  json out = json::array();
  for (const auto& [model, device] : table->keys()) {
    json points = json::array();
    const std::vector<ProfilePoint>& raw = measured->points(model, device);
    for (const ProfilePoint& p : table->points(model, device)) {
      json j = profiler::to_json(p);
      for (const ProfilePoint& m : raw) {
        if (m.batch_size == p.batch_size) j["measured_p50_single_us"] = m.p50_single_us;
      }
      points.push_back(std::move(j));
    }
    out.push_back({{"model", model}, {"device", device}, {"points", points}});
  }
  return json_response(200, {{"profiles", out},
                             {"corrections", corrections},
                             {"profiling_seconds", profile_seconds_}});
}

HttpResponse Service::placements_json(size_t limit) const {
  json out = json::array();
  std::lock_guard<std::mutex> lock(mu_);
  const size_t start = placements_.size() > limit ? placements_.size() - limit : 0;
  for (size_t i = start; i < placements_.size(); ++i) {
    const PlacementRecord& p = placements_[i];
    out.push_back({{"query", p.query_id},
                   {"id", p.request_id},
                   {"model", p.model},
                   {"items", p.items},
                   {"device", p.placement.device},
                   {"sub_batch", p.placement.sub_batch},
                   {"workers", p.placement.workers},
                   {"predicted_ms", p.placement.predicted_ms},
                   {"actual_ms", p.actual_ms},
                   {"decode_ms", p.decode_ms},
                   {"wait_ms", p.wait_ms},
                   {"service_ms", p.service_ms},
                   {"suspended_ms", p.suspended_ms},
                   {"policy", p.policy},
                   {"reason", p.placement.reason},
                   {"outcome", p.outcome}});
  }
  return json_response(200, {{"placements", out}});
}

HttpResponse Service::stats_json() const {
  json out = json::array();
  std::lock_guard<std::mutex> lock(mu_);
  for (const auto& m : models_) {
    out.push_back({{"model", m->cfg.spec.name},
                   {"requests", m->requests},
                   {"ok", m->ok},
                   {"invalid", m->invalid},
                   {"rejected", m->rejected},
                   {"failed", m->failed},
                   {"items", m->items},
                   {"sla_ms", m->cfg.sla_ms},
                   {"sla_violations", m->sla_violations},
                   {"window", m->window.size()},
                   {"p50_ms", m->window.percentile(50)},
                   {"p95_ms", m->window.percentile(95)},
                   {"p99_ms", m->window.percentile(99)}});
  }
  json j = {{"models", out}, {"in_flight", in_flight_.load()}};
  // limits.cpu_latency_us: whether the request is held (null when none is configured).
  j["cpu_latency"] = cpu_latency_.report();
  // What the I/O threads did when they ran out of work: found more by polling (a wake-up
  // saved) or slept (limits.idle_poll_us; null before a server is attached).
  json io = nullptr;
  if (io_counters_) {
    io = {{"idle_poll_us", io_poll_us_},
          {"polled", io_counters_->polled.load(std::memory_order_relaxed)},
          {"slept", io_counters_->slept.load(std::memory_order_relaxed)}};
  }
  j["io"] = io;
  return json_response(200, j);
}

HttpResponse Service::policy_json() const {
  json j;
  {
    std::lock_guard<std::mutex> lock(dispatch_mu_);
    j = {{"name", std::string(dispatcher_->policy().name())},
         {"params", dispatcher_->policy().params()}};
  }
  j["available"] = policy_names();
  json plugins = json::array();
  for (const auto& o : plugin_outcomes_) {
    plugins.push_back({{"path", o.path}, {"policy", o.name}, {"error", o.error}});
  }
  j["plugins"] = plugins;
  return json_response(200, j);
}

HttpResponse Service::put_policy(const std::string& body) {
  json j = json::parse(body, nullptr, false);
  if (j.is_discarded() || !j.is_object() || !j.contains("name") || !j["name"].is_string()) {
    return error_response(400, "PUT /v1/policy takes {\"name\": \"...\", \"params\": {...}}");
  }
  for (const auto& [key, value] : j.items()) {
    if (key != "name" && key != "params")
      return error_response(400, "PUT /v1/policy: unknown key '" + key + "'");
  }
  if (j.contains("params") && !j["params"].is_object()) {
    return error_response(400, "params must be an object");
  }
  const std::string name = j["name"];
  const json params = j.value("params", json::object());
  Status st = set_policy(name, params);
  if (!st.is_ok()) return error_response(400, st.message());
  spdlog::info("policy set to {} {}", name, params.dump());
  return policy_json();
}

HttpResponse Service::capacity_response() const {
  return json_response(200, capacity_json(capacity(), fleet_state(), config_.fleet.max_utilisation));
}

HttpResponse Service::post_profile() {
  if (profiling_.exchange(true)) return error_response(409, "a profiling run is already going");
  if (reprofile_.joinable()) reprofile_.join();
  reprofile_ = std::thread([this] {
    // Bring estimates up to date: a sweep feeds its own busy time.
    for (auto& d : devices_) (void)d->energy_joules();
    auto table = std::make_shared<ProfileTable>();
    for (const auto& m : models_) {
      for (size_t i = 0; i < devices_.size(); ++i) {
        if (!m->on[i]) continue;
        auto points = devices_[i]->profile(*m->on[i], config_.profile);
        if (!points) {
          spdlog::error("re-profiling {} on {} failed: {}", m->cfg.spec.name, devices_[i]->id(),
                        points.status().message());
          profiling_ = false;
          return;
        }
        for (const ProfilePoint& p : *points) table->add(m->cfg.spec.name, devices_[i]->id(), p);
      }
    }
    {
      std::lock_guard<std::mutex> lock(mu_);
      set_measured_profiles(table);
    }
    // Serving meanwhile is left out of the estimate rather than counted twice.
    for (auto& d : devices_) d->mark_busy_fed();
    write_nfd_features();
    spdlog::info("re-profiled {} models on {} devices", models_.size(), devices_.size());
    profiling_ = false;
  });
  return json_response(202, {{"profiling", true}});
}

json Service::served_on(const ModelState& m) const {
  json out = json::array();
  for (size_t i = 0; i < devices_.size(); ++i) {
    if (m.on[i]) out.push_back({{"device", devices_[i]->id()}, {"kernels", m.on[i]->kernels()}});
  }
  return out;
}

}  // namespace recsched::daemon
