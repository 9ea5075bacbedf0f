#include "planner/planner.h"

#include <glpk.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <memory>
#include <set>

namespace recsched::plan {
namespace {

using Clock = std::chrono::steady_clock;

// One column group of the program: hosts of a type serving one set.
struct Config {
  size_t type = 0;
  std::vector<std::string> models;
  std::vector<double> shares;  // empty for one model
  double efficiency = 1;
};

// Singletons (efficiency 1 by definition) and the listed sets whose every model the type
// can serve alone within its target.
std::vector<Config> configs_of(const Problem& p) {
  std::vector<Config> out;
  for (size_t t = 0; t < p.types.size(); ++t) {
    const HostType& h = p.types[t];
    auto serves = [&](const std::string& m) {
      auto it = h.alone_qps.find(m);
      return it != h.alone_qps.end() && it->second > 0;
    };
    for (const std::string& m : p.models) {
      if (serves(m)) out.push_back({t, {m}, {}, 1.0});
    }
    for (const HostType::Set& set : h.sets) {
      const std::vector<std::string>& ms = set.models;
      if (ms.size() < 2 || set.shares.size() != ms.size() || !(set.efficiency > 0)) continue;
      if (!std::all_of(set.shares.begin(), set.shares.end(), [](double s) { return s > 0; })) continue;
      if (!std::all_of(ms.begin(), ms.end(), serves)) continue;
      if (!std::all_of(ms.begin(), ms.end(), [&](const std::string& m) {
            return std::find(p.models.begin(), p.models.end(), m) != p.models.end();
          }))
        continue;
      out.push_back({t, ms, set.shares, set.efficiency});
    }
  }
  return out;
}

Status check_load(const Problem& p, const std::map<std::string, double>& load) {
  if (p.models.empty()) return invalid_argument("the plan serves no model");
  for (size_t i = 0; i < p.models.size(); ++i)
    for (size_t j = 0; j < i; ++j)
      if (p.models[i] == p.models[j]) return invalid_argument("model '" + p.models[i] + "' listed twice");
  for (const auto& [m, q] : load) {
    if (std::find(p.models.begin(), p.models.end(), m) == p.models.end())
      return invalid_argument("load for '" + m + "', a model the plan does not serve");
    if (!(q >= 0) || !std::isfinite(q)) return invalid_argument("load of '" + m + "' must be >= 0");
  }
  if (!(p.utilisation > 0 && p.utilisation <= 1)) return invalid_argument("utilisation must be in (0, 1]");
  for (const HostType& h : p.types) {
    if (h.count < 0 || !(h.power_w >= 0)) return invalid_argument("host type " + h.name + ": bad count or power");
  }
  return Status::ok();
}

double load_of(const std::map<std::string, double>& load, const std::string& m) {
  auto it = load.find(m);
  return it == load.end() ? 0 : it->second;
}

// Totals, busy shares and the per-type counts, from the assignments.
void settle(const Problem& p, SlotPlan* plan) {
  for (Assignment& a : plan->assignments) {
    const HostType& h = *std::find_if(p.types.begin(), p.types.end(),
                                      [&](const HostType& x) { return x.name == a.type; });
    double work = 0;
    for (const auto& [m, q] : a.qps) work += q / h.alone_qps.at(m);
    a.busy = a.hosts > 0 ? work / (a.efficiency * a.hosts) : 0;
    plan->powered[a.type] += a.hosts;
    plan->hosts += a.hosts;
    plan->power_w += a.hosts * h.power_w;
  }
}

// GLPK's branch and bound can take minutes to find its first integer plan on a large
// fleet; rounding the node's LP solution gives one at once. Every n_c is rounded up where
// its type has hosts left, else down (its load, scaled down with it, goes to the unserved
// columns), so the rounded plan is always feasible.
struct Rounding {
  std::vector<size_t> config_type;                  // per n_c column
  std::vector<int> type_count;                      // hosts per type
  std::vector<std::pair<size_t, size_t>> x_config;  // per x column: (config, model index)
  int n_col0 = 0, x_col0 = 0, s_col0 = 0, columns = 0;
  std::vector<double> dive;  // a first plan (dive()), handed to the search once
  bool dive_sent = false;
};

void round_lp_solution(glp_tree* tree, void* info) {
  if (glp_ios_reason(tree) != GLP_IHEUR) return;
  Rounding& r = *static_cast<Rounding*>(info);
  if (!r.dive.empty() && !r.dive_sent) {
    r.dive_sent = true;
    glp_ios_heur_sol(tree, r.dive.data());
  }
  glp_prob* lp = glp_ios_get_prob(tree);
  std::vector<double> v(size_t(r.columns) + 1, 0.0);
  for (int j = 1; j <= r.columns; ++j) v[size_t(j)] = glp_get_col_prim(lp, j);
  const size_t nc = r.config_type.size();
  std::vector<double> keep(nc, 1.0);  // the share of a configuration's load it keeps
  for (size_t t = 0; t < r.type_count.size(); ++t) {
    std::vector<size_t> of_type;
    int hosts = 0;
    for (size_t c = 0; c < nc; ++c) {
      if (r.config_type[c] != t) continue;
      of_type.push_back(c);
      hosts += int(std::ceil(v[size_t(r.n_col0) + c] - 1e-9));
    }
    // Over the type's count: round down the smallest fractions first.
    std::sort(of_type.begin(), of_type.end(), [&](size_t a, size_t b) {
      const double fa = v[size_t(r.n_col0) + a], fb = v[size_t(r.n_col0) + b];
      return fa - std::floor(fa) < fb - std::floor(fb);
    });
    for (size_t c : of_type) {
      double& n = v[size_t(r.n_col0) + c];
      const double up = std::ceil(n - 1e-9), down = std::floor(n + 1e-9);
      if (hosts > r.type_count[t] && up > down) {
        keep[c] = n > 0 ? down / n : 0;
        n = down;
        --hosts;
      } else {
        n = up;
      }
    }
  }
  for (size_t k = 0; k < r.x_config.size(); ++k) {
    double& x = v[size_t(r.x_col0) + k];
    const auto [c, m] = r.x_config[k];
    v[size_t(r.s_col0) + m] += x * (1 - keep[c]);
    x *= keep[c];
  }
  glp_ios_heur_sol(tree, v.data());
}

struct GlpDeleter {
  void operator()(glp_prob* p) const { glp_delete_prob(p); }
};

// A first plan for the search, by diving on the LP: a type whose hosts in the LP optimum
// cannot all be rounded up within its count is fixed first (each configuration rounded
// down, the hosts left over to the largest fractions) and the LP solved again, so that
// other types take the load it lost; once no type is short, the rest are rounded up.
// Empty if an LP fails.
std::vector<double> dive(glp_prob* solved, const Rounding& r) {
  std::unique_ptr<glp_prob, GlpDeleter> d(glp_create_prob());
  glp_copy_prob(d.get(), solved, GLP_OFF);
  glp_smcp parm;
  glp_init_smcp(&parm);
  parm.msg_lev = GLP_MSG_OFF;
  const size_t nt = r.type_count.size(), nc = r.config_type.size();
  std::vector<bool> fixed(nt, false);
  auto fix = [&](size_t c, double n) { glp_set_col_bnds(d.get(), r.n_col0 + int(c), GLP_FX, n, n); };
  for (size_t pass = 0; pass <= nt; ++pass) {
    if (glp_simplex(d.get(), &parm) != 0 || glp_get_status(d.get()) != GLP_OPT) return {};
    bool short_type = false;
    for (size_t t = 0; t < nt; ++t) {
      if (fixed[t]) continue;
      std::vector<std::pair<double, size_t>> fractions;  // (fraction, config)
      int floors = 0, ceils = 0;
      for (size_t c = 0; c < nc; ++c) {
        if (r.config_type[c] != t) continue;
        const double n = glp_get_col_prim(d.get(), r.n_col0 + int(c));
        floors += int(std::floor(n + 1e-9));
        ceils += int(std::ceil(n - 1e-9));
        fractions.push_back({n - std::floor(n + 1e-9), c});
      }
      if (ceils <= r.type_count[t]) continue;
      short_type = fixed[t] = true;
      std::sort(fractions.rbegin(), fractions.rend());
      int spare = r.type_count[t] - floors;
      for (const auto& [frac, c] : fractions) {
        const double n = std::floor(glp_get_col_prim(d.get(), r.n_col0 + int(c)) + 1e-9);
        const bool up = frac > 1e-9 && spare > 0;
        spare -= up ? 1 : 0;
        fix(c, n + (up ? 1 : 0));
      }
    }
    if (short_type) continue;
    for (size_t c = 0; c < nc; ++c) {
      if (!fixed[r.config_type[c]]) fix(c, std::ceil(glp_get_col_prim(d.get(), r.n_col0 + int(c)) - 1e-9));
    }
    if (glp_simplex(d.get(), &parm) != 0 || glp_get_status(d.get()) != GLP_OPT) return {};
    std::vector<double> v(size_t(r.columns) + 1, 0.0);
    for (int j = 1; j <= r.columns; ++j) v[size_t(j)] = glp_get_col_prim(d.get(), j);
    // A fixed column the simplex made basic comes back as 1e-18, not 0: GLPK takes only
    // exact integers.
    for (size_t c = 0; c < nc; ++c) v[size_t(r.n_col0) + c] = std::round(v[size_t(r.n_col0) + c]);
    return v;
  }
  return {};
}

}  // namespace

nlohmann::json SlotPlan::to_json() const {
  nlohmann::json j;
  j["method"] = method;
  j["status"] = status;
  j["gap"] = gap;
  j["solve_ms"] = solve_ms;
  j["hosts"] = hosts;
  j["power_w"] = power_w;
  j["powered"] = powered;
  j["unserved_qps"] = unserved_qps;
  j["assignments"] = nlohmann::json::array();
  for (const Assignment& a : assignments) {
    nlohmann::json e = {{"type", a.type},   {"models", a.models},         {"hosts", a.hosts},
                        {"qps", a.qps},     {"efficiency", a.efficiency}, {"busy", a.busy}};
    if (!a.shares.empty()) e["shares"] = a.shares;
    j["assignments"].push_back(std::move(e));
  }
  return j;
}

// Load the program left unserved where a type that serves the model has hosts to spare:
// a q/s priced per q/s can still lose to a whole host's watts for a last fraction of a
// q/s, so such load gets hosts of its own (the type that serves it for the fewest watts
// per q/s first), and only load no spare host can take stays unserved.
void serve_leftovers(const Problem& p, SlotPlan* plan) {
  std::map<std::string, int> used;
  for (const Assignment& a : plan->assignments) used[a.type] += a.hosts;
  for (auto it = plan->unserved_qps.begin(); it != plan->unserved_qps.end();) {
    const std::string& m = it->first;
    double rest = it->second;
    std::vector<const HostType*> types;
    for (const HostType& h : p.types) {
      auto q = h.alone_qps.find(m);
      if (q != h.alone_qps.end() && q->second > 0) types.push_back(&h);
    }
    std::sort(types.begin(), types.end(), [&](const HostType* a, const HostType* b) {
      return a->power_w / a->alone_qps.at(m) < b->power_w / b->alone_qps.at(m);
    });
    for (const HostType* h : types) {
      const int spare = h->count - used[h->name];
      if (rest <= 0 || spare <= 0) continue;
      const double per_host = h->alone_qps.at(m) * p.utilisation;
      const int take = std::min(spare, int(std::ceil(rest / per_host - 1e-12)));
      if (take <= 0) continue;
      const double served = std::min(rest, take * per_host);
      Assignment a;
      a.type = h->name;
      a.models = {m};
      a.hosts = take;
      a.qps = {{m, served}};
      plan->assignments.push_back(std::move(a));
      used[h->name] += take;
      rest -= served;
    }
    if (rest > 1e-6) {
      it->second = rest;
      ++it;
    } else {
      it = plan->unserved_qps.erase(it);
    }
  }
}

Result<SlotPlan> plan_slot(const Problem& p, const std::map<std::string, double>& load,
                           const SolveOptions& options) {
  RECSCHED_RETURN_IF_ERROR(check_load(p, load));
  if (!(options.mip_gap >= 0) || options.time_limit_ms < 1)
    return invalid_argument("mip_gap must be >= 0 and time_limit_ms >= 1");
  const auto started = Clock::now();
  const std::vector<Config> configs = configs_of(p);
  const size_t nm = p.models.size(), nc = configs.size(), nt = p.types.size();
  // Columns: n_c (nc), then x_{c,m} for m in S(c), then short_m (nm).
  std::vector<std::pair<size_t, std::string>> x_cols;  // (config, model)
  for (size_t c = 0; c < nc; ++c)
    for (const std::string& m : configs[c].models) x_cols.push_back({c, m});
  // A q/s left unserved costs more than powering the dearest host, and 100x the dearest
  // way any configuration serves that model, so the program leaves load unserved only
  // when no host can take it (not to save the last host of a slot a few q/s).
  double dearest_host = 1;
  for (const HostType& h : p.types) dearest_host = std::max(dearest_host, h.power_w);
  std::vector<double> short_penalty(nm, 10 * dearest_host);
  for (size_t m = 0; m < nm; ++m) {
    for (const Config& c : configs) {
      if (std::find(c.models.begin(), c.models.end(), p.models[m]) == c.models.end()) continue;
      const HostType& h = p.types[c.type];
      const double per_qps = h.power_w / (h.alone_qps.at(p.models[m]) * c.efficiency * p.utilisation);
      short_penalty[m] = std::max(short_penalty[m], 100 * per_qps);
    }
  }
  glp_term_out(GLP_OFF);
  std::unique_ptr<glp_prob, GlpDeleter> lp(glp_create_prob());
  glp_set_obj_dir(lp.get(), GLP_MIN);
  const int n_col0 = 1, x_col0 = n_col0 + int(nc), s_col0 = x_col0 + int(x_cols.size());
  glp_add_cols(lp.get(), int(nc + x_cols.size() + nm));
  for (size_t c = 0; c < nc; ++c) {
    const HostType& h = p.types[configs[c].type];
    const int col = n_col0 + int(c);
    glp_set_col_kind(lp.get(), col, GLP_IV);
    glp_set_col_bnds(lp.get(), col, h.count > 0 ? GLP_DB : GLP_FX, 0, h.count);
    glp_set_obj_coef(lp.get(), col, h.power_w + 1e-6);
  }
  for (size_t k = 0; k < x_cols.size(); ++k) glp_set_col_bnds(lp.get(), x_col0 + int(k), GLP_LO, 0, 0);
  for (size_t m = 0; m < nm; ++m) {
    glp_set_col_bnds(lp.get(), s_col0 + int(m), GLP_LO, 0, 0);
    glp_set_obj_coef(lp.get(), s_col0 + int(m), short_penalty[m]);
  }
  // Rows: demand (nm), capacity (nc), count (nt), and the mix of each set (one row per
  // model after its first): a set's efficiency was simulated with each model taking its
  // share of the host's time, so its hosts serve the models in that proportion
  // (x_a / (alone_a share_a) = x_b / (alone_b share_b)), never one model alone at the
  // set's efficiency.
  size_t mix_rows = 0;
  for (const Config& c : configs) mix_rows += c.models.size() - 1;
  const int d_row0 = 1, c_row0 = d_row0 + int(nm), t_row0 = c_row0 + int(nc),
            m_row0 = t_row0 + int(nt);
  glp_add_rows(lp.get(), int(nm + nc + nt + mix_rows));
  for (size_t r = 0; r < mix_rows; ++r) glp_set_row_bnds(lp.get(), m_row0 + int(r), GLP_FX, 0, 0);
  for (size_t m = 0; m < nm; ++m) {
    const double l = load_of(load, p.models[m]);
    glp_set_row_bnds(lp.get(), d_row0 + int(m), GLP_FX, l, l);
  }
  for (size_t c = 0; c < nc; ++c) glp_set_row_bnds(lp.get(), c_row0 + int(c), GLP_UP, 0, 0);
  for (size_t t = 0; t < nt; ++t)
    glp_set_row_bnds(lp.get(), t_row0 + int(t), GLP_UP, 0, std::max(0, p.types[t].count));
  std::vector<int> ia{0}, ja{0};
  std::vector<double> ar{0};
  auto put = [&](int row, int col, double v) {
    ia.push_back(row);
    ja.push_back(col);
    ar.push_back(v);
  };
  for (size_t k = 0; k < x_cols.size(); ++k) {
    const auto& [c, model] = x_cols[k];
    const size_t m = size_t(std::find(p.models.begin(), p.models.end(), model) - p.models.begin());
    put(d_row0 + int(m), x_col0 + int(k), 1);
    // Work in host units of the set's capacity: x / (alone x efficiency x utilisation).
    const HostType& h = p.types[configs[c].type];
    put(c_row0 + int(c), x_col0 + int(k),
        1.0 / (h.alone_qps.at(model) * configs[c].efficiency * p.utilisation));
  }
  for (size_t c = 0; c < nc; ++c) {
    put(c_row0 + int(c), n_col0 + int(c), -1);
    put(t_row0 + int(configs[c].type), n_col0 + int(c), 1);
  }
  int mix_row = m_row0;
  for (size_t c = 0; c < nc; ++c) {
    const HostType& h = p.types[configs[c].type];
    // The x columns of c, in the order of configs[c].models.
    std::vector<size_t> ks;
    for (size_t k = 0; k < x_cols.size(); ++k)
      if (x_cols[k].first == c) ks.push_back(k);
    for (size_t i = 1; i < ks.size(); ++i, ++mix_row) {
      put(mix_row, x_col0 + int(ks[0]),
          1.0 / (h.alone_qps.at(x_cols[ks[0]].second) * configs[c].shares[0]));
      put(mix_row, x_col0 + int(ks[i]),
          -1.0 / (h.alone_qps.at(x_cols[ks[i]].second) * configs[c].shares[i]));
    }
  }
  for (size_t m = 0; m < nm; ++m) put(d_row0 + int(m), s_col0 + int(m), 1);
  glp_load_matrix(lp.get(), int(ia.size() - 1), ia.data(), ja.data(), ar.data());

  // The LP relaxation first: its optimum bounds the integer one from below, so the plan
  // can say how far from optimal it may be when the time limit stops the search.
  glp_smcp lp_parm;
  glp_init_smcp(&lp_parm);
  lp_parm.msg_lev = GLP_MSG_OFF;
  lp_parm.presolve = GLP_ON;
  SlotPlan plan;
  plan.method = "ilp";
  const int lp_rc = glp_simplex(lp.get(), &lp_parm);
  if (lp_rc != 0 || glp_get_status(lp.get()) != GLP_OPT) {
    return internal_error("GLPK: the LP relaxation failed (glp_simplex returned " +
                          std::to_string(lp_rc) + ")");
  }
  const double bound = glp_get_obj_val(lp.get());
  glp_iocp parm;
  glp_init_iocp(&parm);
  parm.mip_gap = options.mip_gap;
  parm.tm_lim = options.time_limit_ms;
  parm.msg_lev = GLP_MSG_OFF;
  // A plan within a few hosts of the bound at once (round_lp_solution); the search then
  // only has to close the last of the gap.
  parm.fp_heur = GLP_ON;
  Rounding rounding;
  rounding.n_col0 = n_col0;
  rounding.x_col0 = x_col0;
  rounding.s_col0 = s_col0;
  rounding.columns = s_col0 + int(nm) - 1;
  for (const Config& c : configs) rounding.config_type.push_back(c.type);
  for (const HostType& h : p.types) rounding.type_count.push_back(std::max(0, h.count));
  for (const auto& [c, model] : x_cols) {
    rounding.x_config.push_back(
        {c, size_t(std::find(p.models.begin(), p.models.end(), model) - p.models.begin())});
  }
  rounding.dive = dive(lp.get(), rounding);
  parm.cb_func = round_lp_solution;
  parm.cb_info = &rounding;
  const int rc = glp_intopt(lp.get(), &parm);
  const int st = glp_mip_status(lp.get());
  // The plan's columns: the search's best, or the dive's when the time ran out before the
  // search took it.
  const bool from_search = st == GLP_OPT || st == GLP_FEAS;
  if (!from_search && rounding.dive.empty()) {
    return internal_error("GLPK found no integer plan (glp_intopt returned " + std::to_string(rc) +
                          ", status " + std::to_string(st) + ")");
  }
  auto value = [&](int col) {
    return from_search ? glp_mip_col_val(lp.get(), col) : rounding.dive[size_t(col)];
  };
  double found = 0;
  for (int j = 1; j <= rounding.columns; ++j) found += glp_get_obj_coef(lp.get(), j) * value(j);
  plan.gap = found > 0 ? std::max(0.0, (found - bound) / found) : 0;
  if (!from_search) {
    plan.status = "time limit";
  } else if (rc == 0 && st == GLP_OPT) {
    plan.status = "optimal";
  } else if (rc == GLP_EMIPGAP) {
    plan.status = "within the gap";
  } else if (rc == GLP_ETMLIM) {
    plan.status = "time limit";
  } else {
    plan.status = "stopped (glp_intopt " + std::to_string(rc) + ")";
  }
  for (size_t c = 0; c < nc; ++c) {
    const int n = int(std::lround(value(n_col0 + int(c))));
    if (n <= 0) continue;
    Assignment a;
    a.type = p.types[configs[c].type].name;
    a.hosts = n;
    for (size_t k = 0; k < x_cols.size(); ++k) {
      if (x_cols[k].first != c) continue;
      const double x = value(x_col0 + int(k));
      if (x > 1e-9) a.qps[x_cols[k].second] = x;
    }
    a.models = configs[c].models;
    a.shares = configs[c].shares;
    a.efficiency = configs[c].efficiency;
    plan.assignments.push_back(std::move(a));
  }
  for (size_t m = 0; m < nm; ++m) {
    const double s = value(s_col0 + int(m));
    if (s > 1e-6) plan.unserved_qps[p.models[m]] = s;
  }
  serve_leftovers(p, &plan);
  settle(p, &plan);
  plan.solve_ms = std::chrono::duration<double, std::milli>(Clock::now() - started).count();
  return plan;
}

Result<SlotPlan> greedy_slot(const Problem& p, const std::map<std::string, double>& load) {
  RECSCHED_RETURN_IF_ERROR(check_load(p, load));
  const auto started = Clock::now();
  std::vector<std::string> order = p.models;
  std::stable_sort(order.begin(), order.end(), [&](const std::string& a, const std::string& b) {
    return load_of(load, a) > load_of(load, b);
  });
  std::vector<int> left;
  for (const HostType& h : p.types) left.push_back(std::max(0, h.count));
  SlotPlan plan;
  plan.method = "greedy";
  plan.status = "greedy";
  for (const std::string& m : order) {
    double rest = load_of(load, m);
    if (rest <= 0) continue;
    std::vector<size_t> types;
    for (size_t t = 0; t < p.types.size(); ++t) {
      auto it = p.types[t].alone_qps.find(m);
      if (it != p.types[t].alone_qps.end() && it->second > 0) types.push_back(t);
    }
    auto per_watt = [&](size_t t) {
      const HostType& h = p.types[t];
      return h.alone_qps.at(m) / std::max(h.power_w, 1e-9);
    };
    std::stable_sort(types.begin(), types.end(),
                     [&](size_t a, size_t b) { return per_watt(a) > per_watt(b); });
    for (size_t t : types) {
      if (rest <= 1e-9 || left[t] == 0) continue;
      const double per_host = p.types[t].alone_qps.at(m) * p.utilisation;
      const int need = int(std::ceil(rest / per_host - 1e-9));
      const int take = std::min(need, left[t]);
      if (take <= 0) continue;
      left[t] -= take;
      const double served = std::min(rest, take * per_host);
      rest -= served;
      Assignment a;
      a.type = p.types[t].name;
      a.models = {m};
      a.hosts = take;
      a.qps = {{m, served}};
      plan.assignments.push_back(std::move(a));
    }
    if (rest > 1e-6) plan.unserved_qps[m] = rest;
  }
  settle(p, &plan);
  plan.solve_ms = std::chrono::duration<double, std::milli>(Clock::now() - started).count();
  return plan;
}

}  // namespace recsched::plan
