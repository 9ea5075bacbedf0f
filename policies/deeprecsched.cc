// DeepRecSched (Gupta et al., ISCA 2020; ../shared/reference/deeprecinfra.md): a query of
// N items runs on the CPU as ceil(N / b) sub-batches of b items across all workers, or
// whole on the accelerator when N >= the offload threshold. b is tuned per model online by
// hill-climbing: each candidate size, in DeepRecSys's order (512, 384, 256, ... 32), is
// tried for one window of completions; the search keeps going while the window's p95
// improves and settles on the best size at the first that does worse.
// The threshold: configured, or else the smallest profiled size from which the
// accelerator's predicted service time beats the CPU's (DeepRecSys tunes it online too;
// here the profiles give the crossover directly).
#include <algorithm>
#include <cmath>
#include <map>

#include "policies/builtin.h"

namespace recsched::policies {
namespace {

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
    if (gpu != nullptr && (cpu == nullptr || q.items >= threshold(model, *cpu, *gpu, view))) {
      const double service =
          predict_service_ms(view.profiles, model, gpu->id, q.items, q.items, 1).value_or(0);
      return Placement{gpu->id, q.items, 1, gpu->backlog_ms + service,
                       "deeprecsched: " + std::to_string(q.items) + " items >= offload threshold"};
    }
    const uint32_t b = sub_batch(model);
    const double service =
        predict_service_ms(view.profiles, model, cpu->id, q.items, b, cpu->workers).value_or(0);
    return Placement{cpu->id, b, cpu->workers,
                     cpu->backlog_ms / std::max(1, cpu->workers) + service,
                     "deeprecsched: sub-batches of " + std::to_string(b) + " on " + cpu->id};
  }

  void observe(const Completion& done) override {
    if (!tune_ || !done.ok) return;
    Tuning& t = tuning_[done.model];
    if (t.settled || done.placement.sub_batch != candidates_[t.index]) return;
    t.window.push_back(done.latency_ms);
    if (t.window.size() < window_) return;
    std::sort(t.window.begin(), t.window.end());
    const double p95 = t.window[std::min(
        t.window.size() - 1, static_cast<size_t>(std::ceil(0.95 * t.window.size())) - 1)];
    t.window.clear();
    if (p95 < t.best_p95) {
      t.best_p95 = p95;
      t.best = t.index;
      if (t.index + 1 < candidates_.size()) {
        ++t.index;  // keep climbing
      } else {
        t.settled = true;
      }
    } else {
      t.index = t.best;  // the first that does worse ends the search
      t.settled = true;
    }
  }

  nlohmann::json params() const override {
    nlohmann::json tuned = nlohmann::json::object();
    for (const auto& [model, t] : tuning_) {
      tuned[model] = {{"sub_batch", candidates_[t.index]}, {"settled", t.settled}};
    }
    return {{"threshold", threshold_},
            {"window", window_},
            {"tune", tune_},
            {"candidates", candidates_},
            {"models", tuned}};
  }

  Status configure(const nlohmann::json& p) override {
    for (const auto& [key, value] : p.items()) {
      if (key == "threshold") {
        if (!value.is_number_integer() || value.get<int64_t>() < 0) {
          return invalid_argument(
              "params: key 'threshold' must be a non-negative integer (0: from the profiles)");
        }
      } else if (key == "window") {
        if (!value.is_number_integer() || value.get<int64_t>() < 1 ||
            value.get<int64_t>() > 100000) {
          return invalid_argument("params: key 'window' must be an integer in [1, 100000]");
        }
      } else if (key == "tune") {
        if (!value.is_boolean())
          return invalid_argument("params: key 'tune' must be true or false");
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
    if (p.contains("candidates")) {
      candidates_ = p["candidates"].get<std::vector<uint32_t>>();
      tuning_.clear();
    }
    return Status::ok();
  }

 private:
  struct Tuning {
    size_t index = 0;  // candidate in use
    size_t best = 0;
    double best_p95 = INFINITY;
    bool settled = false;
    std::vector<double> window;
  };

  uint32_t sub_batch(const std::string& model) { return candidates_[tuning_[model].index]; }

  uint32_t threshold(const std::string& model, const DeviceView& cpu, const DeviceView& gpu,
                     const ClusterView& view) {
    if (threshold_ > 0) return threshold_;
    const uint32_t b = sub_batch(model);
    for (const ProfilePoint& p : view.profiles.points(model, gpu.id)) {
      const auto on_gpu =
          predict_service_ms(view.profiles, model, gpu.id, p.batch_size, p.batch_size, 1);
      const auto on_cpu =
          predict_service_ms(view.profiles, model, cpu.id, p.batch_size, b, cpu.workers);
      if (on_gpu && (!on_cpu || *on_gpu < *on_cpu)) return p.batch_size;
    }
    return UINT32_MAX;  // the accelerator never wins
  }

  uint32_t threshold_ = 0;
  size_t window_ = 64;
  bool tune_ = true;
  std::vector<uint32_t> candidates_ = {512, 384, 256, 192, 128, 96, 64, 32};
  std::map<std::string, Tuning> tuning_;
};

}  // namespace

Result<std::unique_ptr<Policy>> create_deeprecsched(const nlohmann::json& params) {
  auto p = std::make_unique<DeepRecSchedPolicy>();
  RECSCHED_RETURN_IF_ERROR(p->configure(params));
  return std::unique_ptr<Policy>(std::move(p));
}

}  // namespace recsched::policies
