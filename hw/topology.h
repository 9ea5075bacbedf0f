// Topology discovery: the host's allowed CPUs, memory and NVIDIA GPUs, from hwloc, turned
// into the devices recsched schedules on. The only module that includes <hwloc.h>; this
// header forward-declares hwloc's type and wraps it.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"

struct hwloc_topology;  // hwloc's topology (hwloc_topology_t points to one)

namespace recsched::hw {

/// How the CPUs are cut into devices.
enum class Partition {
  kNuma,      ///< one device per NUMA node (the default)
  kL3,        ///< one per L3 cache group
  kCoreKind,  ///< one per core kind (hwloc cpukinds: P-cores vs E-cores on hybrid parts)
  kCore,      ///< one per core
};

std::string_view to_string(Partition p);
/// "numa", "l3", "core-kind", "core"; nullopt otherwise.
std::optional<Partition> partition_from_string(std::string_view name);

struct CpuDevice {
  std::string id;      ///< "cpu0", "cpu1", ...
  std::string cpuset;  ///< the device's PUs in hwloc list syntax, "0-7,16-23"
  uint32_t cores = 0;
  uint32_t pus = 0;           ///< hardware threads
  int numa_node = -1;         ///< OS index of the NUMA node its memory comes from
  uint64_t memory_bytes = 0;  ///< that node's local memory
  uint64_t l2_bytes = 0;      ///< one L2 cache of the device (0 if unknown)
  uint64_t l3_bytes = 0;      ///< one L3 cache of the device (0 if none)
  /// hwloc's cpukinds ranking: 0 is the most energy-efficient kind (E-cores), higher
  /// kinds are faster; -1 where the kinds are unknown.
  int efficiency_rank = -1;
  std::string core_kind;  ///< hwloc's CoreType info ("IntelAtom", "IntelCore"), if any
};

struct GpuDevice {
  std::string id;             ///< "gpu0", "gpu1", ... in PCI order
  std::string pci_bus_id;     ///< "0000:34:00.0"
  std::string model;          ///< "Tesla V100-SXM3-32GB-H"
  uint64_t memory_bytes = 0;  ///< 0 where hwloc does not say (its NVML backend does not)
  int numa_node = -1;         ///< the NUMA node it is attached to
  std::string local_cpuset;   ///< the CPUs close to it: where its feeding threads run
  std::string backend;        ///< "CUDA" or "NVML": how hwloc saw it
};

struct Devices {
  std::vector<CpuDevice> cpus;
  std::vector<GpuDevice> gpus;
};

/// A loaded hwloc topology. Move-only.
class Topology {
 public:
  /// This machine (allowed CPUs and memory only, as cgroups and affinity permit).
  static Result<Topology> host();
  /// A topology saved by `lstopo foo.xml` (a machine we do not have).
  static Result<Topology> from_xml(const std::string& path);
  /// hwloc's synthetic description, e.g. "pack:2 [numa] l3:2 core:4 pu:2".
  static Result<Topology> synthetic(const std::string& description);

  Topology(Topology&&) noexcept;
  Topology& operator=(Topology&&) noexcept;
  ~Topology();

  /// The devices under `partition`. kInvalidArgument if the partition has nothing to
  /// cut along (e.g. kL3 on a machine without L3 caches).
  Result<Devices> devices(Partition partition) const;
  /// The whole cores inside `device`, each as a cpuset (list syntax), in core order: one
  /// per worker of a runner pinned to the device. Empty if it holds no whole core.
  Result<std::vector<std::string>> core_cpusets(const CpuDevice& device) const;
  /// 16 hex digits identifying the hardware (CPUs, caches, memory, GPUs): profiles
  /// measured on another fingerprint are not reused.
  std::string fingerprint() const;
  /// One line: "1 package, 1 NUMA node, 2 cores, 2 PUs, 0 GPUs".
  std::string summary() const;
  /// Where the PCI device `pci_bus_id` ("0000:17:00.0") is attached, as hwloc's PCI
  /// discovery sees it: a GpuDevice with pci_bus_id, numa_node and local_cpuset set.
  /// nullopt if hwloc does not know the device. This joins a GPU that CUDA reports to
  /// the topology even where hwloc has no CUDA or NVML backend.
  std::optional<GpuDevice> pci_locality(const std::string& pci_bus_id) const;
  /// True for host(): only then can threads and memory be bound.
  bool is_this_system() const { return host_; }

  /// Binds the calling thread to `cpuset` (hwloc list syntax). kUnavailable with the OS's
  /// reason if it fails; kInvalidArgument for a malformed set or a non-host topology.
  Status bind_thread(const std::string& cpuset) const;
  /// The calling thread's current binding, in list syntax.
  Result<std::string> thread_binding() const;
  /// Makes the calling thread's future allocations come from NUMA node `node` (pages are
  /// placed at first touch). kUnavailable if the OS refuses.
  Status bind_memory_to_node(int node) const;

 private:
  struct Deleter {
    void operator()(hwloc_topology* t) const;
  };
  Topology(hwloc_topology* t, bool host) : topo_(t), host_(host) {}
  static Result<Topology> load(int kind, const std::string& arg);

  std::unique_ptr<hwloc_topology, Deleter> topo_;
  bool host_ = false;
};

}  // namespace recsched::hw
