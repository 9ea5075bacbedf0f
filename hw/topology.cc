#include "hw/topology.h"

#include <hwloc.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <map>

namespace recsched::hw {
namespace {

enum LoadKind { kHost, kXml, kSynthetic };

// An owned hwloc bitmap.
struct Bitmap {
  hwloc_bitmap_t b = hwloc_bitmap_alloc();
  Bitmap() = default;
  explicit Bitmap(hwloc_const_bitmap_t src) : b(hwloc_bitmap_dup(src)) {}
  Bitmap(const Bitmap&) = delete;
  Bitmap& operator=(const Bitmap&) = delete;
  ~Bitmap() { hwloc_bitmap_free(b); }
};

std::string list_string(hwloc_const_bitmap_t set) {
  char* s = nullptr;
  if (hwloc_bitmap_list_asprintf(&s, set) < 0 || s == nullptr) return "";
  std::string out(s);
  std::free(s);
  return out;
}

std::string fnv_hex(std::string_view text) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (char c : text) h = (h ^ static_cast<unsigned char>(c)) * 0x100000001b3ull;
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(h));
  return buf;
}

uint64_t cache_size_in(hwloc_topology_t t, hwloc_const_cpuset_t set, hwloc_obj_type_t type) {
  hwloc_obj_t obj = nullptr;
  while ((obj = hwloc_get_next_obj_by_type(t, type, obj)) != nullptr) {
    if (obj->cpuset != nullptr && hwloc_bitmap_intersects(obj->cpuset, set)) {
      return obj->attr->cache.size;
    }
  }
  return 0;
}

// Fills a CPU device's counts, caches and memory from its cpuset.
CpuDevice describe_cpuset(hwloc_topology_t t, hwloc_const_cpuset_t set) {
  CpuDevice d;
  d.cpuset = list_string(set);
  d.pus = static_cast<uint32_t>(std::max(0, hwloc_bitmap_weight(set)));
  d.cores = static_cast<uint32_t>(hwloc_get_nbobjs_inside_cpuset_by_type(t, set, HWLOC_OBJ_CORE));
  if (d.cores == 0) d.cores = d.pus;  // no core level: each PU stands for a core
  d.l2_bytes = cache_size_in(t, set, HWLOC_OBJ_L2CACHE);
  d.l3_bytes = cache_size_in(t, set, HWLOC_OBJ_L3CACHE);
  // The memory local to this CPU set: the first NUMA node whose CPUs it shares.
  hwloc_obj_t node = nullptr;
  while ((node = hwloc_get_next_obj_by_type(t, HWLOC_OBJ_NUMANODE, node)) != nullptr) {
    if (node->cpuset != nullptr && hwloc_bitmap_intersects(node->cpuset, set)) {
      d.numa_node = static_cast<int>(node->os_index);
      d.memory_bytes = node->attr->numanode.local_memory;
      break;
    }
  }
  // Core kind: the hwloc cpukind that contains this set, if the machine has kinds.
  const int kinds = hwloc_cpukinds_get_nr(t, 0);
  Bitmap kind_set;
  for (int k = 0; k < kinds; ++k) {
    int efficiency = -1;
    unsigned nr_infos = 0;
    struct hwloc_info_s* infos = nullptr;
    if (hwloc_cpukinds_get_info(t, static_cast<unsigned>(k), kind_set.b, &efficiency, &nr_infos,
                                &infos, 0) != 0) {
      continue;
    }
    if (!hwloc_bitmap_isincluded(set, kind_set.b)) continue;
    d.efficiency_rank = efficiency;
    for (unsigned i = 0; i < nr_infos; ++i) {
      if (std::strcmp(infos[i].name, "CoreType") == 0) d.core_kind = infos[i].value;
    }
  }
  return d;
}

}  // namespace

std::string_view to_string(Partition p) {
  switch (p) {
    case Partition::kNuma:
      return "numa";
    case Partition::kL3:
      return "l3";
    case Partition::kCoreKind:
      return "core-kind";
    case Partition::kCore:
      return "core";
  }
  return "unknown";
}

std::optional<Partition> partition_from_string(std::string_view name) {
  for (Partition p : {Partition::kNuma, Partition::kL3, Partition::kCoreKind, Partition::kCore}) {
    if (to_string(p) == name) return p;
  }
  return std::nullopt;
}

void Topology::Deleter::operator()(hwloc_topology* t) const { hwloc_topology_destroy(t); }

Topology::Topology(Topology&&) noexcept = default;
Topology& Topology::operator=(Topology&&) noexcept = default;
Topology::~Topology() = default;

Result<Topology> Topology::load(int kind, const std::string& arg) {
  hwloc_topology_t t = nullptr;
  if (hwloc_topology_init(&t) != 0) return internal_error("hwloc_topology_init failed");
  Topology topo(t, kind == kHost);
  // Keep the PCI devices and OS devices (GPUs) that matter; drop bridges and the rest.
  hwloc_topology_set_io_types_filter(t, HWLOC_TYPE_FILTER_KEEP_IMPORTANT);
  if (kind == kXml && hwloc_topology_set_xml(t, arg.c_str()) != 0) {
    return invalid_argument("topology XML " + arg + ": " + std::strerror(errno));
  }
  if (kind == kSynthetic && hwloc_topology_set_synthetic(t, arg.c_str()) != 0) {
    return invalid_argument("bad synthetic topology '" + arg + "'");
  }
  if (hwloc_topology_load(t) != 0) {
    return invalid_argument("hwloc cannot load the topology" +
                            (arg.empty() ? std::string() : " '" + arg + "'") + ": " +
                            std::strerror(errno));
  }
  return topo;
}

Result<Topology> Topology::host() { return load(kHost, ""); }
Result<Topology> Topology::from_xml(const std::string& path) { return load(kXml, path); }
Result<Topology> Topology::synthetic(const std::string& d) { return load(kSynthetic, d); }

Result<Devices> Topology::devices(Partition partition) const {
  hwloc_topology_t t = topo_.get();
  Devices out;
  hwloc_const_cpuset_t allowed = hwloc_topology_get_allowed_cpuset(t);

  std::vector<Bitmap*> groups;
  std::vector<std::unique_ptr<Bitmap>> owned;
  auto add_group = [&](hwloc_const_cpuset_t set) {
    auto b = std::make_unique<Bitmap>(set);
    hwloc_bitmap_and(b->b, b->b, allowed);
    if (hwloc_bitmap_iszero(b->b)) return;  // nothing we may run on
    groups.push_back(b.get());
    owned.push_back(std::move(b));
  };
  auto by_type = [&](hwloc_obj_type_t type) {
    hwloc_obj_t obj = nullptr;
    while ((obj = hwloc_get_next_obj_by_type(t, type, obj)) != nullptr) {
      if (obj->cpuset != nullptr) add_group(obj->cpuset);
    }
  };
  switch (partition) {
    case Partition::kNuma:
      by_type(HWLOC_OBJ_NUMANODE);
      break;
    case Partition::kL3:
      by_type(HWLOC_OBJ_L3CACHE);
      if (groups.empty()) return invalid_argument("partition 'l3': this machine has no L3 cache");
      break;
    case Partition::kCore:
      by_type(HWLOC_OBJ_CORE);
      break;
    case Partition::kCoreKind: {
      const int kinds = hwloc_cpukinds_get_nr(t, 0);
      if (kinds <= 0) {
        return invalid_argument("partition 'core-kind': hwloc reports no CPU kinds here");
      }
      // hwloc lists kinds from the most energy-efficient up; keep its order.
      for (int k = 0; k < kinds; ++k) {
        Bitmap set;
        if (hwloc_cpukinds_get_info(t, static_cast<unsigned>(k), set.b, nullptr, nullptr, nullptr,
                                    0) == 0) {
          add_group(set.b);
        }
      }
      break;
    }
  }
  if (groups.empty()) return invalid_argument("no allowed CPUs found");
  for (size_t i = 0; i < groups.size(); ++i) {
    CpuDevice d = describe_cpuset(t, groups[i]->b);
    d.id = "cpu" + std::to_string(i);
    out.cpus.push_back(std::move(d));
  }

  // GPUs: one per PCI device that hwloc's CUDA or NVML backend found, in PCI order.
  std::map<std::string, GpuDevice> by_bus;
  hwloc_obj_t os = nullptr;
  while ((os = hwloc_get_next_osdev(t, os)) != nullptr) {
    const char* backend = hwloc_obj_get_info_by_name(os, "Backend");
    const std::string b =
        backend != nullptr ? backend : (os->subtype != nullptr ? os->subtype : "");
    if (b != "CUDA" && b != "NVML") continue;
    hwloc_obj_t pci = os->parent;
    if (pci == nullptr || pci->type != HWLOC_OBJ_PCI_DEVICE) continue;
    char bus[32];
    std::snprintf(bus, sizeof bus, "%04x:%02x:%02x.%01x", pci->attr->pcidev.domain,
                  pci->attr->pcidev.bus, pci->attr->pcidev.dev, pci->attr->pcidev.func);
    GpuDevice& g = by_bus[bus];
    g.pci_bus_id = bus;
    if (g.backend.empty() || b == "CUDA") g.backend = b;  // CUDA says more (memory)
    if (const char* model = hwloc_obj_get_info_by_name(os, "GPUModel")) g.model = model;
    if (const char* mem = hwloc_obj_get_info_by_name(os, "CUDAGlobalMemorySize")) {
      g.memory_bytes = std::strtoull(mem, nullptr, 10) * 1024;  // hwloc gives KiB
    }
    hwloc_obj_t local = hwloc_get_non_io_ancestor_obj(t, os);
    if (local != nullptr && local->cpuset != nullptr) {
      g.local_cpuset = list_string(local->cpuset);
      if (local->nodeset != nullptr && !hwloc_bitmap_iszero(local->nodeset)) {
        g.numa_node = hwloc_bitmap_first(local->nodeset);
      }
    }
  }
  int index = 0;
  for (auto& [bus, g] : by_bus) {
    g.id = "gpu" + std::to_string(index++);
    out.gpus.push_back(std::move(g));
  }
  return out;
}

std::optional<GpuDevice> Topology::pci_locality(const std::string& pci_bus_id) const {
  hwloc_obj_t pci = hwloc_get_pcidev_by_busidstring(topo_.get(), pci_bus_id.c_str());
  if (pci == nullptr) return std::nullopt;
  GpuDevice g;
  g.pci_bus_id = pci_bus_id;
  hwloc_obj_t local = hwloc_get_non_io_ancestor_obj(topo_.get(), pci);
  if (local != nullptr && local->cpuset != nullptr) {
    g.local_cpuset = list_string(local->cpuset);
    if (local->nodeset != nullptr && !hwloc_bitmap_iszero(local->nodeset)) {
      g.numa_node = hwloc_bitmap_first(local->nodeset);
    }
  }
  return g;
}

std::string Topology::fingerprint() const {
  hwloc_topology_t t = topo_.get();
  std::string text;
  for (hwloc_obj_type_t type : {HWLOC_OBJ_PACKAGE, HWLOC_OBJ_NUMANODE, HWLOC_OBJ_L3CACHE,
                                HWLOC_OBJ_L2CACHE, HWLOC_OBJ_CORE, HWLOC_OBJ_PU}) {
    text += std::to_string(hwloc_get_nbobjs_by_type(t, type)) + ";";
  }
  hwloc_obj_t obj = nullptr;
  while ((obj = hwloc_get_next_obj_by_type(t, HWLOC_OBJ_PACKAGE, obj)) != nullptr) {
    if (const char* m = hwloc_obj_get_info_by_name(obj, "CPUModel")) text += m;
  }
  // NUMA nodes by their CPUs only: some VMs report a node's memory as what is free,
  // which changes from one start to the next and would invalidate every profile.
  while ((obj = hwloc_get_next_obj_by_type(t, HWLOC_OBJ_NUMANODE, obj)) != nullptr) {
    text += list_string(obj->cpuset) + "/";
  }
  while ((obj = hwloc_get_next_obj_by_type(t, HWLOC_OBJ_L3CACHE, obj)) != nullptr) {
    text += "/" + std::to_string(obj->attr->cache.size);
  }
  Result<Devices> d = devices(Partition::kNuma);
  if (d) {
    for (const GpuDevice& g : d->gpus) text += "|" + g.pci_bus_id + g.model;
  }
  return fnv_hex(text);
}

std::string Topology::summary() const {
  hwloc_topology_t t = topo_.get();
  auto count = [&](hwloc_obj_type_t type, const char* one, const char* many) {
    const int n = hwloc_get_nbobjs_by_type(t, type);
    return std::to_string(n) + " " + (n == 1 ? one : many);
  };
  Result<Devices> d = devices(Partition::kNuma);
  const size_t gpus = d ? d->gpus.size() : 0;
  return count(HWLOC_OBJ_PACKAGE, "package", "packages") + ", " +
         count(HWLOC_OBJ_NUMANODE, "NUMA node", "NUMA nodes") + ", " +
         count(HWLOC_OBJ_CORE, "core", "cores") + ", " + count(HWLOC_OBJ_PU, "PU", "PUs") + ", " +
         std::to_string(gpus) + (gpus == 1 ? " GPU" : " GPUs");
}

Status Topology::bind_thread(const std::string& cpuset) const {
  if (!host_) return invalid_argument("cannot bind threads on a topology that is not this machine");
  Bitmap set;
  if (hwloc_bitmap_list_sscanf(set.b, cpuset.c_str()) != 0 || hwloc_bitmap_iszero(set.b)) {
    return invalid_argument("bad cpuset '" + cpuset + "'");
  }
  if (hwloc_set_cpubind(topo_.get(), set.b, HWLOC_CPUBIND_THREAD | HWLOC_CPUBIND_STRICT) != 0) {
    return unavailable("cannot bind a thread to CPUs " + cpuset + ": " + std::strerror(errno));
  }
  return Status::ok();
}

Result<std::string> Topology::thread_binding() const {
  Bitmap set;
  if (hwloc_get_cpubind(topo_.get(), set.b, HWLOC_CPUBIND_THREAD) != 0) {
    return unavailable(std::string("cannot read the thread's binding: ") + std::strerror(errno));
  }
  return list_string(set.b);
}

Status Topology::bind_memory_to_node(int node) const {
  if (!host_) return invalid_argument("cannot bind memory on a topology that is not this machine");
  Bitmap nodes;
  hwloc_bitmap_only(nodes.b, static_cast<unsigned>(node));
  if (hwloc_set_membind(topo_.get(), nodes.b, HWLOC_MEMBIND_BIND,
                        HWLOC_MEMBIND_THREAD | HWLOC_MEMBIND_BYNODESET) != 0) {
    return unavailable("cannot bind memory to NUMA node " + std::to_string(node) + ": " +
                       std::strerror(errno));
  }
  return Status::ok();
}

Result<std::vector<std::string>> Topology::core_cpusets(const CpuDevice& device) const {
  RECSCHED_ASSIGN_OR_RETURN(Devices cores, devices(Partition::kCore));
  std::vector<std::string> out;
  hwloc_bitmap_t dev = hwloc_bitmap_alloc();
  hwloc_bitmap_t c = hwloc_bitmap_alloc();
  hwloc_bitmap_list_sscanf(dev, device.cpuset.c_str());
  for (const CpuDevice& core : cores.cpus) {
    hwloc_bitmap_list_sscanf(c, core.cpuset.c_str());
    if (hwloc_bitmap_isincluded(c, dev)) out.push_back(core.cpuset);
  }
  hwloc_bitmap_free(c);
  hwloc_bitmap_free(dev);
  return out;
}

}  // namespace recsched::hw
