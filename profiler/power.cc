#include "profiler/power.h"

#include <dlfcn.h>
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <map>
#include <stdexcept>
#include <system_error>
#include <utility>

#include "profiler/file_io.h"

namespace recsched::profiler {
namespace {

// ---- small file reads (sysfs) ----

// Reads a small sysfs file whole, without trailing whitespace.
// kUnavailable "cannot read PATH: <errno text>" + hint.
Result<std::string> read_small_file(const std::string& path, std::string_view hint = {}) {
  auto fail = [&](int err) {
    std::string msg = "cannot read " + path + ": " + std::generic_category().message(err);
    if (!hint.empty()) msg += " (" + std::string(hint) + ")";
    return unavailable(std::move(msg));
  };
  std::string text;
  if (const int err = read_whole_file(path, text)) return fail(err);
  while (!text.empty() && std::isspace(static_cast<unsigned char>(text.back()))) text.pop_back();
  return text;
}

Result<uint64_t> read_uint(const std::string& path, std::string_view hint = {}) {
  RECSCHED_ASSIGN_OR_RETURN(std::string text, read_small_file(path, hint));
  uint64_t value = 0;
  const char* end = text.data() + text.size();
  const auto [ptr, ec] = std::from_chars(text.data(), end, value);
  if (ec != std::errc() || ptr != end || text.empty()) {
    return unavailable(path + ": expected an unsigned integer, got '" + text + "'");
  }
  return value;
}

// Parses a decimal int at the front of `s`, advancing it; false if there is none.
bool take_int(std::string_view& s, int& out) {
  const auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  if (ec != std::errc() || out < 0) return false;
  s.remove_prefix(static_cast<size_t>(ptr - s.data()));
  return true;
}

constexpr std::string_view kEnergyHint = "RAPL needs root or read access to energy_uj";

// ---- NVML, declared here so there is no build-time dependency ----

using nvmlReturn_t = int;
using nvmlDevice_t = nvmlDevice_st*;
constexpr nvmlReturn_t kNvmlSuccess = 0;
constexpr nvmlReturn_t kNvmlErrorNotSupported = 3;
constexpr const char* kNvmlLibrary = "libnvidia-ml.so.1";

struct NvmlApi {
  nvmlReturn_t (*init)() = nullptr;
  nvmlReturn_t (*shutdown)() = nullptr;
  nvmlReturn_t (*by_index)(unsigned int, nvmlDevice_t*) = nullptr;
  nvmlReturn_t (*by_pci_bus_id)(const char*, nvmlDevice_t*) = nullptr;
  nvmlReturn_t (*total_energy)(nvmlDevice_t, unsigned long long*) = nullptr;  // may be null
  nvmlReturn_t (*power_usage)(nvmlDevice_t, unsigned int*) = nullptr;
  const char* (*error_string)(nvmlReturn_t) = nullptr;
  std::string load_error;  // empty once every required symbol is bound
};

template <class Fn>
bool bind(void* lib, const char* symbol, Fn& fn, std::string& error) {
  fn = reinterpret_cast<Fn>(::dlsym(lib, symbol));
  if (fn == nullptr && error.empty()) {
    const char* why = ::dlerror();
    error = std::string(kNvmlLibrary) + " lacks " + symbol + ": " + (why ? why : "not found");
  }
  return fn != nullptr;
}

NvmlApi load_nvml() {
  NvmlApi api;
  void* lib = ::dlopen(kNvmlLibrary, RTLD_NOW);
  if (lib == nullptr) {
    const char* why = ::dlerror();
    api.load_error = std::string(kNvmlLibrary) +
                     " not found (no NVIDIA driver): " + (why ? why : "dlopen failed");
    return api;
  }
  // Never dlclose'd: see NvmlMeter.
  bind(lib, "nvmlInit_v2", api.init, api.load_error);
  bind(lib, "nvmlShutdown", api.shutdown, api.load_error);
  bind(lib, "nvmlDeviceGetHandleByIndex_v2", api.by_index, api.load_error);
  bind(lib, "nvmlDeviceGetHandleByPciBusId_v2", api.by_pci_bus_id, api.load_error);
  bind(lib, "nvmlDeviceGetPowerUsage", api.power_usage, api.load_error);
  bind(lib, "nvmlErrorString", api.error_string, api.load_error);
  // Optional: drivers before Volta support lack it; the meter then integrates power.
  api.total_energy = reinterpret_cast<decltype(api.total_energy)>(
      ::dlsym(lib, "nvmlDeviceGetTotalEnergyConsumption"));
  return api;
}

// The process-wide NVML binding, loaded on first use (thread-safe static init).
Result<const NvmlApi*> nvml_api() {
  static const NvmlApi api = load_nvml();
  if (!api.load_error.empty()) return unavailable(api.load_error);
  return &api;
}

Status nvml_error(const NvmlApi& api, const std::string& what, const char* call, nvmlReturn_t rc) {
  return unavailable("nvml: " + what + ": " + call + ": " + api.error_string(rc));
}

std::string format_watts(double w) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%g W", w);
  return buf;
}

// "CPU (4 cores) at 32 W active, 6 W idle".
std::string estimate_text(const EstimateOptions& options) {
  return options.what + " at " + format_watts(options.active_w) + " active, " +
         format_watts(options.idle_w) + " idle";
}

}  // namespace

// ---- RaplMeter ----

Result<std::unique_ptr<PowerMeter>> RaplMeter::open(const RaplOptions& options) {
  const std::string& root = options.root;
  const Status none = unavailable("no RAPL zones under " + root);

  // Zones are listed flat under the root, as in /sys/class/powercap: intel-rapl:N for a
  // top-level zone (a package, or psys, which is skipped) and intel-rapl:N:M for its
  // subzones. intel-rapl-mmio:* duplicates a package and is skipped by the name match.
  struct Package {
    std::string dir;
    std::vector<std::string> dram_dirs;
  };
  std::map<int, Package> packages;                    // by K of "package-K"
  std::map<int, int> package_by_zone;                 // zone N -> K
  std::vector<std::pair<int, std::string>> subzones;  // (N, dir)
  std::error_code ec;
  std::vector<std::string> names;
  for (std::filesystem::directory_iterator it(root, ec), end; !ec && it != end; it.increment(ec)) {
    names.push_back(it->path().filename().string());
  }
  if (ec) return none;
  std::sort(names.begin(), names.end());
  for (const std::string& name : names) {
    std::string_view rest = name;
    constexpr std::string_view kPrefix = "intel-rapl:";
    if (!rest.starts_with(kPrefix)) continue;
    rest.remove_prefix(kPrefix.size());
    int zone = 0;
    int sub = 0;
    if (!take_int(rest, zone)) continue;
    const std::string dir = root + "/" + name;
    if (rest.empty()) {
      RECSCHED_ASSIGN_OR_RETURN(std::string zone_name, read_small_file(dir + "/name"));
      std::string_view k = zone_name;
      int package = 0;
      if (!k.starts_with("package-")) continue;
      k.remove_prefix(std::string_view("package-").size());
      if (!take_int(k, package) || !k.empty()) continue;
      packages[package].dir = dir;
      package_by_zone[zone] = package;
    } else if (rest.starts_with(':')) {
      rest.remove_prefix(1);
      if (take_int(rest, sub) && rest.empty()) subzones.emplace_back(zone, dir);
    }
  }
  if (packages.empty()) return none;
  if (options.include_dram) {
    for (const auto& [zone, dir] : subzones) {
      const auto owner = package_by_zone.find(zone);
      if (owner == package_by_zone.end()) continue;
      RECSCHED_ASSIGN_OR_RETURN(std::string sub_name, read_small_file(dir + "/name"));
      if (sub_name == "dram") packages[owner->second].dram_dirs.push_back(dir);
    }
  }

  std::vector<int> selected = options.packages;
  if (selected.empty()) {
    for (const auto& [package, unused] : packages) selected.push_back(package);
  }
  std::sort(selected.begin(), selected.end());
  selected.erase(std::unique(selected.begin(), selected.end()), selected.end());

  std::vector<Counter> counters;
  auto add_counter = [&](std::string label, const std::string& dir) -> Status {
    Counter c{std::move(label), dir + "/energy_uj"};
    RECSCHED_ASSIGN_OR_RETURN(c.max_uj, read_uint(dir + "/max_energy_range_uj"));
    RECSCHED_ASSIGN_OR_RETURN(c.prev_uj, read_uint(c.path, kEnergyHint));
    counters.push_back(std::move(c));
    return Status::ok();
  };
  for (int package : selected) {
    const auto it = packages.find(package);
    if (it == packages.end()) {
      std::string found;
      for (const auto& [k, unused] : packages)
        found += (found.empty() ? "" : ", ") + std::to_string(k);
      return invalid_argument("RAPL package " + std::to_string(package) + " not under " + root +
                              " (found " + found + ")");
    }
    RECSCHED_RETURN_IF_ERROR(add_counter("package-" + std::to_string(package), it->second.dir));
    for (const std::string& dir : it->second.dram_dirs) {
      RECSCHED_RETURN_IF_ERROR(add_counter("dram", dir));
    }
  }
  return std::unique_ptr<PowerMeter>(new RaplMeter(root, std::move(counters)));
}

// See PowerMeter::describe.
std::string RaplMeter::describe() const {
  // counters_'s labels never change after open(), so no lock is needed.
  std::string out = "rapl: ";
  for (size_t i = 0; i < counters_.size(); ++i) {
    if (i > 0) out += counters_[i].label == "dram" ? " + " : ", ";
    out += counters_[i].label;
  }
  return out + " (" + root_ + ")";
}

// See PowerMeter::energy_joules.
Result<double> RaplMeter::energy_joules() {
  std::lock_guard lock(mu_);
  // Read every counter before updating any, so a failed read leaves the meter as it was.
  std::vector<uint64_t> now(counters_.size());
  for (size_t i = 0; i < counters_.size(); ++i) {
    RECSCHED_ASSIGN_OR_RETURN(now[i], read_uint(counters_[i].path, kEnergyHint));
  }
  for (size_t i = 0; i < counters_.size(); ++i) {
    Counter& c = counters_[i];
    const uint64_t cur = now[i];
    // A value above max (not seen in practice) must not make the wrapped delta negative.
    total_uj_ +=
        cur >= c.prev_uj ? cur - c.prev_uj : (c.max_uj - std::min(c.prev_uj, c.max_uj)) + cur;
    c.prev_uj = cur;
  }
  return static_cast<double>(total_uj_) * 1e-6;
}

// ---- NvmlMeter ----

Result<std::unique_ptr<PowerMeter>> NvmlMeter::open(int gpu_index) {
  if (gpu_index < 0) return invalid_argument("GPU index " + std::to_string(gpu_index) + " < 0");
  return open_device("GPU " + std::to_string(gpu_index), gpu_index, "");
}

Result<std::unique_ptr<PowerMeter>> NvmlMeter::open_by_pci_bus_id(const std::string& pci_bus_id) {
  return open_device("GPU " + pci_bus_id, 0, pci_bus_id);
}

Result<std::unique_ptr<PowerMeter>> NvmlMeter::open_device(const std::string& what, int gpu_index,
                                                           const std::string& pci_bus_id) {
  RECSCHED_ASSIGN_OR_RETURN(const NvmlApi* api, nvml_api());
  nvmlReturn_t rc = api->init();
  if (rc != kNvmlSuccess) return nvml_error(*api, what, "nvmlInit_v2", rc);
  // From here the meter's destructor balances the nvmlInit_v2 above.
  std::unique_ptr<NvmlMeter> meter(new NvmlMeter());
  meter->what_ = what;
  if (pci_bus_id.empty()) {
    rc = api->by_index(static_cast<unsigned int>(gpu_index), &meter->device_);
    if (rc != kNvmlSuccess) return nvml_error(*api, what, "nvmlDeviceGetHandleByIndex_v2", rc);
  } else {
    rc = api->by_pci_bus_id(pci_bus_id.c_str(), &meter->device_);
    if (rc != kNvmlSuccess) return nvml_error(*api, what, "nvmlDeviceGetHandleByPciBusId_v2", rc);
  }
  unsigned long long mj = 0;
  rc = api->total_energy ? api->total_energy(meter->device_, &mj) : kNvmlErrorNotSupported;
  if (rc == kNvmlSuccess) {
    meter->mode_ = Mode::kEnergyCounter;
    meter->start_mj_ = mj;
  } else if (rc == kNvmlErrorNotSupported) {
    unsigned int mw = 0;
    rc = api->power_usage(meter->device_, &mw);
    if (rc != kNvmlSuccess) return nvml_error(*api, what, "nvmlDeviceGetPowerUsage", rc);
    meter->mode_ = Mode::kPowerIntegral;
    meter->last_w_ = mw * 1e-3;
    meter->last_at_ = Clock::now();
  } else {
    return nvml_error(*api, what, "nvmlDeviceGetTotalEnergyConsumption", rc);
  }
  return std::unique_ptr<PowerMeter>(std::move(meter));
}

NvmlMeter::~NvmlMeter() {
  // A meter exists only after nvmlInit_v2 succeeded, so the library is loaded.
  (*nvml_api())->shutdown();
}

// See PowerMeter::describe.
std::string NvmlMeter::describe() const {
  return "nvml: " + what_ +
         (mode_ == Mode::kEnergyCounter ? " (total-energy counter)"
                                        : " (power x time between reads, trapezoid)");
}

// See PowerMeter::energy_joules.
Result<double> NvmlMeter::energy_joules() {
  const NvmlApi& api = **nvml_api();
  if (mode_ == Mode::kEnergyCounter) {
    unsigned long long mj = 0;
    const nvmlReturn_t rc = api.total_energy(device_, &mj);
    if (rc != kNvmlSuccess) {
      return nvml_error(api, what_, "nvmlDeviceGetTotalEnergyConsumption", rc);
    }
    return mj >= start_mj_ ? static_cast<double>(mj - start_mj_) * 1e-3 : 0.0;
  }
  std::lock_guard lock(mu_);
  unsigned int mw = 0;
  const nvmlReturn_t rc = api.power_usage(device_, &mw);
  if (rc != kNvmlSuccess) return nvml_error(api, what_, "nvmlDeviceGetPowerUsage", rc);
  const Clock::time_point now = Clock::now();
  const double w = mw * 1e-3;
  integral_j_ += 0.5 * (last_w_ + w) * std::chrono::duration<double>(now - last_at_).count();
  last_w_ = w;
  last_at_ = now;
  return integral_j_;
}

// ---- EstimatedMeter ----

EstimatedMeter::EstimatedMeter(EstimateOptions options, std::function<double()> now_seconds)
    : options_(std::move(options)), now_seconds_(std::move(now_seconds)), start_s_(now_seconds_()) {
  if (options_.parked_w < 0) options_.parked_w = options_.idle_w;
  if (!std::isfinite(options_.active_w) || !std::isfinite(options_.idle_w) || options_.idle_w < 0 ||
      options_.idle_w > options_.active_w || !std::isfinite(options_.parked_w) ||
      options_.parked_w > options_.idle_w) {
    throw std::invalid_argument(
        "power estimate for " + options_.what + ": need 0 <= idle_w <= active_w, got idle " +
        format_watts(options_.idle_w) + ", active " + format_watts(options_.active_w) +
        " (and parked <= idle, got parked " + format_watts(options_.parked_w) + ")");
  }
}

double EstimatedMeter::steady_seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

void EstimatedMeter::add_busy(double busy_device_seconds) {
  if (!(busy_device_seconds > 0)) return;  // also drops NaN
  busy_s_.fetch_add(busy_device_seconds, std::memory_order_relaxed);
}

void EstimatedMeter::add_parked(double parked_device_seconds) {
  if (!(parked_device_seconds > 0)) return;
  parked_s_.fetch_add(parked_device_seconds, std::memory_order_relaxed);
}

// See PowerMeter::describe.
std::string EstimatedMeter::describe() const { return "estimated: " + estimate_text(options_); }

// See PowerMeter::energy_joules.
Result<double> EstimatedMeter::energy_joules() {
  const double wall = std::max(0.0, now_seconds_() - start_s_);
  const double busy = busy_s_.load(std::memory_order_relaxed);
  const double parked = parked_s_.load(std::memory_order_relaxed);
  return options_.idle_w * wall + (options_.active_w - options_.idle_w) * busy -
         (options_.idle_w - options_.parked_w) * parked;
}

// ---- factories ----

MeterChoice cpu_meter(const PowerConfig& config, std::vector<int> packages, int cores) {
  if (cores < 1) throw std::invalid_argument("cpu_meter: cores must be >= 1");
  Result<std::unique_ptr<PowerMeter>> rapl =
      RaplMeter::open(RaplOptions{.root = config.powercap_root, .packages = std::move(packages)});
  if (rapl.has_value()) {
    std::string note = (*rapl)->describe();
    return {std::move(rapl).value(), std::move(note)};
  }
  EstimateOptions options{.active_w = config.cpu_active_w_per_core * cores,
                          .idle_w = config.cpu_idle_w_per_core * cores,
                          .parked_w = config.cpu_parked_w_per_core * cores,
                          .what = "CPU (" + std::to_string(cores) + " cores)"};
  std::string note =
      "RAPL unavailable (" + rapl.status().message() + "): estimating " + estimate_text(options);
  return {std::make_unique<EstimatedMeter>(std::move(options)), std::move(note)};
}

MeterChoice gpu_meter(const PowerConfig& config, int gpu_index, const std::string& pci_bus_id) {
  Result<std::unique_ptr<PowerMeter>> nvml =
      pci_bus_id.empty() ? NvmlMeter::open(gpu_index) : NvmlMeter::open_by_pci_bus_id(pci_bus_id);
  if (nvml.has_value()) {
    std::string note = (*nvml)->describe();
    return {std::move(nvml).value(), std::move(note)};
  }
  EstimateOptions options{
      .active_w = config.gpu_active_w,
      .idle_w = config.gpu_idle_w,
      .what = "GPU " + (pci_bus_id.empty() ? std::to_string(gpu_index) : pci_bus_id)};
  std::string note =
      "NVML unavailable (" + nvml.status().message() + "): estimating " + estimate_text(options);
  return {std::make_unique<EstimatedMeter>(std::move(options)), std::move(note)};
}

}  // namespace recsched::profiler
