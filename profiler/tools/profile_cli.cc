#include "profiler/tools/profile_cli.h"

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <ostream>

#include "daemon/config.h"
#include "daemon/cpu_latency.h"
#include "engine/model.h"
#include "exec/cpu_runner.h"
#include "hw/topology.h"
#include "profiler/power.h"
#include "profiler/profile_cache.h"
#include "profiler/profiler.h"
#if defined(RECSCHED_WITH_CUDA)
#include "engine/cuda/cuda_model.h"
#endif

namespace recsched::profiler::tools {
namespace {

using nlohmann::json;
namespace fs = std::filesystem;
using exec::CpuRunner;
using hw::CpuDevice;
using hw::Devices;
using hw::GpuDevice;
using hw::Partition;
using hw::partition_from_string;
using hw::Topology;

constexpr const char* kUsage = R"(usage: recsched-profile COMMAND [OPTIONS]

Discovers this host's devices and profiles recommendation models on them.

commands:
  topology [--json] [--partition numa|l3|core-kind|core] [--xml FILE | --synthetic DESC]
      Prints the CPU devices (cpuset, cores, NUMA node, caches, core kind) and the
      GPUs (PCI address, model, memory, local NUMA node). --xml and --synthetic describe
      a machine other than this one (hwloc XML, or e.g. "pack:2 [numa] l3:2 core:4 pu:2").
  run --config C.json [--json] [--out FILE] [--quick] [--no-cache] [--state-dir DIR]
      Profiles every model of the config on every device: latency (median, p95) per
      batch size, items/s, the best split across workers (on a GPU: how many passes
      at once pay, "Nstr", and the items/s they give together in the JSON's
      streams_items_per_s), power and energy per item (measured with RAPL or NVML
      where readable, else estimated: the source is printed). Results are cached in
      the state directory (state_dir/profiles.json, the file recschedd reads), keyed by
      hardware, model spec, build and the conditions measured under (the config's
      profile, power and GPU keys, and the CPU latency held); a cache that matches skips
      the measuring, one that does not is measured again, with a warning naming what
      changed. --no-cache measures everything and neither reads nor writes the cache;
      --state-dir overrides the config's state_dir; --quick measures batch sizes 1, 16
      and 256 only, briefly (as profile.quick does: recschedd serves from them only if
      its config says profile.quick too); --out writes the JSON to FILE.

config: recschedd's own (systemd/recschedd.json; every key in daemon/config.h), so a
host can be profiled ahead of starting the service, into the cache the service reads.
run uses models, partition, devices, gpus, gpu_graph_max_items, gpu_table_batched,
state_dir, profile, power and limits.cpu_latency_us (the GPU keys so that a GPU is
measured as it will serve; the CPU latency request held while measuring, as recschedd
holds it while it profiles and serves), and ignores the rest; paths are relative to the
config file. The smallest:
  {"models": ["rmc1.json", {"spec": "x.json", "weights": "x.safetensors"}]}
Exit status: 0 ok, 1 failure, 2 bad usage.
)";

struct UsageError {
  std::string message;
};

struct ModelEntry {
  std::string spec_path;
  std::string weights_path;
};

// What `run` needs of a config: the daemon's own (daemon/config.h), so a host can be profiled
// ahead of starting recschedd with the very file the service reads, into the cache it reads.
struct Config {
  std::vector<ModelEntry> models;
  Partition partition = Partition::kNuma;
  std::string state_dir;
  std::vector<std::string> devices;  ///< empty: every device of the partition (and GPU)
  bool gpus = true;
  uint32_t gpu_graph_max_items = 256;
  bool gpu_table_batched = true;
  ProfileOptions options;
  PowerConfig power;
  std::optional<uint32_t> cpu_latency_us;  ///< limits.cpu_latency_us: held while measuring
  bool wants(const std::string& id) const {
    return devices.empty() || std::find(devices.begin(), devices.end(), id) != devices.end();
  }
};

Result<Config> load_config(const std::string& path) {
  RECSCHED_ASSIGN_OR_RETURN(daemon::DaemonConfig d, daemon::load_config(path));
  Config c;
  for (const daemon::ModelConfig& m : d.models) c.models.push_back({m.spec_path, m.weights_path});
  c.partition = d.partition;
  c.state_dir = d.state_dir;
  c.devices = d.devices;
  c.gpus = d.gpus;
  c.gpu_graph_max_items = d.gpu_graph_max_items;
  c.gpu_table_batched = d.gpu_table_batched;
  c.options = d.profile;
  c.power = d.power;
  c.cpu_latency_us = d.limits.cpu_latency_us;
  return c;
}

json cpu_json(const CpuDevice& d) {
  return {{"id", d.id},
          {"kind", "cpu"},
          {"cpuset", d.cpuset},
          {"cores", d.cores},
          {"pus", d.pus},
          {"numa_node", d.numa_node},
          {"memory_bytes", d.memory_bytes},
          {"l2_bytes", d.l2_bytes},
          {"l3_bytes", d.l3_bytes},
          {"efficiency_rank", d.efficiency_rank},
          {"core_kind", d.core_kind}};
}

json gpu_json(const GpuDevice& g) {
  return {{"id", g.id},
          {"kind", "gpu"},
          {"pci_bus_id", g.pci_bus_id},
          {"model", g.model},
          {"memory_bytes", g.memory_bytes},
          {"numa_node", g.numa_node},
          {"local_cpuset", g.local_cpuset},
          {"backend", g.backend}};
}

std::string gib(uint64_t bytes) {
  std::ostringstream s;
  s << std::fixed << std::setprecision(1) << bytes / double(uint64_t{1} << 30) << " GiB";
  return s.str();
}

int cmd_topology(const std::map<std::string, std::string>& o, bool as_json, std::ostream& out,
                 std::ostream& err) {
  Partition partition = Partition::kNuma;
  if (o.count("partition")) {
    auto p = partition_from_string(o.at("partition"));
    if (!p) throw UsageError{"--partition must be numa, l3, core-kind or core"};
    partition = *p;
  }
  Result<Topology> t = o.count("xml")         ? Topology::from_xml(o.at("xml"))
                       : o.count("synthetic") ? Topology::synthetic(o.at("synthetic"))
                                              : Topology::host();
  if (!t) {
    err << "recsched-profile: " << t.status().message() << "\n";
    return 1;
  }
  Result<Devices> d = t->devices(partition);
  if (!d) {
    err << "recsched-profile: " << d.status().message() << "\n";
    return 1;
  }
  if (as_json) {
    json devices = json::array();
    for (const CpuDevice& c : d->cpus) devices.push_back(cpu_json(c));
    for (const GpuDevice& g : d->gpus) devices.push_back(gpu_json(g));
    out << json{{"summary", t->summary()},
                {"fingerprint", t->fingerprint()},
                {"partition", std::string(to_string(partition))},
                {"devices", devices}}
               .dump(2)
        << "\n";
    return 0;
  }
  out << t->summary() << " (fingerprint " << t->fingerprint() << ", partition "
      << to_string(partition) << ")\n\n";
  out << std::left << std::setw(7) << "DEVICE" << std::setw(22) << "CPUS" << std::setw(7) << "CORES"
      << std::setw(5) << "PUS" << std::setw(6) << "NUMA" << std::setw(11) << "MEMORY"
      << std::setw(10) << "L3"
      << "KIND\n";
  for (const CpuDevice& c : d->cpus) {
    std::string kind = c.core_kind.empty() ? "-" : c.core_kind;
    if (c.efficiency_rank >= 0) kind += " (rank " + std::to_string(c.efficiency_rank) + ")";
    out << std::setw(7) << c.id << std::setw(22) << c.cpuset << std::setw(7) << c.cores
        << std::setw(5) << c.pus << std::setw(6) << c.numa_node << std::setw(11)
        << gib(c.memory_bytes) << std::setw(10)
        << (c.l3_bytes ? std::to_string(c.l3_bytes >> 20) + " MiB" : "-") << kind << "\n";
  }
  if (!d->gpus.empty()) {
    out << "\n"
        << std::setw(7) << "DEVICE" << std::setw(15) << "PCI" << std::setw(28) << "MODEL"
        << std::setw(11) << "MEMORY" << std::setw(6) << "NUMA"
        << "LOCAL CPUS\n";
    for (const GpuDevice& g : d->gpus) {
      out << std::setw(7) << g.id << std::setw(15) << g.pci_bus_id << std::setw(28)
          << (g.model.empty() ? "-" : g.model) << std::setw(11)
          << (g.memory_bytes ? gib(g.memory_bytes) : "-") << std::setw(6) << g.numa_node
          << g.local_cpuset << "\n";
    }
  } else {
    out << "\nno GPUs\n";
  }
  return 0;
}

struct Measured {
  std::string model;
  std::string spec_hash;
  std::string device;
  std::vector<ProfilePoint> points;
  bool from_cache = false;
};

int cmd_run(const std::map<std::string, std::string>& o, bool as_json, std::ostream& out,
            std::ostream& err) {
  if (!o.count("config")) throw UsageError{"missing --config"};
  const auto t_start = std::chrono::steady_clock::now();
  Result<Config> cfg = load_config(o.at("config"));
  if (!cfg) {
    err << "recsched-profile: " << cfg.status().message() << "\n";
    return 1;
  }
  if (o.count("state-dir")) cfg->state_dir = o.at("state-dir");
  if (o.count("quick")) cfg->options = ProfileOptions::quick();
  Result<Topology> topo = Topology::host();
  if (!topo) {
    err << "recsched-profile: " << topo.status().message() << "\n";
    return 1;
  }
  Result<Devices> devices = topo->devices(cfg->partition);
  if (!devices) {
    err << "recsched-profile: " << devices.status().message() << "\n";
    return 1;
  }

  // Specs first, so a bad one fails before minutes of measuring.
  struct Loaded {
    ModelEntry entry;
    engine::ModelSpec spec;
    std::string hash;
  };
  std::vector<Loaded> models;
  for (const ModelEntry& e : cfg->models) {
    Result<engine::ModelSpec> spec = engine::load_model_spec(e.spec_path);
    if (!spec) {
      err << "recsched-profile: " << spec.status().message() << "\n";
      return 1;
    }
    Result<std::string> hash = spec_hash(e.spec_path, e.weights_path);
    if (!hash) {
      err << "recsched-profile: " << hash.status().message() << "\n";
      return 1;
    }
    models.push_back({e, *spec, *hash});
  }

  // limits.cpu_latency_us: held from here to the end of the measuring, as recschedd holds it
  // from before it profiles, so that the profiles made ahead are those the service would
  // make (on a host whose idle cores sleep deep, a query's wake-ups are in its latency).
  const daemon::CpuLatencyHold cpu_latency = daemon::CpuLatencyHold::take(cfg->cpu_latency_us);
  if (cpu_latency.held()) {
    err << "recsched-profile: limits.cpu_latency_us = " << *cfg->cpu_latency_us
        << ": CPU latency QoS held while measuring, as recschedd holds it (in effect: "
        << cpu_latency.in_effect() << ")\n";
  } else if (cpu_latency.asked()) {
    err << "recsched-profile: warning: limits.cpu_latency_us = " << *cfg->cpu_latency_us
        << ": not held, idle cores may sleep deeper than recschedd's would: "
        << cpu_latency.error() << "\n";
  }
  const CacheIdentity identity{
      topo->fingerprint(), build_id(),
      measuring_conditions({cfg->options, cfg->power, cfg->gpu_graph_max_items,
                            cfg->gpu_table_batched, cpu_latency.held_us()})};
  const std::string cache_path = cfg->state_dir + "/profiles.json";
  std::vector<Measured> results;
  std::vector<std::string> warnings;
  std::map<std::tuple<std::string, std::string, std::string>, std::vector<ProfilePoint>> cached;
  if (!o.count("no-cache")) {
    CacheLoad load = load_profile_cache(cache_path, identity);
    warnings = load.warnings;
    for (const CachedProfile& c : load.entries) {
      cached[{c.model, c.spec_hash, c.device}] = c.points;
    }
  }
  for (const std::string& w : warnings) err << "recsched-profile: warning: " << w << "\n";

  auto from_cache = [&](const Loaded& m, const std::string& device) -> bool {
    auto it = cached.find({m.spec.name, m.hash, device});
    if (it == cached.end()) return false;
    results.push_back({m.spec.name, m.hash, device, it->second, true});
    return true;
  };

  for (const CpuDevice& dev : devices->cpus) {
    if (!cfg->wants(dev.id)) continue;
    std::unique_ptr<CpuRunner> runner;
    MeterChoice meter;
    for (const Loaded& m : models) {
      if (from_cache(m, dev.id)) continue;
      if (!runner) {
        auto r = CpuRunner::create(*topo, dev);
        if (!r) {
          err << "recsched-profile: " << r.status().message() << "\n";
          return 1;
        }
        runner = std::move(r).value();
        meter = cpu_meter(cfg->power, {}, static_cast<int>(dev.cores));
        err << "recsched-profile: " << dev.id << ": " << meter.note << "\n";
      }
      err << "recsched-profile: profiling " << m.spec.name << " on " << dev.id << "\n";
      engine::LoadOptions lo;
      lo.weights_path = m.entry.weights_path;
      auto model = runner->load(m.spec, lo);
      if (!model) {
        err << "recsched-profile: " << model.status().message() << "\n";
        return 1;
      }
      auto points = profile_cpu(*runner, **model, *meter.meter, cfg->options);
      if (!points) {
        err << "recsched-profile: " << m.spec.name << " on " << dev.id << ": "
            << points.status().message() << "\n";
        return 1;
      }
      results.push_back({m.spec.name, m.hash, dev.id, *points, false});
    }
  }

  json gpu_devices = json::array();
#if defined(RECSCHED_WITH_CUDA)
  if (cfg->gpus) {
    std::string why;
    const auto gpus = engine::cuda::list_devices(&why);
    if (gpus.empty()) err << "recsched-profile: GPUs: " << why << "\n";
    for (const auto& g : gpus) {
      // CUDA's view joined to hwloc's by PCI address: which NUMA node feeds this GPU.
      std::string bus = g.pci_bus_id;
      std::transform(bus.begin(), bus.end(), bus.begin(), ::tolower);
      GpuDevice gd = topo->pci_locality(bus).value_or(GpuDevice{});
      gd.id = "gpu" + std::to_string(g.index);
      gd.pci_bus_id = bus;
      gd.model = g.name;
      gd.memory_bytes = g.memory_bytes;
      gd.backend = "CUDA";
      if (!cfg->wants(gd.id)) continue;
      gpu_devices.push_back(gpu_json(gd));
      // The thread that feeds the GPU (packing queries into pinned memory) runs on the
      // GPU's own NUMA node, and so does that pinned memory.
      if (!gd.local_cpuset.empty()) {
        Status st = topo->bind_thread(gd.local_cpuset);
        if (st.is_ok() && gd.numa_node >= 0) st = topo->bind_memory_to_node(gd.numa_node);
        if (!st.is_ok()) err << "recsched-profile: warning: " << st.message() << "\n";
      }
      MeterChoice meter = gpu_meter(cfg->power, g.index, bus);
      err << "recsched-profile: " << gd.id << " (" << g.name << ", NUMA node " << gd.numa_node
          << "): " << meter.note << "\n";
      for (const Loaded& m : models) {
        if (from_cache(m, gd.id)) continue;
        err << "recsched-profile: profiling " << m.spec.name << " on " << gd.id << "\n";
        engine::LoadOptions lo;
        lo.weights_path = m.entry.weights_path;
        engine::cuda::CudaOptions co;
        co.device = g.index;
        co.streams = engine::cuda::kServingStreams;  // as recschedd: how many pay is measured
        co.graph_max_items = static_cast<int>(cfg->gpu_graph_max_items);
        co.table_batched = cfg->gpu_table_batched;
        auto model = engine::cuda::load_cuda_model(m.spec, lo, co);
        if (!model) {
          err << "recsched-profile: " << m.spec.name << " on " << gd.id << ": "
              << model.status().message() << "\n";
          continue;  // a model that does not fit one GPU is still served on the CPUs
        }
        auto points = profile_whole(**model, *meter.meter, cfg->options, co.streams);
        if (!points) {
          err << "recsched-profile: " << points.status().message() << "\n";
          return 1;
        }
        results.push_back({m.spec.name, m.hash, gd.id, *points, false});
      }
    }
  }
#else
  if (cfg->gpus) err << "recsched-profile: GPUs: this build has no CUDA runner\n";
#endif

  // Save what was measured, with what came from the cache.
  const size_t measured = std::count_if(results.begin(), results.end(),
                                        [](const Measured& m) { return !m.from_cache; });
  if (measured > 0 && !o.count("no-cache")) {
    std::vector<CachedProfile> entries;
    for (const Measured& m : results) entries.push_back({m.model, m.spec_hash, m.device, m.points});
    Status st = save_profile_cache(cache_path, identity, entries);
    if (!st.is_ok()) err << "recsched-profile: warning: " << st.message() << "\n";
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t_start).count();

  json devices_json = json::array();
  for (const CpuDevice& c : devices->cpus) devices_json.push_back(cpu_json(c));
  for (const json& g : gpu_devices) devices_json.push_back(g);
  json profiles = json::array();
  for (const Measured& m : results) {
    json points = json::array();
    for (const ProfilePoint& p : m.points) points.push_back(json(to_json(p)));
    profiles.push_back({{"model", m.model},
                        {"device", m.device},
                        {"spec_hash", m.spec_hash},
                        {"cached", m.from_cache},
                        {"points", points}});
  }
  const json doc = {{"hardware", identity.hardware},
                    {"build", identity.build},
                    {"devices", devices_json},
                    {"profiles", profiles},
                    {"seconds", seconds},
                    {"measured", measured},
                    {"cached", results.size() - measured},
                    {"cpu_latency", cpu_latency.report()}};
  if (o.count("out")) {
    std::ofstream f(o.at("out"));
    f << doc.dump(2) << "\n";
    if (!f) {
      err << "recsched-profile: cannot write " << o.at("out") << "\n";
      return 1;
    }
  }
  if (as_json) {
    out << doc.dump(2) << "\n";
    return 0;
  }
  out << std::left << std::setw(8) << "MODEL" << std::setw(7) << "DEVICE" << std::right
      << std::setw(6) << "BATCH" << std::setw(10) << "P50_MS" << std::setw(10) << "P95_MS"
      << std::setw(11) << "ITEMS/S" << std::setw(10) << "SPLIT" << std::setw(8) << "WATTS"
      << std::setw(12) << "MJ/ITEM"
      << "  SOURCE\n";
  for (const Measured& m : results) {
    for (const ProfilePoint& p : m.points) {
      const std::string split =
          p.best_streams > 0
              ? std::to_string(p.best_streams) + "str"
              : std::to_string(p.best_workers) + "x" + std::to_string(p.best_sub_batch);
      out << std::left << std::setw(8) << m.model << std::setw(7) << m.device << std::right
          << std::setw(6) << p.batch_size << std::fixed << std::setprecision(3) << std::setw(10)
          << p.p50_us / 1e3 << std::setw(10) << p.p95_us / 1e3 << std::setprecision(0)
          << std::setw(11) << p.items_per_s << std::setw(10) << split << std::setprecision(1)
          << std::setw(8) << p.power_w << std::setprecision(4) << std::setw(12)
          << p.energy_per_item_j * 1e3 << "  " << p.power_source
          << (m.from_cache ? " (cached)" : "") << "\n";
    }
  }
  out << std::setprecision(1) << "\n"
      << measured << " profiled, " << results.size() - measured << " from cache, in " << seconds
      << " s\n";
  return 0;
}

}  // namespace

int run_profile_cli(const std::vector<std::string>& args, std::ostream& out, std::ostream& err) {
  if (args.empty()) {
    err << kUsage;
    return 2;
  }
  const std::string cmd = args[0];
  if (cmd == "-h" || cmd == "--help" || cmd == "help") {
    out << kUsage;
    return 0;
  }
  static const std::map<std::string, std::vector<std::string>> kValued = {
      {"topology", {"partition", "xml", "synthetic"}}, {"run", {"config", "out", "state-dir"}}};
  static const std::map<std::string, std::vector<std::string>> kFlags = {
      {"topology", {"json"}}, {"run", {"json", "quick", "no-cache"}}};
  if (!kValued.count(cmd)) {
    err << "recsched-profile: unknown command '" << cmd << "' (see recsched-profile --help)\n";
    return 2;
  }
  try {
    std::map<std::string, std::string> o;
    for (size_t i = 1; i < args.size(); ++i) {
      const std::string& a = args[i];
      if (a == "--help") {
        out << kUsage;
        return 0;
      }
      if (a.rfind("--", 0) != 0) throw UsageError{"unexpected argument '" + a + "'"};
      const std::string key = a.substr(2);
      const auto& valued = kValued.at(cmd);
      const auto& flags = kFlags.at(cmd);
      if (std::find(flags.begin(), flags.end(), key) != flags.end()) {
        o[key] = "1";
      } else if (std::find(valued.begin(), valued.end(), key) != valued.end()) {
        if (i + 1 >= args.size()) throw UsageError{"option '" + a + "' needs a value"};
        o[key] = args[++i];
      } else {
        throw UsageError{"unknown option '" + a + "'"};
      }
    }
    if (o.count("xml") && o.count("synthetic"))
      throw UsageError{"give --xml or --synthetic, not both"};
    const bool as_json = o.count("json") > 0;
    return cmd == "topology" ? cmd_topology(o, as_json, out, err) : cmd_run(o, as_json, out, err);
  } catch (const UsageError& e) {
    err << "recsched-profile " << cmd << ": " << e.message << " (see recsched-profile --help)\n";
    return 2;
  }
}

}  // namespace recsched::profiler::tools
