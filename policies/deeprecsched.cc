// DeepRecSched (Gupta et al., ISCA 2020; ../shared/reference/deeprecinfra.md): a query of
// N items runs on the CPU as ceil(N / b) sub-batches of b items across all workers, or
// whole on the accelerator when N >= the offload threshold.
//
// Two ways to tune the knobs, per model:
// - As published (DeepRecSys tunes before serving, for the highest latency-bounded
//   throughput): sim::tune_deeprecsched searches b, then the threshold, on the profiles
//   with the simulator, and hands the result in as `models` (per model: sub_batch and
//   threshold). recsched-sim and recschedd do that by default. A model given this way is
//   not hill-climbed online; only its threshold moves, within DeepRecSys's stable band:
//   when a window of the model's completions has its p95 over the target and the
//   accelerator's share of them misses too (its queue hurts the tail), the threshold
//   rises one profiled size (less offload); when the window's p95 is back under
//   target / 1.1 it falls one step, never below the tuned value.
// - Online, for a model not given (the fallback when no tuning ran): hill-climbing on the
//   p95 of a window of completions at whatever load is offered:
//   1. the sub-batch size b: each candidate in DeepRecSys's order (512, 384, 256, ... 32)
//      runs for one window; the search goes on while the p95 does not get worse (by more
//      than `tolerance`, 5 %: window p95s are noisy) and settles on the best size at the
//      first that does; sizes that would leave every query seen so far whole, as the
//      previous one did, are skipped (they are the same setting);
//   2. then, where there is an accelerator and no threshold is configured, the threshold:
//      it starts at the profiles' crossover (the smallest profiled size from which the
//      accelerator's predicted service time beats the CPU's split one) and steps through
//      the accelerator's profiled sizes, first down (more offload) and, if the first step
//      down is worse, up; it settles at the first step that does worse.
//   The p95 at one load is not the published objective: at low load it favours small
//   sub-batches, whose per-piece cost lowers the throughput (docs/policies.md measures
//   both ways).
// Only completions of queries placed under the knob value being tried count towards its
// window (a query placed before a change does not speak for the new value).
#include <algorithm>
#include <cmath>
#include <map>
#include <optional>

#include "policies/builtin.h"

namespace recsched::policies {
namespace {

constexpr uint32_t kNever = UINT32_MAX;  // a threshold no query reaches

double window_p95(std::vector<double>& window) {
  std::sort(window.begin(), window.end());
  const size_t rank = static_cast<size_t>(std::ceil(0.95 * window.size()));
  return window[std::clamp<size_t>(rank, 1, window.size()) - 1];
}

class DeepRecSchedPolicy final : public Policy {
 public:
  std::string_view name() const override { return "deeprecsched"; }

  Result<Placement> place(const QueryInfo& q, const ClusterView& view) override {
    const DeviceView* cpu = nullptr;
    const DeviceView* gpu = nullptr;
    for (const DeviceView& d : view.devices) {
      if (d.kind == DeviceKind::kCpu && cpu == nullptr) cpu = &d;
      if (d.kind == DeviceKind::kGpu && gpu == nullptr) gpu = &d;
    }
    if (cpu == nullptr && gpu == nullptr) return unavailable("deeprecsched: no device in the view");
    const std::string& model = q.model->name;
    Tuning& t = tuning_[model];
    if (t.next_id == 0) t.next_id = q.id;  // the first query this policy places
    t.sla_ms = q.sla_ms > 0 ? q.sla_ms : q.model->sla_ms;
    t.max_items = std::max(t.max_items, q.items);
    last_id_seen_ = std::max(last_id_seen_, q.id);
    if (gpu != nullptr && (cpu == nullptr || q.items >= threshold(t, model, *cpu, *gpu, view))) {
      const double service =
          predict_service_ms(view.profiles, model, gpu->id, q.items, q.items, 1).value_or(0);
      return Placement{gpu->id, q.items, 1, gpu->backlog_ms + service,
                       "deeprecsched: " + std::to_string(q.items) + " items >= offload threshold"};
    }
    const uint32_t b = sub_batch(t);
    const int workers = cpu->active_workers > 0 ? cpu->active_workers : cpu->workers;
    const double service =
        predict_service_ms(view.profiles, model, cpu->id, q.items, b, workers).value_or(0);
    return Placement{cpu->id, b, workers, cpu->backlog_ms / std::max(1, workers) + service,
                     "deeprecsched: sub-batches of " + std::to_string(b) + " on " + cpu->id};
  }

  void observe(const Completion& done) override {
    if (!tune_ || !done.ok) return;
    auto it = tuning_.find(done.model);
    if (it == tuning_.end()) return;
    Tuning& t = it->second;
    if (done.id < t.next_id) return;  // placed under an earlier knob value
    if (t.fixed_th) return stable_band(t, done);
    if (!t.settled) {
      // Sub-batch phase: the CPU's completions under the size being tried.
      if (done.placement.device == gpu_id_ || done.placement.sub_batch != candidates_[t.index])
        return;
      t.window.push_back(done.latency_ms);
      if (t.window.size() < window_) return;
      const double p95 = window_p95(t.window);
      t.window.clear();
      if (p95 < t.best_p95) {
        t.best_p95 = p95;
        t.best = t.index;
      }
      if (p95 > t.best_p95 * (1 + tolerance_) || t.index + 1 == candidates_.size()) {
        t.index = t.best;  // the first that does worse (beyond noise) ends the search
        t.settled = true;
      } else {
        // Keep climbing (a tie within the tolerance too), past sizes that would run every
        // query seen so far whole, exactly as the current one does.
        ++t.index;
        while (t.index + 1 < candidates_.size() && candidates_[t.index] >= t.max_items &&
               candidates_[t.index - 1] >= t.max_items) {
          ++t.index;
        }
      }
      t.next_id = last_id_seen_ + 1;
      return;
    }
    // Threshold phase: every completion of the model under the threshold being tried.
    if (t.th_dir == 0 || t.th.empty()) return;
    t.window.push_back(done.latency_ms);
    if (t.window.size() < window_) return;
    const double p95 = window_p95(t.window);
    t.window.clear();
    if (p95 < t.th_best_p95) {
      t.th_best_p95 = p95;
      t.th_best = t.th_index;
      step(t);
    } else if (p95 <= t.th_best_p95 * (1 + tolerance_) && t.th_index != t.th_start) {
      step(t);  // a tie: keep going the same way
    } else if (t.th_dir < 0 && t.th_best == t.th_start && !t.turned) {
      t.turned = true;  // the first step down did worse: try up from the start
      t.th_dir = +1;
      t.th_index = t.th_start;
      step(t);
    } else {
      t.th_index = t.th_best;
      t.th_dir = 0;
    }
    t.next_id = last_id_seen_ + 1;
  }

  nlohmann::json params() const override {
    nlohmann::json tuned = nlohmann::json::object();
    auto size = [](uint32_t th) {
      return th == kNever ? nlohmann::json("never") : nlohmann::json(th);
    };
    for (const auto& [model, t] : tuning_) {
      nlohmann::json j = {{"sub_batch", sub_batch(t)}, {"settled", t.settled}};
      if (t.fixed_b > 0) j["given"] = true;  // from `models` (tuned before serving)
      if (t.fixed_th) j["given_threshold"] = size(*t.fixed_th);
      if (!t.th.empty()) {
        j["threshold"] = size(t.th[t.th_index]);
        j["threshold_settled"] = t.th_dir == 0;
      }
      tuned[model] = j;
    }
    return {{"threshold", threshold_}, {"window", window_},         {"tolerance", tolerance_},
            {"tune", tune_},           {"candidates", candidates_}, {"models", tuned}};
  }

  Status configure(const nlohmann::json& p) override {
    for (const auto& [key, value] : p.items()) {
      if (key == "threshold") {
        if (!value.is_number_integer() || value.get<int64_t>() < 0 ||
            value.get<int64_t>() > (int64_t{1} << 20)) {
          return invalid_argument(
              "params: key 'threshold' must be an integer in [0, 1048576] (0: from the "
              "profiles, tuned online)");
        }
      } else if (key == "window") {
        if (!value.is_number_integer() || value.get<int64_t>() < 1 ||
            value.get<int64_t>() > 100000) {
          return invalid_argument("params: key 'window' must be an integer in [1, 100000]");
        }
      } else if (key == "tolerance") {
        if (!value.is_number() || value.get<double>() < 0 || value.get<double>() > 1) {
          return invalid_argument("params: key 'tolerance' must be a number in [0, 1]");
        }
      } else if (key == "tune") {
        if (!value.is_boolean())
          return invalid_argument("params: key 'tune' must be true or false");
      } else if (key == "models") {
        RECSCHED_RETURN_IF_ERROR(check_models(value));
      } else if (key == "candidates") {
        if (!value.is_array() || value.empty()) {
          return invalid_argument("params: key 'candidates' must be a non-empty array of sizes");
        }
        for (const auto& c : value) {
          if (!c.is_number_integer() || c.get<int64_t>() < 1 || c.get<int64_t>() > (1 << 20)) {
            return invalid_argument("params: key 'candidates' must hold sizes in [1, 1048576]");
          }
        }
      } else {
        return invalid_argument("params: unknown key '" + key + "'");
      }
    }
    // All checked: apply. A new candidate list restarts the search.
    if (p.contains("threshold")) threshold_ = p["threshold"].get<uint32_t>();
    if (p.contains("window")) window_ = p["window"].get<size_t>();
    if (p.contains("tune")) tune_ = p["tune"].get<bool>();
    if (p.contains("tolerance")) tolerance_ = p["tolerance"].get<double>();
    if (p.contains("candidates")) {
      candidates_ = p["candidates"].get<std::vector<uint32_t>>();
      tuning_.clear();
    }
    if (p.contains("models")) {
      for (const auto& [model, knobs] : p["models"].items()) {
        Tuning t;
        t.fixed_b = knobs["sub_batch"].get<uint32_t>();
        t.settled = true;
        // A GET reports the given threshold apart from where the stable band has moved it
        // ("threshold"): put back, the given one stands.
        const char* th = knobs.contains("given_threshold") ? "given_threshold" : "threshold";
        if (knobs.contains(th)) {
          t.fixed_th = knobs[th].is_string() ? kNever : knobs[th].get<uint32_t>();
        }
        tuning_[model] = std::move(t);
      }
    }
    return Status::ok();
  }

 private:
  struct Tuning {
    uint64_t next_id = 0;    // completions of queries before this id are not counted
    uint32_t max_items = 0;  // the largest query placed
    double sla_ms = 0;       // the target of the last query placed
    // Given in `models` (tuned before serving): the sub-batch size (0: none given, the
    // candidates are climbed) and the threshold (kNever: no offload).
    uint32_t fixed_b = 0;
    std::optional<uint32_t> fixed_th;
    std::vector<double> window;
    std::vector<double> gpu_window;  // the accelerator's part of `window` (stable band)
    // Sub-batch search.
    size_t index = 0;  // candidate in use
    size_t best = 0;
    double best_p95 = INFINITY;
    bool settled = false;
    // Threshold search: th holds the accelerator's profiled sizes and kNever, ascending.
    std::vector<uint32_t> th;
    size_t th_index = 0, th_start = 0, th_best = 0;
    double th_best_p95 = INFINITY;
    int th_dir = -1;  // -1 stepping down, +1 up, 0 settled
    bool turned = false;
  };

  uint32_t sub_batch(const Tuning& t) const {
    return t.fixed_b > 0 ? t.fixed_b : candidates_[t.index];
  }

  static Status check_models(const nlohmann::json& models) {
    const char* what =
        "params: key 'models' must map model names to {\"sub_batch\": N, \"threshold\": N or "
        "\"never\"} (sizes in [1, 1048576]; threshold optional)";
    if (!models.is_object()) return invalid_argument(what);
    auto size_ok = [](const nlohmann::json& v) {
      return v.is_number_integer() && v.get<int64_t>() >= 1 && v.get<int64_t>() <= (1 << 20);
    };
    for (const auto& [model, knobs] : models.items()) {
      if (!knobs.is_object() || !knobs.contains("sub_batch") || !size_ok(knobs["sub_batch"]))
        return invalid_argument(std::string(what) + "; not so for '" + model + "'");
      for (const auto& [k, v] : knobs.items()) {
        if (k == "sub_batch") continue;
        // What params() reports besides (settled, given, threshold_settled: read-only, and
        // ignored), so that a GET's params can be PUT back as they are.
        const bool flag = k == "settled" || k == "given" || k == "threshold_settled";
        const bool size = k == "threshold" || k == "given_threshold";
        if (!(flag && v.is_boolean()) && !(size && (size_ok(v) || v == "never")))
          return invalid_argument(std::string(what) + "; not so for '" + model + "'");
      }
    }
    return Status::ok();
  }

  // A given threshold moves within DeepRecSys's stable band [target / 1.1, target]: up a
  // profiled size when the model's window misses its target and the accelerator's share
  // misses too (its queue is a cause), down towards the given value once the window's
  // p95 is back under target / 1.1.
  void stable_band(Tuning& t, const Completion& done) {
    if (t.th.empty() || !(t.sla_ms > 0)) return;
    t.window.push_back(done.latency_ms);
    if (done.placement.device == gpu_id_) t.gpu_window.push_back(done.latency_ms);
    if (t.window.size() < window_) return;
    const double p95 = window_p95(t.window);
    const bool gpu_late = !t.gpu_window.empty() && window_p95(t.gpu_window) > t.sla_ms;
    t.window.clear();
    t.gpu_window.clear();
    if (p95 > t.sla_ms && gpu_late && t.th_index + 1 < t.th.size()) {
      ++t.th_index;
    } else if (p95 < t.sla_ms / 1.1 && t.th_index > t.th_start) {
      --t.th_index;
    } else {
      return;
    }
    t.next_id = last_id_seen_ + 1;
  }

  // One step in the threshold search's direction, or settle at the best at the edge.
  static void step(Tuning& t) {
    const bool can = t.th_dir < 0 ? t.th_index > 0 : t.th_index + 1 < t.th.size();
    if (!can) {
      t.th_index = t.th_best;
      t.th_dir = 0;
      return;
    }
    t.th_index = t.th_dir < 0 ? t.th_index - 1 : t.th_index + 1;
  }

  uint32_t threshold(Tuning& t, const std::string& model, const DeviceView& cpu,
                     const DeviceView& gpu, const ClusterView& view) {
    gpu_id_ = gpu.id;
    if (threshold_ > 0 && !t.fixed_th) return threshold_;
    if (t.th.empty() && t.fixed_th) {
      // The accelerator's profiled sizes, the given value among them: the steps of the
      // stable band, which starts (and settles) at the given value.
      for (const ProfilePoint& p : view.profiles.points(model, gpu.id))
        t.th.push_back(p.batch_size);
      t.th.push_back(*t.fixed_th);
      t.th.push_back(kNever);
      std::sort(t.th.begin(), t.th.end());
      t.th.erase(std::unique(t.th.begin(), t.th.end()), t.th.end());
      t.th_start = t.th_index = t.th_best = static_cast<size_t>(
          std::find(t.th.begin(), t.th.end(), *t.fixed_th) - t.th.begin());
      t.th_dir = 0;
    }
    if (t.th.empty()) {
      // The accelerator's profiled sizes, and where the profiles cross over.
      const uint32_t b = sub_batch(t);
      const int workers = cpu.active_workers > 0 ? cpu.active_workers : cpu.workers;
      for (const ProfilePoint& p : view.profiles.points(model, gpu.id))
        t.th.push_back(p.batch_size);
      t.th.push_back(kNever);
      t.th_start = t.th.size() - 1;
      for (size_t i = 0; i + 1 < t.th.size(); ++i) {
        const auto on_gpu = predict_service_ms(view.profiles, model, gpu.id, t.th[i], t.th[i], 1);
        const auto on_cpu = predict_service_ms(view.profiles, model, cpu.id, t.th[i], b, workers);
        if (on_gpu && (!on_cpu || *on_gpu < *on_cpu)) {
          t.th_start = i;
          break;
        }
      }
      t.th_index = t.th_best = t.th_start;
      if (!tune_) t.th_dir = 0;
    }
    // The threshold is tuned only once the sub-batch size has settled.
    return t.th[t.settled ? t.th_index : t.th_start];
  }

  uint32_t threshold_ = 0;
  size_t window_ = 64;
  double tolerance_ = 0.05;  // a window's p95 this much above the best counts as worse
  bool tune_ = true;
  std::vector<uint32_t> candidates_ = {512, 384, 256, 192, 128, 96, 64, 32};
  std::map<std::string, Tuning, std::less<>> tuning_;
  std::string gpu_id_;
  uint64_t last_id_seen_ = 0;
};

}  // namespace

Result<std::unique_ptr<Policy>> create_deeprecsched(const nlohmann::json& params) {
  auto p = std::make_unique<DeepRecSchedPolicy>();
  RECSCHED_RETURN_IF_ERROR(p->configure(params));
  return std::unique_ptr<Policy>(std::move(p));
}

}  // namespace recsched::policies
