#include "sim/host.h"

#include <algorithm>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>

namespace recsched::sim {
namespace {

bool is_gpu(const std::string& id) { return id.rfind("gpu", 0) == 0; }

// Device facts the file has (recsched-profile's "devices"): cores per CPU device.
std::map<std::string, int> cores_in(const std::string& path) {
  std::map<std::string, int> cores;
  std::ifstream f(path);
  const nlohmann::json j = nlohmann::json::parse(f, nullptr, false);
  if (j.is_object() && j.contains("devices") && j["devices"].is_array()) {
    for (const auto& d : j["devices"]) {
      if (d.is_object() && d.contains("id") && d.contains("cores") && d["cores"].is_number())
        cores[d["id"].get<std::string>()] = d["cores"].get<int>();
    }
  }
  return cores;
}

void add_points(const ProfileTable& from, bool gpus_only, double speed, ProfileTable* to) {
  for (const auto& [model, device] : from.keys()) {
    if (gpus_only && !is_gpu(device)) continue;
    for (ProfilePoint p : from.points(model, device)) {
      p.p50_us *= speed;
      p.p50_single_us *= speed;
      p.p95_us *= speed;
      p.items_per_s /= speed;
      p.energy_per_item_j *= speed;
      to->add(model, device, p);
    }
  }
}

}  // namespace

Result<Host> load_host(const HostOptions& options) {
  if (!(options.speed > 0)) return invalid_argument("host speed must be > 0");
  Host host;
  std::string note;
  RECSCHED_ASSIGN_OR_RETURN(ProfileTable cpu_file, load_profiles(options.profiles, &note));
  if (!note.empty()) host.note = options.profiles + ": " + note;
  add_points(cpu_file, false, options.speed, &host.profiles);
  if (!options.gpu_profiles.empty()) {
    note.clear();
    RECSCHED_ASSIGN_OR_RETURN(ProfileTable gpu_file, load_profiles(options.gpu_profiles, &note));
    if (!note.empty()) host.note += (host.note.empty() ? "" : "; ") + options.gpu_profiles + ": " + note;
    add_points(gpu_file, true, options.speed, &host.profiles);
  }
  const std::map<std::string, int> cores = cores_in(options.profiles);
  std::vector<std::string> ids;
  for (const auto& [model, device] : host.profiles.keys()) {
    if (std::find(ids.begin(), ids.end(), device) == ids.end()) ids.push_back(device);
  }
  for (const std::string& id : ids) {
    const bool gpu = is_gpu(id);
    if (gpu && !options.gpu) continue;
    Device d;
    d.info.id = id;
    d.info.kind = gpu ? policies::DeviceKind::kGpu : policies::DeviceKind::kCpu;
    if (gpu) {
      d.info.workers = options.gpu_streams > 0
                           ? options.gpu_streams
                           : std::max<int>(1, int(streams_paying(host.profiles, id)));
      d.info.idle_w = options.gpu_idle_w;
    } else {
      d.info.workers = options.cpu_workers > 0 ? options.cpu_workers
                                               : (cores.count(id) ? cores.at(id) : 1);
      d.info.idle_w = options.cpu_idle_w * d.info.workers;
      d.parked_w_per_worker = options.cpu_parked_w;
      if (host.cpu.empty()) host.cpu = id;
    }
    host.devices.push_back(d);
  }
  if (host.cpu.empty()) return invalid_argument(options.profiles + ": the profiles have no CPU device");
  return host;
}

}  // namespace recsched::sim
