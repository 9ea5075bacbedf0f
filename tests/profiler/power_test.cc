#include "profiler/power.h"

#include <dlfcn.h>
#include <doctest/doctest.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>
#include "tests/skip.h"

namespace recsched::profiler {
namespace {

namespace fs = std::filesystem;

// A fresh directory under /tmp, removed with everything in it.
class TempDir {
 public:
  TempDir() {
    std::string pattern = "/tmp/recsched-power-XXXXXX";
    if (::mkdtemp(pattern.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
    path_ = pattern;
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

void write_file(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::trunc);
  out << text << "\n";
  REQUIRE(out.good());
}

// A synthetic powercap tree laid out flat, as /sys/class/powercap is.
class FakePowercap {
 public:
  static constexpr uint64_t kMaxUj = 1'000'000'000;

  const std::string& root() const { return dir_.path(); }
  std::string zone_dir(const std::string& zone) const { return root() + "/intel-rapl:" + zone; }

  void add_zone(const std::string& zone, const std::string& name, uint64_t energy_uj,
                uint64_t max_uj = kMaxUj) {
    fs::create_directory(zone_dir(zone));
    write_file(zone_dir(zone) + "/name", name);
    write_file(zone_dir(zone) + "/max_energy_range_uj", std::to_string(max_uj));
    set(zone, energy_uj);
  }
  void set(const std::string& zone, uint64_t energy_uj) {
    write_file(zone_dir(zone) + "/energy_uj", std::to_string(energy_uj));
  }

  // Two packages, each with core and dram subzones, and a psys zone.
  static void two_packages(FakePowercap& tree) {
    tree.add_zone("0", "package-0", 10'000'000);
    tree.add_zone("0:0", "core", 5'000'000);
    tree.add_zone("0:1", "dram", 1'000'000);
    tree.add_zone("1", "package-1", 20'000'000);
    tree.add_zone("1:0", "core", 6'000'000);
    tree.add_zone("1:1", "dram", 2'000'000);
    tree.add_zone("2", "psys", 50'000'000);
  }
  // Adds 1 J to package-0, 0.2 J to its dram, 2 J to package-1, 0.3 J to its dram, and
  // energy to the core and psys zones, which must not count.
  static void spend(FakePowercap& tree) {
    tree.set("0", 11'000'000);
    tree.set("0:0", 5'500'000);
    tree.set("0:1", 1'200'000);
    tree.set("1", 22'000'000);
    tree.set("1:0", 7'000'000);
    tree.set("1:1", 2'300'000);
    tree.set("2", 90'000'000);
  }

 private:
  TempDir dir_;
};

// Options for every package under `root`, dram included (the defaults).
RaplOptions under(const std::string& root) {
  RaplOptions options;
  options.root = root;
  return options;
}

double read_joules(PowerMeter& meter) {
  Result<double> joules = meter.energy_joules();
  REQUIRE_MESSAGE(joules.has_value(), joules.status().to_string());
  return *joules;
}

bool nvml_loadable() {
  void* lib = ::dlopen("libnvidia-ml.so.1", RTLD_NOW);
  if (lib != nullptr) ::dlclose(lib);
  return lib != nullptr;
}

TEST_CASE("RAPL meter sums every package and its dram subzone, skipping core and psys") {
  FakePowercap tree;
  FakePowercap::two_packages(tree);
  Result<std::unique_ptr<PowerMeter>> meter = RaplMeter::open(under(tree.root()));
  REQUIRE_MESSAGE(meter.has_value(), meter.status().to_string());
  CHECK((*meter)->source() == "rapl");
  CHECK((*meter)->describe() == "rapl: package-0 + dram, package-1 + dram (" + tree.root() + ")");
  CHECK(read_joules(**meter) == 0.0);
  FakePowercap::spend(tree);
  CHECK(read_joules(**meter) == doctest::Approx(3.5));
  CHECK(read_joules(**meter) == doctest::Approx(3.5));  // nothing spent since
}

TEST_CASE("RAPL meter reads only the selected package") {
  FakePowercap tree;
  FakePowercap::two_packages(tree);
  RaplOptions options = under(tree.root());
  options.packages = {1};
  Result<std::unique_ptr<PowerMeter>> meter = RaplMeter::open(options);
  REQUIRE_MESSAGE(meter.has_value(), meter.status().to_string());
  CHECK((*meter)->describe() == "rapl: package-1 + dram (" + tree.root() + ")");
  FakePowercap::spend(tree);
  CHECK(read_joules(**meter) == doctest::Approx(2.3));
}

TEST_CASE("RAPL meter leaves dram out when include_dram is false") {
  FakePowercap tree;
  FakePowercap::two_packages(tree);
  RaplOptions options = under(tree.root());
  options.include_dram = false;
  Result<std::unique_ptr<PowerMeter>> meter = RaplMeter::open(options);
  REQUIRE_MESSAGE(meter.has_value(), meter.status().to_string());
  CHECK((*meter)->describe() == "rapl: package-0, package-1 (" + tree.root() + ")");
  FakePowercap::spend(tree);
  CHECK(read_joules(**meter) == doctest::Approx(3.0));
}

TEST_CASE("RAPL meter counts across a counter wrapping past max_energy_range_uj") {
  FakePowercap tree;
  tree.add_zone("0", "package-0", 900'000, /*max_uj=*/1'000'000);
  Result<std::unique_ptr<PowerMeter>> meter = RaplMeter::open(under(tree.root()));
  REQUIRE_MESSAGE(meter.has_value(), meter.status().to_string());
  tree.set("0", 990'000);
  CHECK(read_joules(**meter) == doctest::Approx(0.09));
  tree.set("0", 5'000);  // wrapped: 10'000 to max, then 5'000
  CHECK(read_joules(**meter) == doctest::Approx(0.105));
  tree.set("0", 7'000);
  CHECK(read_joules(**meter) == doctest::Approx(0.107));
}

TEST_CASE("RAPL meter is unavailable when the powercap root is missing or has no packages") {
  TempDir dir;
  SUBCASE("missing root") {
    const std::string root = dir.path() + "/absent";
    Result<std::unique_ptr<PowerMeter>> meter = RaplMeter::open(under(root));
    REQUIRE_FALSE(meter.has_value());
    CHECK(meter.status().code() == StatusCode::kUnavailable);
    CHECK(meter.status().message() == "no RAPL zones under " + root);
  }
  SUBCASE("empty root") {
    Result<std::unique_ptr<PowerMeter>> meter = RaplMeter::open(under(dir.path()));
    CHECK(meter.status().code() == StatusCode::kUnavailable);
  }
  SUBCASE("only a psys zone") {
    FakePowercap tree;
    tree.add_zone("0", "psys", 1);
    Result<std::unique_ptr<PowerMeter>> meter = RaplMeter::open(under(tree.root()));
    CHECK(meter.status().code() == StatusCode::kUnavailable);
    CHECK(meter.status().message() == "no RAPL zones under " + tree.root());
  }
}

TEST_CASE("RAPL meter is unavailable, naming the file, when an energy_uj cannot be read") {
  // The tests run as root, which chmod does not stop: break the read another way.
  FakePowercap tree;
  FakePowercap::two_packages(tree);
  const std::string file = tree.zone_dir("1:1") + "/energy_uj";
  fs::remove(file);
  SUBCASE("energy_uj is a directory") { fs::create_directory(file); }
  SUBCASE("energy_uj is a dangling symlink") { fs::create_symlink(tree.root() + "/gone", file); }
  Result<std::unique_ptr<PowerMeter>> meter = RaplMeter::open(under(tree.root()));
  REQUIRE_FALSE(meter.has_value());
  CHECK(meter.status().code() == StatusCode::kUnavailable);
  const std::string message = meter.status().message();
  CHECK(message.find("cannot read " + file + ": ") == 0);
  CHECK(message.find("RAPL needs root or read access to energy_uj") != std::string::npos);
  // Leaving that dram out avoids the broken file.
  RaplOptions options = under(tree.root());
  options.include_dram = false;
  CHECK(RaplMeter::open(options).has_value());
}

TEST_CASE("RAPL meter rejects a package that is not in the tree") {
  FakePowercap tree;
  FakePowercap::two_packages(tree);
  RaplOptions options = under(tree.root());
  options.packages = {0, 3};
  Result<std::unique_ptr<PowerMeter>> meter = RaplMeter::open(options);
  CHECK(meter.status().code() == StatusCode::kInvalidArgument);
  CHECK(meter.status().message().find("package 3") != std::string::npos);
}

TEST_CASE("RAPL meter is left unchanged by a failed read") {
  FakePowercap tree;
  FakePowercap::two_packages(tree);
  Result<std::unique_ptr<PowerMeter>> meter = RaplMeter::open(under(tree.root()));
  REQUIRE_MESSAGE(meter.has_value(), meter.status().to_string());
  FakePowercap::spend(tree);
  const std::string file = tree.zone_dir("1") + "/energy_uj";
  fs::remove(file);
  Result<double> failed = (*meter)->energy_joules();
  CHECK(failed.status().code() == StatusCode::kUnavailable);
  CHECK(failed.status().message().find(file) != std::string::npos);
  tree.set("1", 22'000'000);
  CHECK(read_joules(**meter) == doctest::Approx(3.5));
}

TEST_CASE("NVML meter is unavailable, naming libnvidia-ml.so.1, without an NVIDIA driver") {
  if (nvml_loadable()) RECSCHED_SKIP("libnvidia-ml.so.1 loads on this host (an NVIDIA driver)");
  for (const std::string bus_id : {"", "0000:17:00.0"}) {
    Result<std::unique_ptr<PowerMeter>> meter =
        bus_id.empty() ? NvmlMeter::open(0) : NvmlMeter::open_by_pci_bus_id(bus_id);
    REQUIRE_FALSE(meter.has_value());
    CHECK(meter.status().code() == StatusCode::kUnavailable);
    CHECK(meter.status().message().find("libnvidia-ml.so.1 not found (no NVIDIA driver): ") == 0);
  }
  CHECK(NvmlMeter::open(-1).status().code() == StatusCode::kInvalidArgument);
}

TEST_CASE("NVML meter reads a monotonic energy counter from GPU 0 when there is one") {
  if (!nvml_loadable()) RECSCHED_SKIP("needs NVML: no libnvidia-ml.so.1 (no NVIDIA driver)");
  Result<std::unique_ptr<PowerMeter>> meter = NvmlMeter::open(0);
  if (!meter.has_value()) {
    // NVML loads but sees no GPU 0: unavailable is the only acceptable failure.
    REQUIRE(meter.status().code() == StatusCode::kUnavailable);
    RECSCHED_SKIP("needs an NVIDIA GPU: " + meter.status().to_string());
  }
  MESSAGE((*meter)->describe());
  CHECK((*meter)->source() == "nvml");
  const double first = read_joules(**meter);
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  const double second = read_joules(**meter);
  MESSAGE("GPU 0 used " << second - first << " J in about 0.3 s");
  CHECK(first >= 0.0);
  CHECK(second > first);  // an idle data-centre GPU still draws tens of watts
  // A second meter on the same GPU shares the library and NVML's initialisation.
  {
    Result<std::unique_ptr<PowerMeter>> again = NvmlMeter::open(0);
    REQUIRE(again.has_value());
  }  // closing it must leave the first meter working
  CHECK(read_joules(**meter) >= second);
  CHECK(NvmlMeter::open(1'000'000).status().code() == StatusCode::kUnavailable);
}

TEST_CASE("estimated meter charges idle watts for wall time and the rest for busy time") {
  double now = 100.0;
  EstimatedMeter meter({.active_w = 10.0, .idle_w = 2.0, .what = "CPU (1 core)"},
                       [&now] { return now; });
  CHECK(meter.source() == "estimated");
  CHECK(meter.describe() == "estimated: CPU (1 core) at 10 W active, 2 W idle");
  CHECK(read_joules(meter) == 0.0);
  now = 110.0;
  CHECK(read_joules(meter) == doctest::Approx(20.0));  // idle: 2 W x 10 s
  meter.add_busy(3.0);
  meter.add_busy(-1.0);  // ignored
  CHECK(read_joules(meter) == doctest::Approx(20.0 + 8.0 * 3.0));
}

TEST_CASE("estimated meter accepts add_busy from many threads") {
  double now = 0.0;
  EstimatedMeter meter({.active_w = 5.0, .idle_w = 1.0, .what = "test"}, [&now] { return now; });
  std::vector<std::thread> workers;
  for (int t = 0; t < 4; ++t) {
    workers.emplace_back([&meter] {
      for (int i = 0; i < 1000; ++i) meter.add_busy(0.25);
    });
  }
  for (std::thread& w : workers) w.join();
  CHECK(read_joules(meter) == 4.0 * 1000.0);  // 1000 device-seconds x 4 W, exact in binary
}

TEST_CASE("estimated meter counts parked time at the parked watts") {
  double now = 0.0;
  EstimatedMeter meter({.active_w = 10.0, .idle_w = 2.0, .parked_w = 0.5, .what = "test"},
                       [&now] { return now; });
  now = 10.0;
  meter.add_busy(2.0);    // 2 s busy: +8 W over idle
  meter.add_parked(4.0);  // 4 s parked: -1.5 W under idle
  CHECK(read_joules(meter) == doctest::Approx(2.0 * 10 + 8.0 * 2 - 1.5 * 4));
  meter.add_parked(-1.0);  // ignored, as add_busy ignores it
  CHECK(read_joules(meter) == doctest::Approx(30.0));
  // Without parked_w, parking costs what idling does.
  double t = 0.0;
  EstimatedMeter same({.active_w = 10.0, .idle_w = 2.0, .what = "test"}, [&t] { return t; });
  t = 10.0;
  same.add_parked(4.0);
  CHECK(read_joules(same) == doctest::Approx(2.0 * 10));
  CHECK_THROWS_AS(EstimatedMeter({.active_w = 3.0, .idle_w = 1.0, .parked_w = 2.0, .what = "t"}),
                  std::invalid_argument);
}

TEST_CASE("estimated meter rejects idle watts above active watts or below zero") {
  CHECK_THROWS_AS(EstimatedMeter({.active_w = 1.0, .idle_w = 2.0, .what = "test"}),
                  std::invalid_argument);
  CHECK_THROWS_AS(EstimatedMeter({.active_w = 1.0, .idle_w = -1.0, .what = "test"}),
                  std::invalid_argument);
  CHECK_NOTHROW(EstimatedMeter({.active_w = 3.0, .idle_w = 3.0, .what = "test"}));
}

TEST_CASE("cpu_meter falls back to an estimate, saying why, when RAPL is missing") {
  TempDir dir;
  const PowerConfig config{.powercap_root = dir.path() + "/absent"};
  MeterChoice choice = cpu_meter(config, {}, 4);
  REQUIRE(choice.meter != nullptr);
  CHECK(choice.meter->source() == "estimated");
  CHECK(choice.note == "RAPL unavailable (no RAPL zones under " + config.powercap_root +
                           "): estimating CPU (4 cores) at 32 W active, 6 W idle");
  auto* estimated = dynamic_cast<EstimatedMeter*>(choice.meter.get());
  REQUIRE(estimated != nullptr);
  estimated->add_busy(1.0);
  CHECK(read_joules(*estimated) >= 32.0 - 6.0);
  CHECK_THROWS_AS(cpu_meter(config, {}, 0), std::invalid_argument);
}

TEST_CASE("cpu_meter picks RAPL when the powercap tree is readable") {
  FakePowercap tree;
  FakePowercap::two_packages(tree);
  MeterChoice choice = cpu_meter({.powercap_root = tree.root()}, {0}, 4);
  REQUIRE(choice.meter != nullptr);
  CHECK(choice.meter->source() == "rapl");
  CHECK(choice.note == "rapl: package-0 + dram (" + tree.root() + ")");
  CHECK(dynamic_cast<EstimatedMeter*>(choice.meter.get()) == nullptr);
}

TEST_CASE("gpu_meter falls back to an estimate, saying why, without NVML") {
  if (nvml_loadable()) RECSCHED_SKIP("libnvidia-ml.so.1 loads on this host (an NVIDIA driver)");
  MeterChoice choice = gpu_meter(PowerConfig{}, 0, "0000:17:00.0");
  REQUIRE(choice.meter != nullptr);
  CHECK(choice.meter->source() == "estimated");
  CHECK(choice.meter->describe() == "estimated: GPU 0000:17:00.0 at 400 W active, 70 W idle");
  CHECK(choice.note.find("NVML unavailable (libnvidia-ml.so.1 not found") == 0);
  CHECK(choice.note.find("): estimating GPU 0000:17:00.0 at 400 W active, 70 W idle") !=
        std::string::npos);
}

}  // namespace
}  // namespace recsched::profiler
