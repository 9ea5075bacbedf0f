#include "core/profile.h"

#include <algorithm>
#include <iterator>
#include <string>
#include <utility>

namespace recsched {
namespace {

using Key = std::pair<std::string, std::string>;

// Looks up (model, device) in the map without building two std::strings: std::less<> is
// transparent, and these overloads (found by ADL) order a KeyRef against the stored keys.
struct KeyRef {
  std::string_view model;
  std::string_view device;
};

bool operator<(const Key& a, const KeyRef& b) {
  return std::pair<std::string_view, std::string_view>(a.first, a.second) <
         std::pair(b.model, b.device);
}

bool operator<(const KeyRef& a, const Key& b) {
  return std::pair(a.model, a.device) <
         std::pair<std::string_view, std::string_view>(b.first, b.second);
}

bool by_batch_size(const ProfilePoint& p, uint32_t batch_size) { return p.batch_size < batch_size; }

double lerp(double a, double b, double t) { return a + t * (b - a); }

// The point at batch_size, strictly between lo.batch_size and hi.batch_size.
ProfilePoint interpolate(const ProfilePoint& lo, const ProfilePoint& hi, uint32_t batch_size) {
  const double t = static_cast<double>(batch_size - lo.batch_size) /
                   static_cast<double>(hi.batch_size - lo.batch_size);
  // Compared in integers so that a tie (both equally near) goes to the lower point exactly.
  const bool lower_is_nearer =
      2 * uint64_t{batch_size - lo.batch_size} <= uint64_t{hi.batch_size - lo.batch_size};
  const ProfilePoint& nearer = lower_is_nearer ? lo : hi;
  ProfilePoint p;
  p.batch_size = batch_size;
  p.p50_us = lerp(lo.p50_us, hi.p50_us, t);
  p.p95_us = lerp(lo.p95_us, hi.p95_us, t);
  p.p50_single_us = lerp(lo.p50_single_us, hi.p50_single_us, t);
  // Recomputed rather than interpolated so that items_per_s == batch_size / p50 still holds;
  // a zero latency (never measured, only hand-built) falls back to interpolation.
  p.items_per_s = p.p50_us > 0 ? static_cast<double>(batch_size) * 1e6 / p.p50_us
                               : lerp(lo.items_per_s, hi.items_per_s, t);
  p.power_w = lerp(lo.power_w, hi.power_w, t);
  p.energy_per_item_j = lerp(lo.energy_per_item_j, hi.energy_per_item_j, t);
  p.power_source = lo.power_source;
  p.best_sub_batch = nearer.best_sub_batch;
  p.best_workers = nearer.best_workers;
  p.best_streams = nearer.best_streams;
  p.streams_items_per_s = lerp(lo.streams_items_per_s, hi.streams_items_per_s, t);
  return p;
}

}  // namespace

void ProfileTable::add(std::string_view model, std::string_view device, ProfilePoint point) {
  auto it = points_.find(KeyRef{model, device});
  if (it == points_.end()) it = points_.try_emplace(Key(model, device)).first;
  std::vector<ProfilePoint>& pts = it->second;
  auto at = std::lower_bound(pts.begin(), pts.end(), point.batch_size, by_batch_size);
  if (at != pts.end() && at->batch_size == point.batch_size) {
    *at = std::move(point);
  } else {
    pts.insert(at, std::move(point));
  }
}

std::optional<ProfilePoint> ProfileTable::estimate(std::string_view model, std::string_view device,
                                                   uint32_t batch_size) const {
  const std::vector<ProfilePoint>& pts = points(model, device);
  if (pts.empty() || batch_size < pts.front().batch_size || batch_size > pts.back().batch_size) {
    return std::nullopt;
  }
  // In range, so `hi` exists; it is not the first point unless it is an exact hit.
  auto hi = std::lower_bound(pts.begin(), pts.end(), batch_size, by_batch_size);
  if (hi->batch_size == batch_size) return *hi;
  return interpolate(*std::prev(hi), *hi, batch_size);
}

const std::vector<ProfilePoint>& ProfileTable::points(std::string_view model,
                                                      std::string_view device) const {
  // Never destroyed, so a reference to it stays valid during static destruction.
  static const auto* const kNone = new std::vector<ProfilePoint>();
  auto it = points_.find(KeyRef{model, device});
  return it == points_.end() ? *kNone : it->second;
}

uint32_t streams_paying(const ProfileTable& table, std::string_view device) {
  uint32_t most = 0;
  for (const auto& [model, dev] : table.keys()) {
    if (dev != device) continue;
    for (const ProfilePoint& p : table.points(model, dev)) most = std::max(most, p.best_streams);
  }
  return most;
}

std::vector<std::pair<std::string, std::string>> ProfileTable::keys() const {
  std::vector<std::pair<std::string, std::string>> out;
  out.reserve(points_.size());
  for (const auto& [key, pts] : points_) {
    if (!pts.empty()) out.push_back(key);
  }
  return out;
}

}  // namespace recsched
