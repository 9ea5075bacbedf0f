#include "policies/dispatcher.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <limits>

namespace recsched::policies {

Dispatcher::Dispatcher(std::vector<DeviceInfo> devices, std::unique_ptr<Policy> policy,
                       Admission admission)
    : devices_(std::move(devices)),
      policy_(std::move(policy)),
      admission_(admission),
      backlog_ms_(devices_.size(), 0.0),
      queued_(devices_.size()),
      slack_(devices_.size()) {
  views_.reserve(devices_.size());
  gpu_items_.resize(devices_.size());
  for (size_t i = 0; i < devices_.size(); ++i) {
    const std::optional<DeviceId> id = DeviceId::parse(devices_[i].id);
    if (!id) continue;  // a name outside the cpuN/gpuN scheme is never placed on
    std::vector<int>& slots = position_[id->kind == DeviceKind::kGpu ? 1 : 0];
    if (slots.size() <= id->index) slots.resize(id->index + 1, -1);
    slots[id->index] = static_cast<int>(i);
  }
}

std::optional<size_t> Dispatcher::position(std::string_view device) const {
  const std::optional<DeviceId> id = DeviceId::parse(device);
  if (!id) return std::nullopt;
  const std::vector<int>& slots = position_[id->kind == DeviceKind::kGpu ? 1 : 0];
  if (id->index >= slots.size() || slots[id->index] < 0) return std::nullopt;
  return static_cast<size_t>(slots[id->index]);
}

namespace {
double to_ms(Clock::time_point t) {
  return std::chrono::duration<double, std::milli>(t.time_since_epoch()).count();
}

// Which of `n` devices the policy is offered: a degraded one is left out while any other
// is not (none healthy: all are offered). A device without a load entry counts as healthy.
std::vector<bool> offered(const std::vector<DeviceLoad>& loads, size_t n) {
  auto degraded = [&](size_t i) { return i < loads.size() && loads[i].degraded; };
  bool any_healthy = false;
  for (size_t i = 0; i < n; ++i) any_healthy = any_healthy || !degraded(i);
  std::vector<bool> out(n);
  for (size_t i = 0; i < n; ++i) out[i] = !(any_healthy && degraded(i));
  return out;
}
}  // namespace

double Dispatcher::ahead_ms(size_t i, double now_ms, double deadline_ms, double own_ms,
                            const DeviceLoad& load) const {
  if (devices_[i].kind != DeviceKind::kCpu) {
    // A GPU runs whole passes earliest deadline first. The query waits for the work due
    // before it and for a pass found running (half of the longest due later, as below),
    // unless going ahead of the work due later would make some of it late that is on time
    // now: then all of the backlog, as if it queued behind everything. Admission judges
    // by this; policies see all of the backlog (dispatch()). (Counting only the work due
    // earlier, with no such check, made the loose work late: earliest-finish -16 %,
    // min-energy -38 % at the medium targets, 16 workers + H200, modelled, 2026-12-06.)
    const double streams = std::max(1, devices_[i].workers);
    double ahead = 0, behind = 0, longest_behind = 0, done_ms = now_ms;
    for (const auto& [key, q] : queued_[i]) {
      done_ms += q.work_ms / streams;  // its end, EDF, all of this device's queue ahead
      if (key <= deadline_ms) {
        ahead += q.work_ms;
      } else {
        behind += q.work_ms;
        longest_behind = std::max(longest_behind, q.sub_ms);
        if (done_ms <= key && done_ms + own_ms / streams > key) return backlog_ms_[i];
      }
    }
    const double blocking =
        load.busy_workers >= devices_[i].workers ? std::min(behind, longest_behind / 2) : 0.0;
    return std::min(ahead + blocking, backlog_ms_[i]);
  }
  double ahead = 0, behind = 0, longest_behind = 0;
  for (const auto& [key, q] : queued_[i]) {
    if (key <= deadline_ms) {
      ahead += q.work_ms;
    } else {
      behind += q.work_ms;
      longest_behind = std::max(longest_behind, q.sub_ms);
    }
  }
  // Every awake worker busy: the query also waits for a running sub-batch, possibly one
  // due later (not preempted): half of the longest such per awake worker (the mean
  // remainder of a sub-batch found running). With a reserved worker (BoundedWait), the
  // first to free up runs nothing longer than the bound; with preemption, a piece due
  // later yields at its next step.
  const int awake = load.active_workers > 0 ? load.active_workers : devices_[i].workers;
  if (awake >= 2) longest_behind = std::min(longest_behind, wait_bound_ms(i));
  if (bounded_wait_.preemption) longest_behind = 0;
  const double blocking =
      load.busy_workers >= awake ? std::min(behind, awake * longest_behind / 2) : 0.0;
  return std::min(ahead + blocking, backlog_ms_[i]);
}

double Dispatcher::wait_bound_ms(size_t index) const { return wait_bound(index).bound_ms; }

Dispatcher::WaitBound Dispatcher::wait_bound(size_t index) const {
  WaitBound out;
  if (!bounded_wait_.on || index >= slack_.size() || devices_[index].kind != DeviceKind::kCpu) {
    return out;
  }
  // In the live mix: seen within the window, or within kForgetGaps of its own mean gap
  // between queries (a model sent rarely is still in the mix between two of its queries).
  auto live = [&](const Slack& s) {
    const auto since = std::chrono::duration<double, std::milli>(now_ - s.seen).count();
    return since <= std::max<double>(bounded_wait_.window.count(), kForgetGaps * s.gap_ms);
  };
  for (const auto& [model, s] : slack_[index]) {
    // A model with no slack left cannot be helped by a short wait: it sets no bound.
    if (live(s) && low_slack(s) > 0) out.tightest_ms = std::min(out.tightest_ms, low_slack(s));
  }
  if (!std::isfinite(out.tightest_ms)) return out;
  out.bound_ms = bounded_wait_.fraction * out.tightest_ms;
  if (bounded_wait_.lane_workers > 0) {
    out.reserve = bounded_wait_.lane_workers;
    return out;
  }
  // Sized from the tight models' load here: worker-ms per ms (a model seen once has no
  // gap yet and adds nothing).
  double load = 0;
  for (const auto& [model, s] : slack_[index]) {
    if (live(s) && tight(s, out.tightest_ms) && s.gap_ms > 0) load += s.work_ms / s.gap_ms;
  }
  out.reserve = std::max(1, static_cast<int>(std::ceil(load / kLaneLoad)));
  return out;
}

double Dispatcher::low_slack(const Slack& s) {
  return s.mean - 1.645 * std::sqrt(s.var);  // about its 5th percentile
}

bool Dispatcher::tight(const Slack& s, double tightest_ms) {
  return low_slack(s) <= kTightRange * tightest_ms;
}

void Dispatcher::learn_slack(size_t index, const std::string& model, double slack_ms,
                             double work_ms) {
  constexpr double kAlpha = 0.1;
  auto [it, fresh] = slack_[index].try_emplace(model, Slack{slack_ms, 0.0, 0.0, work_ms, now_});
  if (fresh) return;
  Slack& s = it->second;
  const double delta = slack_ms - s.mean;
  const double gap = std::chrono::duration<double, std::milli>(now_ - s.seen).count();
  // The first gap is taken whole: an average from 0 would make the rate look 10x higher.
  const double gap_ms = s.gap_ms > 0 ? s.gap_ms + kAlpha * (gap - s.gap_ms) : gap;
  s = {s.mean + kAlpha * delta, (1 - kAlpha) * (s.var + kAlpha * delta * delta), gap_ms,
       s.work_ms + kAlpha * (work_ms - s.work_ms), now_};
}

namespace {
// The most items of `points`' model predicted to run within `bound_ms` as one piece on one
// worker (scaled by `corr`), 0 if not even one; at most `items`.
uint32_t items_within(const std::vector<ProfilePoint>& points, uint32_t items, double bound_ms) {
  uint32_t lo = 0, hi = items;  // lo fits (0 trivially); find the largest that does
  while (lo < hi) {
    const uint32_t mid = lo + (hi - lo + 1) / 2;
    if (predict_service_ms(points, mid, mid, 1) <= bound_ms) {
      lo = mid;
    } else {
      hi = mid - 1;
    }
  }
  return lo;
}
}  // namespace

Decision Dispatcher::dispatch(const QueryInfo& query, const std::vector<DeviceLoad>& loads,
                              const ProfileTable& profiles, Clock::time_point now, int priority,
                              bool own_target, double overhead_ms) {
  now_ = std::max(now_, now);
  auto load_of = [&](size_t i) { return i < loads.size() ? loads[i] : DeviceLoad{}; };
  const std::vector<bool> offer = offered(loads, devices_.size());
  const double sla = query.sla_ms > 0 ? query.sla_ms : (query.model ? query.model->sla_ms : 0);
  const double now_ms = to_ms(now);
  const double deadline_ms = sla > 0 ? now_ms + sla : std::numeric_limits<double>::infinity();
  views_.clear();
  wait_ms_ = backlog_ms_;  // a device not offered: judged by all of its backlog
  for (size_t i = 0; i < devices_.size(); ++i) {
    const DeviceInfo& d = devices_[i];
    const DeviceLoad load = load_of(i);
    if (!offer[i]) continue;
    DeviceView v{d.id, d.kind, d.workers, load.busy_workers, load.queued, 0.0, d.idle_w,
                 load.active_workers};
    if (gpu_merging_ && d.kind == DeviceKind::kGpu) {
      v.merge_max_items = gpu_merge_max_items_;
      const auto m = gpu_items_[i].find(query.model != nullptr ? query.model->name : "");
      v.merge_items = m != gpu_items_[i].end() ? m->second : 0;
    }
    double own_ms = 0;  // on a GPU: what this query adds there (its ahead_ms needs it)
    if (d.kind == DeviceKind::kGpu && query.model != nullptr && query.items > 0) {
      const std::vector<ProfilePoint>& points = profiles.points(query.model->name, d.id);
      if (!points.empty()) {
        own_ms = v.merge_max_items > 0
                     ? predict_merged_ms(points, v.merge_items, query.items, v.merge_max_items)
                     : predict_service_ms(points, query.items, query.items, 1);
      }
    }
    wait_ms_[i] = ahead_ms(i, now_ms, deadline_ms, own_ms, load);
    // A policy sees all of a GPU's backlog: seeing only the wait its runner gives (as
    // admission does) sent so many tight queries there that the loose work they went ahead
    // of came late: earliest-finish -9 % and min-energy -36 % of their latency-bounded q/s
    // with merging (16 workers + H200, medium targets, modelled, 2026-12-06).
    v.backlog_ms = d.kind == DeviceKind::kGpu ? backlog_ms_[i] : wait_ms_[i];
    views_.push_back(std::move(v));
  }
  Decision out;
  out.policy = std::string(policy_->name());
  out.generation = generation_;
  Result<Placement> placed = policy_->place(query, ClusterView{views_, profiles, now});
  if (!placed) {
    // kUnavailable is the policy's expected "no device can take it now"; anything else
    // means the policy is broken (policy.h), and stays an internal error.
    std::string why = placed.status().message();
    if (views_.size() < devices_.size()) {
      std::string left_out;
      for (size_t i = 0; i < devices_.size(); ++i) {
        if (!offer[i]) left_out += (left_out.empty() ? "" : ", ") + devices_[i].id;
      }
      why += " (degraded, left out: " + left_out + ")";
    }
    const StatusCode code = placed.status().code() == StatusCode::kUnavailable
                                ? StatusCode::kUnavailable
                                : StatusCode::kInternal;
    out.status = Status(code, code == StatusCode::kInternal ? "policy " + out.policy + ": " + why
                                                            : why);
    return out;
  }
  out.placement = std::move(placed).value();
  out.placement.predicted_ms += std::max(0.0, overhead_ms);
  // Admission judges a GPU placement by the wait its runner gives (wait_ms_), not the
  // whole backlog the policy saw; a query predicted past its bound on the device the
  // policy chose goes to a GPU where it is on time that way, if there is one, before it
  // is refused (Admission: refuse only what must be).
  const double share = admission_.share(priority);
  const double bound_ms = admission_.reject_factor * share * sla;
  bool on_time_gpu = false;
  if (sla > 0 && !own_target && policy_->admission_may_move()) {
    if (const std::optional<size_t> chosen = position(out.placement.device);
        chosen && !starts_now(*chosen, load_of(*chosen)) &&
        judged_ms(*chosen, out.placement.predicted_ms) > bound_ms) {
      if (std::optional<Placement> p = on_time_on_gpu(query, profiles, offer, overhead_ms, bound_ms)) {
        out.placement = std::move(*p);
        on_time_gpu = true;
      }
    }
  }
  const std::optional<size_t> at = position(out.placement.device);
  if (!at) {
    out.status = internal_error(out.policy + " chose device '" + out.placement.device +
                                "', which is not served");
    return out;
  }
  out.device_index = *at;
  const auto it = devices_.begin() + static_cast<std::ptrdiff_t>(*at);
  const int awake = out.placement.active_workers > 0 ? out.placement.active_workers : it->workers;
  out.placement.workers = std::clamp(out.placement.workers, 1, std::max(1, awake));
  // A sub-batch larger than the query means "whole"; kept as the policy said (deeprecsched
  // recognises its own setting in the completions).
  out.placement.sub_batch = std::max<uint32_t>(1, out.placement.sub_batch);
  const std::string model = query.model != nullptr ? query.model->name : std::string();
  out.service_ms = predict_service_ms(profiles, model, it->id, query.items, out.placement.sub_batch,
                                      out.placement.workers)
                       .value_or(0.0);
  // Its sub-batches, how many run at once, and how long one round of them takes.
  const uint32_t subs =
      (query.items + out.placement.sub_batch - 1) / std::max<uint32_t>(1, out.placement.sub_batch);
  const uint32_t on = std::clamp<uint32_t>(out.placement.workers, 1, std::max(1u, subs));
  const double sub_ms = out.service_ms / ((std::max(1u, subs) + on - 1) / on);
  if (bounded_wait_.on && it->kind == DeviceKind::kCpu && sla > 0 && out.service_ms > 0) {
    learn_slack(out.device_index, model, sla - out.service_ms - std::max(0.0, overhead_ms),
                out.service_ms * on);
  }
  const DeviceLoad chosen = load_of(out.device_index);
  const int awake_now = chosen.active_workers > 0 ? chosen.active_workers : it->workers;
  const bool start_now = !own_target && starts_now(out.device_index, chosen);
  // The model's tail: a request's own target is a deadline, neither judged nor counted.
  out.model = model;
  out.target_ms = own_target ? 0.0 : sla;
  Tail& tail = tails_[model];
  if (query.model != nullptr) tail.percentile = query.model->sla_percentile;
  const double judged = on_time_gpu ? out.placement.predicted_ms
                                    : judged_ms(out.device_index, out.placement.predicted_ms);
  const bool over_bound = sla > 0 && !start_now && judged > bound_ms;
  // Past the bound: admitted on the model's tail budget while it has room and it is
  // predicted within kLateCap x its target (see Admission).
  if (over_bound && priority >= 0 && !own_target && budget_room(tail) &&
      out.placement.predicted_ms <= kLateCap * sla) {
    out.on_budget = true;
    out.expected_late = out.placement.predicted_ms > sla;
    if (out.expected_late) ++tail.expected_late;
  } else if (over_bound) {
    char buf[300];
    if (share != 1.0) {
      std::snprintf(buf, sizeof buf,
                    "rejected: predicted %.1f ms on %s (%zu queries queued) exceeds %g x %g "
                    "(priority %d) x the SLA of %g ms",
                    out.placement.predicted_ms, it->id.c_str(), load_of(out.device_index).queued,
                    admission_.reject_factor, share, priority, sla);
    } else {
      std::snprintf(buf, sizeof buf,
                    "rejected: predicted %.1f ms on %s (%zu queries queued) exceeds %g x the "
                    "SLA of %g ms",
                    out.placement.predicted_ms, it->id.c_str(), load_of(out.device_index).queued,
                    admission_.reject_factor, sla);
    }
    std::string why = buf;
    if (admission_.late_budget > 0 && priority >= 0 && !own_target) {
      if (out.placement.predicted_ms > kLateCap * sla) {
        std::snprintf(buf, sizeof buf, "; past %g x the SLA, not admitted on its tail budget",
                      kLateCap);
      } else {
        std::snprintf(buf, sizeof buf,
                      "; its tail budget is spent (%.1f %% of its answers late, %d admitted "
                      "predicted late in flight)",
                      100 * tail.late, tail.expected_late);
      }
      why += buf;
    }
    out.status = unavailable(why);
    return out;
  }
  // The work this query adds: its service time on each worker it may occupy; on a GPU
  // that merges, what it adds to the passes of its model's queries there.
  out.backlog_added_ms =
      out.service_ms * std::min<int>(out.placement.workers, static_cast<int>(std::max(1u, subs)));
  const std::vector<ProfilePoint>& points = profiles.points(model, it->id);
  if (gpu_merging_ && it->kind == DeviceKind::kGpu && query.items > 0 && !points.empty()) {
    uint64_t& in_flight = gpu_items_[out.device_index][model];
    out.backlog_added_ms =
        predict_merged_ms(points, in_flight, query.items, gpu_merge_max_items_);
    in_flight += query.items;
    out.merged_items = query.items;
  }
  backlog_ms_[out.device_index] += out.backlog_added_ms;
  out.queue_key_ms = out.placement.order == QueueOrder::kDeadline ? deadline_ms : now_ms;
  // Bounded waiting: how much of it a reserved worker may run (see BoundedWait). A query
  // of a tight model is what the reserve is for: it runs as the policy cut it, wherever a
  // worker frees up first.
  const WaitBound wb = wait_bound(out.device_index);
  const auto own = slack_[out.device_index].find(model);
  const bool loose = own != slack_[out.device_index].end() && !tight(own->second, wb.tightest_ms);
  if (out.placement.order == QueueOrder::kDeadline && awake_now >= 2 && loose &&
      std::isfinite(wb.bound_ms)) {
    const std::vector<ProfilePoint>& points = profiles.points(model, it->id);
    if (!points.empty()) {
      out.short_items = items_within(points, query.items, wb.bound_ms);
      out.reserve = std::min(wb.reserve, awake_now - 1);
      // Once its own laxity (time to its deadline less its predicted service) is down to
      // the tightest model's slack, it is as urgent as a tight query just arrived: from
      // then on it may take the reserved worker too.
      // kUrgentMargin of its own service time is kept in hand for the noise of its run.
      const double laxity_ms =
          sla - out.service_ms * (1 + kUrgentMargin) - std::max(0.0, overhead_ms);
      out.urgent_at = now + std::chrono::duration_cast<Clock::duration>(
                                std::chrono::duration<double, std::milli>(
                                    std::clamp(laxity_ms - wb.tightest_ms, 0.0, 1e9)));
    }
  }
  queued_[out.device_index].emplace(out.queue_key_ms, Queued{out.backlog_added_ms, sub_ms});
  out.status = Status::ok();
  return out;
}

bool Dispatcher::starts_now(size_t i, const DeviceLoad& load) const {
  const int awake = load.active_workers > 0 ? load.active_workers : devices_[i].workers;
  return admission_.admit_idle && load.queued < static_cast<size_t>(std::max(1, awake));
}

double Dispatcher::judged_ms(size_t i, double predicted_ms) const {
  if (devices_[i].kind != DeviceKind::kGpu || !policy_->admission_may_move()) return predicted_ms;
  return predicted_ms - (backlog_ms_[i] - wait_ms_[i]) / std::max(1, devices_[i].workers);
}

std::optional<Placement> Dispatcher::on_time_on_gpu(const QueryInfo& query,
                                                    const ProfileTable& profiles,
                                                    const std::vector<bool>& offer,
                                                    double overhead_ms, double bound_ms) const {
  const std::string model = query.model != nullptr ? query.model->name : std::string();
  std::optional<Placement> best;
  for (size_t i = 0; i < devices_.size(); ++i) {
    if (!offer[i] || devices_[i].kind != DeviceKind::kGpu) continue;
    // Its pass, whole; merged with others, the merge rule keeps it on time too.
    const std::optional<double> service =
        predict_service_ms(profiles, model, devices_[i].id, query.items, query.items, 1);
    if (!service) continue;
    const double predicted =
        wait_ms_[i] / std::max(1, devices_[i].workers) + *service + std::max(0.0, overhead_ms);
    if (predicted > bound_ms || (best && predicted >= best->predicted_ms)) continue;
    best = Placement{};
    best->device = devices_[i].id;
    best->sub_batch = query.items;
    best->workers = 1;
    best->predicted_ms = predicted;
    best->reason = "admission: on time on " + devices_[i].id + ", earliest deadline first";
    best->order = QueueOrder::kDeadline;
  }
  return best;
}

Dispatcher::Tail Dispatcher::tail(std::string_view model) const {
  const auto it = tails_.find(model);
  return it != tails_.end() ? it->second : Tail{};
}

bool Dispatcher::budget_room(const Tail& t) const {
  const double budget = admission_.late_budget * (100 - t.percentile) / 100;
  return budget > 0 && t.late + (t.expected_late + 1) / kLateWindow <= budget + 1e-12;
}

Status Dispatcher::hopeless(const std::string& model, double sla_ms,
                            const std::vector<DeviceLoad>& loads, Clock::time_point now) const {
  if (!(sla_ms > 0) || devices_.empty()) return Status::ok();
  // A model with tail budget left may be admitted up to kLateCap x its target (the
  // request's priority and own target are not known before decoding: dispatch() decides).
  const double bound = (budget_room(tail(model)) ? std::max(admission_.reject_factor, kLateCap)
                                                 : admission_.reject_factor) *
                       sla_ms;
  double best = 0;
  const std::vector<bool> offer = offered(loads, devices_.size());
  bool first = true;
  for (size_t i = 0; i < devices_.size(); ++i) {
    if (!offer[i]) continue;
    const DeviceLoad load = i < loads.size() ? loads[i] : DeviceLoad{};
    // Its own work unknown before decoding (0): the shortest wait it could find there. On
    // a GPU, what its runner gives only where admission judges by that (judged_ms).
    const bool all_of_it = devices_[i].kind == DeviceKind::kGpu && !policy_->admission_may_move();
    const double wait =
        (all_of_it ? backlog_ms_[i] : ahead_ms(i, to_ms(now), to_ms(now) + sla_ms, 0.0, load)) /
        std::max(1, devices_[i].workers);
    if (wait <= bound) return Status::ok();
    best = first ? wait : std::min(best, wait);
    first = false;
  }
  char buf[200];
  std::snprintf(buf, sizeof buf,
                "rejected before decoding: the shortest predicted wait, %.1f ms, already exceeds "
                "%g x the SLA of %g ms on every device",
                best, bound / sla_ms, sla_ms);
  return unavailable(buf);
}

void Dispatcher::complete(const Decision& decision, const Completion& done) {
  if (!decision.admitted() || decision.device_index >= backlog_ms_.size()) return;
  // The tail budget: an answer past its target counts as late; a failure is not an answer.
  if (decision.target_ms > 0) {
    Tail& t = tails_[decision.model];
    if (decision.expected_late) t.expected_late = std::max(0, t.expected_late - 1);
    if (done.ok) {
      const double late = done.latency_ms > decision.target_ms ? 1.0 : 0.0;
      t.late += (late - t.late) / kLateWindow;
    }
  }
  double& b = backlog_ms_[decision.device_index];
  b = std::max(0.0, b - decision.backlog_added_ms);
  if (decision.merged_items > 0) {
    auto& items = gpu_items_[decision.device_index];
    if (auto it = items.find(decision.model); it != items.end()) {
      it->second -= std::min<uint64_t>(it->second, decision.merged_items);
    }
  }
  auto& q = queued_[decision.device_index];
  for (auto [it, end] = q.equal_range(decision.queue_key_ms); it != end; ++it) {
    if (it->second.work_ms == decision.backlog_added_ms) {
      q.erase(it);
      break;
    }
  }
  if (q.empty()) b = 0;  // no rounding left behind
  if (decision.generation == generation_) policy_->observe(done);
}

void Dispatcher::set_gpu_merging(bool on, uint32_t max_items) {
  gpu_merging_ = on;
  gpu_merge_max_items_ = std::max<uint32_t>(1, max_items);
}

void Dispatcher::set_policy(std::unique_ptr<Policy> policy) {
  policy_ = std::move(policy);
  ++generation_;
}

}  // namespace recsched::policies
