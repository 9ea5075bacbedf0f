// Vocabulary shared by every component that refers to a device or a time: the kind of a
// device, its small identity (kind + index: "cpu0" is {kCpu, 0}, "gpu1" {kGpu, 1}), and the
// one clock the serving path measures with. Standard library only.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace recsched {

/// The clock of the serving path: arrivals, deadlines, service times.
using Clock = std::chrono::steady_clock;

enum class DeviceKind : uint8_t { kCpu, kGpu };

/// "cpu" or "gpu".
std::string_view to_string(DeviceKind kind);

/// A device by kind and index within its kind, as named in configs, profiles and logs.
struct DeviceId {
  DeviceKind kind = DeviceKind::kCpu;
  uint32_t index = 0;

  /// "cpu0", "gpu1".
  std::string name() const;
  /// The inverse of name(): "cpu" or "gpu" then decimal digits (no sign, no leading zero
  /// but "0"); nullopt otherwise.
  static std::optional<DeviceId> parse(std::string_view name);

  friend bool operator==(const DeviceId&, const DeviceId&) = default;
};

}  // namespace recsched
