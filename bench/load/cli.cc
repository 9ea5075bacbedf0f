#include "bench/load/cli.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <map>
#include <optional>
#include <sstream>
#include <stdexcept>

namespace recsched::load {

using nlohmann::json;

namespace {

constexpr const char* kUsage = R"(usage: recsched-load (--socket PATH | --tcp HOST:PORT) [options]

An open-loop load generator for recschedd: Poisson arrivals scheduled in advance, each
query timed from its scheduled send time (no coordinated omission), on a pool of
keep-alive connections (a query written to one the server has closed while it sat idle
goes once more on a new one, counted as retried_on_new_connection); random features sent
as KServe v2 binary tensors.

Where:
  --socket PATH          the daemon's unix socket
  --tcp HOST:PORT        or its TCP listener
  --token TOKEN          bearer token (PUT /v1/policy over TCP)
Load:
  --qps Q                offered load, queries/s (default 100)
  --duration S           seconds of load, warm-up included (default 10)
  --warmup S             seconds at the start sent but not counted (default 1, at most a
                         tenth of --duration)
  --sizes DIST           items per query: lognormal[:MU,SIGMA[,CAP]] (default 5.1,0.2,1024),
                         normal:MEAN,SD[,CAP], fixed:N, file:PATH (sizes, one per line)
  --models M[:W],...     the mix and its weights (default: every served model, equal)
  --sla M=MS,...         targets for the SLA columns (default: each model's sla_ms)
  --send-sla             send each model's target as the request's parameters.sla_ms
  --priority N           send parameters.priority N with every query (recschedd sheds
                         priority < 0 first, then 0, then > 0)
  --lookups M=L,...      ids per bag (default: lookups_per_table read from the spec file)
  --json-payload         JSON tensors in place of binary (a pool of --json-pool bodies)
  --json-pool N          JSON bodies per model (default 32)
  --int32-ids            binary sparse_indices as INT32 (half the bytes) instead of INT64
  --shm                  send the inputs through a shared-memory region registered with the
                         daemon (Triton's system shared-memory extension; needs --socket):
                         the request bodies carry only JSON naming where they lie
  --spin-us N            poll for N us before each scheduled send instead of sleeping
                         until it (default 0; at most 1/20 of the mean gap between sends):
                         a sleeping generator's timer wakes late on a VM, and that
                         lateness counts in every latency (from schedule)
  --max-connections N    connections at most (default 128)
  --payload-mb N         memory for pre-generated features (default 512)
  --min-queries N        lengthen each run (or step) so every model of the mix can expect
                         N measured queries (default 0: the durations as given)
  --drain S              wait at most this long for answers after the last send (default 10)
  --seed N               schedule and payload seed (default 1)
  --policy NAME          PUT /v1/policy before the load; --policy-params JSON its params
Modes (default: one run):
  --find-max-qps         search the highest load whose p95 (the percentile of the model's
                         target, 95 by default) meets every model's target:
                         from --start-qps (10) times --growth (2) until a step fails,
                         then bisection to --tolerance (0.05);
                         steps of --step-duration S (5) after --step-warmup S (1);
                         a step fails on rejections+errors above --max-reject (0.01);
                         --max-qps Q bounds it (default 1e6);
                         --passed-qps Q: a load known to pass these targets or tighter
                         ones (e.g. a tighter level's result): the search climbs from Q
                         and never answers less
  --sweep Q1,Q2,...      one run per load (and per policy of --policies a,b,c), writing
                         --csv FILE and --png FILE (gnuplot): p95 vs offered load
  --ceiling              the generator's own ceiling: GET --path (/v2/health/live) at --qps
                         (default 50000) for --duration (default 3)
Output:
  --out FILE             the results as JSON
  --quiet                no progress line (default: one a second for runs of 10 s or more)
)";

struct Plan {
  Endpoint ep;
  RunOptions run;
  std::string mode = "run";  // run, find-max-qps, sweep, ceiling
  std::vector<std::pair<std::string, double>> mix;
  std::map<std::string, int32_t> lookups;
  bool send_sla = false;
  PoolOptions pool;
  uint64_t payload_mb = 512;
  std::optional<std::string> policy;
  json policy_params = json::object();
  std::vector<std::string> policies;
  std::vector<double> loads;
  SearchOptions search;
  double step_duration = 5, step_warmup = 1, max_reject = 0.01, min_queries = 0;
  std::string out, csv, png, path = "/v2/health/live";
  bool quiet = false, qps_set = false, duration_set = false, warmup_set = false;
};

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  std::string part;
  while (std::getline(ss, part, sep)) {
    if (!part.empty()) out.push_back(part);
  }
  return out;
}

double number(const std::string& opt, const std::string& v) {
  try {
    size_t used = 0;
    const double d = std::stod(v, &used);
    if (used != v.size() || !std::isfinite(d)) throw std::invalid_argument("");
    return d;
  } catch (const std::exception&) {
    throw std::invalid_argument(opt + ": '" + v + "' is not a number");
  }
}

double positive(const std::string& opt, const std::string& v) {
  const double d = number(opt, v);
  if (!(d > 0)) throw std::invalid_argument(opt + " must be > 0");
  return d;
}

// "a=1,b=2" into a map.
std::map<std::string, double> pairs(const std::string& opt, const std::string& v) {
  std::map<std::string, double> out;
  for (const std::string& p : split(v, ',')) {
    const size_t eq = p.find('=');
    if (eq == std::string::npos || eq == 0)
      throw std::invalid_argument(opt + " takes NAME=VALUE,...");
    out[p.substr(0, eq)] = positive(opt, p.substr(eq + 1));
  }
  return out;
}

Plan parse(const std::vector<std::string>& args) {
  Plan p;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    auto value = [&]() -> const std::string& {
      if (i + 1 >= args.size()) throw std::invalid_argument(a + " needs a value");
      return args[++i];
    };
    if (a == "--socket") {
      p.ep.unix_path = value();
    } else if (a == "--tcp") {
      const std::string v = value();
      const size_t colon = v.rfind(':');
      if (colon == std::string::npos) throw std::invalid_argument("--tcp takes HOST:PORT");
      p.ep.host = v.substr(0, colon);
      if (p.ep.host.size() > 1 && p.ep.host.front() == '[')
        p.ep.host = p.ep.host.substr(1, p.ep.host.size() - 2);
      const double port = number(a, v.substr(colon + 1));
      if (port < 1 || port > 65535 || port != std::floor(port))
        throw std::invalid_argument("--tcp: bad port");
      p.ep.port = uint16_t(port);
    } else if (a == "--token") {
      p.ep.token = value();
    } else if (a == "--qps") {
      p.run.qps = positive(a, value());
      p.qps_set = true;
    } else if (a == "--duration") {
      p.run.duration_s = positive(a, value());
      p.duration_set = true;
    } else if (a == "--warmup") {
      p.run.warmup_s = number(a, value());
      p.warmup_set = true;
      if (p.run.warmup_s < 0) throw std::invalid_argument("--warmup must be >= 0");
    } else if (a == "--sizes") {
      p.run.sizes = SizeDistribution::parse(value());
    } else if (a == "--models") {
      for (const std::string& m : split(value(), ',')) {
        const size_t colon = m.find(':');
        p.mix.emplace_back(m.substr(0, colon),
                           colon == std::string::npos ? 1.0 : number(a, m.substr(colon + 1)));
        if (p.mix.back().second < 0) throw std::invalid_argument("--models: negative weight");
      }
    } else if (a == "--sla") {
      p.run.sla_ms = pairs(a, value());
    } else if (a == "--send-sla") {
      p.send_sla = true;
    } else if (a == "--priority") {
      const double v = number(a, value());
      if (v != std::floor(v) || std::fabs(v) > 1e6)
        throw std::invalid_argument("--priority: an integer, e.g. -1, 0 or 1");
      p.pool.priority = static_cast<int>(v);
    } else if (a == "--lookups") {
      for (const auto& [k, v] : pairs(a, value())) p.lookups[k] = int32_t(v);
    } else if (a == "--json-payload") {
      p.pool.format = PayloadFormat::kJson;
    } else if (a == "--int32-ids") {
      p.pool.int32_ids = true;
    } else if (a == "--shm") {
      p.run.shared_memory = true;
    } else if (a == "--json-pool") {
      p.pool.json_pool = int(positive(a, value()));
    } else if (a == "--max-connections") {
      p.run.max_connections = uint32_t(positive(a, value()));
    } else if (a == "--payload-mb") {
      p.payload_mb = uint64_t(positive(a, value()));
    } else if (a == "--min-queries") {
      p.min_queries = number(a, value());
      if (p.min_queries < 0) throw std::invalid_argument("--min-queries must be >= 0");
    } else if (a == "--spin-us") {
      const double us = number(a, value());
      if (!(us >= 0 && us <= 1e6)) throw std::invalid_argument("--spin-us takes 0 to 1000000");
      p.run.spin_before_send_us = uint32_t(us);
    } else if (a == "--drain") {
      p.run.drain_timeout_s = positive(a, value());
    } else if (a == "--seed") {
      p.run.seed = uint64_t(number(a, value()));
    } else if (a == "--policy") {
      p.policy = value();
    } else if (a == "--policy-params") {
      p.policy_params = json::parse(value(), nullptr, false);
      if (!p.policy_params.is_object())
        throw std::invalid_argument("--policy-params must be a JSON object");
    } else if (a == "--find-max-qps") {
      p.mode = "find-max-qps";
    } else if (a == "--start-qps") {
      p.search.start_qps = positive(a, value());
    } else if (a == "--max-qps") {
      p.search.max_qps = positive(a, value());
    } else if (a == "--passed-qps") {
      p.search.known_pass_qps = positive(a, value());
    } else if (a == "--min-qps") {
      p.search.min_qps = positive(a, value());
    } else if (a == "--growth") {
      p.search.growth = positive(a, value());
      if (p.search.growth <= 1) throw std::invalid_argument("--growth must be > 1");
    } else if (a == "--tolerance") {
      p.search.tolerance = positive(a, value());
    } else if (a == "--step-duration") {
      p.step_duration = positive(a, value());
    } else if (a == "--step-warmup") {
      p.step_warmup = number(a, value());
    } else if (a == "--max-reject") {
      p.max_reject = number(a, value());
    } else if (a == "--sweep") {
      p.mode = "sweep";
      for (const std::string& q : split(value(), ',')) p.loads.push_back(positive(a, q));
      if (p.loads.empty()) throw std::invalid_argument("--sweep needs loads");
    } else if (a == "--policies") {
      p.policies = split(value(), ',');
    } else if (a == "--csv") {
      p.csv = value();
    } else if (a == "--png") {
      p.png = value();
    } else if (a == "--ceiling") {
      p.mode = "ceiling";
    } else if (a == "--path") {
      p.path = value();
    } else if (a == "--out") {
      p.out = value();
    } else if (a == "--quiet") {
      p.quiet = true;
    } else {
      throw std::invalid_argument("unknown option " + a);
    }
  }
  if (p.ep.unix_path.empty() && p.ep.port == 0)
    throw std::invalid_argument("say where the daemon is: --socket PATH or --tcp HOST:PORT");
  if (!p.warmup_set) p.run.warmup_s = std::min(1.0, p.run.duration_s / 10);
  if (p.run.warmup_s >= p.run.duration_s && p.mode == "run")
    throw std::invalid_argument("--warmup must be shorter than --duration");
  p.pool.max_items = p.run.sizes.max_size();
  p.pool.budget_bytes = p.payload_mb << 20;
  p.pool.seed = p.run.seed;
  return p;
}

std::string num(double v) {
  std::ostringstream o;
  o << v;
  return o.str();
}

// The stopping rule of --find-max-qps as run, for the output.
std::string search_rule(const Plan& p) {
  return "steps of " + num(p.step_duration) + " s after " + num(p.step_warmup) +
         " s of warm-up; a step passes when every model's p95 (or its sla_percentile) <= its "
         "target and "
         "rejections + errors <= " +
         num(p.max_reject) + " of those sent; from " + num(p.search.start_qps) + " q/s times " +
         num(p.search.growth) +
         (p.search.known_pass_qps > 0
              ? " (climbing from " + num(p.search.known_pass_qps) +
                    " q/s, known to pass: the answer is never less)"
              : std::string()) +
         " until a step fails (halving while the first fails), then bisection until "
         "(lowest fail - highest pass) <= " +
         num(p.search.tolerance) + " x highest pass, at most " + num(p.search.max_steps) +
         " steps; the answer is the highest load that passed";
}

void write_file(const std::string& path, const std::string& text) {
  std::ofstream out(path);
  if (!out) throw std::runtime_error("cannot write " + path);
  out << text;
  if (!out.flush()) throw std::runtime_error("cannot write " + path);
}

std::string current_policy(const Endpoint& ep) {
  try {
    const HttpReply r = http_call(ep, "GET", "/v1/policy");
    const json j = json::parse(r.body, nullptr, false);
    if (r.status == 200 && j.is_object()) return j.value("name", "");
  } catch (const std::exception&) {
  }
  return "";
}

// The models to load and their weights, in the pool's order.
std::vector<ModelInfo> select_models(const Plan& p, std::vector<double>& weights) {
  std::vector<ModelInfo> served = fetch_models(p.ep, p.lookups);
  if (p.mix.empty()) {
    weights.assign(served.size(), 1.0);
    return served;
  }
  std::vector<ModelInfo> out;
  for (const auto& [name, w] : p.mix) {
    auto it = std::find_if(served.begin(), served.end(),
                           [&](const ModelInfo& m) { return m.name == name; });
    if (it == served.end()) throw std::invalid_argument("--models: the daemon serves no " + name);
    out.push_back(*it);
    weights.push_back(w);
  }
  return out;
}

int ceiling(const Plan& p) {
  RunOptions o = p.run;
  if (!p.qps_set) o.qps = 50000;
  if (!p.duration_set) o.duration_s = 3;
  o.warmup_s = std::min(o.warmup_s, o.duration_s / 4);
  o.trivial_path = p.path;
  o.energy = false;
  o.progress = false;
  // The pool is never used for GETs; one tiny stand-in model keeps the runner simple.
  ModelInfo m;
  m.name = "trivial";
  m.dense = 1;
  PoolOptions po;
  po.max_items = 1;
  SizeDistribution one = SizeDistribution::parse("fixed:1");
  PayloadPool pool({m}, one, po);
  o.sizes = one;
  const RunResult r = run_load(p.ep, pool, o);
  const double rate = r.wall_s > 0 ? double(r.completed_total) / r.wall_s : 0.0;
  std::printf(
      "ceiling: GET %s offered %.0f/s, answered %llu in %.2f s = %.0f/s (ok %llu, errors %llu, "
      "%u connections, send lag p99 %.2f ms)\n",
      p.path.c_str(), o.qps, (unsigned long long)r.completed_total, r.wall_s, rate,
      (unsigned long long)r.all.ok, (unsigned long long)r.all.errors, r.connections_opened,
      r.send_lag_ns.percentile(99) / 1e6);
  if (!p.out.empty()) {
    json j = r.to_json();
    j.erase("models");
    j["mode"] = "ceiling";
    j["path"] = p.path;
    j["ceiling_qps"] = rate;
    write_file(p.out, j.dump(2) + "\n");
  }
  return r.all.ok > 0 ? 0 : 1;
}

std::string gnuplot_quote(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  return out + "\"";
}

// One point of a sweep's plot.
struct SweepPoint {
  double offered_qps = 0;
  double p95_ms = 0;       // all models together
  double worst_ratio = 0;  // max over models of p95 / target (<= 1: every target met)
};

// The PNG: p95 (all models) and the worst model's p95 over its target against offered load,
// one line per policy. The data go to PNG.dat (one gnuplot index per policy) beside the
// script PNG.gp, so the plot can be redrawn.
void plot(const std::string& png, const std::vector<std::string>& policies,
          const std::vector<std::vector<SweepPoint>>& points) {
  std::string data;
  for (size_t i = 0; i < policies.size(); ++i) {
    data += "# " + policies[i] + ": offered_qps p95_ms worst_p95_over_target\n";
    for (const SweepPoint& pt : points[i]) {
      char line[128];
      std::snprintf(line, sizeof line, "%.4f %.4f %.4f\n", pt.offered_qps, pt.p95_ms,
                    pt.worst_ratio);
      data += line;
    }
    data += "\n\n";
  }
  const std::string data_path = png + ".dat";
  write_file(data_path, data);
  std::string script = "set terminal pngcairo size 1200,520 noenhanced\n";
  script += "set output " + gnuplot_quote(png) + "\n";
  script +=
      "set multiplot layout 1,2 title 'recsched-load: tail latency vs offered load'\n"
      "set xlabel 'offered load (queries/s)'\nset logscale y\nset grid\nset key top left\n"
      "set ylabel 'p95 latency, all models (ms)'\n";
  auto lines = [&](int column) {
    std::string plot = "plot ";
    for (size_t i = 0; i < policies.size(); ++i) {
      if (i) plot += ", ";
      plot += gnuplot_quote(data_path) + " index " + std::to_string(i) +
              " using 1:" + std::to_string(column) + " with linespoints title " +
              gnuplot_quote(policies[i]);
    }
    return plot;
  };
  script += lines(2) + "\n";
  script +=
      "set ylabel 'worst model: p95 / its target'\n"
      "set arrow from graph 0, first 1 to graph 1, first 1 nohead dashtype 2\n";
  script += lines(3) + "\nunset multiplot\n";
  const std::string script_path = png + ".gp";
  write_file(script_path, script);
  const std::string cmd = "gnuplot " + script_path;
  if (std::system(cmd.c_str()) != 0)
    std::cerr << "recsched-load: gnuplot failed; the script is " << script_path << "\n";
}

int load_main_impl(const std::vector<std::string>& args) {
  for (const std::string& a : args) {
    if (a == "--help" || a == "-h") {
      std::cout << kUsage;
      return 0;
    }
  }
  Plan p;
  try {
    p = parse(args);
  } catch (const std::invalid_argument& e) {
    std::cerr << "recsched-load: " << e.what() << " (--help for the options)\n";
    return 2;
  }
  if (p.mode == "ceiling") return ceiling(p);

  std::vector<double> weights;
  std::vector<ModelInfo> models = select_models(p, weights);
  p.run.weights = weights;
  if (p.send_sla) {
    for (ModelInfo& m : models) {
      if (auto it = p.run.sla_ms.find(m.name); it != p.run.sla_ms.end()) m.sla_ms = it->second;
    }
    p.pool.per_model_sla = true;
  }
  PayloadPool pool(models, p.run.sizes, p.pool);
  if (!p.quiet)
    std::fprintf(stderr, "recsched-load: %zu models, %s, payload pool %.0f MiB (%s), %s\n",
                 models.size(), p.run.sizes.describe().c_str(), double(pool.bytes()) / (1 << 20),
                 p.pool.format == PayloadFormat::kBinary ? "binary tensors" : "JSON",
                 p.ep.describe().c_str());
  if (p.policy) set_policy(p.ep, *p.policy, p.policy_params);

  // The smallest share of the mix: --min-queries lengthens a run so that even this model
  // can expect that many measured queries (a p95 over a handful of queries means little).
  double total_weight = 0, min_weight = 0;
  for (double w : weights) total_weight += w;
  for (double w : weights) {
    if (w > 0 && (min_weight == 0 || w < min_weight)) min_weight = w;
  }
  auto one_run = [&](RunOptions o) {
    if (p.min_queries > 0) {
      const double needed = p.min_queries / (o.qps * min_weight / total_weight);
      if (o.duration_s - o.warmup_s < needed) o.duration_s = o.warmup_s + needed;
    }
    o.progress = !p.quiet && o.duration_s >= 10;
    return run_load(p.ep, pool, o);
  };

  json out;
  int status = 0;
  if (p.mode == "run") {
    const RunResult r = one_run(p.run);
    std::cout << r.summary();
    out = r.to_json();
    out["mode"] = "run";
    out["policy"] = current_policy(p.ep);
    if (r.all.ok == 0) status = 1;
  } else if (p.mode == "find-max-qps") {
    std::vector<RunResult> results;
    SearchResult s = find_max_qps(p.search, [&](double qps) {
      RunOptions o = p.run;
      o.qps = qps;
      o.warmup_s = p.step_warmup;
      o.duration_s = p.step_warmup + p.step_duration;
      o.seed = p.run.seed + results.size();
      results.push_back(one_run(o));
      const StepOutcome v = judge(results.back(), p.max_reject);
      if (!p.quiet)
        std::fprintf(stderr, "  %9.1f q/s: %s (achieved %.1f, p95 %.2f ms)%s%s\n", qps,
                     v.pass ? "pass" : "FAIL", results.back().achieved_qps,
                     results.back().all.latency_ns.percentile(95) / 1e6, v.why.empty() ? "" : ": ",
                     v.why.c_str());
      return v;
    });
    out = {{"mode", "find-max-qps"}, {"policy", current_policy(p.ep)},
           {"max_qps", s.max_qps},   {"lowest_fail_qps", s.lowest_fail},
           {"hit_max", s.hit_max},   {"rule", search_rule(p)},
           {"known_pass_qps", p.search.known_pass_qps},
           {"from_known_pass", s.from_known_pass}};
    json steps = json::array();
    const RunResult* best = nullptr;
    for (size_t i = 0; i < s.steps.size(); ++i) {
      steps.push_back({{"qps", s.steps[i].qps},
                       {"pass", s.steps[i].outcome.pass},
                       {"why", s.steps[i].outcome.why},
                       {"result", results[i].to_json()}});
      if (s.steps[i].outcome.pass && s.steps[i].qps == s.max_qps) best = &results[i];
    }
    out["steps"] = steps;
    std::printf("max QPS meeting every target: %.1f (lowest failing load %.1f)%s%s\n", s.max_qps,
                s.lowest_fail, s.hit_max ? " [--max-qps reached]" : "",
                s.from_known_pass ? " [the --passed-qps load: no step above it passed]" : "");
    if (best) {
      std::cout << best->summary();
      out["best"] = best->to_json();
    }
  } else if (p.mode == "sweep") {
    std::vector<std::string> policies = p.policies;
    if (policies.empty()) policies.push_back(current_policy(p.ep));
    std::string csv =
        "policy,model,offered_qps,achieved_qps,p50_ms,p95_ms,p99_ms,max_ms,"
        "sla_ms,sla_violation_rate,reject_rate,error_rate,energy_j_per_query,energy_source\n";
    json runs = json::array();
    std::vector<std::vector<SweepPoint>> points;
    for (const std::string& pol : policies) {
      points.emplace_back();
      if (!p.policies.empty()) set_policy(p.ep, pol, p.policy_params);
      for (double q : p.loads) {
        RunOptions o = p.run;
        o.qps = q;
        const RunResult r = one_run(o);
        if (!p.quiet)
          std::fprintf(stderr, "  %s %.1f q/s: achieved %.1f, p95 %.2f ms, rejected %.2f%%\n",
                       pol.c_str(), q, r.achieved_qps, r.all.latency_ns.percentile(95) / 1e6,
                       100 * r.reject_rate());
        runs.push_back({{"policy", pol}, {"qps", q}, {"result", r.to_json()}});
        SweepPoint pt{r.offered_qps, r.all.latency_ns.percentile(95) / 1e6, 0.0};
        for (const ModelResult& m : r.models) {
          if (m.sla_ms > 0 && m.ok > 0)
            pt.worst_ratio = std::max(pt.worst_ratio, m.latency_ns.percentile(95) / 1e6 / m.sla_ms);
        }
        points.back().push_back(pt);
        std::vector<const ModelResult*> rows{&r.all};
        for (const ModelResult& m : r.models) rows.push_back(&m);
        for (const ModelResult* m : rows) {
          char line[512];
          const double jpq =
              r.energy_joules && r.all.ok ? *r.energy_joules / double(r.all.ok) : 0.0;
          std::snprintf(line, sizeof line,
                        "%s,%s,%.3f,%.3f,%.4f,%.4f,%.4f,%.4f,%.3f,%.5f,%.5f,%.5f,%.6f,%s\n",
                        pol.c_str(), m->name.c_str(), r.offered_qps, double(m->ok) / r.measured_s,
                        m->latency_ns.percentile(50) / 1e6, m->latency_ns.percentile(95) / 1e6,
                        m->latency_ns.percentile(99) / 1e6, double(m->latency_ns.max()) / 1e6,
                        m->sla_ms, m->ok ? double(m->sla_violations) / double(m->ok) : 0.0,
                        m->sent ? double(m->rejected) / double(m->sent) : 0.0,
                        m->sent ? double(m->errors) / double(m->sent) : 0.0, jpq,
                        r.energy_source.c_str());
          csv += line;
        }
      }
    }
    out = {{"mode", "sweep"}, {"runs", runs}};
    const std::string csv_path = p.csv.empty() ? "recsched-load-sweep.csv" : p.csv;
    write_file(csv_path, csv);
    std::printf("sweep: %zu runs, CSV %s\n", runs.size(), csv_path.c_str());
    if (!p.png.empty()) {
      plot(p.png, policies, points);
      std::printf("plot: %s\n", p.png.c_str());
    }
  }
  out["endpoint"] = p.ep.describe();
  out["payload"] = p.pool.format == PayloadFormat::kBinary ? "binary" : "json";
  if (!p.out.empty()) write_file(p.out, out.dump(2) + "\n");
  return status;
}

}  // namespace

StepOutcome judge(const RunResult& r, double max_reject) {
  StepOutcome v;
  v.pass = true;
  std::ostringstream why;
  auto fail = [&](const std::string& s) {
    if (!v.pass) why << "; ";
    v.pass = false;
    why << s;
  };
  for (const ModelResult& m : r.models) {
    if (m.sent == 0) continue;
    if (m.ok == 0) {
      fail(m.name + ": nothing answered");
      continue;
    }
    const double tail = m.latency_ns.percentile(m.sla_percentile) / 1e6;
    if (m.sla_ms > 0 && !(tail <= m.sla_ms)) {  // a NaN tail fails too
      char b[160];
      std::snprintf(b, sizeof b, "%s p%g %.2f ms > %.2f ms", m.name.c_str(), m.sla_percentile, tail,
                    m.sla_ms);
      fail(b);
    }
  }
  const double bad = r.reject_rate() + r.error_rate();
  if (!(bad <= max_reject)) {
    char b[160];
    std::snprintf(b, sizeof b, "rejected+errors %.2f%% > %.2f%%", 100 * bad, 100 * max_reject);
    fail(b);
  }
  if (r.all.sent == 0) fail("no queries in the measured window");
  v.why = why.str();
  return v;
}

int load_main(const std::vector<std::string>& args) {
  try {
    return load_main_impl(args);
  } catch (const std::exception& e) {
    std::cerr << "recsched-load: " << e.what() << "\n";
    return 1;
  }
}

}  // namespace recsched::load
