// recsched-plan's core: which hosts of a heterogeneous fleet to power in one time slot,
// which models each serves (its co-location set), and each model's share of the traffic,
// so that every model's load fits within the latency-bounded capacity of the hosts that
// serve it at the least provisioned power. An integer program solved by GLPK (plan_slot),
// and the greedy provisioner Hercules compares against (greedy_slot), over the same
// capacity facts.
//
// The capacity facts of a host type (HostType) come from recsched's simulator on that
// type's profile (planner/host_capacity.h): each model's latency-bounded throughput alone,
// and for each co-location set, at one or more mixes (each model's share of the host's
// time), its efficiency: the simulated latency-bounded throughput of that mix over what the
// models' alone capacities predict for it (harmonic: each query of model m uses 1/alone_m
// of a host). A host of type t serving set S at rates x_m then fits when
// sum(x_m / alone_m) <= efficiency(S, shares) x utilisation, with every model at its
// simulated share (x_m / alone_m proportional to share_m): the hosts of a set run the mix
// the simulator measured, scaled down, never another (replay() checks them).
//
// The program, per slot (c = a type and one of its sets; L_m the model's load):
//   minimise   sum_c power(type(c)) n_c  (+ 1e-6 per host: fewer hosts on a tie)
//   subject to sum_c x_{c,m} + short_m = L_m                  every model m
//              sum_{m in S(c)} x_{c,m} / alone_{t,m} <= eff(c) u n_c   every c
//              sum_{c of type t} n_c <= count_t                 every type t
//              x_{c,a} / (alone_{t,a} share_a) = x_{c,b} / (alone_{t,b} share_b)   a, b in S(c)
//              n_c integer >= 0, x >= 0, short_m >= 0 at 10x the dearest host's power
//              per q/s (and 100x the dearest way to serve m)
// so a fleet too small for the load gets a plan that says how much of each model it
// cannot serve, not a failure. Depends on core's Status and GLPK (in the .cc only).
#pragma once

#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/status.h"

namespace recsched::plan {

/// The capacity facts of one host type, and how many the fleet has.
struct HostType {
  std::string name;
  int count = 0;       ///< hosts of this type in the fleet
  double power_w = 0;  ///< provisioned power of one powered host (nameplate)
  /// Latency-bounded q/s of each model served alone on one host; absent or 0: the type
  /// cannot meet that model's target.
  std::map<std::string, double> alone_qps;
  /// Co-location sets measured on this type; a set not listed is not offered.
  struct Set {
    std::vector<std::string> models;  ///< 2 or more, in the order of Problem::models
    std::vector<double> shares;       ///< each model's share of the host's time, summing to 1
    double efficiency = 0;
  };
  std::vector<Set> sets;
};

struct Problem {
  std::vector<HostType> types;
  std::vector<std::string> models;
  /// The share of a host's latency-bounded capacity the plan fills (the rest absorbs the
  /// load's variation within a slot and the model's error).
  double utilisation = 0.9;
};

/// Hosts of one type serving one set, and the load they take together (q/s per model,
/// over all of them; each host takes load / hosts).
struct Assignment {
  std::string type;
  std::vector<std::string> models;
  int hosts = 0;
  std::map<std::string, double> qps;
  std::vector<double> shares;  ///< a set's time shares (HostType::Set), empty for one model
  double efficiency = 1;       ///< the set's at those shares, 1 for one model
  double busy = 0;  ///< sum(x_m / alone_m) / (efficiency x hosts): the share of capacity used
};

struct SlotPlan {
  std::vector<Assignment> assignments;
  std::map<std::string, double> unserved_qps;  ///< load the fleet cannot serve (absent: none)
  std::map<std::string, int> powered;          ///< hosts powered per type
  int hosts = 0;
  double power_w = 0;
  std::string method;  ///< "ilp" or "greedy"
  /// ilp: "optimal" (proved, with SolveOptions::mip_gap 0), "within the gap" (proved
  /// within mip_gap of the optimum) or "time limit" (the best plan found when
  /// SolveOptions::time_limit_ms ran out); greedy: "greedy".
  std::string status;
  /// ilp: (objective - the LP relaxation's) / objective, an upper bound on how far this
  /// plan is from the optimum whatever the status (the unserved penalty counts in both).
  double gap = 0;
  double solve_ms = 0;
  nlohmann::json to_json() const;
};

struct SolveOptions {
  double mip_gap = 1e-3;    ///< relative; 0 = prove the optimum
  int time_limit_ms = 300;  ///< per slot; the best plan found by then is returned
};

/// After the search, load left unserved where a type that serves the model has spare hosts
/// gets hosts of its own (a per-q/s price can lose to a whole host for a last fraction of
/// a q/s), so load stays unserved only when no spare host can take it.
/// kInvalidArgument for a load of a model the problem does not list, a negative load, no
/// models, or bad options; kInternal when GLPK returns no integer plan and the dive found
/// none either (one always exists: every host off, all unserved).
Result<SlotPlan> plan_slot(const Problem& problem, const std::map<std::string, double>& load,
                           const SolveOptions& options = {});

/// Hercules' greedy baseline: models by decreasing load, each to its most efficient type
/// (alone q/s per provisioned watt), hosts taken first-fit in that order of types while the
/// type has hosts left, each host serving that one model (no co-location).
Result<SlotPlan> greedy_slot(const Problem& problem, const std::map<std::string, double>& load);

}  // namespace recsched::plan
