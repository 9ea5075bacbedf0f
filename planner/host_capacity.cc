#include "planner/host_capacity.h"

#include "policies/registry.h"

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>

#include <unistd.h>

namespace recsched::plan {
namespace {

using nlohmann::json;

// Part of every cache key: a figure cached by another version of the simulation is not used.
constexpr int kCacheVersion = 3;  // 2: admission on the GPU's own order; 3: merge= (2026-12-06)

std::string hex(uint64_t v) {
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(v));
  return buf;
}

// FNV-1a: a stable digest of a file's bytes for the cache key (std::hash is not stable
// across library versions).
uint64_t fnv1a(const std::string& bytes, uint64_t h = 1469598103934665603ull) {
  for (unsigned char c : bytes) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return h;
}

std::string file_digest(const std::string& path) {
  if (path.empty()) return "-";
  std::ifstream f(path, std::ios::binary);
  const std::string bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  return hex(fnv1a(bytes));
}

std::string num(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.9g", v);
  return buf;
}

// What determines a simulated figure besides the mix and the targets.
std::string host_key(const HostTypeSpec& t, const SimSettings& s) {
  // Every input of the figure: bump kCacheVersion when the simulator's behaviour changes.
  const sim::HostOptions& h = t.host;
  const sim::Options& o = s.options;
  const policies::Admission& a = o.admission;
  return "v" + std::to_string(kCacheVersion) + " " + file_digest(h.profiles) + "/" +
         file_digest(h.gpu_profiles) + " gpu=" + (h.gpu ? "1" : "0") +
         " cpu=" + std::to_string(h.cpu_workers) + " streams=" + std::to_string(h.gpu_streams) +
         " speed=" + num(h.speed) + " idle=" + num(h.cpu_idle_w) + "," + num(h.cpu_parked_w) + "," +
         num(h.gpu_idle_w) + " policy=" + s.policy + " s=" + num(s.seconds) +
         " seed=" + std::to_string(s.seed) + " noise=" + num(o.noise) + "," + std::to_string(o.seed) +
         " warmup=" + num(o.warmup_fraction) + " queue=" + std::to_string(int(o.queue)) +
         " admit=" + num(a.reject_factor) + "," + num(a.normal_share) + "," + num(a.low_share) + "," +
         (a.admit_idle ? "1" : "0") + "," + num(a.late_budget) +
         " preempt=" + (o.preemption ? "1" : "0") + "," + num(o.yield_stretch_ms) +
         " wb=" + num(o.wait_bound_fraction) + " judge=" + (o.judge_every_target ? "1" : "0") +
         " maxq=" + std::to_string(o.max_queue) + " merge=" + (o.gpu_batching ? "1" : "0") + "," +
         std::to_string(o.gpu_merge_max_items);
}

std::string mix_key(const std::vector<std::pair<std::string, double>>& mix,
                    const std::map<std::string, double>& target_ms) {
  std::string out;
  for (const auto& [m, w] : mix) out += " " + m + "@" + num(target_ms.at(m)) + "x" + num(w);
  return out;
}

class Cache {
 public:
  explicit Cache(std::string path) : path_(std::move(path)) {
    if (path_.empty()) return;
    std::ifstream f(path_);
    if (!f) return;
    const json j = json::parse(f, nullptr, false);
    if (j.is_object() && j.value("version", 0) == 1 && j.contains("qps") && j["qps"].is_object()) {
      for (const auto& [k, v] : j["qps"].items())
        if (v.is_number()) entries_[k] = v.get<double>();
    }
  }
  bool get(const std::string& key, double* qps) const {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = entries_.find(key);
    if (it == entries_.end()) return false;
    *qps = it->second;
    return true;
  }
  void put(const std::string& key, double qps) {
    std::lock_guard<std::mutex> lock(mu_);
    entries_[key] = qps;
    dirty_ = true;
  }
  /// Writes the file if anything was added (atomically: a temp file renamed over it).
  Status save() const {
    if (path_.empty() || !dirty_) return Status::ok();
    const std::string tmp = path_ + ".tmp" + std::to_string(::getpid());
    {
      std::ofstream f(tmp);
      f << json{{"version", 1}, {"qps", entries_}}.dump(1) << "\n";
      if (!f) return internal_error("cannot write " + tmp);
    }
    if (std::rename(tmp.c_str(), path_.c_str()) != 0) return internal_error("cannot rename " + tmp);
    return Status::ok();
  }

 private:
  std::string path_;
  mutable std::mutex mu_;
  std::map<std::string, double> entries_;
  bool dirty_ = false;
};

// Runs jobs 0..n-1 on up to `threads` threads; the first error wins.
Status parallel_for(size_t n, unsigned threads, const std::function<Status(size_t)>& job) {
  if (threads == 0) threads = std::max(1u, std::thread::hardware_concurrency());
  std::atomic<size_t> next{0};
  std::mutex mu;
  Status first = Status::ok();
  auto work = [&] {
    for (size_t i = next++; i < n; i = next++) {
      Status s = job(i);
      if (!s.is_ok()) {
        std::lock_guard<std::mutex> lock(mu);
        if (first.is_ok()) first = std::move(s);
      }
    }
  };
  std::vector<std::thread> pool;
  for (unsigned t = 1; t < std::min<size_t>(threads, n); ++t) pool.emplace_back(work);
  work();
  for (std::thread& t : pool) t.join();
  return first;
}

// Every subset of `models` of size 2..k, in a stable order.
void subsets(const std::vector<std::string>& models, size_t k, size_t from,
             std::vector<std::string>* cur, std::vector<std::vector<std::string>>* out) {
  if (cur->size() >= 2) out->push_back(*cur);
  if (cur->size() == k) return;
  for (size_t i = from; i < models.size(); ++i) {
    cur->push_back(models[i]);
    subsets(models, k, i + 1, cur, out);
    cur->pop_back();
  }
}

// One simulated run of `host` at `qps`, the mix in its weights, long enough for the rarest
// model's p95 to rest on 200 queries (at least `min_seconds`), within 300,000 queries in
// all (a host's second at full rate is thousands).
Result<sim::Report> run_at(const sim::Host& host, const std::vector<std::pair<std::string, double>>& mix,
                           double qps, const std::vector<sim::ModelTarget>& targets,
                           const SimSettings& settings, uint64_t seed, double min_seconds) {
  sim::TraceOptions trace;
  trace.mix = mix;
  trace.qps = qps;
  double weights = 0, rarest = 1e300;
  for (const auto& [m, w] : mix) weights += w;
  for (const auto& [m, w] : mix) rarest = std::min(rarest, qps * w / weights);
  trace.seconds = std::min(600.0, std::max(min_seconds, std::min(200 / rarest, 300000 / qps)));
  trace.seed = seed;
  RECSCHED_ASSIGN_OR_RETURN(auto policy, policies::create_policy(settings.policy, json::object()));
  return sim::simulate(sim::poisson_trace(trace), host.devices, host.profiles, targets,
                       std::move(policy), settings.options);
}

// The share of a model's queries a verification run may refuse (the judged bound is 1 %).
constexpr double kVerifyRefused = 0.005;

Result<std::vector<sim::Host>> load_hosts(const std::vector<HostTypeSpec>& types) {
  std::vector<sim::Host> hosts;
  for (const HostTypeSpec& t : types) {
    auto h = sim::load_host(t.host);
    if (!h) return Status(h.status().code(), "host type " + t.name + ": " + h.status().message());
    hosts.push_back(std::move(*h));
  }
  return hosts;
}

}  // namespace

Result<std::vector<HostType>> measure_capacity(const std::vector<HostTypeSpec>& types,
                                               const std::vector<sim::ModelTarget>& targets,
                                               const CapacityOptions& options, size_t* simulated) {
  if (options.max_set_size < 1) return invalid_argument("max_set_size must be >= 1");
  RECSCHED_ASSIGN_OR_RETURN(std::vector<sim::Host> hosts, load_hosts(types));
  std::map<std::string, double> target_ms;
  std::vector<std::string> models;
  for (const sim::ModelTarget& t : targets) {
    if (!(t.sla_ms > 0)) return invalid_argument(t.model + ": target must be > 0 ms");
    target_ms[t.model] = t.sla_ms;
    models.push_back(t.model);
  }
  for (size_t t = 0; t < types.size(); ++t) {
    for (const std::string& m : models) {
      bool profiled = false;
      for (const auto& [model, device] : hosts[t].profiles.keys()) profiled |= model == m;
      if (!profiled) return invalid_argument("host type " + types[t].name + " has no profile of " + m);
    }
  }
  if (!options.cache_path.empty()) {
    std::error_code ec;
    const auto st = std::filesystem::status(options.cache_path, ec);
    if (!ec && std::filesystem::exists(st) && !std::filesystem::is_regular_file(st))
      return invalid_argument("capacity cache " + options.cache_path + " is not a file");
  }
  Cache cache(options.cache_path);
  std::atomic<size_t> ran{0};
  std::mutex progress_mu;
  // The latency-bounded search itself (sim::find_max_qps).
  auto search = [&](size_t t, const std::vector<std::pair<std::string, double>>& mix,
                    double start_qps, double* qps) -> Status {
    sim::TraceOptions trace;
    trace.mix = mix;
    trace.seconds = options.sim.seconds;
    trace.seed = options.sim.seed;
    std::vector<sim::ModelTarget> ts;
    for (const auto& [m, w] : mix) ts.push_back({m, target_ms.at(m)});
    RECSCHED_ASSIGN_OR_RETURN(
        sim::Report r, sim::find_max_qps(trace, hosts[t].devices, hosts[t].profiles, ts,
                                         options.sim.policy, json::object(), options.sim.options,
                                         std::max(start_qps, 0.1)));
    *qps = r.offered_qps;
    return Status::ok();
  };
  // One latency-bounded search for a mix on a type, verified at the utilisation the plan
  // fills hosts to; from the cache when it is there.
  auto bounded_qps = [&](size_t t, const std::vector<std::pair<std::string, double>>& mix,
                         double start_qps, double* qps) -> Status {
    const std::string key = types[t].name + " " + host_key(types[t], options.sim) + mix_key(mix, target_ms);
    const std::string verified_key =
        key + " verified@" + num(options.utilisation) + " refused<=" + num(kVerifyRefused);
    if (cache.get(verified_key, qps)) return Status::ok();
    if (!cache.get(key, qps)) {
      RECSCHED_RETURN_IF_ERROR(search(t, mix, start_qps, qps));
      cache.put(key, *qps);
    }
    // The search's pass at its highest rate can be luck near the bound (a p95 or a 1 %
    // refusal share from one trace). The plan fills a host to `utilisation` of the figure,
    // so the figure is checked there on a second trace, twice as long, with another seed,
    // and lowered 5 % at a time until that run meets every target with at most half the
    // refusals allowed (kVerifyRefused): a run judged at 1 % on another trace of a few
    // thousand queries of a model varies by a few tenths of a percent.
    std::vector<sim::ModelTarget> ts;
    for (const auto& [m, w] : mix) ts.push_back({m, target_ms.at(m)});
    bool passed = false;
    for (int step = 0; step < 20 && *qps > 0 && !passed; ++step) {
      RECSCHED_ASSIGN_OR_RETURN(sim::Report r, run_at(hosts[t], mix, *qps * options.utilisation, ts,
                                                      options.sim, options.sim.seed + 7919,
                                                      2 * options.sim.seconds));
      passed = r.meets_sla;
      for (const sim::ModelReport& m : r.models)
        passed = passed && double(m.rejected) <= kVerifyRefused * double(m.offered);
      if (!passed) *qps *= 0.95;
    }
    if (!passed) *qps = 0;  // never met at 0.36x the search's figure: the type does not serve it
    cache.put(verified_key, *qps);
    ++ran;
    if (options.on_simulated) {
      std::lock_guard<std::mutex> lock(progress_mu);
      options.on_simulated(types[t].name + mix_key(mix, target_ms) + ": " + num(*qps) + " q/s");
    }
    return Status::ok();
  };
  std::vector<HostType> out(types.size());
  // Alone first: the sets' weights and predictions need them.
  std::vector<std::pair<size_t, std::string>> alone_jobs;
  for (size_t t = 0; t < types.size(); ++t) {
    out[t].name = types[t].name;
    out[t].count = types[t].count;
    out[t].power_w = types[t].power_w;
    for (const std::string& m : models) alone_jobs.push_back({t, m});
  }
  std::vector<double> alone(alone_jobs.size());
  // What was simulated is kept even when a later run fails.
  auto save_then = [&](Status s) {
    const Status saved = cache.save();
    return s.is_ok() ? saved : s;
  };
  RECSCHED_RETURN_IF_ERROR(save_then(parallel_for(alone_jobs.size(), options.threads, [&](size_t i) {
    return bounded_qps(alone_jobs[i].first, {{alone_jobs[i].second, 1.0}}, 10, &alone[i]);
  })));
  for (size_t i = 0; i < alone_jobs.size(); ++i)
    out[alone_jobs[i].first].alone_qps[alone_jobs[i].second] = alone[i];
  // Then each set of models that every one the type can serve alone.
  struct SetJob {
    size_t type;
    std::vector<std::string> models;
    std::vector<double> shares;
    double predicted = 0, measured = 0;
  };
  std::vector<SetJob> set_jobs;
  for (size_t t = 0; t < types.size(); ++t) {
    std::vector<std::string> servable;
    for (const std::string& m : models)
      if (out[t].alone_qps[m] > 0) servable.push_back(m);
    std::vector<std::vector<std::string>> sets;
    std::vector<std::string> cur;
    subsets(servable, size_t(options.max_set_size), 0, &cur, &sets);
    for (const auto& s : sets) {
      const size_t k = s.size();
      set_jobs.push_back({t, s, std::vector<double>(k, 1.0 / double(k))});
      if (!options.skewed_mixes) continue;
      for (size_t heavy = 0; heavy < k; ++heavy) {
        std::vector<double> shares(k, 1.0 / double(k + 2));
        shares[heavy] = 3.0 / double(k + 2);
        set_jobs.push_back({t, s, shares});
      }
    }
  }
  RECSCHED_RETURN_IF_ERROR(save_then(parallel_for(set_jobs.size(), options.threads, [&](size_t i) {
    SetJob& job = set_jobs[i];
    // Weights w_m = share_m x alone_m (queries in proportion to the time each model takes),
    // so the harmonic prediction 1 / sum(f_m / alone_m) is sum(share_m x alone_m).
    std::vector<std::pair<std::string, double>> mix;
    for (size_t i = 0; i < job.models.size(); ++i) {
      const double w = job.shares[i] * out[job.type].alone_qps.at(job.models[i]);
      mix.push_back({job.models[i], w});
      job.predicted += w;
    }
    return bounded_qps(job.type, mix, job.predicted / 4, &job.measured);
  })));
  for (const SetJob& job : set_jobs) {
    out[job.type].sets.push_back({job.models, job.shares, job.measured / job.predicted});
  }
  RECSCHED_RETURN_IF_ERROR(cache.save());
  if (simulated) *simulated = ran;
  return out;
}

Result<std::vector<ReplayResult>> replay(const std::vector<HostTypeSpec>& types,
                                         const std::vector<sim::ModelTarget>& targets,
                                         const std::vector<SlotPlan>& plans,
                                         const SimSettings& settings, unsigned threads) {
  RECSCHED_ASSIGN_OR_RETURN(std::vector<sim::Host> hosts, load_hosts(types));
  std::map<std::string, double> target_ms;
  for (const sim::ModelTarget& t : targets) target_ms[t.model] = t.sla_ms;
  std::vector<ReplayResult> out;
  std::vector<size_t> type_of;
  for (size_t s = 0; s < plans.size(); ++s) {
    for (const Assignment& a : plans[s].assignments) {
      auto it = std::find_if(types.begin(), types.end(),
                             [&](const HostTypeSpec& t) { return t.name == a.type; });
      if (it == types.end()) return invalid_argument("plan names unknown host type " + a.type);
      ReplayResult r;
      r.slot = s;
      r.type = a.type;
      r.models = a.models;
      for (const auto& [m, q] : a.qps) {
        if (!target_ms.count(m)) return invalid_argument("plan serves " + m + ", which has no target");
        if (q > 0 && a.hosts > 0) r.qps_per_host[m] = q / a.hosts;
      }
      type_of.push_back(size_t(it - types.begin()));
      out.push_back(std::move(r));
    }
  }
  RECSCHED_RETURN_IF_ERROR(parallel_for(out.size(), threads, [&](size_t i) -> Status {
    ReplayResult& r = out[i];
    const sim::Host& host = hosts[type_of[i]];
    std::vector<std::pair<std::string, double>> mix;
    std::vector<sim::ModelTarget> ts;
    double total = 0;
    for (const auto& [m, q] : r.qps_per_host) {
      mix.push_back({m, q});
      ts.push_back({m, target_ms.at(m)});
      total += q;
    }
    if (ts.empty()) {
      r.meets_sla = true;  // hosts powered with no load: nothing to miss
      return Status::ok();
    }
    // Three times the search's trace: a slot is 15 minutes of traffic, and a p95 or a 1 %
    // refusal share judged on a few thousand queries of a model varies by tenths of a
    // percent from trace to trace.
    RECSCHED_ASSIGN_OR_RETURN(sim::Report rep, run_at(host, mix, total, ts, settings,
                                                      settings.seed + i, 3 * settings.seconds));
    r.meets_sla = rep.meets_sla;
    for (const sim::ModelReport& m : rep.models) {
      r.p95_ms[m.model] = m.p95_ms;
      r.rejected[m.model] = m.offered ? double(m.rejected) / double(m.offered) : 0;
    }
    return Status::ok();
  }));
  return out;
}

}  // namespace recsched::plan
