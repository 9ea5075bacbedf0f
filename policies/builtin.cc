// The built-in policies. Each parses its own params and reports its knobs.
#include "policies/builtin.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>

namespace recsched::policies {
namespace {

Status unknown_keys(const nlohmann::json& params, std::initializer_list<const char*> known) {
  for (const auto& [key, value] : params.items()) {
    if (std::find_if(known.begin(), known.end(), [&](const char* k) { return key == k; }) ==
        known.end()) {
      return invalid_argument("params: unknown key '" + key + "'");
    }
  }
  return Status::ok();
}

// Waiting time before a new query starts on `d`: its backlog spread over its workers.
double wait_ms(const DeviceView& d) { return d.backlog_ms / std::max(1, d.workers); }

struct Candidate {
  const DeviceView* device = nullptr;
  uint32_t sub_batch = 0;
  int workers = 1;
  double finish_ms = 0;  // wait + service
  double service_ms = 0;
};

// Every device with a profile for the model, and on CPUs every split over 1, 2, 4, ...
// and all workers; GPUs run queries whole.
std::vector<Candidate> candidates(const QueryInfo& q, const ClusterView& view) {
  std::vector<Candidate> out;
  for (const DeviceView& d : view.devices) {
    std::vector<int> counts = {1};
    if (d.kind == DeviceKind::kCpu) {
      for (int w = 2; w < d.workers; w *= 2) counts.push_back(w);
      if (d.workers > 1) counts.push_back(d.workers);
    }
    for (int w : counts) {
      if (w > static_cast<int>(q.items)) break;
      const uint32_t sub = (q.items + w - 1) / w;
      auto service = predict_service_ms(view.profiles, q.model->name, d.id, q.items, sub, w);
      if (!service) break;
      out.push_back({&d, sub, w, wait_ms(d) + *service, *service});
    }
  }
  return out;
}

std::string describe(const Candidate& c, const char* why) {
  char buf[160];
  std::snprintf(buf, sizeof buf, "%s: %s, %d worker(s) x %u items, predicted %.2f ms", why,
                c.device->id.c_str(), c.workers, c.sub_batch, c.finish_ms);
  return buf;
}

Placement to_placement(const Candidate& c, const char* why) {
  return {c.device->id, c.sub_batch, c.workers, c.finish_ms, describe(c, why)};
}

// See builtin.h. The baseline: request-level parallelism only.
class StaticPolicy final : public Policy {
 public:
  std::string_view name() const override { return "static"; }
  Result<Placement> place(const QueryInfo& q, const ClusterView& view) override {
    for (const DeviceView& d : view.devices) {
      if (d.id != device_) continue;
      const double service =
          predict_service_ms(view.profiles, q.model->name, d.id, q.items, q.items, 1).value_or(0);
      return Placement{d.id, q.items, 1, wait_ms(d) + service,
                       "static: whole query on one worker of " + d.id};
    }
    return unavailable("static: device " + device_ + " is not in the view");
  }
  nlohmann::json params() const override { return {{"device", device_}}; }
  Status configure(const nlohmann::json& p) override {
    RECSCHED_RETURN_IF_ERROR(unknown_keys(p, {"device"}));
    if (p.contains("device")) {
      if (!p["device"].is_string() || p["device"].get<std::string>().empty()) {
        return invalid_argument("params: key 'device' must be a device id such as \"cpu0\"");
      }
      device_ = p["device"].get<std::string>();
    }
    return Status::ok();
  }

 private:
  std::string device_ = "cpu0";
};

class EarliestFinishPolicy final : public Policy {
 public:
  std::string_view name() const override { return "earliest-finish"; }
  Result<Placement> place(const QueryInfo& q, const ClusterView& view) override {
    const std::vector<Candidate> all = candidates(q, view);
    if (all.empty())
      return unavailable("earliest-finish: no device has a profile for " + q.model->name);
    const auto best = std::min_element(all.begin(), all.end(), [](const auto& a, const auto& b) {
      return a.finish_ms < b.finish_ms;
    });
    return to_placement(*best, "earliest-finish");
  }
  nlohmann::json params() const override { return nlohmann::json::object(); }
  Status configure(const nlohmann::json& p) override { return unknown_keys(p, {}); }
};

class MinEnergyPolicy final : public Policy {
 public:
  std::string_view name() const override { return "min-energy"; }
  Result<Placement> place(const QueryInfo& q, const ClusterView& view) override {
    const std::vector<Candidate> all = candidates(q, view);
    if (all.empty()) return unavailable("min-energy: no device has a profile for " + q.model->name);
    const double budget = q.sla_ms * (1.0 - margin_);
    const Candidate* best = nullptr;
    double best_j = std::numeric_limits<double>::infinity();
    for (const Candidate& c : all) {
      if (c.finish_ms > budget) continue;
      const double j = energy_j(c, q, view);
      if (j < best_j) best_j = j, best = &c;
    }
    if (best == nullptr) {
      const auto fastest =
          std::min_element(all.begin(), all.end(),
                           [](const auto& a, const auto& b) { return a.finish_ms < b.finish_ms; });
      return to_placement(*fastest, "min-energy (nothing meets the SLA): earliest finish");
    }
    Placement p = to_placement(*best, "min-energy");
    char buf[48];
    std::snprintf(buf, sizeof buf, ", %.3g J", best_j);
    p.reason += buf;
    return p;
  }
  nlohmann::json params() const override { return {{"margin", margin_}}; }
  Status configure(const nlohmann::json& p) override {
    RECSCHED_RETURN_IF_ERROR(unknown_keys(p, {"margin"}));
    if (p.contains("margin")) {
      if (!p["margin"].is_number() || p["margin"] < 0 || p["margin"] >= 1) {
        return invalid_argument("params: key 'margin' must be a number in [0, 1)");
      }
      margin_ = p["margin"].get<double>();
    }
    return Status::ok();
  }

 private:
  // Profiled power per busy worker x the workers it keeps busy x the service time, plus
  // the idle power of the device's other cores over the same time.
  static double energy_j(const Candidate& c, const QueryInfo& q, const ClusterView& view) {
    auto p = view.profiles.estimate(q.model->name, c.device->id, q.items);
    const auto& pts = view.profiles.points(q.model->name, c.device->id);
    const ProfilePoint& ref =
        p ? *p : (q.items < pts.front().batch_size ? pts.front() : pts.back());
    const double per_worker_w = ref.power_w / std::max<uint32_t>(1, ref.best_workers);
    const double idle_per_worker = c.device->idle_w / std::max(1, c.device->workers);
    const double busy_w = per_worker_w * c.workers;
    const double idle_w = idle_per_worker * std::max(0, c.device->workers - c.workers);
    return (busy_w + idle_w) * c.service_ms / 1e3;
  }
  double margin_ = 0.2;
};

template <class P>
Result<std::unique_ptr<Policy>> make(const nlohmann::json& params) {
  auto p = std::make_unique<P>();
  RECSCHED_RETURN_IF_ERROR(p->configure(params));
  return std::unique_ptr<Policy>(std::move(p));
}

}  // namespace

Result<std::unique_ptr<Policy>> create_static(const nlohmann::json& p) {
  return make<StaticPolicy>(p);
}
Result<std::unique_ptr<Policy>> create_earliest_finish(const nlohmann::json& p) {
  return make<EarliestFinishPolicy>(p);
}
Result<std::unique_ptr<Policy>> create_min_energy(const nlohmann::json& p) {
  return make<MinEnergyPolicy>(p);
}

}  // namespace recsched::policies
