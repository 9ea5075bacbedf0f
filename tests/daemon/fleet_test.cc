// What recschedd tells a fleet (daemon/fleet.h) and the agent-check listener
// (daemon/agent_check.h), on a capacity worked out by hand.
#include "daemon/fleet.h"

#include <doctest/doctest.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "daemon/agent_check.h"
#include "tests/daemon/harness.h"

namespace recsched::daemon {
namespace {

// Two models: a 280 q/s one served at 140, a 1600 q/s one at 400 (utilisation 0.75,
// mix capacity 720, headroom 180), as tests/policies/capacity_test.cc computes them.
policies::HostCapacity busy_host() {
  policies::HostCapacity h;
  policies::ModelCapacity m{"m", 30, 200, 280, 150, 140, 70, {}};
  m.devices.push_back({"cpu0", 80, 20, 1, false});
  m.devices.push_back({"gpu0", 200, 4, 1, false});
  h.models.push_back(m);
  h.models.push_back({"other", 5, 100, 1600, 400, 400, 400, {{"cpu0", 1600, 1, 1, false}}});
  h.utilisation = 0.75;
  h.mix_capacity_qps = 720;
  h.served_qps = 540;
  h.headroom_qps = 180;
  return h;
}

TEST_CASE("the agent's weight: headroom over the reference, within HAProxy's 1-256 %") {
  const policies::HostCapacity h = busy_host();
  // Against its own capacity: the free fraction, 180 / 720 = 25 %.
  CHECK(agent_weight_percent(h, 0) == 25);
  // Against a fleet-wide reference: absolute headroom, 180 / 120 = 150 %, capped at 256.
  CHECK(agent_weight_percent(h, 120) == 150);
  CHECK(agent_weight_percent(h, 10) == 256);
  // Full: 1 %, not 0 (0 would mean drain, which is said in words).
  policies::HostCapacity full = h;
  full.headroom_qps = 0;
  CHECK(agent_weight_percent(full, 0) == 1);
  // No capacity at all: 1 %.
  CHECK(agent_weight_percent(policies::HostCapacity{}, 0) == 1);
}

TEST_CASE("the agent's line: up with a weight, drain while draining or all degraded, down before ready") {
  const policies::HostCapacity h = busy_host();
  FleetState s{.ready = true, .draining = false, .devices = 2, .degraded_devices = 0};
  CHECK(agent_reply(h, s, 0) == "up ready 25%\n");
  s.degraded_devices = 1;  // one of two: still up
  CHECK(agent_reply(h, s, 0) == "up ready 25%\n");
  s.degraded_devices = 2;
  CHECK(agent_reply(h, s, 0) == "drain\n");
  s.degraded_devices = 0;
  s.draining = true;
  CHECK(agent_reply(h, s, 0) == "drain\n");
  s.draining = false;
  s.ready = false;
  CHECK(agent_reply(h, s, 0) == "down\n");
}

TEST_CASE("GET /v1/capacity's body carries the model, per model and per device") {
  const nlohmann::json j =
      capacity_json(busy_host(), {.ready = true, .draining = true, .devices = 2}, 0.8);
  CHECK(j["host"]["draining"] == true);
  CHECK(j["host"]["degraded"] == false);
  CHECK(j["host"]["utilisation"] == 0.75);
  CHECK(j["host"]["mix_capacity_qps"] == 720);
  CHECK(j["host"]["headroom_qps"] == 180);
  CHECK(j["host"]["max_utilisation"] == 0.8);
  REQUIRE(j["models"].size() == 2);
  CHECK(j["models"][0]["model"] == "m");
  CHECK(j["models"][0]["capacity_qps"] == 280);
  CHECK(j["models"][0]["offered_qps"] == 150);
  CHECK(j["models"][0]["served_qps"] == 140);
  CHECK(j["models"][0]["headroom_qps"] == 70);
  REQUIRE(j["models"][0]["devices"].size() == 2);
  CHECK(j["models"][0]["devices"][1]["device"] == "gpu0");
  CHECK(j["models"][0]["devices"][1]["capacity_qps"] == 200);
  CHECK(j["models"][0]["devices"][1]["service_ms"] == 4);
  CHECK(j["model"].get<std::string>().find("modelled") != std::string::npos);
}

TEST_CASE("the ORCA load report is Envoy's TEXT form") {
  CHECK(orca_load_report(busy_host(), 2.5) ==
        "TEXT application_utilization=0.75, rps_fractional=540, eps=2.5, "
        "named_metrics.headroom_qps=180");
  policies::HostCapacity over = busy_host();
  over.utilisation = 2;  // capped: ORCA's utilisation is a fraction
  CHECK(orca_load_report(over, 0).find("application_utilization=1,") != std::string::npos);
  policies::HostCapacity idle = busy_host();
  idle.utilisation = 5e-6;  // a tiny model's few queries: still not zero
  CHECK(orca_load_report(idle, 0).find("application_utilization=5e-06,") != std::string::npos);
}

TEST_CASE("the NFD feature file names devices and each model's capacity class") {
  policies::HostCapacity h = busy_host();
  h.models.push_back({"odd name/x", 5, 1, 0, 0, 0, 0, {}});
  h.models.push_back({"trailing-", 5, 1, 0, 0, 0, 0, {}});
  h.models.push_back({std::string(80, 'y'), 5, 1, 0, 0, 0, 0, {}});
  const std::string f = nfd_features(h, 2, 1);
  CHECK(f.rfind("# ", 0) == 0);
  CHECK(f.find("\nrecsched.io/cpu-devices=2\n") != std::string::npos);
  CHECK(f.find("\nrecsched.io/gpu-devices=1\n") != std::string::npos);
  CHECK(f.find("\nrecsched.io/gpu=true\n") != std::string::npos);
  CHECK(f.find("\nrecsched.io/capacity-class.m=medium\n") != std::string::npos);
  CHECK(f.find("\nrecsched.io/capacity-class.other=high\n") != std::string::npos);
  CHECK(f.find("\nrecsched.io/capacity-class.odd-name-x=none\n") != std::string::npos);
  // A label key's name part ends with an alphanumeric and has at most 63 characters.
  CHECK(f.find("\nrecsched.io/capacity-class.trailing=none\n") != std::string::npos);
  const std::string longest = "capacity-class." + std::string(63 - 15, 'y');
  CHECK(f.find("\nrecsched.io/" + longest + "=none\n") != std::string::npos);
  CHECK(nfd_features(h, 1, 0).find("\nrecsched.io/gpu=false\n") != std::string::npos);
}

TEST_CASE("a file is replaced atomically, and an unwritable path is an error") {
  const auto dir = std::filesystem::temp_directory_path() / ("recsched-fleet-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  const std::string path = (dir / "features").string();
  REQUIRE(write_file_atomically(path, "a=1\n").is_ok());
  REQUIRE(write_file_atomically(path, "b=2\n").is_ok());
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  CHECK(text.str() == "b=2\n");
  CHECK(std::distance(std::filesystem::directory_iterator(dir), {}) == 1);  // no temporary left
  const Status bad = write_file_atomically((dir / "missing" / "f").string(), "x");
  CHECK(bad.code() == StatusCode::kUnavailable);
  CHECK(bad.message().find("cannot write") != std::string::npos);
  std::filesystem::remove_all(dir);
}

TEST_CASE("the agent-check listener answers each connection with the line of the moment") {
  std::atomic<int> calls{0};
  auto server = AgentCheckServer::start("127.0.0.1", 0, [&] {
    return ++calls == 1 ? std::string("up ready 40%\n") : std::string("drain\n");
  });
  REQUIRE_MESSAGE(server.has_value(), server.status().to_string());
  const uint16_t port = (*server)->port();
  REQUIRE(port != 0);
  CHECK(testing::read_until_close(port) == "up ready 40%\n");
  CHECK(testing::read_until_close(port) == "drain\n");
  CHECK(calls == 2);
  // An agent that sends first (HAProxy's agent-send) gets its line all the same.
  CHECK(testing::read_until_close(port, "hello from haproxy\n") == "drain\n");
  // A port already taken is refused with the OS's reason.
  auto clash = AgentCheckServer::start("127.0.0.1", port, [] { return std::string(); });
  REQUIRE_FALSE(clash.has_value());
  CHECK(clash.status().message().find("cannot listen") != std::string::npos);
  auto bad = AgentCheckServer::start("not-an-ip", 0, [] { return std::string(); });
  CHECK_FALSE(bad.has_value());
}

}  // namespace
}  // namespace recsched::daemon
