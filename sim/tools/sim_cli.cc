#include "sim/tools/sim_cli.h"

#include <algorithm>
#include <cstdio>
#include <map>
#include <nlohmann/json.hpp>
#include <ostream>
#include <sstream>

#include "policies/registry.h"
#include "sim/host.h"
#include "sim/simulator.h"
#include "sim/tools/options.h"
#include "sim/tune.h"

namespace recsched::sim::tools {
namespace {

using nlohmann::json;

constexpr const char* kUsage = R"(usage: recsched-sim --profiles FILE [OPTIONS]

Replays a Poisson trace of recommendation queries (DeepRecInfra's lognormal sizes, a
model mix) through recsched's policies on simulated devices whose service times come
from profiles, and prints tail latency, throughput and energy per policy side by side.
Deterministic: the same arguments give the same numbers.

devices:
  --profiles FILE      recsched-profile --json output or a daemon profile cache
                       (state_dir/profiles.json); every device in it is simulated
  --gpu-profiles FILE  also take the GPU entries (gpu*) of FILE (e.g. a recorded
                       profile of an accelerator this host does not have)
  --cpu-workers N      workers of each CPU device (default: its cores in FILE, else 1);
                       a larger N models a bigger host from this one's per-core profile
  --gpu-streams N      passes at once per GPU (default: as many as its profile found
                       paying, recschedd's choice; 1 where it did not measure streams);
                       a pass that starts beside others is stretched to the rate the
                       profile measured for that many
  --no-gpu             leave the GPUs out
  --cpu-idle-w W       idle watts per CPU core (default 1.5); --cpu-parked-w W parked
                       (default 0.2); --gpu-idle-w W idle watts per GPU (default 70)
workload:
  --models a,b,...     the mix, equal weights (default: every model in the profiles);
                       a=2,b=1 gives weights
  --targets T          p95 targets: low, medium, high (2x, 4x, 8x the single-core
                       latency of a 164-item query of each model, from the profile),
                       deeprecsys (DeepRecSys's published targets), or m=ms,...
                       (default medium)
  --seconds S          simulated seconds per run (default 20); --seed N (default 1)
  --noise X            sigma of per-sub-batch lognormal noise (default 0.1)
  --reject-factor X    admission rejects a query predicted to take over X x 0.8 (the
                       share of priority 0) x its target (default 1, recschedd's
                       limits.reject_factor), unless its device has a worker free and
                       nothing waiting, or its model's tail budget has room
  --late-budget F      the tail budget: the fraction of each model's tail (5 % of its
                       answers at a p95 target) admission may spend on queries
                       predicted past the bound (default 0.5, recschedd's
                       limits.late_budget; 0 = off)
  --admission RULE     daemon (that rule, the default) or prediction (the prediction
                       alone decides: no idle exception, and no budget unless
                       --late-budget says so)
  --queue ORDER        CPU queue order: policy (as each placement says: static FIFO,
                       the others earliest deadline first; the default), edf or fifo
                       (every query, whatever the policy says)
  --wait-bound F       bounded waiting on CPU workers: one worker runs only pieces of
                       at most F x the tightest live slack (0 = off, every piece as the
                       policy cut it; default 0, as recschedd's
                       limits.wait_bound_fraction)
  --lane-workers N     with --wait-bound, how many workers run only such pieces: 0 (the
                       default, as recschedd) sizes the lane from the tight models'
                       measured rates and predicted work, as the load shifts; N fixes it
  --preemption on|off  cooperative preemption on CPU workers, as recschedd's
                       limits.preemption (default on): a query due sooner interrupts a
                       running piece at its next yield point
  --yield-stretch MS   with --preemption on, a running piece reaches a yield point every
                       MS of its run (default 0.5)
  --host-cpu-ms m=ms,...
                       CPU time each query of model m costs on the first CPU device's
                       cores outside its workers (the daemon's I/O threads, a load
                       generator on the same host; bench/host_cost.py measures it live):
                       it lands on an idle or parked core as the query arrives, else
                       stretches a running piece (default: none, the cores are the
                       workers' alone)
  --outside-ms m=p50[:p95],...
                       latency each query of model m spends outside the daemon's clock
                       (the client's send and read, HTTP, wake-ups; bench/host_cost.py
                       measures both live), ms: lognormal with that median and 95th
                       percentile, or p50 for every query without p95; added to what the
                       report judges against the target, not to what the policy sees
                       (default: none, the daemon's own latency is judged)
  --gpu-batching on|off
                       deadline-aware merging on GPUs, as recschedd's
                       limits.gpu_merging (default on): a stream that frees runs the
                       first query with the queued queries of its model that still end
                       by their deadlines in one pass of the merged size (off: one query
                       per pass)
what to run (one of):
  --qps Q              one run per policy at Q queries/s
  --find-max           latency-bounded throughput per policy (doubling, then bisection
                       to 2 %; a run passes when every model's p95 meets its target, at
                       most 1 % of each model's queries are rejected and every model
                       received queries), and the capacity: the mix's saturation
                       throughput with no target, the most any policy completes
  --suite              find-max at the low, medium and high targets, the capacity, and
                       energy per query at 30, 60 and 90 % of the capacity (medium
                       targets)
  --per-model          with --suite: each model alone (as DeepRecSys measured), not
                       the mix
  --policies a,b,...   which policies (default: every registered one)
  --drs-tuning WHEN    how deeprecsched is tuned: before (the default; as DeepRecSys, for
                       the highest latency-bounded throughput of each model alone, on
                       this simulator, for each target level; the settings are printed)
                       or online (hill-climbing on the p95 while serving)
  --json               JSON instead of tables
Exit status: 0 ok, 1 failure, 2 bad usage.
)";

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  std::string part;
  while (std::getline(ss, part, sep)) {
    if (!part.empty()) out.push_back(part);
  }
  return out;
}

// DeepRecSys's p95 targets (ms), as in ../shared/reference/deeprecinfra.md.
const std::map<std::string, double> kDeepRecSysTargets = {
    {"rmc1", 100}, {"rmc2", 400}, {"rmc3", 100}, {"ncf", 5},
    {"wnd", 25},   {"mtwnd", 25}, {"din", 100},  {"dien", 35}};

struct Setup {
  ProfileTable profiles;
  std::vector<Device> devices;
  std::vector<std::pair<std::string, double>> mix;
  std::string cpu;  // the CPU device relative targets are taken on
};

Result<std::vector<ModelTarget>> targets_for(const std::string& spec, const Setup& s) {
  std::vector<ModelTarget> out;
  double factor = 0;
  if (spec == "low") factor = 2;
  if (spec == "medium") factor = 4;
  if (spec == "high") factor = 8;
  std::map<std::string, double> explicit_ms;
  if (factor == 0 && spec != "deeprecsys") {
    for (const std::string& kv : split(spec, ',')) {
      const size_t eq = kv.find('=');
      if (eq == std::string::npos) throw UsageError{"--targets: '" + kv + "' is not m=ms"};
      explicit_ms[kv.substr(0, eq)] = number("--targets", kv.substr(eq + 1), 1e-3, 1e7);
    }
  }
  for (const auto& [model, w] : s.mix) {
    double sla = 0;
    if (factor > 0) {
      auto single = policies::predict_service_ms(s.profiles, model, s.cpu, 164, 164, 1);
      if (!single) return invalid_argument(model + " has no profile on " + s.cpu);
      sla = factor * *single;
    } else if (spec == "deeprecsys") {
      auto it = kDeepRecSysTargets.find(model);
      sla = it == kDeepRecSysTargets.end() ? 100 : it->second;
    } else {
      auto it = explicit_ms.find(model);
      if (it == explicit_ms.end()) throw UsageError{"--targets names no target for " + model};
      sla = it->second;
    }
    out.push_back({model, sla});
  }
  return out;
}

std::string fmt(double v, int prec = 1) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.*f", prec, v);
  return buf;
}

void print_reports(const std::vector<Report>& reports, const std::string& title,
                   std::ostream& out) {
  out << title << "\n";
  if (reports.empty()) return;
  out << "  policy            qps      energy/q  sla  p95 ms per model (target)\n";
  for (const Report& r : reports) {
    char head[96];
    std::snprintf(head, sizeof head, "  %-16s %8.1f %9.4f J  %-4s", r.policy.c_str(), r.offered_qps,
                  r.energy_per_query_j, r.meets_sla ? "met" : "MISS");
    out << head;
    for (const ModelReport& m : r.models) {
      out << " " << m.model << " " << fmt(m.p95_ms, 2) << " (" << fmt(m.sla_ms, 2) << ")";
    }
    out << "\n";
  }
}

int run(const std::map<std::string, std::string>& o, std::ostream& out, std::ostream& err) {
  if (!o.count("profiles")) throw UsageError{"--profiles FILE is required"};
  Setup s;
  HostOptions ho;
  ho.profiles = o.at("profiles");
  if (o.count("gpu-profiles")) ho.gpu_profiles = o.at("gpu-profiles");
  ho.gpu = !o.count("no-gpu");
  if (o.count("cpu-workers"))
    ho.cpu_workers = int(whole_number("--cpu-workers", o.at("cpu-workers"), 1, 4096));
  if (o.count("gpu-streams"))
    ho.gpu_streams = int(whole_number("--gpu-streams", o.at("gpu-streams"), 1, 64));
  if (o.count("cpu-idle-w")) ho.cpu_idle_w = number("--cpu-idle-w", o.at("cpu-idle-w"), 0, 1e4);
  if (o.count("cpu-parked-w"))
    ho.cpu_parked_w = number("--cpu-parked-w", o.at("cpu-parked-w"), 0, 1e4);
  if (o.count("gpu-idle-w")) ho.gpu_idle_w = number("--gpu-idle-w", o.at("gpu-idle-w"), 0, 1e4);
  auto host = load_host(ho);
  if (!host) {
    err << "recsched-sim: " << host.status().message() << "\n";
    return 1;
  }
  if (!host->note.empty()) err << "recsched-sim: " << host->note << "\n";
  s.profiles = std::move(host->profiles);
  s.devices = std::move(host->devices);
  s.cpu = host->cpu;
  std::map<std::string, std::vector<std::string>> models_on;
  for (const auto& [model, device] : s.profiles.keys()) models_on[model].push_back(device);
  if (o.count("models")) {
    for (const std::string& m : split(o.at("models"), ',')) {
      const size_t eq = m.find('=');
      const std::string name = m.substr(0, eq);
      if (!models_on.count(name)) throw UsageError{"--models: no profile for '" + name + "'"};
      s.mix.push_back(
          {name, eq == std::string::npos ? 1.0 : number("--models", m.substr(eq + 1), 1e-9, 1e9)});
    }
  } else {
    for (const auto& [model, devs] : models_on) s.mix.push_back({model, 1.0});
  }
  std::vector<std::string> policies =
      o.count("policies") ? split(o.at("policies"), ',') : policies::policy_names();
  for (const std::string& p : policies) {
    if (!policies::create_policy(p, json::object()))
      throw UsageError{"--policies: unknown policy '" + p + "'"};
  }
  TraceOptions trace;
  trace.mix = s.mix;
  trace.seconds = o.count("seconds") ? number("--seconds", o.at("seconds"), 0.1, 36000) : 20;
  trace.seed =
      o.count("seed") ? uint64_t(whole_number("--seed", o.at("seed"), 0, 1'000'000'000'000'000'000))
                      : 1;
  Options options;
  options.noise = o.count("noise") ? number("--noise", o.at("noise"), 0, 2) : 0.1;
  if (o.count("reject-factor")) {
    options.admission.reject_factor =
        number("--reject-factor", o.at("reject-factor"), 0.01, 1e9);
  }
  if (o.count("admission")) {
    if (o.at("admission") != "daemon" && o.at("admission") != "prediction")
      throw UsageError{"--admission takes daemon or prediction, not '" + o.at("admission") + "'"};
    if (o.at("admission") == "prediction") {
      options.admission.admit_idle = false;
      options.admission.late_budget = 0;
    }
  }
  if (o.count("late-budget")) {
    options.admission.late_budget = number("--late-budget", o.at("late-budget"), 0, 1);
  }
  options.wait_bound_fraction =
      o.count("wait-bound") ? number("--wait-bound", o.at("wait-bound"), 0, 1) : 0.0;
  if (o.count("lane-workers")) {
    options.lane_workers = int(whole_number("--lane-workers", o.at("lane-workers"), 0, 4096));
  }
  options.preemption = true;  // recschedd's default
  if (o.count("preemption")) {
    if (o.at("preemption") != "on" && o.at("preemption") != "off")
      throw UsageError{"--preemption takes on or off, not '" + o.at("preemption") + "'"};
    options.preemption = o.at("preemption") == "on";
  }
  options.gpu_batching = true;  // recschedd's default
  if (o.count("gpu-batching")) {
    if (o.at("gpu-batching") != "on" && o.at("gpu-batching") != "off")
      throw UsageError{"--gpu-batching takes on or off, not '" + o.at("gpu-batching") + "'"};
    options.gpu_batching = o.at("gpu-batching") == "on";
  }
  // --host-cpu-ms and --outside-ms: m=value,... per model, each a model of the mix.
  auto per_model = [&](const char* flag, const char* form, auto&& take) {
    if (!o.count(flag)) return;
    const std::string name = std::string("--") + flag;
    for (const std::string& kv : split(o.at(flag), ',')) {
      const size_t eq = kv.find('=');
      if (eq == std::string::npos) throw UsageError{name + ": '" + kv + "' is not " + form};
      const std::string model = kv.substr(0, eq);
      if (std::none_of(s.mix.begin(), s.mix.end(), [&](const auto& m) { return m.first == model; })) {
        std::string served;
        for (const auto& [m, w] : s.mix) served += (served.empty() ? "" : ", ") + m;
        throw UsageError{name + ": no model '" + model + "' in the mix (" + served + ")"};
      }
      take(name, model, kv.substr(eq + 1));
    }
  };
  per_model("host-cpu-ms", "m=ms", [&](const std::string& name, const std::string& m,
                                        const std::string& v) {
    options.host_cpu_ms[m] = number(name, v, 0, 1e6);
  });
  per_model("outside-ms", "m=p50[:p95]", [&](const std::string& name, const std::string& m,
                                              const std::string& v) {
    const size_t colon = v.find(':');
    OutsideLatency ol;
    ol.p50_ms = number(name, v.substr(0, colon), 0, 1e6);
    ol.p95_ms = colon == std::string::npos ? ol.p50_ms : number(name, v.substr(colon + 1), 0, 1e6);
    if (ol.p95_ms < ol.p50_ms) {
      throw UsageError{name + ": " + m + "'s p95 " + v.substr(colon + 1) + " is below its p50"};
    }
    options.outside_ms[m] = ol;
  });
  if (o.count("yield-stretch")) {
    options.yield_stretch_ms = number("--yield-stretch", o.at("yield-stretch"), 0.001, 1000);
  }
  if (o.count("queue")) {
    const std::string& q = o.at("queue");
    if (q == "edf") {
      options.queue = Options::Queue::kDeadline;
    } else if (q == "fifo") {
      options.queue = Options::Queue::kArrival;
    } else if (q != "policy") {
      throw UsageError{"--queue takes policy, edf or fifo, not '" + q + "'"};
    }
  }
  const bool as_json = o.count("json") > 0;

  auto targets = [&](const std::string& spec) {
    auto t = targets_for(spec, s);
    if (!t) throw UsageError{t.status().message()};
    return *t;
  };
  std::string drs_tuning = o.count("drs-tuning") ? o.at("drs-tuning") : "before";
  if (drs_tuning != "before" && drs_tuning != "online")
    throw UsageError{"--drs-tuning takes before or online, not '" + drs_tuning + "'"};
  // deeprecsched's params for a set of targets: tuned before serving (once per set), or
  // none (online hill-climbing).
  std::map<std::string, json> tuned;  // targets, as text -> params
  json tunings = json::object();
  auto params_for = [&](const std::string& policy, const std::vector<ModelTarget>& t) {
    if (policy != "deeprecsched" || drs_tuning == "online") return json::object();
    std::string key;
    for (const ModelTarget& m : t) key += m.model + "=" + fmt(m.sla_ms, 6) + ",";
    if (auto it = tuned.find(key); it != tuned.end()) return it->second;
    DrsTuneOptions to;
    to.sizes = trace.sizes;
    to.seed = trace.seed;
    to.sim = options;
    auto r = tune_deeprecsched(s.devices, s.profiles, t, to);
    if (!r) throw std::runtime_error(r.status().message());
    json log = json::array();
    std::string line = "deeprecsched tuned before serving (each model alone; in brackets its "
                       "latency-bounded q/s in the search's short runs, an estimate):";
    for (const DrsModelTuning& m : r->models) {
      json tried = json::array();
      for (const DrsSetting& x : m.tried) {
        tried.push_back({{"sub_batch", x.sub_batch},
                         {"threshold", x.threshold ? json(*x.threshold) : json("never")},
                         {"max_qps", x.max_qps}});
      }
      double sla_ms = 0;
      for (const ModelTarget& x : t) sla_ms = x.model == m.model ? x.sla_ms : sla_ms;
      log.push_back({{"model", m.model}, {"sla_ms", sla_ms}, {"tried", tried}});
      line += " " + m.model + " b=" + std::to_string(m.best.sub_batch) +
              " th=" + (m.best.threshold ? std::to_string(*m.best.threshold) : "never") + " (" +
              fmt(m.best.max_qps) + ")";
    }
    tunings[key] = log;
    if (!o.count("json")) out << line << "\n";
    return tuned[key] = r->params();
  };
  auto find_max = [&](const std::string& policy, const std::vector<ModelTarget>& t) {
    auto r = sim::find_max_qps(trace, s.devices, s.profiles, t, policy, params_for(policy, t),
                               options);
    if (!r) throw std::runtime_error(r.status().message());
    return *r;
  };
  auto at_qps = [&](const std::string& policy, const std::vector<ModelTarget>& t, double qps) {
    TraceOptions tr = trace;
    tr.qps = qps;
    auto p = policies::create_policy(policy, params_for(policy, t));
    auto r =
        sim::simulate(poisson_trace(tr), s.devices, s.profiles, t, std::move(p).value(), options);
    if (!r) throw std::runtime_error(r.status().message());
    return *r;
  };

  // Capacity (issue 17's definition): the mix's saturation throughput with no target, the
  // most any of the policies completes per second when offered more than it can serve.
  auto saturation = [&](const std::vector<std::pair<std::string, double>>& mix) {
    TraceOptions tr = trace;
    tr.mix = mix;
    std::vector<std::string> models;
    for (const auto& [m, w] : mix) models.push_back(m);
    double best = 0;
    for (const std::string& p : policies) {
      auto r = sim::saturation_qps(tr, s.devices, s.profiles, models, p, options);
      if (!r) throw std::runtime_error(r.status().message());
      best = std::max(best, r->throughput_qps);
    }
    return best;
  };

  json doc = {{"devices", json::array()}, {"mix", json::array()}};
  for (const Device& d : s.devices) {
    doc["devices"].push_back({{"id", d.info.id},
                              {"kind", d.info.kind == policies::DeviceKind::kGpu ? "gpu" : "cpu"},
                              {"workers", d.info.workers},
                              {"idle_w", d.info.idle_w},
                              {"parked_w_per_worker", d.parked_w_per_worker}});
  }
  for (const auto& [m, w] : s.mix) doc["mix"].push_back({{"model", m}, {"weight", w}});
  doc["seconds_per_run"] = trace.seconds;
  doc["noise"] = options.noise;
  doc["queue"] = o.count("queue") ? o.at("queue") : "policy";
  doc["gpu_batching"] = options.gpu_batching;
  doc["host_cpu_ms"] = options.host_cpu_ms;  // {} when the cores are the workers' alone
  doc["outside_ms"] = nlohmann::json::object();  // {} when the daemon's own latency is judged
  for (const auto& [m, ol] : options.outside_ms) {
    doc["outside_ms"][m] = {{"p50_ms", ol.p50_ms}, {"p95_ms", ol.p95_ms}};
  }
  doc["admission"] = options.admission.admit_idle ? "daemon" : "prediction";
  doc["admission_limits"] = {{"reject_factor", options.admission.reject_factor},
                             {"share", options.admission.normal_share},
                             {"late_budget", options.admission.late_budget}};
  if (!as_json) {
    out << "devices:";
    for (const Device& d : s.devices) out << " " << d.info.id << " (" << d.info.workers << ")";
    out << "; " << trace.seconds << " s per run, noise " << options.noise << ", queue "
        << doc["queue"].get<std::string>() << ", gpu batching "
        << (options.gpu_batching ? "on" : "off");
    if (!options.host_cpu_ms.empty()) {
      out << ", host CPU per query (ms)";
      for (const auto& [m, ms] : options.host_cpu_ms) out << " " << m << "=" << ms;
    }
    if (!options.outside_ms.empty()) {
      out << ", latency outside the daemon (ms)";
      for (const auto& [m, ol] : options.outside_ms) {
        out << " " << m << "=" << ol.p50_ms << ":" << ol.p95_ms;
      }
    }
    out << "\n";
  }
  try {
    if (o.count("suite")) {
      // One suite per scope: the whole mix, or (--per-model) each model alone, as
      // DeepRecSys measured them.
      std::vector<std::pair<std::string, std::vector<std::pair<std::string, double>>>> scopes;
      if (o.count("per-model")) {
        for (const auto& [m, w] : s.mix) scopes.push_back({m, {{m, 1.0}}});
      } else {
        scopes.push_back({"mix", s.mix});
      }
      json suites = json::object();
      for (const auto& [scope, mix] : scopes) {
        Setup one = s;
        one.mix = mix;
        trace.mix = mix;
        auto targets_of = [&](const std::string& level) {
          auto t = targets_for(level, one);
          if (!t) throw UsageError{t.status().message()};
          return *t;
        };
        json suite = {{"max_qps", json::object()}, {"energy", json::object()}};
        std::map<std::string, std::vector<double>> row;  // policy -> columns
        for (const char* level : {"low", "medium", "high"}) {
          const auto t = targets_of(level);
          for (const std::string& p : policies) {
            const Report r = find_max(p, t);
            suite["max_qps"][level][p] = r.to_json();
            row[p].push_back(r.offered_qps);
          }
        }
        // Energy per query at 30 / 60 / 90 % of the capacity (the saturation throughput),
        // medium targets: a load every policy is offered alike.
        const double capacity_qps = saturation(mix);
        suite["capacity_qps"] = capacity_qps;
        for (double f : {0.3, 0.6, 0.9}) {
          const std::string key = std::to_string(int(f * 100 + 0.5));
          for (const std::string& p : policies) {
            if (capacity_qps <= 0) {
              row[p].push_back(0);
              continue;
            }
            const Report r = at_qps(p, targets_of("medium"), f * capacity_qps);
            suite["energy"][key][p] = r.to_json();
            row[p].push_back(r.meets_sla ? r.energy_per_query_j : -r.energy_per_query_j);
          }
        }
        suites[scope] = suite;
        if (!as_json) {
          out << scope << ": capacity (saturation, no target, the most any policy completes) "
              << fmt(capacity_qps)
              << " qps\n  max qps with every p95 within target (low / medium / high), J per "
                 "query at 30/60/90 % of capacity (medium targets; '!' = a target missed "
                 "there), medium / capacity\n";
          for (const std::string& p : policies) {
            char line[200];
            const auto& c = row[p];
            auto j = [](double v) { return std::abs(v); };
            auto miss = [](double v) { return v < 0 ? '!' : ' '; };
            std::snprintf(line, sizeof line,
                          "  %-16s %9.1f %9.1f %9.1f   %8.4f%c %8.4f%c %8.4f%c   %5.2f\n",
                          p.c_str(), c[0], c[1], c[2], j(c[3]), miss(c[3]), j(c[4]), miss(c[4]),
                          j(c[5]), miss(c[5]), capacity_qps > 0 ? c[1] / capacity_qps : 0.0);
            out << line;
          }
        }
      }
      doc["suites"] = suites;
    } else {
      const auto t = targets(o.count("targets") ? o.at("targets") : "medium");
      std::vector<Report> rs;
      if (o.count("find-max")) {
        for (const std::string& p : policies) rs.push_back(find_max(p, t));
        doc["capacity_qps"] = saturation(trace.mix);
        if (!as_json) {
          out << "capacity (saturation, no target, the most any policy completes): "
              << fmt(doc["capacity_qps"].get<double>()) << " qps\n";
        }
      } else if (o.count("qps")) {
        const double q = number("--qps", o.at("qps"), 1e-3, 1e8);
        for (const std::string& p : policies) rs.push_back(at_qps(p, t, q));
      } else {
        throw UsageError{"say what to run: --qps Q, --find-max or --suite"};
      }
      doc["runs"] = json::array();
      for (const Report& r : rs) doc["runs"].push_back(r.to_json());
      if (!as_json)
        print_reports(rs, o.count("find-max") ? "latency-bounded throughput:" : "runs:", out);
    }
  } catch (const std::runtime_error& e) {
    err << "recsched-sim: " << e.what() << "\n";
    return 1;
  }
  if (!tunings.empty()) doc["deeprecsched_tuning"] = tunings;
  if (as_json) out << doc.dump(2) << "\n";
  return 0;
}

}  // namespace

int run_sim_cli(const std::vector<std::string>& args, std::ostream& out, std::ostream& err) {
  static const std::vector<std::string> kValued = {
      "profiles",     "gpu-profiles", "cpu-workers", "gpu-streams", "cpu-idle-w",
      "cpu-parked-w", "gpu-idle-w",   "models",      "targets",     "seconds",
      "seed",         "noise",        "qps",         "policies",   "queue",
      "reject-factor", "wait-bound",   "drs-tuning",  "admission",  "preemption",
      "yield-stretch", "late-budget", "gpu-batching", "lane-workers", "host-cpu-ms",
      "outside-ms"};
  static const std::vector<std::string> kFlags = {"no-gpu", "find-max", "suite", "per-model",
                                                  "json"};
  try {
    const auto o = parse_options(args, kValued, kFlags);
    if (!o) {
      out << kUsage;
      return 0;
    }
    return run(*o, out, err);
  } catch (const UsageError& e) {
    err << "recsched-sim: " << e.message << " (see recsched-sim --help)\n";
    return 2;
  }
}

}  // namespace recsched::sim::tools
