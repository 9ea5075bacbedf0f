#include "hw/topology.h"

#include <doctest/doctest.h>

#include <string>

namespace recsched::hw {
namespace {

// Real machines saved by hwloc (../shared/topologies, beside the repository).
std::string machine(const std::string& file) {
  return std::string(RECSCHED_SOURCE_DIR) + "/../shared/topologies/" + file;
}

Topology load_xml(const std::string& file) {
  Result<Topology> t = Topology::from_xml(machine(file));
  REQUIRE_MESSAGE(t.has_value(), t.status().to_string());
  return std::move(t).value();
}

Devices devices_of(const Topology& t, Partition p) {
  Result<Devices> d = t.devices(p);
  REQUIRE_MESSAGE(d.has_value(), d.status().to_string());
  return std::move(d).value();
}

TEST_CASE("a DGX-2 has two NUMA CPU devices and 16 V100s, eight local to each node") {
  const Topology t = load_xml("nvidiaDGX2.xml");
  const Devices d = devices_of(t, Partition::kNuma);
  REQUIRE(d.cpus.size() == 2);
  CHECK(d.cpus[0].id == "cpu0");
  CHECK(d.cpus[0].cpuset == "0-1");
  CHECK(d.cpus[1].cpuset == "24-25");
  CHECK(d.cpus[1].numa_node == 1);
  CHECK(d.cpus[0].l3_bytes == 34603008);
  REQUIRE(d.gpus.size() == 16);
  int on_node[2] = {0, 0};
  for (const GpuDevice& g : d.gpus) {
    CHECK(g.model == "Tesla V100-SXM3-32GB-H");
    CHECK(g.backend == "NVML");
    REQUIRE((g.numa_node == 0 || g.numa_node == 1));
    CHECK(g.local_cpuset == d.cpus[g.numa_node].cpuset);
    ++on_node[g.numa_node];
  }
  CHECK(on_node[0] == 8);
  CHECK(on_node[1] == 8);
  CHECK(d.gpus[0].id == "gpu0");
  CHECK(d.gpus[0].pci_bus_id == "0000:34:00.0");
}

TEST_CASE("a POWER8 node sees its P100s through CUDA, with memory and locality") {
  const Devices d = devices_of(load_xml("power8gpudistances.xml"), Partition::kNuma);
  REQUIRE(d.cpus.size() == 2);
  CHECK(d.cpus[0].pus == 8);
  CHECK(d.cpus[0].cores == 4);
  REQUIRE(d.gpus.size() == 4);
  for (const GpuDevice& g : d.gpus) {
    CHECK(g.backend == "CUDA");
    CHECK(g.model == "Tesla P100-SXM2-16GB");
    CHECK(g.memory_bytes == 17071734784ull);
  }
  CHECK(d.gpus[0].numa_node == 0);
  CHECK(d.gpus[2].numa_node == 1);
  CHECK(d.gpus[2].local_cpuset == d.cpus[1].cpuset);
}

TEST_CASE("a hybrid CPU splits by core kind, most energy-efficient kind first") {
  const Topology t = load_xml("fakecpukinds.xml");
  const Devices kinds = devices_of(t, Partition::kCoreKind);
  REQUIRE(kinds.cpus.size() == 3);
  CHECK(kinds.cpus[0].cpuset == "0-1");
  CHECK(kinds.cpus[0].efficiency_rank == 0);
  CHECK(kinds.cpus[0].core_kind == "MySmallCore");
  CHECK(kinds.cpus[2].efficiency_rank == 2);
  CHECK(kinds.cpus[2].core_kind == "IntelCore");
  // One NUMA device covers every kind: its efficiency is unknown (-1).
  const Devices numa = devices_of(t, Partition::kNuma);
  REQUIRE(numa.cpus.size() == 1);
  CHECK(numa.cpus[0].efficiency_rank == -1);
  CHECK(t.devices(Partition::kL3).status().message().find("no L3") != std::string::npos);
}

TEST_CASE("a two-socket Xeon splits per NUMA node, per L3 and per core") {
  const Topology t = load_xml("24em64t-2n6c2t-pci.xml");
  const Devices numa = devices_of(t, Partition::kNuma);
  REQUIRE(numa.cpus.size() == 2);
  CHECK(numa.cpus[0].cores == 6);
  CHECK(numa.cpus[0].pus == 12);
  CHECK(numa.cpus[1].numa_node == 1);
  CHECK(numa.gpus.empty());
  CHECK(devices_of(t, Partition::kL3).cpus.size() == 2);
  const Devices cores = devices_of(t, Partition::kCore);
  REQUIRE(cores.cpus.size() == 12);
  CHECK(cores.cpus[0].pus == 2);
  CHECK(t.devices(Partition::kCoreKind).status().code() == StatusCode::kInvalidArgument);
}

TEST_CASE("a 24-NUMA-node machine gives 24 devices of 8 cores") {
  const Devices d = devices_of(load_xml("192em64t-24n8c2t.xml"), Partition::kNuma);
  REQUIRE(d.cpus.size() == 24);
  for (size_t i = 0; i < d.cpus.size(); ++i) {
    CHECK(d.cpus[i].cores == 8);
    CHECK(d.cpus[i].pus == 16);
    CHECK(d.cpus[i].numa_node == static_cast<int>(i));
  }
}

TEST_CASE("synthetic topologies: two sockets, each with two NUMA nodes and two L3 groups") {
  Result<Topology> t = Topology::synthetic("pack:2 [numa] l3:2 core:4 pu:2");
  REQUIRE(t.has_value());
  CHECK(devices_of(*t, Partition::kNuma).cpus.size() == 2);
  const Devices l3 = devices_of(*t, Partition::kL3);
  REQUIRE(l3.cpus.size() == 4);
  CHECK(l3.cpus[0].cores == 4);
  CHECK(l3.cpus[3].numa_node == 1);
  CHECK(devices_of(*t, Partition::kCore).cpus.size() == 16);
  CHECK(t->summary() == "2 packages, 2 NUMA nodes, 16 cores, 32 PUs, 0 GPUs");
}

TEST_CASE("fingerprints tell machines apart and are stable") {
  const std::string a = load_xml("nvidiaDGX2.xml").fingerprint();
  CHECK(a.size() == 16);
  CHECK(a == load_xml("nvidiaDGX2.xml").fingerprint());
  CHECK(a != load_xml("power8gpudistances.xml").fingerprint());
  CHECK(Topology::synthetic("pack:2 core:2 pu:1")->fingerprint() !=
        Topology::synthetic("pack:2 core:4 pu:1")->fingerprint());
}

TEST_CASE("bad inputs are refused with a reason") {
  CHECK(Topology::from_xml("/nonexistent.xml").status().code() == StatusCode::kInvalidArgument);
  CHECK(Topology::synthetic("pack:two").status().code() == StatusCode::kInvalidArgument);
  CHECK(partition_from_string("socket") == std::nullopt);
  CHECK(partition_from_string("core-kind") == Partition::kCoreKind);
  // Binding only makes sense on this machine.
  CHECK(load_xml("nvidiaDGX2.xml").bind_thread("0").code() == StatusCode::kInvalidArgument);
}

TEST_CASE("this machine has at least one CPU device with every allowed PU") {
  Result<Topology> t = Topology::host();
  REQUIRE(t.has_value());
  CHECK(t->is_this_system());
  const Devices d = devices_of(*t, Partition::kNuma);
  REQUIRE_FALSE(d.cpus.empty());
  CHECK(d.cpus[0].pus >= 1);
  CHECK(d.cpus[0].numa_node >= 0);
}

}  // namespace
}  // namespace recsched::hw

namespace recsched::hw {
namespace {

TEST_CASE("pci_locality places a PCI device by its bus id") {
  Topology t = std::move(
      Topology::from_xml(std::string(RECSCHED_SOURCE_DIR) + "/../shared/topologies/nvidiaDGX2.xml")
          .value());
  std::optional<GpuDevice> g = t.pci_locality("0000:34:00.0");
  REQUIRE(g.has_value());
  CHECK(g->numa_node == 0);
  CHECK(g->local_cpuset == "0-1");
  CHECK_FALSE(t.pci_locality("0000:ff:1f.7").has_value());
}

}  // namespace
}  // namespace recsched::hw
