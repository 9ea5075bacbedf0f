// The dispatcher: what recschedd and the simulator both run between a query's arrival
// and its device. It holds the active policy, keeps each device's backlog (predicted
// work admitted and not yet done), asks the policy for a placement, admits or rejects
// it against the SLA, and feeds completions back. Swapping the policy (PUT /v1/policy)
// never touches a query already placed: its completion still settles its backlog, and
// only the policy that placed it observes it.
// Depends on policies/policy.h and the registry; no threads (the caller serialises calls
// or holds the daemon's lock).
#pragma once

#include <cstdint>
#include <limits>
#include <map>
#include <optional>
#include <string_view>
#include <memory>
#include <string>
#include <vector>

#include "core/merge.h"
#include "policies/policy.h"

namespace recsched::policies {

/// The live part of a device that the caller measures (the runner's queue); the
/// dispatcher adds the backlog it tracks.
struct DeviceLoad {
  int busy_workers = 0;
  size_t queued = 0;
  int active_workers = 0;  ///< 0 = all awake
  /// A query failed here recently: the policy does not see this device while any device
  /// is not degraded (a half-open circuit breaker: once the caller stops saying so, it
  /// takes queries again).
  bool degraded = false;
};

/// Who is admitted. A query is admitted while its predicted completion is at most
/// reject_factor x its SLA x its priority's share: 1 for priority > 0, normal_share for 0
/// (the default), low_share for < 0. Under overload the low shares fill first, so low
/// priority is shed first. recschedd and the simulator run the same rule, admit_idle on.
/// Predictions come from the profile table the caller passes; recschedd's is corrected by
/// what serving measured (policies::ServiceCorrection), so admission needs no ratio of its
/// own (one learnt here, on top, turned away queries that met their targets; removed).
struct Admission {
  double reject_factor = 1.0;
  double normal_share = 1.0;
  double low_share = 1.0;
  /// Admit a query whose device has a worker free and nothing waiting, whatever its
  /// prediction (recschedd): it waits for no one, so turning it away shortens no one's
  /// wait, and the model's SLA is a tail target, not a per-query deadline. The bound then
  /// only ever sheds queueing. Not for a query that set its own target (a request's
  /// sla_ms is its deadline), nor when off (the simulator's rule so far).
  bool admit_idle = false;
  /// The tail budget: a model's target bounds a percentile (95: 5 % of its answers may be
  /// late), so refusing every query predicted past the bound turns away queries the
  /// target allows, and the target is judged on refusals too (at most 1 % of a model's
  /// queries). A query of priority >= 0 that set no target of its own and is predicted
  /// past the bound, but within Dispatcher::kLateCap x its target, is admitted while the
  /// model's late answers (exponentially weighted over its last kLateWindow completions
  /// of queries without their own target), plus the admitted queries predicted late and
  /// not yet done, stay within late_budget x its tail (100 - percentile, in %).
  /// Under overload the late fraction rises to the budget and refusals resume. 0 = off.
  double late_budget = 0;

  double share(int priority) const {
    return priority > 0 ? 1.0 : priority == 0 ? normal_share : low_share;
  }
};

/// recschedd's defaults (limits.reject_factor, normal_priority_share, low_priority_share,
/// late_budget), which the simulator runs too (sim::Options::admission): one rule.
inline constexpr Admission kDaemonAdmission{.reject_factor = 1.0,
                                            .normal_share = 0.8,
                                            .low_share = 0.5,
                                            .admit_idle = true,
                                            .late_budget = 0.5};

/// Bounded waiting on shared CPU workers (limited preemption with a reserved lane). A
/// CPU runner without cooperative preemption never stops a piece of work once started, so
/// a query of a tight-target model that finds every worker busy waits for the shortest of
/// the running pieces. Here,
/// per CPU device, the dispatcher keeps each model's slack (its target minus its predicted
/// service time: a low quantile over its recent queries; a model not seen for `window` or
/// for 8 of its mean gaps between queries, the longer, is forgotten) and sets the bound to `fraction` x the smallest positive slack among them.
/// Every query ordered by deadline then goes to the runner with `short_items`, the most
/// items predicted to run within the bound on one worker, and `reserve` workers (devices of
/// two or more awake workers) run only pieces within the bound, so a tight query waits at
/// most about the bound for one of them, while the others run the heavy models' sub-batches
/// as the policy chose them (exec::Request). With only loose models in the mix the bound is
/// long and nothing changes. Static's FIFO baseline is left alone.
///
/// The lane's size: `lane_workers` if set; else (0) sized from what the tight models
/// bring now, their predicted worker-ms per query over their measured gaps between queries
/// (both exponentially weighted per query, so the lane follows the load within tens of
/// queries), at most kLaneLoad of each reserved worker: at least 1, at most all awake but
/// one.
///
/// `preemption`: the CPU runners stop a running pass at its next yield point for a query
/// due sooner (exec::CpuRunner::set_preemption), so a query waits for the pieces due
/// before it, not for one due later that is running: the dispatcher predicts its wait so.
struct BoundedWait {
  bool on = false;
  double fraction = 0.5;
  std::chrono::milliseconds window{1000};
  bool preemption = false;
  int lane_workers = 0;
};

/// One device the dispatcher may place on.
struct DeviceInfo {
  std::string id;
  DeviceKind kind = DeviceKind::kCpu;
  int workers = 1;
  double idle_w = 0;
};

/// The outcome of dispatch(): a placement and whether it was admitted. `status` is OK for
/// an admitted query; kUnavailable for one turned away (no device can take it now, or
/// admission: predicted past its target), the reason in its message; kInternal when the
/// policy failed or chose a device that is not served (a bug, not load).
struct Decision {
  Placement placement;
  Status status = unavailable("not dispatched");
  bool admitted() const { return status.is_ok(); }
  std::string policy;           ///< the name of the policy that decided
  uint64_t generation = 0;      ///< which policy instance: hand back to complete()
  double service_ms = 0;        ///< predicted service time, without the wait
  size_t device_index = 0;      ///< into the dispatcher's devices()
  double backlog_added_ms = 0;  ///< worker-milliseconds added to that device's backlog
  /// Items it added to its model's merged passes on a GPU (set_gpu_merging); 0 elsewhere.
  uint32_t merged_items = 0;
  /// Its place in that device's queue (ms on the dispatch clock): its deadline, now + SLA,
  /// where the runner orders it by deadline (a CPU, Placement::order kDeadline), else now.
  double queue_key_ms = 0;
  /// For the runner (exec::Request::short_items, reserve): see BoundedWait. The defaults
  /// leave the query unlimited.
  uint32_t short_items = UINT32_MAX;
  int reserve = 0;
  Clock::time_point urgent_at = Clock::time_point::max();
  /// The target it is judged against (ms; 0: none), and whether it was admitted on its
  /// model's tail budget (predicted past the admission bound) and predicted past the
  /// target itself: see Admission::late_budget.
  double target_ms = 0;
  std::string model;  ///< whose tail it counts in
  bool on_budget = false;
  bool expected_late = false;
};

class Dispatcher {
 public:
  Dispatcher(std::vector<DeviceInfo> devices, std::unique_ptr<Policy> policy, Admission admission);
  /// `reject_factor`: reject a query whose predicted completion exceeds this times its SLA
  /// (every priority alike, predictions uncorrected).
  Dispatcher(std::vector<DeviceInfo> devices, std::unique_ptr<Policy> policy, double reject_factor)
      : Dispatcher(std::move(devices), std::move(policy), Admission{reject_factor}) {}

  /// Places one query. `loads` has one entry per device, in the constructor's order.
  /// An admitted decision adds its predicted work to its device's backlog until
  /// complete() is called with it (exactly once). A rejected one needs no complete().
  /// The policy sees, as each device's backlog, the admitted work queued ahead of this
  /// query in that device's runner order: on a CPU, whose runner takes the earliest
  /// deadline first, the work due no later than this query (now + its SLA); on a GPU all
  /// of it (its passes run whole and may merge queries due later); and, while every awake
  /// worker is busy, half a sub-batch per awake worker of the longest among the queries
  /// due later (without preemption the runner never stops a running sub-batch, and one of
  /// those may be running: half is the mean remainder of one found running). With GPU
  /// merging, a GPU query's work is what it adds to its model's merged passes
  /// (set_gpu_merging), and the policy sees that as its service there too.
  /// For a policy that allows it (Policy::admission_may_move: earliest-finish,
  /// min-energy), admission judges a GPU placement by the wait its runner gives instead:
  /// the work due before the query and half of a running pass due later, unless going
  /// ahead of the work due later would make some of it late that is on time now (then all
  /// of the backlog). And before refusing a query predicted past its bound where the
  /// policy placed it, it places it on the GPU where it is predicted on time that way, the
  /// soonest (reason "admission: on time on gpuN, ..."), if there is one.
  /// `priority`: the request's (parameters.priority); `own_target`: the request set its
  /// sla_ms; see Admission.
  /// `overhead_ms`: the query's predicted time outside the runner (decoding, encoding;
  /// policies::ServiceCorrection), added to the placement's prediction before admission.
  Decision dispatch(const QueryInfo& query, const std::vector<DeviceLoad>& loads,
                    const ProfileTable& profiles, Clock::time_point now, int priority = 0,
                    bool own_target = false, double overhead_ms = 0);

  /// Deep overload: OK if some device could still start a query of `model` within
  /// reject_factor x `sla_ms` (at the highest priority's share), else kUnavailable saying
  /// why not: on every device the wait alone (backlog / workers, times the model's
  /// correction there) is past it. A check cheap enough to run before a request is
  /// decoded, whatever its size. The backlog counted is the work queued ahead of such a
  /// query (see dispatch()).
  Status hopeless(const std::string& model, double sla_ms, const std::vector<DeviceLoad>& loads,
                  Clock::time_point now = Clock::now()) const;

  /// A query placed by dispatch() finished (or failed): settles its device's backlog and,
  /// if the policy that placed it is still the active one, lets it observe.
  void complete(const Decision& decision, const Completion& done);

  /// Replaces the policy (live): queries in flight keep their placements.
  void set_policy(std::unique_ptr<Policy> policy);
  Policy& policy() { return *policy_; }
  const Policy& policy() const { return *policy_; }

  void set_bounded_wait(const BoundedWait& b) { bounded_wait_ = b; }
  /// GPU merging (exec::WholeQueryRunner::set_merging, core/merge.h): the work a query adds
  /// to a GPU's backlog is what its items add to its model's queries admitted there and
  /// not finished, as merged passes of at most `max_items` (the profile's time for the
  /// merged size, less what the passes took without it), not its own pass's whole time.
  void set_gpu_merging(bool on, uint32_t max_items);
  const BoundedWait& bounded_wait() const { return bounded_wait_; }
  /// The longest piece (ms) a reserved worker of device `index` runs now; +inf when
  /// bounded waiting is off, the device is not a CPU or no model there has a positive slack.
  double wait_bound_ms(size_t index) const;

  void set_reject_factor(double f) { admission_.reject_factor = f; }
  void set_admission(const Admission& a) { admission_ = a; }
  const Admission& admission() const { return admission_; }
  const std::vector<DeviceInfo>& devices() const { return devices_; }
  /// Predicted milliseconds of work admitted and not finished, per device (constructor order).
  const std::vector<double>& backlog_ms() const { return backlog_ms_; }
  /// A model's late answers as the tail budget counts them (Admission::late_budget): the
  /// exponentially weighted fraction of its completions past their target, and the
  /// queries admitted on the budget, predicted late, not yet completed.
  struct Tail {
    double late = 0;
    int expected_late = 0;
    double percentile = 95;
  };
  Tail tail(std::string_view model) const;
  /// The number of completions the late fraction is weighted over (its 1 / alpha).
  static constexpr double kLateWindow = 200;
  /// A query predicted past this times its target is not admitted on the budget: it would
  /// take the place of queries that can still make theirs (earliest deadline first).
  static constexpr double kLateCap = 2;

 private:
  std::vector<DeviceInfo> devices_;
  // Position in devices_ by kind and index (DeviceId): a placement's device is found in
  // O(1), never by comparing names. -1: not served.
  std::vector<int> position_[2];
  std::optional<size_t> position(std::string_view device) const;
  std::unique_ptr<Policy> policy_;
  uint64_t generation_ = 1;
  Admission admission_;
  // Work admitted ahead of a query due at `deadline_ms` on device i (see dispatch());
  // own_ms: what the query would add there (a GPU's estimate needs it).
  double ahead_ms(size_t i, double now_ms, double deadline_ms, double own_ms,
                  const DeviceLoad& load) const;

  std::vector<double> backlog_ms_;
  // Per device, the admitted work by queue key (Decision::queue_key_ms): what ahead_ms sums.
  struct Queued {
    double work_ms = 0;  // Decision::backlog_added_ms
    double sub_ms = 0;   // predicted time of one of its sub-batches
  };
  std::vector<std::multimap<double, Queued>> queued_;
  bool gpu_merging_ = false;
  uint32_t gpu_merge_max_items_ = kMaxMergedItems;
  // Per device: items admitted and not finished, by model (GPU merging's accounting).
  std::vector<std::map<std::string, uint64_t, std::less<>>> gpu_items_;
  Clock::time_point now_{};        // the latest dispatch's clock: the slacks' ages
  std::vector<DeviceView> views_;  // reused by every dispatch()
  // Per device, ahead_ms for the query being dispatched (a GPU's: what its EDF runner
  // makes it wait, which admission judges by; its view shows all of the backlog).
  std::vector<double> wait_ms_;
  // Admission (see dispatch()): the device takes the query at once (a free worker,
  // nothing waiting, admit_idle); a placement's predicted time as admission judges it;
  // before refusing, the GPU where the query ends soonest within bound_ms as its runner
  // would order it, if one does.
  bool starts_now(size_t i, const DeviceLoad& load) const;
  double judged_ms(size_t i, double predicted_ms) const;
  std::optional<Placement> on_time_on_gpu(const QueryInfo& query, const ProfileTable& profiles,
                                          const std::vector<bool>& offer, double overhead_ms,
                                          double bound_ms) const;

  BoundedWait bounded_wait_;
  struct Slack {
    double mean = 0, var = 0;  // exponentially weighted, ms
    double gap_ms = 0;         // between its queries here, exponentially weighted
    double work_ms = 0;        // worker-ms a query of it adds here, exponentially weighted
    Clock::time_point seen;    // the model's latest query here
  };
  std::vector<std::map<std::string, Slack, std::less<>>> slack_;  // per device, by model
  void learn_slack(size_t index, const std::string& model, double slack_ms, double work_ms);
  std::map<std::string, Tail, std::less<>> tails_;  // by model
  // Whether one more query of this model predicted past its bound fits its tail budget.
  bool budget_room(const Tail& t) const;
  static double low_slack(const Slack& s);
  // Tight: a slack within kTightRange x the tightest of the live mix; its queries are what
  // the reserve is for, and are never limited by it.
  static constexpr double kTightRange = 2;
  // A model leaves the live mix after the window or kForgetGaps of its mean gaps, the
  // longer: at 1 q/s, forgetting it after 1 s dropped the bound between its queries (the
  // simulator: NCF rejected at 10 q/s of the mix).
  static constexpr double kForgetGaps = 8;
  // A loose query turns urgent (may take the reserved worker) once its time to deadline
  // is down to its predicted service x (1 + kUrgentMargin) plus the tightest slack.
  // 0.25: in the simulator (committed 2-worker profile, the mix, low/medium/high targets)
  // 0 let queries start too late to absorb their own noise, 0.5-1 cost the tight models.
  static constexpr double kUrgentMargin = 0.25;
  static bool tight(const Slack& s, double tightest_ms);
  // The share of a reserved worker's time the tight models' work may fill when the lane is
  // sized from their rates (BoundedWait::lane_workers 0): half, so that a tight query
  // rarely finds every reserved worker busy with another tight one.
  static constexpr double kLaneLoad = 0.5;
  struct WaitBound {
    double bound_ms = std::numeric_limits<double>::infinity();  // +inf: no reserve now
    double tightest_ms = std::numeric_limits<double>::infinity();
    int reserve = 0;  // workers in the lane (before the clamp to awake - 1)
  };
  WaitBound wait_bound(size_t index) const;
};

}  // namespace recsched::policies
