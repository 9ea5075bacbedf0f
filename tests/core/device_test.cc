#include "core/device.h"

#include <doctest/doctest.h>

namespace recsched {
namespace {

TEST_CASE("a device id prints as its kind and index and parses back, refusing anything else") {
  CHECK(DeviceId{DeviceKind::kCpu, 0}.name() == "cpu0");
  CHECK(DeviceId{DeviceKind::kGpu, 12}.name() == "gpu12");
  for (const char* name : {"cpu0", "cpu7", "gpu0", "gpu15", "cpu4294967295"}) {
    CAPTURE(name);
    const auto id = DeviceId::parse(name);
    REQUIRE(id.has_value());
    CHECK(id->name() == name);
  }
  CHECK(DeviceId::parse("gpu3")->kind == DeviceKind::kGpu);
  CHECK(DeviceId::parse("gpu3")->index == 3);
  for (const char* bad : {"", "cpu", "gpu-1", "cpu01", "cpu1x", "tpu0", "CPU0", "cpu 1",
                          "cpu4294967296"}) {
    CAPTURE(bad);
    CHECK_FALSE(DeviceId::parse(bad).has_value());
  }
}

}  // namespace
}  // namespace recsched
