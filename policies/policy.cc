#include "policies/policy.h"

#include <algorithm>
#include <cmath>

namespace recsched::policies {

std::optional<double> predict_service_ms(const ProfileTable& profiles, std::string_view model,
                                         std::string_view device, uint32_t items,
                                         uint32_t sub_batch, int workers) {
  const std::vector<ProfilePoint>& points = profiles.points(model, device);
  if (points.empty() || items == 0) return std::nullopt;
  // One sub-batch of s items on one worker: the profile's single-worker latency,
  // interpolated; per item from the nearest end outside the measured range.
  auto one_ms = [&](uint32_t s) {
    if (auto p = profiles.estimate(model, device, s)) return p->p50_single_us / 1e3;
    const ProfilePoint& edge = s < points.front().batch_size ? points.front() : points.back();
    return edge.p50_single_us / 1e3 * s / edge.batch_size;
  };
  const uint32_t sub = std::clamp<uint32_t>(sub_batch, 1, items);
  const uint32_t subs = (items + sub - 1) / sub;
  const uint32_t w = static_cast<uint32_t>(std::clamp<int>(workers, 1, static_cast<int>(subs)));
  // Sub-batches go out in rounds of w. Every round but the last takes a full sub-batch's
  // time; so does the last, unless the short final sub-batch has that round to itself.
  const uint32_t rounds = (subs + w - 1) / w;
  const uint32_t last = items - (subs - 1) * sub;
  const bool alone = (subs - 1) % w == 0;
  return (rounds - 1) * one_ms(sub) + one_ms(alone ? last : sub);
}

}  // namespace recsched::policies
