#include "policies/policy.h"

#include <algorithm>
#include <cmath>

namespace recsched::policies {

namespace {

// One sub-batch of s items on one worker: the profile's single-worker median, interpolated
// linearly between measured sizes; per item from the nearest end outside them. (The same
// numbers ProfileTable::estimate gives, without copying a whole point: this runs for every
// candidate of every decision.)
double single_ms(const std::vector<ProfilePoint>& pts, uint32_t s) {
  const ProfilePoint& first = pts.front();
  const ProfilePoint& last = pts.back();
  if (s < first.batch_size) return first.p50_single_us / 1e3 * s / first.batch_size;
  if (s > last.batch_size) return last.p50_single_us / 1e3 * s / last.batch_size;
  auto hi = std::lower_bound(pts.begin(), pts.end(), s,
                             [](const ProfilePoint& p, uint32_t b) { return p.batch_size < b; });
  if (hi->batch_size == s) return hi->p50_single_us / 1e3;
  const ProfilePoint& lo = *(hi - 1);
  const double t = double(s - lo.batch_size) / double(hi->batch_size - lo.batch_size);
  return (lo.p50_single_us + t * (hi->p50_single_us - lo.p50_single_us)) / 1e3;
}

}  // namespace

double predict_service_ms(const std::vector<ProfilePoint>& points, uint32_t items,
                          uint32_t sub_batch, int workers) {
  const uint32_t sub = std::clamp<uint32_t>(sub_batch, 1, items);
  const uint32_t subs = (items + sub - 1) / sub;
  const uint32_t w = static_cast<uint32_t>(std::clamp<int>(workers, 1, static_cast<int>(subs)));
  // Sub-batches go out in rounds of w. Every round but the last takes a full sub-batch's
  // time; so does the last, unless the short final sub-batch has that round to itself.
  const uint32_t rounds = (subs + w - 1) / w;
  const uint32_t last = items - (subs - 1) * sub;
  const bool alone = (subs - 1) % w == 0;
  return (rounds - 1) * single_ms(points, sub) + single_ms(points, alone ? last : sub);
}

double predict_merged_ms(const std::vector<ProfilePoint>& points, uint64_t in_flight,
                         uint32_t items, uint32_t max_items) {
  const uint64_t cap = std::max<uint32_t>(1, max_items);
  auto passes_ms = [&](uint64_t n) {
    const uint64_t rest = n % cap;
    return double(n / cap) * single_ms(points, uint32_t(cap)) +
           (rest > 0 ? single_ms(points, uint32_t(rest)) : 0.0);
  };
  return std::max(0.0, passes_ms(in_flight + items) - passes_ms(in_flight));
}

double busy_w_per_worker(const std::vector<ProfilePoint>& pts, uint32_t s) {
  auto per_worker = [](const ProfilePoint& p) {
    return p.power_w / std::max<uint32_t>(1, p.best_workers);
  };
  if (s <= pts.front().batch_size) return per_worker(pts.front());
  if (s >= pts.back().batch_size) return per_worker(pts.back());
  auto hi = std::lower_bound(pts.begin(), pts.end(), s,
                             [](const ProfilePoint& p, uint32_t b) { return p.batch_size < b; });
  if (hi->batch_size == s) return per_worker(*hi);
  const ProfilePoint& lo = *(hi - 1);
  const double t = double(s - lo.batch_size) / double(hi->batch_size - lo.batch_size);
  return per_worker(lo) + t * (per_worker(*hi) - per_worker(lo));
}

std::optional<double> predict_service_ms(const ProfileTable& profiles, std::string_view model,
                                         std::string_view device, uint32_t items,
                                         uint32_t sub_batch, int workers) {
  const std::vector<ProfilePoint>& points = profiles.points(model, device);
  if (points.empty() || items == 0) return std::nullopt;
  return predict_service_ms(points, items, sub_batch, workers);
}

}  // namespace recsched::policies
