#include "core/device.h"

#include <charconv>

namespace recsched {

std::string_view to_string(DeviceKind kind) { return kind == DeviceKind::kGpu ? "gpu" : "cpu"; }

std::string DeviceId::name() const { return std::string(to_string(kind)) + std::to_string(index); }

std::optional<DeviceId> DeviceId::parse(std::string_view name) {
  DeviceId id;
  if (name.substr(0, 3) == "cpu") {
    id.kind = DeviceKind::kCpu;
  } else if (name.substr(0, 3) == "gpu") {
    id.kind = DeviceKind::kGpu;
  } else {
    return std::nullopt;
  }
  const std::string_view digits = name.substr(3);
  if (digits.empty() || (digits.size() > 1 && digits[0] == '0')) return std::nullopt;
  const auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), id.index);
  if (ec != std::errc() || end != digits.data() + digits.size()) return std::nullopt;
  return id;
}

}  // namespace recsched
