#include "daemon/fleet.h"


#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>

namespace recsched::daemon {

using nlohmann::json;

namespace {

// Rounds to 0.01 for JSON, so the API does not print 15 digits of a model's guess.
double round2(double x) { return std::round(x * 100) / 100; }

// Rounds to four significant digits: a utilisation of 5e-6 stays visible.
double significant(double x) {
  if (x == 0 || !std::isfinite(x)) return x;
  const double scale = std::pow(10.0, 3 - std::floor(std::log10(std::fabs(x))));
  return std::round(x * scale) / scale;
}

// Six significant digits, no exponent for the magnitudes a host reports.
std::string number(double x) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.6g", x);
  return buf;
}

// A Kubernetes label key's name part from `s`: '-', '_', '.' and alphanumerics (anything
// else becomes '-'), beginning and ending with an alphanumeric, at most 63 characters.
std::string label_name(const std::string& s) {
  auto alnum = [](char c) { return std::isalnum(static_cast<unsigned char>(c)) != 0; };
  std::string out;
  for (char c : s) out += alnum(c) || c == '-' || c == '_' || c == '.' ? c : '-';
  if (out.size() > 63) out.resize(63);
  while (!out.empty() && !alnum(out.back())) out.pop_back();
  size_t first = 0;
  while (first < out.size() && !alnum(out[first])) ++first;
  return out.substr(first);
}

std::string capacity_class(double qps) {
  if (qps >= 1000) return "high";
  if (qps >= 100) return "medium";
  if (qps > 0) return "low";
  return "none";
}

}  // namespace

json capacity_json(const policies::HostCapacity& capacity, const FleetState& state,
                   double max_utilisation) {
  json models = json::array();
  for (const policies::ModelCapacity& m : capacity.models) {
    json devices = json::array();
    for (const policies::DeviceCapacity& d : m.devices) {
      devices.push_back({{"device", d.device},
                         {"capacity_qps", round2(d.capacity_qps)},
                         {"service_ms", std::round(d.service_ms * 1000) / 1000},
                         {"workers_per_query", d.workers_per_query},
                         {"degraded", d.degraded}});
    }
    models.push_back({{"model", m.model},
                      {"target_ms", m.target_ms},
                      {"items", round2(m.items)},
                      {"capacity_qps", round2(m.capacity_qps)},
                      {"offered_qps", round2(m.offered_qps)},
                      {"served_qps", round2(m.served_qps)},
                      {"headroom_qps", round2(m.headroom_qps)},
                      {"devices", std::move(devices)}});
  }
  return {{"host",
           {{"ready", state.ready},
            {"draining", state.draining},
            {"degraded", state.degraded()},
            {"devices", state.devices},
            {"degraded_devices", state.degraded_devices},
            {"utilisation", significant(capacity.utilisation)},
            {"mix_capacity_qps", round2(capacity.mix_capacity_qps)},
            {"served_qps", round2(capacity.served_qps)},
            {"headroom_qps", round2(capacity.headroom_qps)},
            {"max_utilisation", max_utilisation}}},
          {"models", std::move(models)},
          {"model",
           "modelled from the profiles (corrected by what serving measured): each device's "
           "throughput at the model's recent query size within its admission bound, times "
           "max_utilisation; not measured at the target"}};
}

int agent_weight_percent(const policies::HostCapacity& capacity, double weight_qps) {
  const double full = weight_qps > 0 ? weight_qps : capacity.mix_capacity_qps;
  if (full <= 0) return 1;
  const double pct = std::round(100.0 * capacity.headroom_qps / full);
  return static_cast<int>(std::clamp(pct, 1.0, 256.0));
}

std::string agent_reply(const policies::HostCapacity& capacity, const FleetState& state,
                        double weight_qps) {
  if (state.draining || state.degraded()) return "drain\n";
  if (!state.ready) return "down\n";
  return "up ready " + std::to_string(agent_weight_percent(capacity, weight_qps)) + "%\n";
}

std::string orca_load_report(const policies::HostCapacity& capacity, double errors_per_s) {
  return "TEXT application_utilization=" + number(std::min(1.0, capacity.utilisation)) +
         ", rps_fractional=" + number(capacity.served_qps) + ", eps=" + number(errors_per_s) +
         ", named_metrics.headroom_qps=" + number(capacity.headroom_qps);
}

std::string nfd_features(const policies::HostCapacity& capacity, int cpu_devices,
                         int gpu_devices) {
  std::string out =
      "# recschedd's node features (Node Feature Discovery, local source); rewritten at start "
      "and after re-profiling\n";
  out += "recsched.io/cpu-devices=" + std::to_string(cpu_devices) + "\n";
  out += "recsched.io/gpu-devices=" + std::to_string(gpu_devices) + "\n";
  out += std::string("recsched.io/gpu=") + (gpu_devices > 0 ? "true" : "false") + "\n";
  for (const policies::ModelCapacity& m : capacity.models) {
    const std::string name = label_name("capacity-class." + m.model);
    out += "recsched.io/" + name + "=" + capacity_class(m.capacity_qps) + "\n";
  }
  return out;
}

Status write_file_atomically(const std::string& path, const std::string& text) {
  // A hidden name beside it: Node Feature Discovery reads every file of its directory but
  // those starting with '.', so it never sees half a file.
  const std::filesystem::path target(path);
  const std::string tmp =
      (target.parent_path() / ("." + target.filename().string() + ".tmp")).string();
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) return unavailable("cannot write " + tmp + ": " + std::strerror(errno));
    out << text;
    out.flush();
    if (!out) {
      std::remove(tmp.c_str());
      return unavailable("cannot write " + tmp + ": " + std::strerror(errno));
    }
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    const std::string why = std::strerror(errno);
    std::remove(tmp.c_str());
    return unavailable("cannot rename " + tmp + " to " + path + ": " + why);
  }
  return Status::ok();
}

}  // namespace recsched::daemon
