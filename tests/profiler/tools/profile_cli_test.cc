#include "profiler/tools/profile_cli.h"

#include "daemon/cpu_latency.h"

#include <doctest/doctest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

namespace recsched::profiler::tools {
namespace {

using nlohmann::json;
namespace fs = std::filesystem;

struct Run {
  int code;
  std::string out, err;
};

Run run(const std::vector<std::string>& args) {
  std::ostringstream out, err;
  const int code = run_profile_cli(args, out, err);
  return {code, out.str(), err.str()};
}

std::string source(const std::string& rel) { return std::string(RECSCHED_SOURCE_DIR) + "/" + rel; }

// A temp dir with a config over two golden models; removed at the end of the test.
struct Scratch {
  fs::path dir = fs::temp_directory_path() / ("recsched_profile_" + std::to_string(getpid()));
  Scratch() {
    fs::create_directories(dir);
    std::ofstream(dir / "config.json") << json{
        {"models",
         {source("tests/fixtures/golden/wide.model.json"),
          {{"spec", source("tests/fixtures/golden/dien.model.json")},
           {"weights", source("tests/fixtures/golden/dien.safetensors")}}}},
        {"state_dir", (dir / "state").string()},
        {"gpus", false}}.dump();
  }
  ~Scratch() { fs::remove_all(dir); }
  std::string config() const { return (dir / "config.json").string(); }
};

TEST_CASE("topology --json lists a DGX-2's CPU devices and GPUs") {
  const Run r = run({"topology", "--json", "--xml", source("../shared/topologies/nvidiaDGX2.xml")});
  REQUIRE_MESSAGE(r.code == 0, r.err);
  const json j = json::parse(r.out);
  int cpus = 0, gpus = 0;
  for (const json& d : j["devices"]) {
    if (d["kind"] == "cpu") ++cpus;
    if (d["kind"] == "gpu") ++gpus;
  }
  CHECK(cpus == 2);
  CHECK(gpus == 16);
  CHECK(j["devices"][2]["id"] == "gpu0");
  CHECK(j["devices"][2]["pci_bus_id"] == "0000:34:00.0");
}

TEST_CASE("topology prints a readable table for this machine") {
  const Run r = run({"topology"});
  REQUIRE(r.code == 0);
  CHECK(r.out.find("cpu0") != std::string::npos);
  CHECK(r.out.find("DEVICE") != std::string::npos);
}

TEST_CASE("run profiles, caches, and a second run reuses the cache") {
  Scratch s;
  const Run first = run({"run", "--config", s.config(), "--quick", "--json"});
  REQUIRE_MESSAGE(first.code == 0, first.err);
  const json a = json::parse(first.out);
  CHECK(a["measured"] == 2);
  CHECK(a["cached"] == 0);
  REQUIRE(a["profiles"].size() == 2);
  CHECK(a["profiles"][0]["points"].size() == 3);
  CHECK(fs::exists(s.dir / "state" / "profiles.json"));

  const Run second = run({"run", "--config", s.config(), "--quick", "--json"});
  REQUIRE(second.code == 0);
  const json b = json::parse(second.out);
  CHECK(b["measured"] == 0);
  CHECK(b["cached"] == 2);
  CHECK(b["profiles"][1]["points"] == a["profiles"][1]["points"]);

  // A corrupt cache is ignored with a warning and rebuilt.
  std::ofstream(s.dir / "state" / "profiles.json") << "{not json";
  const Run third = run({"run", "--config", s.config(), "--quick", "--json"});
  REQUIRE(third.code == 0);
  CHECK(json::parse(third.out)["measured"] == 2);
  CHECK(third.err.find("warning") != std::string::npos);
}

// The cache is keyed by what the figures depend on: the config's profile.quick reads back
// what --quick measured, and a changed power estimate is measured again, with a warning
// naming what changed (recschedd builds its key the same way: profiler/profile_cache.h).
TEST_CASE("run measures again when the conditions it measured under change, and says which") {
  Scratch s;
  const Run first = run({"run", "--config", s.config(), "--quick", "--json"});
  REQUIRE_MESSAGE(first.code == 0, first.err);
  CHECK(json::parse(first.out)["measured"] == 2);

  json cfg = json::parse(std::ifstream(s.config()));
  cfg["profile"] = {{"quick", true}};
  std::ofstream(s.dir / "quick.json") << cfg.dump();
  const Run same = run({"run", "--config", (s.dir / "quick.json").string(), "--json"});
  REQUIRE_MESSAGE(same.code == 0, same.err);
  CHECK(json::parse(same.out)["cached"] == 2);
  CHECK(same.err.find("warning") == std::string::npos);

  cfg["power"] = {{"cpu_active_w_per_core", 6.5}};
  std::ofstream(s.dir / "watts.json") << cfg.dump();
  const Run other = run({"run", "--config", (s.dir / "watts.json").string(), "--json"});
  REQUIRE_MESSAGE(other.code == 0, other.err);
  CHECK(json::parse(other.out)["measured"] == 2);
  CHECK_MESSAGE(other.err.find("measured under other conditions: 'power estimates CPU 8/1.5/0.2") !=
                    std::string::npos,
                other.err);
  CHECK(other.err.find("'power estimates CPU 6.5/1.5/0.2") != std::string::npos);
}

// recschedd's own config, every daemon key in it (listen, policy, limits, token, ...), is
// what run reads: here systemd/recschedd.json with two golden models in place of the zoo,
// and devices naming the one this host surely has.
TEST_CASE("run reads recschedd's config, daemon-only keys and all, and its devices list") {
  Scratch s;
  json cfg = json::parse(std::ifstream(source("systemd/recschedd.json")));
  cfg["models"] = {source("tests/fixtures/golden/wide.model.json"),
                   source("tests/fixtures/golden/ncf.model.json")};
  cfg["state_dir"] = (s.dir / "daemon-state").string();
  cfg["gpus"] = false;
  cfg["devices"] = {"cpu0"};
  std::ofstream(s.dir / "recschedd.json") << cfg.dump(2);
  const Run r = run({"run", "--config", (s.dir / "recschedd.json").string(), "--quick", "--json"});
  REQUIRE_MESSAGE(r.code == 0, r.err);
  const json j = json::parse(r.out);
  CHECK(j["measured"] == 2);
  for (const json& p : j["profiles"]) CHECK(p["device"] == "cpu0");
  CHECK(fs::exists(s.dir / "daemon-state" / "profiles.json"));
}

// limits.cpu_latency_us is held while measuring, as recschedd holds it while it profiles:
// reported in the JSON as in recschedd's /v1/stats, and named on stderr.
TEST_CASE("run holds the config's CPU latency request while it measures, or says why not") {
  Scratch s;
  SUBCASE("none asked") {
    const Run r = run({"run", "--config", s.config(), "--quick", "--json"});
    REQUIRE_MESSAGE(r.code == 0, r.err);
    CHECK(json::parse(r.out)["cpu_latency"].is_null());
    CHECK(r.err.find("cpu_latency_us") == std::string::npos);
  }
  SUBCASE("asked: held with at most that in effect, or not held with the reason") {
    json cfg = json::parse(std::ifstream(s.config()));
    cfg["limits"] = {{"cpu_latency_us", 5}};
    std::ofstream(s.dir / "qos.json") << cfg.dump();
    const Run r = run({"run", "--config", (s.dir / "qos.json").string(), "--quick", "--json"});
    REQUIRE_MESSAGE(r.code == 0, r.err);
    const json q = json::parse(r.out)["cpu_latency"];
    REQUIRE(q.is_object());
    CHECK(q["requested_us"] == 5);
    // Root can write /dev/cpu_dma_latency (CI runs as root); an unprivileged user, or a
    // container without the device, cannot: both are real outcomes, reported as such.
    const bool can_write = ::access(daemon::CpuLatencyRequest::kDevice, W_OK) == 0;
    CHECK(q["held"] == can_write);
    if (can_write) {
      REQUIRE(q["effective_us"].is_number_integer());
      CHECK(q["effective_us"].get<int64_t>() >= 0);
      CHECK(q["effective_us"].get<int64_t>() <= 5);
      CHECK(r.err.find("limits.cpu_latency_us = 5: CPU latency QoS held while measuring") !=
            std::string::npos);
    } else {
      CHECK(q["error"].get<std::string>().find(daemon::CpuLatencyRequest::kDevice) !=
            std::string::npos);
      CHECK(r.err.find("limits.cpu_latency_us = 5: not held") != std::string::npos);
    }
  }
}

TEST_CASE("bad configs and arguments fail with one line naming the problem") {
  Scratch s;
  std::ofstream(s.dir / "bad.json") << R"({"models": ["x.json"], "colour": 1})";
  Run r = run({"run", "--config", (s.dir / "bad.json").string()});
  CHECK(r.code == 1);
  CHECK(r.err.find("key 'colour'") != std::string::npos);
  std::ofstream(s.dir / "bad2.json") << R"({"models": ["missing.json"]})";
  r = run({"run", "--config", (s.dir / "bad2.json").string()});
  CHECK(r.code == 1);
  CHECK(r.err.find("missing.json") != std::string::npos);
  CHECK(run({"run"}).code == 2);
  CHECK(run({"topology", "--partition", "socket"}).code == 2);
  CHECK(run({"frobnicate"}).code == 2);
  CHECK(run({"--help"}).code == 0);
}

}  // namespace
}  // namespace recsched::profiler::tools
