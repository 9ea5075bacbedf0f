#include "daemon/config.h"
#include "daemon/service.h"
#include "policies/dispatcher.h"

#include <doctest/doctest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <string>

namespace recsched::daemon {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

constexpr const char* kEtcPath = "/etc/recsched/recschedd.json";

/// A path in the source tree; RECSCHED_SOURCE_DIR in the environment overrides the
/// build's (to run tests built elsewhere).
std::string source_path(const std::string& rel) {
  const char* env = std::getenv("RECSCHED_SOURCE_DIR");
  return std::string(env != nullptr ? env : RECSCHED_SOURCE_DIR) + "/" + rel;
}

std::string read_file(const std::string& path) {
  std::ifstream in(path);
  REQUIRE_MESSAGE(in.good(), "cannot read " << path);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

void write_file(const fs::path& path, const std::string& text) {
  fs::create_directories(path.parent_path());
  std::ofstream out(path);
  out << text;
  REQUIRE(out.good());
}

std::string replace_all(std::string s, const std::string& from, const std::string& to) {
  for (size_t at = s.find(from); at != std::string::npos; at = s.find(from, at + to.size())) {
    s.replace(at, from.size(), to);
  }
  return s;
}

/// systemd/recschedd.json as a checkout has it: its model paths (../models/) resolve
/// against its own folder to the tree's models/.
Result<DaemonConfig> load_example_config() {
  return parse_config(read_file(source_path("systemd/recschedd.json")), source_path("systemd"),
                      kEtcPath);
}

/// A scratch directory, removed when the test ends.
class TempDir {
 public:
  TempDir() {
    static int count = 0;
    path_ = fs::temp_directory_path() /
            ("recsched_config_test_" + std::to_string(getpid()) + "_" + std::to_string(count++));
    fs::remove_all(path_);
    fs::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const fs::path& path() const { return path_; }
  std::string str() const { return path_.string(); }

 private:
  fs::path path_;
};

/// A small valid spec named `name`.
std::string tiny_spec(const std::string& name) {
  return R"({"name": ")" + name + R"(", "type": "dlrm", "dense_features": 4,
      "bottom_mlp": [8, 4], "top_mlp": [6, 1], "embedding_dim": 4, "tables": [100, 10]})";
}

/// Fills "$M" (the source tree's models/) and "$T" (a scratch directory) in `text`.
std::string fill(const std::string& text, const std::string& temp) {
  return replace_all(replace_all(text, "$M", source_path("models")), "$T", temp);
}

TEST_CASE("the inline bound: inline_max_ms under load, up to inline_idle_max_ms alone at a light rate") {
  LimitsConfig l;
  l.inline_max_ms = 0.1;
  l.inline_idle_max_ms = 1.0;
  CHECK(l.inline_bound_ms(0, 0) == 1.0);  // no rate yet
  CHECK(l.inline_bound_ms(0, 5) == 1.0);  // 1 % of 5 q/s: 2 ms, above the bound
  CHECK(l.inline_bound_ms(0, 20) == doctest::Approx(0.5));  // 1 % of the 50 ms gap
  CHECK(l.inline_bound_ms(0, 68) == doctest::Approx(10.0 / 68));
  CHECK(l.inline_bound_ms(0, 1000) == 0.1);  // never below inline_max_ms
  CHECK(l.inline_bound_ms(1, 5) == 0.1);     // another query in flight
  CHECK(l.inline_bound_ms(100, 0) == 0.1);
  l.inline_idle_max_ms = 0;  // off: inline_max_ms whatever the load
  CHECK(l.inline_bound_ms(0, 5) == 0.1);
  l.inline_idle_max_ms = 0.05;  // below inline_max_ms: never tighter when idle
  CHECK(l.inline_bound_ms(0, 5) == 0.1);
  l.inline_max_ms = 0;  // only when idle
  CHECK(l.inline_bound_ms(0, 5) == 0.05);
  CHECK(l.inline_bound_ms(1, 5) == 0);
}

TEST_CASE("the example config loads: the eight zoo models with DeepRecSys's SLA targets") {
  Result<DaemonConfig> c = load_example_config();
  REQUIRE_MESSAGE(c.has_value(), c.status().to_string());
  CHECK(c->path == kEtcPath);
  struct Want {
    const char* name;
    double sla_ms;
  };
  const Want want[] = {{"rmc1", 100}, {"rmc2", 400}, {"rmc3", 100}, {"ncf", 5},
                       {"wnd", 25},   {"mtwnd", 25}, {"din", 100},  {"dien", 35}};
  REQUIRE(c->models.size() == std::size(want));
  for (size_t i = 0; i < std::size(want); ++i) {
    CAPTURE(want[i].name);
    const ModelConfig& m = c->models[i];
    CHECK(m.spec.name == want[i].name);
    CHECK(m.spec_path == source_path("models/") + want[i].name + ".json");
    CHECK(m.weights_path.empty());
    CHECK(m.sla_ms == want[i].sla_ms);
    CHECK(m.sla_ms == default_sla_ms(want[i].name));
    CHECK(m.sla_percentile == 95);
  }
}

TEST_CASE("the example config writes out every key with its default value") {
  const json j = json::parse(read_file(source_path("systemd/recschedd.json")));
  auto keys = [](const json& o) {
    std::set<std::string> k;
    for (const auto& [key, v] : o.items()) k.insert(key);
    return k;
  };
  using Keys = std::set<std::string>;
  CHECK(keys(j) == Keys{"listen", "models", "partition", "policy", "devices", "state_dir", "token",
                        "gpus", "gpu_graph_max_items", "gpu_table_batched", "profile", "power",
                        "limits", "fleet"});
  CHECK(keys(j["listen"]) == Keys{"socket", "tcp", "socket_group"});
  CHECK(keys(j["models"][0]) == Keys{"spec", "weights", "sla_ms", "sla_percentile"});
  CHECK(keys(j["policy"]) == Keys{"name", "params", "plugin_dir"});
  CHECK(keys(j["profile"]) == Keys{"batch_sizes", "seconds_per_point", "quick"});
  CHECK(keys(j["power"]) == Keys{"cpu_active_w_per_core", "cpu_idle_w_per_core",
                                 "cpu_parked_w_per_core", "gpu_active_w", "gpu_idle_w",
                                 "powercap_root"});
  CHECK(keys(j["limits"]) ==
        Keys{"max_body_bytes", "max_header_bytes", "max_headers", "max_connections",
             "header_timeout_ms", "read_timeout_ms", "idle_timeout_ms", "io_threads", "idle_poll_us", "cpu_latency_us", "max_queue", "inline_max_ms", "inline_idle_max_ms", "max_items",
             "max_elements", "max_json_depth", "max_shm_regions", "reject_factor", "normal_priority_share",
             "low_priority_share", "late_budget", "wait_bound_fraction", "preemption", "gpu_merging", "worker_nice", "degraded_ms",
             "window",
             "placement_log"});
  CHECK(keys(j["fleet"]) == Keys{"agent_check", "agent_weight_qps", "max_utilisation", "drain_ms",
                                 "nfd_feature_file", "orca_load_report"});

  Result<DaemonConfig> c = load_example_config();
  REQUIRE_MESSAGE(c.has_value(), c.status().to_string());
  const DaemonConfig defaults;
  CHECK(c->listen == defaults.listen);
  CHECK(c->partition == defaults.partition);
  CHECK(c->policy == defaults.policy);
  CHECK(c->state_dir == defaults.state_dir);
  CHECK(c->token == defaults.token);
  CHECK(c->gpus == defaults.gpus);
  CHECK(c->gpu_graph_max_items == defaults.gpu_graph_max_items);
  CHECK(c->gpu_table_batched == defaults.gpu_table_batched);
  CHECK(c->profile.batch_sizes == defaults.profile.batch_sizes);
  CHECK(c->profile.seconds_per_point == defaults.profile.seconds_per_point);
  CHECK(c->power.cpu_active_w_per_core == defaults.power.cpu_active_w_per_core);
  CHECK(c->power.cpu_idle_w_per_core == defaults.power.cpu_idle_w_per_core);
  CHECK(c->power.gpu_active_w == defaults.power.gpu_active_w);
  CHECK(c->power.gpu_idle_w == defaults.power.gpu_idle_w);
  CHECK(c->power.powercap_root == defaults.power.powercap_root);
  CHECK(c->limits == defaults.limits);
  CHECK(c->fleet == defaults.fleet);
}

TEST_CASE("omitted keys take their defaults") {
  Result<DaemonConfig> c =
      parse_config(fill(R"({"models": ["$M/rmc1.json"]})", ""), "/nowhere", kEtcPath);
  REQUIRE_MESSAGE(c.has_value(), c.status().to_string());
  CHECK(c->listen.socket == "/run/recsched/recschedd.sock");
  CHECK(c->listen.tcp == "127.0.0.1:8000");
  REQUIRE(c->models.size() == 1);
  CHECK(c->models[0].spec.name == "rmc1");
  CHECK(c->models[0].weights_path.empty());
  CHECK(c->models[0].sla_ms == 100);
  CHECK(c->models[0].sla_percentile == 95);
  CHECK(c->partition == hw::Partition::kNuma);
  CHECK(c->policy.name == "static");
  CHECK(c->policy.params == json::object());
  CHECK(c->state_dir == "/var/lib/recsched");
  CHECK(c->token.empty());
  CHECK(c->gpus);
  CHECK(c->profile.batch_sizes == profiler::ProfileOptions{}.batch_sizes);
  CHECK(c->profile.seconds_per_point == 0.05);
  CHECK(c->power.gpu_active_w == 400);
  const LimitsConfig l = c->limits;
  CHECK(c->listen.socket_group.empty());
  CHECK(l.max_body_bytes == 64u << 20);
  CHECK(l.max_header_bytes == 32768);
  CHECK(l.max_headers == 100);
  CHECK(l.max_connections == 256);
  CHECK(l.header_timeout_ms == 5000);
  CHECK(l.read_timeout_ms == 10000);
  CHECK(l.idle_timeout_ms == 60000);
  CHECK(l.io_threads == 2);
  CHECK(l.max_queue == 1024);
  CHECK(l.max_items == 4096);
  CHECK(l.max_elements == 64u << 20);
  CHECK(l.max_json_depth == 32);
  CHECK(l.max_shm_regions == 16);
  CHECK(l.reject_factor == 1.0);
  CHECK(l.normal_priority_share == 0.8);
  CHECK(l.low_priority_share == 0.5);
  CHECK(l.late_budget == 0.5);
  CHECK(l.wait_bound_fraction == 0);
  CHECK(l.inline_max_ms == 0.1);
  CHECK(l.inline_idle_max_ms == 1.0);
  CHECK(l.idle_poll_us == 200);
  CHECK_FALSE(l.cpu_latency_us.has_value());  // no CPU latency request unless asked
  // One admission rule: the simulator runs recschedd's defaults (policies::kDaemonAdmission).
  CHECK(l.reject_factor == policies::kDaemonAdmission.reject_factor);
  CHECK(l.normal_priority_share == policies::kDaemonAdmission.normal_share);
  CHECK(l.low_priority_share == policies::kDaemonAdmission.low_share);
  CHECK(l.late_budget == policies::kDaemonAdmission.late_budget);
  CHECK(l.preemption == true);
  CHECK(l.gpu_merging == true);
  CHECK(l.worker_nice == 10);
  CHECK(l.degraded_ms == 10000);
  CHECK(l.window == 64);
  CHECK(l.placement_log == 4096);
  const FleetConfig f = c->fleet;
  CHECK(f.agent_check.empty());
  CHECK(f.agent_weight_qps == 0);
  CHECK(f.max_utilisation == 0.8);
  CHECK(f.drain_ms == 0);
  CHECK(f.nfd_feature_file.empty());
  CHECK_FALSE(f.orca_load_report);
}

TEST_CASE("the fleet keys are read, relative paths resolved, bad values refused") {
  Result<DaemonConfig> c = parse_config(fill(R"({
      "models": ["$M/ncf.json"],
      "fleet": {"agent_check": "127.0.0.1:8001", "agent_weight_qps": 250, "max_utilisation": 0.5,
                "drain_ms": 3000, "nfd_feature_file": "nfd/recsched", "orca_load_report": true}})",
                                             ""),
                                        "/etc/recsched", kEtcPath);
  REQUIRE_MESSAGE(c.has_value(), c.status().to_string());
  CHECK(c->fleet.agent_check == "127.0.0.1:8001");
  CHECK(c->fleet.agent_weight_qps == 250);
  CHECK(c->fleet.max_utilisation == 0.5);
  CHECK(c->fleet.drain_ms == 3000);
  CHECK(c->fleet.nfd_feature_file == "/etc/recsched/nfd/recsched");
  CHECK(c->fleet.orca_load_report);

  const std::vector<std::pair<std::string, std::string>> bad = {
      {R"({"agent_check": "nohost"})", "key 'fleet.agent_check'"},
      {R"({"agent_check": "127.0.0.1:0"})", "key 'fleet.agent_check': needs a fixed port"},
      {R"({"max_utilisation": 0})", "key 'fleet.max_utilisation': must be a number in (0, 1]"},
      {R"({"agent_weight_qps": -1})", "key 'fleet.agent_weight_qps'"},
      {R"({"drain_ms": 3600001})", "key 'fleet.drain_ms'"},
      {R"({"orca_load_report": 1})", "key 'fleet.orca_load_report': must be true or false"},
      {R"({"weight": 1})", "key 'fleet.weight': unknown key"},
  };
  for (const auto& [fleet, want] : bad) {
    CAPTURE(fleet);
    Result<DaemonConfig> r = parse_config(
        fill(R"({"models": ["$M/ncf.json"], "fleet": )" + fleet + "}", ""), "/etc/recsched",
        kEtcPath);
    REQUIRE_FALSE(r.has_value());
    CHECK(r.status().message().find(want) != std::string::npos);
  }
}

TEST_CASE("set keys override the defaults") {
  Result<DaemonConfig> c = parse_config(fill(R"({
      "models": ["$M/rmc1.json"],
      "listen": {"socket": "", "tcp": "[::1]:0", "socket_group": "root"},
      "partition": "core-kind",
      "policy": {"name": "deeprecsched", "params": {"step": 4, "nested": {"a": [1]}},
                 "plugin_dir": "plugins"},
      "devices": ["cpu0", "gpu0"],
      "state_dir": "/srv/recsched", "token": "s3cr3t-Token_1.2~3+4/5==", "gpus": false,
      "gpu_graph_max_items": 0, "gpu_table_batched": false,
      "profile": {"batch_sizes": [64, 1, 8], "seconds_per_point": 0.5},
      "power": {"gpu_active_w": 700, "gpu_idle_w": 700, "powercap_root": "/tmp/rapl"},
      "limits": {"max_body_bytes": 1024, "max_connections": 65536, "reject_factor": 1.5,
                 "window": 1, "placement_log": 0, "max_header_bytes": 2048, "max_headers": 7,
                 "header_timeout_ms": 250, "max_elements": 99, "max_json_depth": 5,
                 "normal_priority_share": 0.6, "low_priority_share": 0.6, "degraded_ms": 0,
                 "io_threads": 1, "cpu_latency_us": 0}})",
                                             ""),
                                        "/nowhere", kEtcPath);
  REQUIRE_MESSAGE(c.has_value(), c.status().to_string());
  CHECK(c->listen.socket.empty());
  CHECK(c->listen.tcp == "[::1]:0");
  CHECK(c->partition == hw::Partition::kCoreKind);
  CHECK(c->policy.name == "deeprecsched");
  CHECK(c->policy.params == json::parse(R"({"step": 4, "nested": {"a": [1]}})"));
  CHECK(c->policy.plugin_dir == "/nowhere/plugins");  // relative to the config's directory
  CHECK(c->devices == std::vector<std::string>{"cpu0", "gpu0"});
  CHECK(c->state_dir == "/srv/recsched");
  CHECK(c->token == "s3cr3t-Token_1.2~3+4/5==");
  CHECK_FALSE(c->gpus);
  CHECK(c->gpu_graph_max_items == 0);
  CHECK_FALSE(c->gpu_table_batched);
  CHECK(c->profile.batch_sizes == std::vector<uint32_t>{1, 8, 64});
  CHECK(c->profile.seconds_per_point == 0.5);
  CHECK(c->power.gpu_active_w == 700);
  CHECK(c->power.powercap_root == "/tmp/rapl");
  CHECK(c->limits.max_body_bytes == 1024);
  CHECK(c->limits.max_connections == 65536);
  CHECK(c->limits.io_threads == 1);
  CHECK(c->limits.cpu_latency_us == std::optional<uint32_t>(0));  // 0 is a value, not "none"
  CHECK(server_options(c->limits).io_threads == 1);  // what the HTTP server is started with
  CHECK(c->limits.reject_factor == 1.5);
  CHECK(c->limits.window == 1);
  CHECK(c->limits.placement_log == 0);
  CHECK(c->listen.socket_group == "root");
  CHECK(c->limits.max_header_bytes == 2048);
  CHECK(c->limits.max_headers == 7);
  CHECK(c->limits.header_timeout_ms == 250);
  CHECK(c->limits.max_elements == 99);
  CHECK(c->limits.max_json_depth == 5);
  CHECK(c->limits.normal_priority_share == 0.6);
  CHECK(c->limits.low_priority_share == 0.6);
  CHECK(c->limits.degraded_ms == 0);
  CHECK(c->limits.max_queue == 1024);  // untouched keys keep their defaults
}

TEST_CASE("profile.quick selects the quick sweep over the listed sizes") {
  Result<DaemonConfig> c = parse_config(fill(R"({"models": ["$M/rmc1.json"],
               "profile": {"quick": true, "batch_sizes": [2, 4], "seconds_per_point": 9}})",
                                             ""),
                                        "/nowhere", kEtcPath);
  REQUIRE_MESSAGE(c.has_value(), c.status().to_string());
  const profiler::ProfileOptions quick = profiler::ProfileOptions::quick();
  CHECK(c->profile.batch_sizes == quick.batch_sizes);
  CHECK(c->profile.seconds_per_point == quick.seconds_per_point);
  CHECK(c->profile.max_reps == quick.max_reps);
}

TEST_CASE("relative paths resolve against the config file's directory") {
  TempDir t;
  write_file(t.path() / "zoo/m.json", tiny_spec("m"));
  write_file(t.path() / "w.safetensors", "");
  write_file(t.path() / "etc/recschedd.json", fill(R"({
      "models": [{"spec": "../zoo/m.json", "weights": "../w.safetensors"}, "$M/ncf.json"],
      "listen": {"socket": "run/d.sock"}, "state_dir": "state"})",
                                                   ""));
  Result<DaemonConfig> c = load_config((t.path() / "etc/recschedd.json").string());
  REQUIRE_MESSAGE(c.has_value(), c.status().to_string());
  CHECK(c->path == (t.path() / "etc/recschedd.json").string());
  REQUIRE(c->models.size() == 2);
  CHECK(c->models[0].spec_path == (t.path() / "zoo/m.json").string());
  CHECK(c->models[0].weights_path == (t.path() / "w.safetensors").string());
  CHECK(c->models[1].spec_path == source_path("models/ncf.json"));  // absolute: kept
  CHECK(c->listen.socket == (t.path() / "etc/run/d.sock").string());
  CHECK(c->state_dir == (t.path() / "etc/state").string());

  // parse_config resolves against the directory it is given.
  Result<DaemonConfig> p =
      parse_config(R"({"models": ["zoo/m.json"], "state_dir": "s"})", t.str(), "x.json");
  REQUIRE_MESSAGE(p.has_value(), p.status().to_string());
  CHECK(p->models[0].spec_path == (t.path() / "zoo/m.json").string());
  CHECK(p->state_dir == (t.path() / "s").string());
}

TEST_CASE("load_config gives kNotFound for a file it cannot open") {
  TempDir t;
  for (const std::string& path : {(t.path() / "absent.json").string(), t.str()}) {
    CAPTURE(path);
    Result<DaemonConfig> c = load_config(path);
    REQUIRE_FALSE(c.has_value());
    CHECK(c.status().code() == StatusCode::kNotFound);
    CHECK(c.status().message() == "config " + path + ": cannot open file");
  }
}

TEST_CASE("SLA targets default by model name and can be overridden") {
  struct Case {
    const char* name;
    std::optional<double> want;
  };
  for (const Case& k :
       {Case{"rmc1", 100}, Case{"rmc2", 400}, Case{"rmc3", 100}, Case{"ncf", 5}, Case{"wnd", 25},
        Case{"mtwnd", 25}, Case{"din", 100}, Case{"dien", 35}, Case{"RMC1", std::nullopt},
        Case{"", std::nullopt}, Case{"mymodel", std::nullopt}}) {
    CAPTURE(k.name);
    CHECK(default_sla_ms(k.name) == k.want);
  }

  TempDir t;
  write_file(t.path() / "mymodel.json", tiny_spec("mymodel"));
  write_file(t.path() / "other.json", tiny_spec("other"));
  Result<DaemonConfig> c = parse_config(fill(R"({"models": [
      "$M/ncf.json",
      {"spec": "$M/rmc2.json", "sla_ms": 7.5},
      {"spec": "$M/dien.json", "sla_percentile": 99.9},
      {"spec": "$T/mymodel.json"},
      {"spec": "$T/other.json", "sla_ms": 3600000, "sla_percentile": 0.1}]})",
                                             t.str()),
                                        "/nowhere", kEtcPath);
  REQUIRE_MESSAGE(c.has_value(), c.status().to_string());
  struct Want {
    const char* name;
    double sla_ms;
    double percentile;
  };
  const Want want[] = {{"ncf", 5, 95},
                       {"rmc2", 7.5, 95},
                       {"dien", 35, 99.9},
                       {"mymodel", 100, 95},
                       {"other", 3600000, 0.1}};
  REQUIRE(c->models.size() == std::size(want));
  for (size_t i = 0; i < std::size(want); ++i) {
    CAPTURE(want[i].name);
    CHECK(c->models[i].spec.name == want[i].name);
    CHECK(c->models[i].sla_ms == want[i].sla_ms);
    CHECK(c->models[i].sla_percentile == want[i].percentile);
  }
}

TEST_CASE("split_host_port accepts HOST:PORT and [IPV6]:PORT only") {
  struct Case {
    const char* text;
    bool ok;
    const char* host;
    uint16_t port;
  };
  const Case cases[] = {
      {"127.0.0.1:8000", true, "127.0.0.1", 8000},
      {"localhost:0", true, "localhost", 0},
      {"example.com:65535", true, "example.com", 65535},
      {"[::1]:8000", true, "::1", 8000},
      {"[fe80::1%eth0]:443", true, "fe80::1%eth0", 443},
      {"0.0.0.0:00080", true, "0.0.0.0", 80},
      {"127.0.0.1", false, "", 0},       // no port
      {"127.0.0.1:", false, "", 0},      // empty port
      {"host:70000", false, "", 0},      // port out of range
      {"host:123456", false, "", 0},     // too many digits
      {"host:-1", false, "", 0},         // not a number
      {"host:80a", false, "", 0},        // not a number
      {":8000", false, "", 0},           // empty host
      {"[]:8000", false, "", 0},         // empty bracketed host
      {"::1:8000", false, "", 0},        // IPv6 without brackets
      {"[::1]8000", false, "", 0},       // no ':' after ']'
      {"[::1:8000", false, "", 0},       // no ']'
      {"[localhost]:80", false, "", 0},  // brackets around a name
      {"my host:80", false, "", 0},      // space in the host
      {"", false, "", 0},
  };
  for (const Case& k : cases) {
    CAPTURE(k.text);
    Result<std::pair<std::string, uint16_t>> hp = split_host_port(k.text);
    REQUIRE(hp.has_value() == k.ok);
    if (k.ok) {
      CHECK(hp->first == k.host);
      CHECK(hp->second == k.port);
    } else {
      CHECK(hp.status().code() == StatusCode::kInvalidArgument);
      CHECK(hp.status().message().find(std::string("'") + k.text + "'") != std::string::npos);
    }
  }
}

TEST_CASE("apply_overrides sets the listeners and state directory, checked like the keys") {
  Result<DaemonConfig> loaded =
      parse_config(fill(R"({"models": ["$M/ncf.json"]})", ""), "/nowhere", kEtcPath);
  REQUIRE(loaded.has_value());
  const DaemonConfig base = std::move(loaded).value();
  using Opt = std::optional<std::string>;

  SUBCASE("nothing given changes nothing") {
    DaemonConfig c = base;
    REQUIRE(apply_overrides(c, std::nullopt, std::nullopt, std::nullopt).is_ok());
    CHECK(c.listen == base.listen);
    CHECK(c.state_dir == base.state_dir);
  }
  SUBCASE("good values replace the config's") {
    DaemonConfig c = base;
    REQUIRE(apply_overrides(c, Opt("[::]:9000"), Opt("/tmp/r.sock"), Opt("/srv/state")).is_ok());
    CHECK(c.listen.tcp == "[::]:9000");
    CHECK(c.listen.socket == "/tmp/r.sock");
    CHECK(c.state_dir == "/srv/state");
  }
  SUBCASE("relative paths become absolute against the current directory") {
    DaemonConfig c = base;
    REQUIRE(apply_overrides(c, std::nullopt, Opt("r.sock"), Opt("state/../st")).is_ok());
    CHECK(c.listen.socket == (fs::current_path() / "r.sock").string());
    CHECK(c.state_dir == (fs::current_path() / "st").string());
  }
  SUBCASE("\"\" turns one listener off, but not both") {
    DaemonConfig c = base;
    REQUIRE(apply_overrides(c, Opt(""), std::nullopt, std::nullopt).is_ok());
    CHECK(c.listen.tcp.empty());
    CHECK(c.listen.socket == base.listen.socket);
    const Status st = apply_overrides(c, std::nullopt, Opt(""), std::nullopt);
    CHECK(st.code() == StatusCode::kInvalidArgument);
    CHECK(st.message().rfind("--socket: ", 0) == 0);
    CHECK(c.listen.socket == base.listen.socket);
  }
  SUBCASE("bad values are refused naming the option, leaving the config unchanged") {
    struct Case {
      Opt tcp, socket, state_dir;
      const char* option;
    };
    const Case cases[] = {
        {Opt("localhost"), std::nullopt, std::nullopt, "--tcp"},
        {Opt("host:70000"), std::nullopt, std::nullopt, "--tcp"},
        {Opt(":80"), std::nullopt, std::nullopt, "--tcp"},
        {std::nullopt, Opt("/" + std::string(200, 's')), std::nullopt, "--socket"},
        {std::nullopt, std::nullopt, Opt(""), "--state-dir"},
        // A good value before a bad one is not applied either.
        {Opt("127.0.0.1:1"), Opt("/tmp/ok.sock"), Opt(""), "--state-dir"},
    };
    for (const Case& k : cases) {
      CAPTURE(k.option);
      DaemonConfig c = base;
      const Status st = apply_overrides(c, k.tcp, k.socket, k.state_dir);
      CHECK(st.code() == StatusCode::kInvalidArgument);
      CHECK(st.message().rfind(std::string(k.option) + ": ", 0) == 0);
      CHECK(c.listen == base.listen);
      CHECK(c.state_dir == base.state_dir);
    }
  }
}

TEST_CASE("a bad config is refused with one line naming the key path") {
  TempDir t;
  write_file(t.path() / "bad_spec.json", R"({"name": "b", "type": "dlrm", "colour": 1})");
  write_file(t.path() / "m.json", tiny_spec("rmc1"));  // named as the zoo's rmc1
  struct Case {
    const char* name;
    const char* text;  // "$M": the source tree's models/; "$T": a scratch directory
    const char* want;  // how the message goes on after "config PATH: "
  };
  const Case cases[] = {
      {"not JSON", R"({"models": ["$M/rmc1.json"],})", "not valid JSON"},
      {"not an object", R"(["$M/rmc1.json"])", "must be a JSON object"},
      {"unknown top-level key", R"({"models": ["$M/rmc1.json"], "modles": []})",
       "key 'modles': unknown key (known: listen, models, "},
      {"a key given twice", R"({"models": ["$M/rmc1.json"], "limits": {"window": 8, "window": 9}})",
       "key 'limits.window': given twice"},
      {"no models", R"({"gpus": true})", "key 'models': required"},
      {"empty models", R"({"models": []})", "key 'models': must be a non-empty array"},
      {"a model entry of the wrong type", R"({"models": [5]})", "key 'models[0]': must be a spec"},
      {"unknown key in models[i]",
       R"({"models": ["$M/ncf.json", {"spec": "$M/rmc1.json", "weight": ""}]})",
       "key 'models[1].weight': unknown key"},
      {"a model object without spec", R"({"models": [{"sla_ms": 5}]})",
       "key 'models[0].spec': required"},
      {"a spec file that is missing", R"({"models": ["$T/nope.json"]})",
       "key 'models[0]': model spec $T/nope.json: cannot open file"},
      {"a bad spec", R"({"models": ["$T/bad_spec.json"]})",
       "key 'models[0]': model spec $T/bad_spec.json: "},
      {"a weights path that is not a file",
       R"({"models": [{"spec": "$M/ncf.json", "weights": "$T"}]})", "key 'models[0].weights': "},
      {"duplicate model names", R"({"models": ["$M/rmc1.json", "$M/ncf.json", "$T/m.json"]})",
       "key 'models[2]': model name 'rmc1' is already models[0]'s"},
      {"sla_percentile 100", R"({"models": [{"spec": "$M/ncf.json", "sla_percentile": 100}]})",
       "key 'models[0].sla_percentile': must be a number in (0, 100)"},
      {"sla_percentile 0", R"({"models": [{"spec": "$M/ncf.json", "sla_percentile": 0}]})",
       "key 'models[0].sla_percentile': must be a number in (0, 100)"},
      {"a negative sla_ms", R"({"models": [{"spec": "$M/ncf.json", "sla_ms": -5}]})",
       "key 'models[0].sla_ms': must be a number in (0, 3600000]"},
      {"sla_ms as a string", R"({"models": [{"spec": "$M/ncf.json", "sla_ms": "5"}]})",
       "key 'models[0].sla_ms': must be a number"},
      {"a bad partition", R"({"models": ["$M/ncf.json"], "partition": "socket"})",
       "key 'partition': must be one of numa, l3, core-kind, core"},
      {"partition not a string", R"({"models": ["$M/ncf.json"], "partition": 1})",
       "key 'partition': must be one of"},
      {"unknown key in listen", R"({"models": ["$M/ncf.json"], "listen": {"port": 80}})",
       "key 'listen.port': unknown key (known: socket, tcp, socket_group)"},
      {"a tcp address without port", R"({"models": ["$M/ncf.json"], "listen": {"tcp": "0.0.0.0"}})",
       "key 'listen.tcp': '0.0.0.0' is not HOST:PORT"},
      {"a tcp port of 70000", R"({"models": ["$M/ncf.json"], "listen": {"tcp": "h:70000"}})",
       "key 'listen.tcp': 'h:70000' is not HOST:PORT"},
      {"a socket path too long",
       R"({"models": ["$M/ncf.json"], "listen": {"socket": "/$T/)"
       "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
       "aaaaaaaaaaaaaa\"}}",
       "key 'listen.socket': a unix socket path has at most 107 bytes"},
      {"no listener", R"({"models": ["$M/ncf.json"], "listen": {"tcp": "", "socket": ""}})",
       "key 'listen': socket and tcp are both"},
      {"listen not an object", R"({"models": ["$M/ncf.json"], "listen": "127.0.0.1:80"})",
       "key 'listen': must be an object"},
      {"policy params not an object", R"({"models": ["$M/ncf.json"], "policy": {"params": []}})",
       "key 'policy.params': must be an object"},
      {"policy name not a string", R"({"models": ["$M/ncf.json"], "policy": {"name": 3}})",
       "key 'policy.name': must be a string"},
      {"policy name empty", R"({"models": ["$M/ncf.json"], "policy": {"name": ""}})",
       "key 'policy.name': must be a non-empty string"},
      {"unknown key in policy", R"({"models": ["$M/ncf.json"], "policy": {"args": {}}})",
       "key 'policy.args': unknown key"},
      {"plugin_dir not a string", R"({"models": ["$M/ncf.json"], "policy": {"plugin_dir": 1}})",
       "key 'policy.plugin_dir': must be a string"},
      {"devices not an array", R"({"models": ["$M/ncf.json"], "devices": "cpu0"})",
       "key 'devices': must be an array of device ids"},
      {"a device id empty", R"({"models": ["$M/ncf.json"], "devices": ["cpu0", ""]})",
       "key 'devices[1]': must be a device id"},
      {"a device listed twice", R"({"models": ["$M/ncf.json"], "devices": ["cpu0", "cpu0"]})",
       "key 'devices[1]': 'cpu0' is listed twice"},
      {"state_dir empty", R"({"models": ["$M/ncf.json"], "state_dir": ""})",
       "key 'state_dir': must be a non-empty path"},
      {"a token with a space", R"({"models": ["$M/ncf.json"], "token": "open sesame"})",
       "key 'token': must be \"\" or an RFC 6750 token"},
      {"gpus as a string", R"({"models": ["$M/ncf.json"], "gpus": "yes"})",
       "key 'gpus': must be true or false"},
      {"negative graph rows", R"({"models": ["$M/ncf.json"], "gpu_graph_max_items": -1})",
       "key 'gpu_graph_max_items': must be an integer in [0, 1048576]"},
      {"table batching as a number", R"({"models": ["$M/ncf.json"], "gpu_table_batched": 1})",
       "key 'gpu_table_batched': must be true or false"},
      {"unknown key in profile", R"({"models": ["$M/ncf.json"], "profile": {"reps": 3}})",
       "key 'profile.reps': unknown key"},
      {"no batch sizes", R"({"models": ["$M/ncf.json"], "profile": {"batch_sizes": []}})",
       "key 'profile.batch_sizes': must be a non-empty array"},
      {"a batch size of 0", R"({"models": ["$M/ncf.json"], "profile": {"batch_sizes": [1, 0]}})",
       "key 'profile.batch_sizes[1]': must be an integer in [1, 1048576]"},
      {"a batch size twice", R"({"models": ["$M/ncf.json"], "profile": {"batch_sizes": [4, 4]}})",
       "key 'profile.batch_sizes[1]': batch size 4 is listed twice"},
      {"seconds_per_point 0", R"({"models": ["$M/ncf.json"], "profile": {"seconds_per_point": 0}})",
       "key 'profile.seconds_per_point': must be a number in (0, 60]"},
      {"quick as a number", R"({"models": ["$M/ncf.json"], "profile": {"quick": 1}})",
       "key 'profile.quick': must be true or false"},
      {"unknown key in power", R"({"models": ["$M/ncf.json"], "power": {"gpu_watts": 300}})",
       "key 'power.gpu_watts': unknown key"},
      {"negative watts", R"({"models": ["$M/ncf.json"], "power": {"gpu_active_w": -1}})",
       "key 'power.gpu_active_w': must be a number in [0, 10000]"},
      {"idle above active", R"({"models": ["$M/ncf.json"], "power": {"gpu_idle_w": 500}})",
       "key 'power.gpu_idle_w': must not exceed gpu_active_w (400)"},
      {"cpu idle above active",
       R"({"models": ["$M/ncf.json"], "power": {"cpu_active_w_per_core": 1}})",
       "key 'power.cpu_idle_w_per_core': must not exceed cpu_active_w_per_core (1)"},
      {"cpu parked above idle",
       R"({"models": ["$M/ncf.json"], "power": {"cpu_parked_w_per_core": 2}})",
       "key 'power.cpu_parked_w_per_core': must not exceed cpu_idle_w_per_core (1.5)"},
      {"unknown key in limits", R"({"models": ["$M/ncf.json"], "limits": {"max_body": 1}})",
       "key 'limits.max_body': unknown key"},
      {"limits not an object", R"({"models": ["$M/ncf.json"], "limits": 5})",
       "key 'limits': must be an object"},
      {"max_body_bytes too small",
       R"({"models": ["$M/ncf.json"], "limits": {"max_body_bytes": 100}})",
       "key 'limits.max_body_bytes': must be an integer in [1024, 1073741824]"},
      {"max_connections 0", R"({"models": ["$M/ncf.json"], "limits": {"max_connections": 0}})",
       "key 'limits.max_connections': must be an integer in [1, 65536]"},
      {"a negative CPU latency", R"({"models": ["$M/ncf.json"], "limits": {"cpu_latency_us": -1}})",
       "key 'limits.cpu_latency_us': must be an integer in [0, 100000], or null (none)"},
      {"a CPU latency over 100 ms",
       R"({"models": ["$M/ncf.json"], "limits": {"cpu_latency_us": 100001}})",
       "key 'limits.cpu_latency_us': must be an integer in [0, 100000], or null (none)"},
      {"a CPU latency as a string",
       R"({"models": ["$M/ncf.json"], "limits": {"cpu_latency_us": "0"}})",
       "key 'limits.cpu_latency_us': must be an integer in [0, 100000], or null (none)"},
      {"no I/O thread", R"({"models": ["$M/ncf.json"], "limits": {"io_threads": 0}})",
       "key 'limits.io_threads': must be an integer in [1, 64]"},
      {"a fractional timeout", R"({"models": ["$M/ncf.json"], "limits": {"read_timeout_ms": 1.5}})",
       "key 'limits.read_timeout_ms': must be an integer in [1, 3600000]"},
      {"a negative queue", R"({"models": ["$M/ncf.json"], "limits": {"max_queue": -1}})",
       "key 'limits.max_queue': must be an integer in [1, 1048576]"},
      {"a window as a string", R"({"models": ["$M/ncf.json"], "limits": {"window": "64"}})",
       "key 'limits.window': must be an integer"},
      {"gpu_merging as a number", R"({"models": ["$M/ncf.json"], "limits": {"gpu_merging": 1}})",
       "key 'limits.gpu_merging': must be true or false"},
      {"max_items past 2^64", R"({"models": ["$M/ncf.json"], "limits": {"max_items": 1e30}})",
       "key 'limits.max_items': must be an integer"},
      {"late_budget above 1",
       R"({"models": ["$M/ncf.json"], "limits": {"late_budget": 1.5}})",
       "key 'limits.late_budget': must be a number in [0, 1]"},
      {"reject_factor below 0.1",
       R"({"models": ["$M/ncf.json"], "limits": {"reject_factor": 0.05}})",
       "key 'limits.reject_factor': must be a number in [0.1, 1000]"},
      {"max_headers 0", R"({"models": ["$M/ncf.json"], "limits": {"max_headers": 0}})",
       "key 'limits.max_headers': must be an integer in [1, 10000]"},
      {"max_header_bytes too small",
       R"({"models": ["$M/ncf.json"], "limits": {"max_header_bytes": 10}})",
       "key 'limits.max_header_bytes': must be an integer in [1024, 1048576]"},
      {"max_json_depth 1", R"({"models": ["$M/ncf.json"], "limits": {"max_json_depth": 1}})",
       "key 'limits.max_json_depth': must be an integer in [2, 1000]"},
      {"max_shm_regions 4097", R"({"models": ["$M/ncf.json"], "limits": {"max_shm_regions": 4097}})",
       "key 'limits.max_shm_regions': must be an integer in [0, 4096]"},
      {"max_elements 0", R"({"models": ["$M/ncf.json"], "limits": {"max_elements": 0}})",
       "key 'limits.max_elements': must be an integer in [1, 4294967296]"},
      {"a priority share of 0",
       R"({"models": ["$M/ncf.json"], "limits": {"normal_priority_share": 0}})",
       "key 'limits.normal_priority_share': must be a number in (0, 1]"},
      {"a wait bound past the slack",
       R"({"models": ["$M/ncf.json"], "limits": {"wait_bound_fraction": 1.5}})",
       "key 'limits.wait_bound_fraction': must be a number in [0, 1]"},
      {"idle_poll_us out of range",
       R"({"models": ["$M/ncf.json"], "limits": {"idle_poll_us": 10001}})",
       "key 'limits.idle_poll_us': must be an integer in [0, 10000]"},
      {"inline_max_ms out of range",
       R"({"models": ["$M/ncf.json"], "limits": {"inline_max_ms": 11}})",
       "key 'limits.inline_max_ms': must be a number in [0, 10]"},
      {"inline_idle_max_ms out of range",
       R"({"models": ["$M/ncf.json"], "limits": {"inline_idle_max_ms": -1}})",
       "key 'limits.inline_idle_max_ms': must be a number in [0, 10]"},
      {"low priority above normal",
       R"({"models": ["$M/ncf.json"], "limits": {"low_priority_share": 0.9}})",
       "key 'limits.low_priority_share': must not exceed normal_priority_share (0.8)"},
      {"an unknown socket group",
       R"({"models": ["$M/ncf.json"], "listen": {"socket_group": "no-such-group-here"}})",
       "key 'listen.socket_group': no group 'no-such-group-here' on this host"},
      {"a control character in a key", "{\"models\": [\"$M/ncf.json\"], \"a\\nb\": 1}",
       "key 'a\\x0ab': unknown key"},
  };
  for (const Case& k : cases) {
    CAPTURE(k.name);
    Result<DaemonConfig> c = parse_config(fill(k.text, t.str()), "/nowhere", kEtcPath);
    REQUIRE_FALSE(c.has_value());
    const std::string msg = c.status().message();
    CAPTURE(msg);
    CHECK(c.status().code() == StatusCode::kInvalidArgument);
    CHECK(msg.rfind(std::string("config ") + kEtcPath + ": " + fill(k.want, t.str()), 0) == 0);
    CHECK(msg.find('\n') == std::string::npos);
  }
}

TEST_CASE("the message for an out-of-range limit reads as documented") {
  Result<DaemonConfig> c = parse_config(
      fill(R"({"models": ["$M/ncf.json"], "limits": {"max_body_bytes": 5}})", ""), "/x", kEtcPath);
  REQUIRE_FALSE(c.has_value());
  CHECK(c.status().message() ==
        "config /etc/recsched/recschedd.json: key 'limits.max_body_bytes': must be an integer in "
        "[1024, 1073741824]");
}

}  // namespace
}  // namespace recsched::daemon
