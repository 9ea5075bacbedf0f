#include "policies/correction.h"

#include <algorithm>
#include <cmath>

namespace recsched::policies {

size_t ServiceCorrection::range(uint32_t items) {
  size_t r = 0;
  for (uint32_t bound = 4; r + 1 < kRanges && items >= bound; bound *= 4) ++r;
  return r;
}

namespace {
// [from, to) of range r; to = 0 for the open last one.
std::pair<uint32_t, uint32_t> bounds(size_t r) {
  uint32_t from = r == 0 ? 1 : 1u << (2 * r);
  uint32_t to = r + 1 < ServiceCorrection::kRanges ? 1u << (2 * (r + 1)) : 0;
  return {from, to};
}
}  // namespace

void ServiceCorrection::Ewma::add(double x) {
  // The first samples average plainly (so the start is not the first sample's alone), then
  // the weight settles at kAlpha.
  const double w = std::max(kAlpha, 1.0 / double(samples + 1));
  value = samples == 0 ? x : value + w * (x - value);
  ++samples;
}

void ServiceCorrection::learn_service(std::string_view device, std::string_view model,
                                      uint32_t items, double measured_ms, double predicted_ms) {
  if (!(measured_ms > 0) || !(predicted_ms > 0)) return;
  auto key = std::make_pair(std::string(device), std::string(model));
  auto it = service_.find(key);
  if (it == service_.end()) it = service_.emplace(std::move(key), Ranges{}).first;
  // Averaged as logarithms (a geometric mean): the prediction is a median, and one slow
  // query among twenty must not pull it up as an arithmetic mean lets it.
  it->second[range(items)].add(std::log(std::clamp(measured_ms / predicted_ms, kMinRatio, kMaxRatio)));
}

void ServiceCorrection::learn_overhead(std::string_view model, uint32_t items, double ms) {
  if (!(ms >= 0)) return;
  auto it = overhead_.find(model);
  if (it == overhead_.end()) it = overhead_.emplace(std::string(model), Ranges{}).first;
  it->second[range(items)].add(ms);
}

ServiceCorrection::Estimate ServiceCorrection::ratio(std::string_view device,
                                                     std::string_view model,
                                                     uint32_t items) const {
  const auto it = service_.find(std::make_pair(std::string(device), std::string(model)));
  if (it == service_.end()) return {1.0, 0};
  const Ewma& e = it->second[range(items)];
  return {e.samples >= kMinSamples ? std::exp(e.value) : 1.0, e.samples};
}

ServiceCorrection::Estimate ServiceCorrection::overhead_ms(std::string_view model,
                                                           uint32_t items) const {
  const auto it = overhead_.find(model);
  if (it == overhead_.end()) return {0.0, 0};
  const Ewma& e = it->second[range(items)];
  return {e.samples >= kMinSamples ? e.value : 0.0, e.samples};
}

double ServiceCorrection::point_ratio(std::string_view device, std::string_view model,
                                      uint32_t batch_size) const {
  const auto it = service_.find(std::make_pair(std::string(device), std::string(model)));
  if (it == service_.end()) return 1.0;
  const size_t own = range(batch_size);
  for (size_t d = 0; d < kRanges; ++d) {
    for (const size_t r : {own - d, own + d}) {  // own - d wraps past 0 to a huge index
      if (r < kRanges && it->second[r].samples >= kMinSamples) return std::exp(it->second[r].value);
    }
  }
  return 1.0;
}

ProfileTable ServiceCorrection::apply(const ProfileTable& measured) const {
  ProfileTable out;
  for (const auto& [model, device] : measured.keys()) {
    for (ProfilePoint p : measured.points(model, device)) {
      const double r = point_ratio(device, model, p.batch_size);
      p.p50_us *= r;
      p.p50_single_us *= r;
      p.p95_us *= r;
      p.items_per_s /= r;
      p.energy_per_item_j *= r;
      out.add(model, device, p);
    }
  }
  return out;
}

nlohmann::json ServiceCorrection::to_json() const {
  auto ranges = [](const Ranges& rs, const char* key, bool logs) {
    nlohmann::json out = nlohmann::json::array();
    for (size_t r = 0; r < kRanges; ++r) {
      if (rs[r].samples == 0) continue;
      const auto [from, to] = bounds(r);
      out.push_back({{"from_items", from},
                     {"to_items", to == 0 ? nlohmann::json(nullptr) : nlohmann::json(to)},
                     {key, logs ? std::exp(rs[r].value) : rs[r].value},
                     {"samples", rs[r].samples},
                     {"applied", rs[r].samples >= kMinSamples}});
    }
    return out;
  };
  nlohmann::json service = nlohmann::json::array(), overhead = nlohmann::json::array();
  for (const auto& [key, rs] : service_) {
    service.push_back({{"device", key.first}, {"model", key.second}, {"ranges", ranges(rs, "ratio", true)}});
  }
  for (const auto& [model, rs] : overhead_) {
    overhead.push_back({{"model", model}, {"ranges", ranges(rs, "ms", false)}});
  }
  return {{"service", service}, {"overhead", overhead}};
}

}  // namespace recsched::policies
