#include "planner/tools/plan_cli.h"

#include <algorithm>
#include <chrono>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <ostream>
#include <set>

#include "planner/host_capacity.h"
#include "planner/planner.h"
#include "planner/trace.h"
#include "policies/registry.h"
#include "sim/tools/options.h"

namespace recsched::plan::tools {
namespace {

using nlohmann::json;
namespace fs = std::filesystem;

constexpr const char* kUsage = R"(usage: recsched-plan --fleet FILE [OPTIONS]
       recsched-plan apply --plan PLAN --slot N --config BASE --out DIR [--hosts FILE]

Plans a heterogeneous fleet through the day: per time slot, how many hosts of each type
to power, which models each serves (its co-location set) and each model's share of the
traffic, so that every model's load fits within the latency-bounded capacity of the hosts
that serve it, at the least provisioned power. Solved as an integer program by GLPK, side
by side with Hercules' greedy baseline (each model to its most power-efficient host type,
hosts first-fit, one model per host) on the same capacity facts. The capacity of a host
type for a set of models comes from recsched's simulator on that type's profile, cached.

plan:
  --fleet FILE       the fleet: host types (profile, shape, count, power), models (target,
                     peak load, peak hour), the trace and the settings (docs/planner.md);
                     relative paths in it are taken from its folder
  --trace FILE       the load per slot as CSV (minute,<model>,...), instead of the
                     fleet's diurnal shape
  --cache FILE       the simulator's capacity figures (default: FLEET's name with
                     .capacity.json beside it; --cache '' for none)
  --out FILE         write the plan: every slot's ILP and greedy plans, and the capacity
                     facts, as JSON
  --replay           run every slot's plan back through the simulator, one host of each
                     assignment at its share of the load; exit 1 if one misses a target
  --max-set-size N   co-location sets of up to N models (default: the fleet's
                     max_set_size; 1 = no co-location, each host one model)
  --gpu-merging on|off
                     GPUs merge queued queries of one model into one pass, as
                     recschedd's limits.gpu_merging (default: the fleet's gpu_merging,
                     true)
  --threads N        simulator threads (default: every core)
  --mip-gap X        relative optimality gap at which the solver stops (default 0.001)
  --json             print the summary as JSON

apply (one slot of a plan to the hosts):
  --plan PLAN        a plan written by --out
  --slot N           the slot (0 = from midnight)
  --config BASE      a recschedd config: each co-location set gets a copy serving only
                     its models (matched by their spec file's name), with the plan's
                     policy and targets; relative spec paths are made absolute
  --out DIR          where the configs go (DIR/<type>.<model>.<model>.json)
  --hosts FILE       optional inventory, [{"name": ..., "type": ...}]: each host is given
                     a config or "off" (DIR/assignments.json) and a node label
                     recsched.io/plan-set (DIR/label-nodes.sh, kubectl)
)";

using sim::tools::number;
using sim::tools::UsageError;

// The fleet file, read with an error that names the key.
struct Fleet {
  std::vector<HostTypeSpec> types;
  std::vector<sim::ModelTarget> targets;
  std::vector<DiurnalModel> diurnal;
  double slot_minutes = 15, trough = 0.4;
  std::string trace_file;
  double utilisation = 0.9;
  int max_set_size = 2;
  SimSettings sim;
};

struct FleetError {
  std::string message;
};

// A whole number in [lo, hi] (a slot, a count): "0.7" is refused, not read as 0.
int integer(const std::string& flag, const std::string& v, int lo, int hi) {
  const double x = number(flag, v, lo, hi);
  if (x != std::floor(x)) throw UsageError{flag + " takes a whole number, not '" + v + "'"};
  return int(x);
}

// Names that become file names, cache keys and label values: letters, digits, '_' and '-'.
bool plain_name(const std::string& s) {
  return !s.empty() && s.size() <= 63 &&
         std::all_of(s.begin(), s.end(), [](char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-'; });
}

// A Kubernetes node name (RFC 1123 subdomain): what label-nodes.sh may pass to kubectl.
bool node_name(const std::string& s) {
  if (s.empty() || s.size() > 253) return false;
  auto lower_alnum = [](char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); };
  if (!lower_alnum(s.front()) || !lower_alnum(s.back())) return false;
  return std::all_of(s.begin(), s.end(), [&](char c) { return lower_alnum(c) || c == '-' || c == '.'; });
}

// A JSON file, or an error that names it (missing, a directory, not JSON).
json read_json(const std::string& path, const std::string& what) {
  std::error_code ec;
  if (!fs::is_regular_file(path, ec)) throw FleetError{what + " " + path + ": not a readable file"};
  std::ifstream f(path);
  if (!f) throw FleetError{"cannot open " + what + " " + path};
  json j = json::parse(f, nullptr, false, true);
  if (j.is_discarded()) throw FleetError{what + " " + path + ": not valid JSON"};
  return j;
}

const json& need(const json& j, const std::string& key, const std::string& where) {
  if (!j.is_object() || !j.contains(key)) throw FleetError{where + ": '" + key + "' is required"};
  return j.at(key);
}

void only_keys(const json& j, const std::set<std::string>& keys, const std::string& where) {
  if (!j.is_object()) throw FleetError{where + " must be an object"};
  for (const auto& [k, v] : j.items())
    if (!keys.count(k)) throw FleetError{where + ": unknown key '" + k + "'"};
}

template <typename T>
T get(const json& j, const std::string& key, const std::string& where, T fallback) {
  if (!j.contains(key)) return fallback;
  try {
    return j.at(key).get<T>();
  } catch (const json::exception&) {
    throw FleetError{where + ": '" + key + "' has the wrong type"};
  }
}

double positive(double v, const std::string& what) {
  if (!(v > 0) || !std::isfinite(v)) throw FleetError{what + " must be > 0"};
  return v;
}

Fleet read_fleet(const std::string& path) {
  const json j = read_json(path, "fleet");
  only_keys(j, {"comment", "policy", "utilisation", "max_set_size", "sim_seconds", "gpu_merging",
                "host_types", "models", "trace"},
            path);
  const fs::path dir = fs::path(path).parent_path();
  auto resolve = [&](const std::string& p) {
    return p.empty() || fs::path(p).is_absolute() ? p : (dir / p).lexically_normal().string();
  };
  Fleet fleet;
  fleet.sim.policy = get<std::string>(j, "policy", path, "earliest-finish");
  if (!policies::create_policy(fleet.sim.policy, json::object()))
    throw FleetError{path + ": unknown policy '" + fleet.sim.policy + "'"};
  fleet.utilisation = get<double>(j, "utilisation", path, 0.9);
  if (!(fleet.utilisation > 0 && fleet.utilisation <= 1))
    throw FleetError{path + ": utilisation must be in (0, 1]"};
  fleet.max_set_size = get<int>(j, "max_set_size", path, 2);
  if (fleet.max_set_size < 1 || fleet.max_set_size > 4)
    throw FleetError{path + ": max_set_size must be 1-4"};
  fleet.sim.seconds = positive(get<double>(j, "sim_seconds", path, 10), path + ": sim_seconds");
  // GPUs merge queued queries of one model into one pass, as recschedd's limits.gpu_merging
  // (on by default).
  fleet.sim.options.gpu_batching = get<bool>(j, "gpu_merging", path, true);
  const json& types = need(j, "host_types", path);
  if (!types.is_array() || types.empty()) throw FleetError{path + ": host_types must be a non-empty array"};
  std::set<std::string> names;
  for (size_t i = 0; i < types.size(); ++i) {
    const json& t = types[i];
    const std::string where = path + ": host_types[" + std::to_string(i) + "]";
    only_keys(t, {"name", "comment", "profiles", "gpu_profiles", "gpu", "cpu_workers", "gpu_streams",
                  "speed", "count", "power_w"},
              where);
    HostTypeSpec s;
    need(t, "name", where);
    s.name = get<std::string>(t, "name", where, "");
    if (!plain_name(s.name))
      throw FleetError{where + ": name must be 1-63 letters, digits, '_' or '-'"};
    if (!names.insert(s.name).second) throw FleetError{where + ": name '" + s.name + "' twice"};
    need(t, "profiles", where);
    s.host.profiles = resolve(get<std::string>(t, "profiles", where, ""));
    s.host.gpu_profiles = resolve(get<std::string>(t, "gpu_profiles", where, ""));
    s.host.gpu = get<bool>(t, "gpu", where, true);
    s.host.cpu_workers = get<int>(t, "cpu_workers", where, 0);
    s.host.gpu_streams = get<int>(t, "gpu_streams", where, 1);
    s.host.speed = positive(get<double>(t, "speed", where, 1), where + ": speed");
    need(t, "count", where);
    s.count = get<int>(t, "count", where, 0);
    if (s.count < 0) throw FleetError{where + ": count must be >= 0"};
    need(t, "power_w", where);
    s.power_w = positive(get<double>(t, "power_w", where, 0), where + ": power_w");
    fleet.types.push_back(std::move(s));
  }
  const json& models = need(j, "models", path);
  if (!models.is_array() || models.empty()) throw FleetError{path + ": models must be a non-empty array"};
  for (size_t i = 0; i < models.size(); ++i) {
    const json& m = models[i];
    const std::string where = path + ": models[" + std::to_string(i) + "]";
    only_keys(m, {"name", "target_ms", "peak_qps", "peak_hour"}, where);
    need(m, "name", where);
    const std::string name = get<std::string>(m, "name", where, "");
    if (!plain_name(name)) throw FleetError{where + ": name must be 1-63 letters, digits, '_' or '-'"};
    for (const auto& t : fleet.targets)
      if (t.model == name) throw FleetError{where + ": model '" + name + "' twice"};
    need(m, "target_ms", where);
    fleet.targets.push_back({name, positive(get<double>(m, "target_ms", where, 0), where + ": target_ms")});
    const double peak = get<double>(m, "peak_qps", where, 0);
    if (!(peak >= 0)) throw FleetError{where + ": peak_qps must be >= 0"};
    const double hour = get<double>(m, "peak_hour", where, 20);
    if (!(hour >= 0 && hour < 24)) throw FleetError{where + ": peak_hour must be in [0, 24)"};
    fleet.diurnal.push_back({name, peak, hour});
  }
  if (j.contains("trace")) {
    const json& t = j.at("trace");
    only_keys(t, {"slot_minutes", "trough", "file"}, path + ": trace");
    fleet.slot_minutes = get<double>(t, "slot_minutes", path + ": trace", 15);
    fleet.trough = get<double>(t, "trough", path + ": trace", 0.4);
    fleet.trace_file = resolve(get<std::string>(t, "file", path + ": trace", ""));
  }
  return fleet;
}

std::string fmt(double v, int prec = 1) {
  char buf[48];
  std::snprintf(buf, sizeof buf, "%.*f", prec, v);
  return buf;
}

// The day's totals of one method's plans.
struct DayTotals {
  int peak_hosts = 0;
  double peak_power_w = 0, host_hours = 0, energy_kwh = 0, unserved_query_share = 0;
  double solve_ms = 0;
};

DayTotals totals(const std::vector<SlotPlan>& plans, const Trace& trace) {
  DayTotals d;
  double offered = 0, unserved = 0;
  for (size_t s = 0; s < plans.size(); ++s) {
    const SlotPlan& p = plans[s];
    d.peak_hosts = std::max(d.peak_hosts, p.hosts);
    d.peak_power_w = std::max(d.peak_power_w, p.power_w);
    d.host_hours += p.hosts * trace.slot_minutes / 60;
    d.energy_kwh += p.power_w * trace.slot_minutes / 60 / 1000;
    d.solve_ms += p.solve_ms;
    for (const auto& [m, q] : trace.slots[s]) offered += q;
    for (const auto& [m, q] : p.unserved_qps) unserved += q;
  }
  d.unserved_query_share = offered > 0 ? unserved / offered : 0;
  return d;
}

json totals_json(const DayTotals& d) {
  return {{"peak_hosts", d.peak_hosts},         {"peak_power_w", d.peak_power_w},
          {"host_hours", d.host_hours},         {"provisioned_kwh", d.energy_kwh},
          {"unserved_share", d.unserved_query_share}, {"solve_ms", d.solve_ms}};
}

double saving(double base, double ours) { return base > 0 ? 100 * (base - ours) / base : 0; }

int plan_day(const std::map<std::string, std::string>& o, std::ostream& out, std::ostream& err) {
  if (o.count("gpu-merging") && o.at("gpu-merging") != "on" && o.at("gpu-merging") != "off") {
    throw UsageError{"--gpu-merging takes on or off, not '" + o.at("gpu-merging") + "'"};
  }
  Fleet fleet;
  try {
    fleet = read_fleet(o.at("fleet"));
  } catch (const FleetError& e) {
    err << "recsched-plan: " << e.message << "\n";
    return 1;
  }
  if (o.count("gpu-merging")) fleet.sim.options.gpu_batching = o.at("gpu-merging") == "on";
  Result<Trace> trace = o.count("trace") ? read_trace_csv(o.at("trace"))
                        : !fleet.trace_file.empty()
                            ? read_trace_csv(fleet.trace_file)
                            : diurnal_trace(fleet.diurnal, fleet.slot_minutes, fleet.trough);
  if (!trace) {
    err << "recsched-plan: " << trace.status().message() << "\n";
    return 1;
  }
  for (const std::string& m : trace->models) {
    if (std::none_of(fleet.targets.begin(), fleet.targets.end(),
                     [&](const sim::ModelTarget& t) { return t.model == m; })) {
      err << "recsched-plan: the trace has load for '" << m << "', which the fleet's models do not list\n";
      return 1;
    }
  }
  CapacityOptions copt;
  copt.sim = fleet.sim;
  copt.utilisation = fleet.utilisation;
  copt.max_set_size = o.count("max-set-size") ? integer("--max-set-size", o.at("max-set-size"), 1, 4)
                                              : fleet.max_set_size;
  copt.cache_path = o.count("cache") ? o.at("cache")
                                     : (fs::path(o.at("fleet")).replace_extension("").string() +
                                        ".capacity.json");
  copt.threads = o.count("threads") ? unsigned(integer("--threads", o.at("threads"), 1, 256)) : 0;
  copt.on_simulated = [&](const std::string& what) { err << "recsched-plan: simulated " << what << "\n"; };
  const auto t0 = std::chrono::steady_clock::now();
  size_t simulated = 0;
  auto facts = measure_capacity(fleet.types, fleet.targets, copt, &simulated);
  if (!facts) {
    err << "recsched-plan: " << facts.status().message() << "\n";
    return 1;
  }
  const double capacity_s =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  Problem problem;
  problem.types = *facts;
  for (const auto& t : fleet.targets) problem.models.push_back(t.model);
  problem.utilisation = fleet.utilisation;
  SolveOptions sopt;
  if (o.count("mip-gap")) sopt.mip_gap = number("--mip-gap", o.at("mip-gap"), 0, 1);
  std::vector<SlotPlan> ilp, greedy;
  const auto t1 = std::chrono::steady_clock::now();
  for (const auto& load : trace->slots) {
    auto a = plan_slot(problem, load, sopt);
    auto b = greedy_slot(problem, load);
    if (!a || !b) {
      err << "recsched-plan: " << (a ? b.status() : a.status()).message() << "\n";
      return 1;
    }
    ilp.push_back(std::move(*a));
    greedy.push_back(std::move(*b));
  }
  const double plan_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t1).count();
  const DayTotals ours = totals(ilp, *trace), base = totals(greedy, *trace);
  int fleet_hosts = 0;
  for (const HostType& h : problem.types) fleet_hosts += h.count;

  json doc;
  doc["fleet"] = o.at("fleet");
  doc["policy"] = fleet.sim.policy;
  doc["utilisation"] = fleet.utilisation;
  doc["max_set_size"] = copt.max_set_size;
  doc["gpu_merging"] = fleet.sim.options.gpu_batching;
  doc["targets_ms"] = json::object();
  for (const auto& t : fleet.targets) doc["targets_ms"][t.model] = t.sla_ms;
  doc["slot_minutes"] = trace->slot_minutes;
  doc["fleet_hosts"] = fleet_hosts;
  doc["capacity"] = json::array();
  for (const HostType& h : problem.types) {
    json sets = json::array();
    for (const HostType::Set& s : h.sets)
      sets.push_back({{"models", s.models}, {"shares", s.shares}, {"efficiency", s.efficiency}});
    doc["capacity"].push_back({{"type", h.name}, {"count", h.count}, {"power_w", h.power_w},
                               {"alone_qps", h.alone_qps}, {"sets", sets}});
  }
  doc["capacity_seconds"] = capacity_s;
  doc["simulated_runs"] = simulated;
  doc["plan_seconds"] = plan_s;
  doc["ilp"] = totals_json(ours);
  doc["greedy"] = totals_json(base);
  doc["saving_percent"] = {{"peak_hosts", saving(base.peak_hosts, ours.peak_hosts)},
                           {"peak_power", saving(base.peak_power_w, ours.peak_power_w)},
                           {"host_hours", saving(base.host_hours, ours.host_hours)},
                           {"provisioned_kwh", saving(base.energy_kwh, ours.energy_kwh)}};
  int replay_missed = 0;
  if (o.count("replay")) {
    auto r = replay(fleet.types, fleet.targets, ilp, fleet.sim, copt.threads);
    if (!r) {
      err << "recsched-plan: replay: " << r.status().message() << "\n";
      return 1;
    }
    json misses = json::array();
    for (const ReplayResult& x : *r) {
      if (x.meets_sla) continue;
      ++replay_missed;
      misses.push_back({{"slot", x.slot}, {"type", x.type}, {"qps_per_host", x.qps_per_host},
                        {"p95_ms", x.p95_ms}, {"rejected", x.rejected}});
    }
    doc["replay"] = {{"hosts_simulated", r->size()}, {"missed", replay_missed}, {"misses", misses}};
  }
  if (o.count("out")) {
    json full = doc;
    full["slots"] = json::array();
    for (size_t s = 0; s < ilp.size(); ++s) {
      full["slots"].push_back({{"slot", s},
                               {"start_minute", trace->start_minute(s)},
                               {"load_qps", trace->slots[s]},
                               {"ilp", ilp[s].to_json()},
                               {"greedy", greedy[s].to_json()}});
    }
    std::ofstream f(o.at("out"));
    f << full.dump(1) << "\n";
    if (!f) {
      err << "recsched-plan: cannot write " << o.at("out") << "\n";
      return 1;
    }
  }
  if (o.count("json")) {
    out << doc.dump(2) << "\n";
  } else {
    out << "fleet: " << fleet_hosts << " hosts of " << problem.types.size() << " types, "
        << problem.models.size() << " models, " << ilp.size() << " slots of "
        << fmt(trace->slot_minutes, 0) << " min; policy " << fleet.sim.policy << ", utilisation "
        << fmt(fleet.utilisation, 2) << ", co-location sets of up to " << copt.max_set_size
        << " models, GPU merging " << (fleet.sim.options.gpu_batching ? "on" : "off") << "\n";
    out << "capacity facts: " << simulated << " simulations run (" << fmt(capacity_s) << " s), the rest cached\n";
    out << "  type            hosts  power W  latency-bounded q/s per host alone\n";
    for (const HostType& h : problem.types) {
      char head[64];
      std::snprintf(head, sizeof head, "  %-14s %6d %8.0f ", h.name.c_str(), h.count, h.power_w);
      out << head;
      for (const auto& [m, q] : h.alone_qps) out << " " << m << " " << fmt(q, q < 100 ? 1 : 0);
      out << "\n";
    }
    out << "planned in " << fmt(plan_s, 2) << " s (" << fmt(plan_s * 1000 / ilp.size(), 1)
        << " ms per slot)\n";
    out << "  per 2 h:  hour   load q/s   ilp hosts   ilp kW   greedy hosts   greedy kW\n";
    const size_t step = std::max<size_t>(1, size_t(std::lround(120 / trace->slot_minutes)));
    for (size_t s = 0; s < ilp.size(); s += step) {
      double load = 0;
      for (const auto& [m, q] : trace->slots[s]) load += q;
      char line[160];
      std::snprintf(line, sizeof line, "  %14s %10.0f %11d %8.1f %14d %11.1f\n",
                    fmt(trace->start_minute(s) / 60, 2).c_str(), load, ilp[s].hosts,
                    ilp[s].power_w / 1000, greedy[s].hosts, greedy[s].power_w / 1000);
      out << line;
    }
    out << "  the day:            ilp        greedy    saving\n";
    auto row = [&](const char* what, double a, double b, int prec) {
      char line[160];
      std::snprintf(line, sizeof line, "  %-16s %12s %12s %8s %%\n", what, fmt(a, prec).c_str(),
                    fmt(b, prec).c_str(), fmt(saving(b, a), 1).c_str());
      out << line;
    };
    row("peak hosts", ours.peak_hosts, base.peak_hosts, 0);
    row("peak power kW", ours.peak_power_w / 1000, base.peak_power_w / 1000, 1);
    row("host-hours", ours.host_hours, base.host_hours, 0);
    row("provisioned kWh", ours.energy_kwh, base.energy_kwh, 0);
    out << "  unserved load: ilp " << fmt(100 * ours.unserved_query_share, 2) << " %, greedy "
        << fmt(100 * base.unserved_query_share, 2) << " %\n";
    if (doc.contains("replay")) {
      out << "replay: " << doc["replay"]["hosts_simulated"].get<size_t>()
          << " hosts simulated (one per assignment per slot), " << replay_missed
          << " missed a target\n";
      for (const auto& m : doc["replay"]["misses"]) out << "  missed: " << m.dump() << "\n";
    }
  }
  return replay_missed > 0 ? 1 : 0;
}

// Strips directories and the extension: "../models/ncf.json" -> "ncf".
std::string stem(const std::string& p) { return fs::path(p).stem().string(); }

int apply_slot(const std::map<std::string, std::string>& o, std::ostream& out, std::ostream& err);

// A plan, config or inventory of the wrong shape is an error that names the file, not a crash.
int apply(const std::map<std::string, std::string>& o, std::ostream& out, std::ostream& err) {
  for (const char* k : {"plan", "slot", "config", "out"})
    if (!o.count(k)) throw UsageError{std::string("apply needs --") + k};
  try {
    return apply_slot(o, out, err);
  } catch (const FleetError& e) {
    err << "recsched-plan: apply: " << e.message << "\n";
  } catch (const json::exception& e) {
    err << "recsched-plan: apply: a file is not what it should be (" << e.what() << ")\n";
  }
  return 1;
}

int apply_slot(const std::map<std::string, std::string>& o, std::ostream& out, std::ostream& err) {
  const json plan = read_json(o.at("plan"), "plan");
  if (!plan.is_object() || !plan.contains("slots") || !plan.at("slots").is_array())
    throw FleetError{o.at("plan") + " is not a plan written by --out"};
  const size_t slot = size_t(integer("--slot", o.at("slot"), 0, 1000000));
  if (slot >= plan.at("slots").size()) {
    throw FleetError{"the plan has " + std::to_string(plan.at("slots").size()) + " slots, not slot " +
                     std::to_string(slot)};
  }
  json base = read_json(o.at("config"), "config");
  if (!base.is_object() || !base.contains("models") || !base.at("models").is_array())
    throw FleetError{o.at("config") + " is not a recschedd config with models"};
  const fs::path base_dir = fs::absolute(fs::path(o.at("config")).parent_path());
  std::map<std::string, json> model_entry;
  for (json m : base.at("models")) {
    const std::string spec = m.value("spec", "");
    for (const char* key : {"spec", "weights"}) {
      const std::string v = m.value(key, "");
      if (!v.empty() && fs::path(v).is_relative())
        m[key] = (base_dir / v).lexically_normal().string();
    }
    model_entry[stem(spec)] = m;
  }
  const fs::path out_dir = fs::absolute(o.at("out"));
  // One config per (type, set) whatever its mixes; the hosts it needs. Everything is read
  // and checked before a file is written.
  struct Group {
    std::string type, file, label;
    int hosts = 0;
    json config;
  };
  std::vector<Group> groups;
  for (const json& a : plan.at("slots").at(slot).at("ilp").at("assignments")) {
    Group g;
    g.type = a.at("type").get<std::string>();
    g.hosts = a.at("hosts").get<int>();
    if (!plain_name(g.type) || g.hosts < 0)
      throw FleetError{o.at("plan") + ": an assignment with type '" + g.type + "' and " +
                       std::to_string(g.hosts) + " hosts"};
    g.config = base;
    g.config["models"] = json::array();
    for (const json& entry : a.at("models")) {
      const std::string m = entry.get<std::string>();
      if (!plain_name(m)) throw FleetError{o.at("plan") + ": a model named '" + m + "'"};
      if (!model_entry.count(m))
        throw FleetError{o.at("config") + " has no model whose spec is named " + m};
      json entry_cfg = model_entry.at(m);
      // The target the plan was made for, not the base config's.
      if (plan.contains("targets_ms") && plan.at("targets_ms").contains(m))
        entry_cfg["sla_ms"] = plan.at("targets_ms").at(m);
      g.config["models"].push_back(std::move(entry_cfg));
      g.label += (g.label.empty() ? "" : ".") + m;
    }
    if (g.label.empty()) throw FleetError{o.at("plan") + ": an assignment serves no model"};
    if (plan.contains("policy") && g.config.value("/policy/name"_json_pointer, "") != plan.at("policy")) {
      g.config["policy"]["name"] = plan.at("policy");
      g.config["policy"]["params"] = json::object();  // the base's were for another policy
    }
    g.file = (out_dir / (g.type + "." + g.label + ".json")).string();
    auto same = std::find_if(groups.begin(), groups.end(),
                             [&](const Group& x) { return x.file == g.file; });
    if (same != groups.end()) {
      same->hosts += g.hosts;  // the same set at another mix: the same config
    } else {
      groups.push_back(std::move(g));
    }
  }
  json hosts = json::array();
  if (o.count("hosts")) {
    hosts = read_json(o.at("hosts"), "inventory");
    if (!hosts.is_array()) throw FleetError{o.at("hosts") + " must be a JSON array of {name, type}"};
    std::set<std::string> names;
    for (const json& h : hosts) {
      if (!h.is_object() || !h.contains("name") || !h.contains("type") || !h.at("name").is_string() ||
          !h.at("type").is_string())
        throw FleetError{o.at("hosts") + ": every host needs a name and a type"};
      const std::string name = h.at("name");
      if (!node_name(name))
        throw FleetError{o.at("hosts") + ": '" + name + "' is not a node name (lower-case letters, digits, '-', '.')"};
      if (!names.insert(name).second) throw FleetError{o.at("hosts") + ": host '" + name + "' twice"};
    }
  }
  std::error_code ec;
  fs::create_directories(out_dir, ec);
  if (ec) throw FleetError{"cannot create " + out_dir.string() + ": " + ec.message()};
  for (const Group& g : groups) {
    std::ofstream f(g.file);
    f << g.config.dump(2) << "\n";
    if (!f) throw FleetError{"cannot write " + g.file};
    out << g.file << ": " << g.hosts << " hosts of " << g.type << "\n";
  }
  if (!o.count("hosts")) return 0;
  json assignments = json::object();
  std::string script = "#!/bin/sh\n# recsched-plan apply: slot " + std::to_string(slot) + "\nset -e\n";
  for (const json& h : hosts) {
    const std::string name = h.at("name"), type = h.at("type");
    std::string given = "off", label = "off";
    for (Group& g : groups) {
      if (g.type == type && g.hosts > 0) {
        --g.hosts;
        given = g.file;
        label = g.label;
        break;
      }
    }
    assignments[name] = given;
    script += "kubectl label node '" + name + "' recsched.io/plan-set=" + label + " --overwrite\n";
  }
  int missing = 0;
  for (const Group& g : groups) missing += g.hosts;
  std::ofstream(out_dir / "assignments.json") << assignments.dump(2) << "\n";
  std::ofstream(out_dir / "label-nodes.sh") << script;
  out << (out_dir / "assignments.json").string() << ", " << (out_dir / "label-nodes.sh").string()
      << ": " << hosts.size() << " hosts\n";
  if (missing > 0) {
    err << "recsched-plan: the inventory lacks " << missing << " hosts the plan powers\n";
    return 1;
  }
  return 0;
}

}  // namespace

int run_plan_cli(const std::vector<std::string>& args, std::ostream& out, std::ostream& err) {
  static const std::vector<std::string> kValued = {"fleet", "trace", "cache", "out",    "threads",
                                                   "mip-gap", "plan", "slot", "config", "hosts",
                                                   "max-set-size", "gpu-merging"};
  static const std::vector<std::string> kFlags = {"replay", "json"};
  try {
    // `apply` first selects the subcommand; the rest are options.
    const bool applying = !args.empty() && args[0] == "apply";
    const auto parsed = sim::tools::parse_options(
        applying ? std::vector<std::string>(args.begin() + 1, args.end()) : args, kValued, kFlags);
    if (!parsed) {
      out << kUsage;
      return 0;
    }
    const std::map<std::string, std::string>& o = *parsed;
    if (applying) return apply(o, out, err);
    if (!o.count("fleet")) throw UsageError{"--fleet FILE is required"};
    for (const char* k : {"plan", "slot", "config", "hosts"})
      if (o.count(k)) throw UsageError{std::string("--") + k + " belongs to apply"};
    return plan_day(o, out, err);
  } catch (const UsageError& e) {
    err << "recsched-plan: " << e.message << " (see recsched-plan --help)\n";
    return 2;
  } catch (const std::exception& e) {  // a file that fails as it is read, not a crash
    err << "recsched-plan: " << e.what() << "\n";
    return 1;
  }
}

}  // namespace recsched::plan::tools
