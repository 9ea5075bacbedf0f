// A CPU wake-up latency request: the kernel's CPU latency QoS, held through
// /dev/cpu_dma_latency (Documentation/power/pm_qos_interface.rst). While the file is open
// with a value written, no CPU's idle governor enters a state whose exit latency exceeds
// that many microseconds; closing it, or the process ending however it ends, drops the
// request. tuned's latency-performance profile does the same (its force_latency).
//
// Why recschedd has it (limits.cpu_latency_us, off by default): a query that finds the
// I/O thread or a worker asleep on a halted core pays that core's wake-up. On the VM of
// docs/benchmarks.md (cpuidle-haltpoll with its guest polling off) a request of 0 makes an
// idle vCPU poll instead of halting, which took 46 us off NCF's 164-item query and 110 off
// RMC1's. What it costs: idle cores that poll or stay in shallow states draw more power
// (on a VM, host CPU time), which recschedd's power estimate does not count.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "core/status.h"

namespace recsched::daemon {

class CpuLatencyRequest {
 public:
  static constexpr const char* kDevice = "/dev/cpu_dma_latency";

  /// Opens `device` and writes `us` (a native-endian 32-bit integer, as the kernel reads
  /// it); held until destroyed. An error names the file and why (usually: only root may
  /// write it; systemd/60-recsched-cpu-latency.rules lets group recsched).
  static Result<CpuLatencyRequest> hold(uint32_t us, const std::string& device = kDevice);

  CpuLatencyRequest(CpuLatencyRequest&& other) noexcept;
  CpuLatencyRequest& operator=(CpuLatencyRequest&& other) noexcept;
  CpuLatencyRequest(const CpuLatencyRequest&) = delete;
  CpuLatencyRequest& operator=(const CpuLatencyRequest&) = delete;
  ~CpuLatencyRequest();

  uint32_t requested_us() const { return us_; }

  /// What the device reports now: the least of every process's request (this one's
  /// included), in microseconds; an error if it cannot be read.
  Result<int64_t> effective_us() const;

 private:
  CpuLatencyRequest(int fd, uint32_t us, std::string device)
      : fd_(fd), us_(us), device_(std::move(device)) {}
  int fd_ = -1;
  uint32_t us_ = 0;
  std::string device_;
};

/// limits.cpu_latency_us as a process holds it, for its life: none asked, held, or not held
/// and why. recschedd holds it from start-up, recsched-profile while it measures; both report
/// it the same way (/v1/stats and `recsched-profile run --json`, "cpu_latency").
class CpuLatencyHold {
 public:
  /// Holds `us` if one is asked. Never fails: a request that cannot be held is kept with why.
  static CpuLatencyHold take(std::optional<uint32_t> us,
                             const std::string& device = CpuLatencyRequest::kDevice);

  bool asked() const { return asked_.has_value(); }
  bool held() const { return held_.has_value(); }
  /// The microseconds held, or nullopt where none is (none asked, or not held).
  std::optional<uint32_t> held_us() const { return held_ ? asked_ : std::nullopt; }
  /// Why the request is not held ("" if it is, or none was asked).
  const std::string& error() const { return error_; }
  /// The value in effect now, as text for a log line: "N us", or why it cannot be read.
  std::string in_effect() const;
  /// null when none was asked; else {requested_us, held, effective_us} or
  /// {requested_us, held: false, error}.
  nlohmann::json report() const;

 private:
  std::optional<uint32_t> asked_;
  std::optional<CpuLatencyRequest> held_;
  std::string error_;
};

}  // namespace recsched::daemon
