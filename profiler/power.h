// Power meters: cumulative energy per device from Linux RAPL (powercap), NVIDIA NVML
// (loaded at run time with dlopen, never a build-time dependency) or an estimate from
// busy time, each reading labelled with its source. Depends on core.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/device.h"
#include "core/status.h"

struct nvmlDevice_st;  // NVML's opaque device, as nvml.h declares it

namespace recsched::profiler {

/// A cumulative energy counter for one device (a CPU package set, a GPU).
/// Ownership: the caller owns the meter; it holds no resources other meters need.
/// Threading: every method may be called from any thread (implementations serialise
/// energy_joules()).
class PowerMeter {
 public:
  virtual ~PowerMeter() = default;
  /// "rapl", "nvml" or "estimated".
  virtual std::string_view source() const = 0;
  /// One line for logs, e.g. "rapl: package-0 + dram (/sys/class/powercap)".
  virtual std::string describe() const = 0;
  /// Joules consumed since the meter was opened (monotonic; counter wrap-around
  /// handled). kUnavailable, with the reason, if the counter cannot be read now; the
  /// meter is then unchanged and a later call may succeed.
  virtual Result<double> energy_joules() = 0;
};

struct RaplOptions {
  std::string root = "/sys/class/powercap";
  std::vector<int> packages;  ///< N of each "package-N" zone to sum; empty = all
  bool include_dram = true;   ///< also sum each selected package's "dram" subzone
};

/// Energy from Linux powercap RAPL zones: ROOT/intel-rapl:N (name "package-N") and its
/// subzones ROOT/intel-rapl:N:M named "dram" (other subzones, e.g. "core", are inside
/// the package figure and are skipped). Each counter wraps to 0 after its
/// max_energy_range_uj; every read adds, per counter,
///   delta = cur >= prev ? cur - prev : (max - prev) + cur
/// so reads must come more often than one wrap period (minutes at full load).
class RaplMeter final : public PowerMeter {
 public:
  /// Opens the selected zones and reads every counter once, so a meter that opens can
  /// read. kUnavailable if ROOT is missing or has no package zones ("no RAPL zones
  /// under ROOT"), or if a file cannot be read (naming it and the errno text; on
  /// recent kernels energy_uj is root-only) or holds no number; kInvalidArgument if a
  /// requested package is not under ROOT. energy_joules() fails the same way.
  static Result<std::unique_ptr<PowerMeter>> open(const RaplOptions& options);

  std::string_view source() const override { return "rapl"; }
  std::string describe() const override;
  Result<double> energy_joules() override;

 private:
  // One energy_uj file and its last reading.
  struct Counter {
    std::string label;     // "package-0" or "dram"
    std::string path;      // .../energy_uj
    uint64_t max_uj = 0;   // max_energy_range_uj
    uint64_t prev_uj = 0;  // value at the previous read
  };

  RaplMeter(std::string root, std::vector<Counter> counters)
      : root_(std::move(root)), counters_(std::move(counters)) {}

  const std::string root_;
  std::mutex mu_;
  std::vector<Counter> counters_;  // guarded by mu_
  uint64_t total_uj_ = 0;          // guarded by mu_
};

/// Energy of one NVIDIA GPU through NVML. libnvidia-ml.so.1 is loaded with dlopen on
/// first use and stays loaded for the life of the process (a function-local static:
/// unloading a driver library while another thread may be inside it is unsafe). Each
/// meter calls nvmlInit_v2 when it opens and nvmlShutdown when destroyed; NVML counts
/// those calls itself, so meters share one initialisation.
/// Prefers the total-energy counter (Volta and newer); where it is not supported,
/// integrates power x time between reads (trapezoid), so read at least every second
/// or so while the load changes.
class NvmlMeter final : public PowerMeter {
 public:
  /// The GPU with this NVML index. kInvalidArgument if gpu_index < 0; kUnavailable
  /// "libnvidia-ml.so.1 not found (no NVIDIA driver): <dlerror>" without a driver, or
  /// with nvmlErrorString's text if an NVML call fails (e.g. no such GPU).
  static Result<std::unique_ptr<PowerMeter>> open(int gpu_index);
  /// The GPU with this PCI bus id, e.g. "0000:17:00.0"; failures as open(int).
  static Result<std::unique_ptr<PowerMeter>> open_by_pci_bus_id(const std::string& pci_bus_id);

  NvmlMeter(const NvmlMeter&) = delete;
  NvmlMeter& operator=(const NvmlMeter&) = delete;
  ~NvmlMeter() override;

  std::string_view source() const override { return "nvml"; }
  std::string describe() const override;
  Result<double> energy_joules() override;

 private:
  enum class Mode { kEnergyCounter, kPowerIntegral };

  NvmlMeter() = default;
  static Result<std::unique_ptr<PowerMeter>> open_device(const std::string& what, int gpu_index,
                                                         const std::string& pci_bus_id);

  std::string what_;  // "GPU 0" or "GPU 0000:17:00.0"
  nvmlDevice_st* device_ = nullptr;
  Mode mode_ = Mode::kEnergyCounter;
  std::mutex mu_;
  uint64_t start_mj_ = 0;      // kEnergyCounter: counter at open
  double integral_j_ = 0.0;    // kPowerIntegral: guarded by mu_
  double last_w_ = 0.0;        // kPowerIntegral: guarded by mu_
  Clock::time_point last_at_;  // kPowerIntegral: guarded by mu_
};

/// Whole-device figures for EstimatedMeter.
struct EstimateOptions {
  double active_w = 0.0;  ///< draw when fully busy
  double idle_w = 0.0;    ///< draw when idle; 0 <= idle_w <= active_w
  /// Draw when fully parked (every core asleep in a deep idle state); < 0: as idle_w.
  double parked_w = -1.0;
  std::string what;  ///< the device, for describe(), e.g. "CPU (64 cores)"
};

/// An estimate for when no counter is readable (no RAPL access, no GPU):
///   energy = idle_w * wall + (active_w - idle_w) * busy - (idle_w - parked_w) * parked
/// where wall is the time since construction (by `now_seconds`), busy the sum of
/// add_busy() calls and parked the sum of add_parked() calls. Callers reach add_busy() through the
/// PowerMeter returned by the factories with dynamic_cast<EstimatedMeter*> when source() ==
/// "estimated".
class EstimatedMeter final : public PowerMeter {
 public:
  /// Throws std::invalid_argument unless 0 <= idle_w <= active_w (both finite):
  /// these come from configuration, checked at startup.
  explicit EstimatedMeter(EstimateOptions options,
                          std::function<double()> now_seconds = steady_seconds);

  /// Adds device-seconds of full activity: work that kept the whole device busy for
  /// this long (2 workers busy 0.5 s on a 4-core device: 0.25). Values that are not
  /// positive are ignored. Lock-free; any thread.
  void add_busy(double busy_device_seconds);
  /// Adds device-seconds parked: workers kept asleep (min-energy's parking), counted at
  /// parked_w instead of idle_w. Same rules as add_busy.
  void add_parked(double parked_device_seconds);

  std::string_view source() const override { return "estimated"; }
  /// Says the watts assumed, e.g. "estimated: CPU (4 cores) at 32 W active, 6 W idle".
  std::string describe() const override;
  /// Never fails.
  Result<double> energy_joules() override;

  /// Seconds on std::chrono::steady_clock (the default clock).
  static double steady_seconds();

 private:
  EstimateOptions options_;  // parked_w settled by the constructor
  const std::function<double()> now_seconds_;
  const double start_s_;
  std::atomic<double> busy_s_{0.0};
  std::atomic<double> parked_s_{0.0};
};

/// Power figures for the estimator, and where RAPL lives. The watts are rough values
/// for current server hardware; an operator should set them for theirs.
struct PowerConfig {
  /// A 250-350 W server CPU with 32-64 cores draws roughly 5-10 W per busy core,
  /// uncore included.
  double cpu_active_w_per_core = 8.0;
  /// Such a package idles around 60-100 W, about 1-1.5 W per core.
  double cpu_idle_w_per_core = 1.5;
  /// A core parked in a deep C-state (C6) draws a fraction of a watt.
  double cpu_parked_w_per_core = 0.2;
  /// A100 SXM's board limit is 400 W (H100 PCIe 350 W, H100 SXM 700 W).
  double gpu_active_w = 400.0;
  /// Data-centre GPUs idle at about 50-90 W with memory clocks up.
  double gpu_idle_w = 70.0;
  std::string powercap_root = "/sys/class/powercap";
};

/// A meter and a line for the log saying which source it uses, or why it fell back.
struct MeterChoice {
  std::unique_ptr<PowerMeter> meter;  ///< never null
  std::string note;  ///< describe() if measured, else e.g. "RAPL unavailable (...): estimating ..."
};

/// RAPL over `packages` (empty = all) with dram, else an EstimatedMeter with the
/// per-core watts x `cores`. Throws std::invalid_argument if cores < 1 or the watts
/// are invalid (see EstimatedMeter).
MeterChoice cpu_meter(const PowerConfig& config, std::vector<int> packages, int cores);

/// NVML for the GPU with `pci_bus_id` if non-empty, else `gpu_index`; else an
/// EstimatedMeter with gpu_active_w and gpu_idle_w. Throws std::invalid_argument if
/// the watts are invalid (see EstimatedMeter).
MeterChoice gpu_meter(const PowerConfig& config, int gpu_index, const std::string& pci_bus_id);

}  // namespace recsched::profiler
