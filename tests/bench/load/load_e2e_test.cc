// recsched-load against a real recschedd (the service and HTTP server in this process, on a
// temporary unix socket and TCP port 0, three tiny golden models): model discovery, an
// open-loop run with every query answered, admission rejections counted by kind, energy read
// from /metrics, the generator's ceiling mode on a trivial route, and the tool's modes end to
// end. Rates and durations are scaled together by the build's slowdown (tests/slowdown.h):
// the same queries and checks in Release and under the sanitizers, and no check of speed;
// admission's reject_factor is high, so a slow build sheds nothing for being slow.
#include <doctest/doctest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "bench/load/cli.h"
#include "bench/load/client.h"
#include "bench/load/shm.h"
#include "daemon/config.h"
#include "daemon/http_server.h"
#include "daemon/service.h"
#include "tests/slowdown.h"

namespace recsched::load {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using recsched::testing::kSlowdown;

// A number scaled by the slowdown, as recsched-load's flags take it.
std::string scaled(double x) { return std::to_string(x); }

std::string golden(const std::string& c, const std::string& suffix) {
  return std::string(RECSCHED_SOURCE_DIR) + "/tests/fixtures/golden/" + c + suffix;
}

// A running daemon in this process (the pattern of tests/daemon/daemon_integration_test.cc).
struct Daemon {
  fs::path dir = fs::temp_directory_path() / ("recsched_load_test_" + std::to_string(getpid()));
  std::unique_ptr<daemon::Service> service;
  std::unique_ptr<daemon::HttpServer> server;
  Endpoint unix_ep, tcp_ep;

  /// idle_timeout_ms: how long the daemon keeps an idle keep-alive connection (0: its default).
  explicit Daemon(int idle_timeout_ms = 0) {
    fs::create_directories(dir);
    const std::string socket = (dir / "s.sock").string();
    const json cfg = {{"listen", {{"socket", socket}, {"tcp", "127.0.0.1:0"}}},
                      {"models",
                       {{{"spec", golden("dot", ".model.json")}, {"sla_ms", 50}},
                        {{"spec", golden("dien", ".model.json")}},
                        {{"spec", golden("multiout", ".model.json")}}}},
                      {"state_dir", (dir / "state").string()},
                      {"token", "t0ken"},
                      {"gpus", false},
                      {"profile", {{"quick", true}}},
                      {"limits", {{"reject_factor", 1000}}}};
    auto config = daemon::parse_config(cfg.dump(), dir.string(), (dir / "cfg.json").string());
    REQUIRE_MESSAGE(config.has_value(), config.status().to_string());
    auto s = daemon::Service::create(*config, [](const std::string&) {});
    REQUIRE_MESSAGE(s.has_value(), s.status().to_string());
    service = std::move(s).value();
    daemon::ServerOptions so;
    if (idle_timeout_ms > 0) so.idle_timeout_ms = idle_timeout_ms;
    daemon::Service* svc = service.get();
    server = daemon::HttpServer::create(so, [svc](daemon::HttpRequest r, daemon::Responder done) {
      svc->handle(std::move(r), std::move(done));
    });
    REQUIRE(server->listen_tcp("127.0.0.1", 0).is_ok());
    REQUIRE(server->listen_unix(socket).is_ok());
    server->start();
    unix_ep.unix_path = socket;
    tcp_ep.port = server->tcp_port();
    tcp_ep.token = "t0ken";
  }
  ~Daemon() {
    server->stop(5000);
    service.reset();
    fs::remove_all(dir);
  }
};

TEST_CASE("recsched-load drives a real recschedd: every query answered, per model, with energy") {
  Daemon d;
  const std::vector<ModelInfo> models = fetch_models(d.unix_ep);
  REQUIRE(models.size() == 3);
  CHECK(models[0].name == "golden_dot");
  CHECK(models[0].lookups == 3);  // read from the spec file the daemon names
  CHECK(models[0].sla_ms == 50);
  CHECK(models[1].dense == 0);

  for (const Endpoint& ep : {d.unix_ep, d.tcp_ep}) {
    CAPTURE(ep.describe());
    RunOptions o;
    o.qps = 150 / kSlowdown;
    o.duration_s = 1.5 * kSlowdown;
    o.warmup_s = 0.3 * kSlowdown;
    o.sizes = SizeDistribution::parse("lognormal:3,0.3,64");
    PoolOptions po;
    po.max_items = 64;
    const PayloadPool pool(models, o.sizes, po);
    const RunResult r = run_load(ep, pool, o);
    INFO(r.summary());
    CHECK(r.scheduled > 100);
    CHECK(r.all.ok == r.scheduled);
    CHECK(r.errors.empty());
    CHECK(r.rejections.empty());
    // Counted by scheduled send time, so with every query answered the rate is the plan's.
    CHECK(r.achieved_qps == doctest::Approx(o.qps).epsilon(0.3));
    REQUIRE(r.models.size() == 3);
    for (const ModelResult& m : r.models) {
      CHECK(m.ok > 10);
      CHECK(m.latency_ns.percentile(95) > 0);
      // From the send: as many answers, none longer than from its scheduled time.
      CHECK(m.from_send_ns.count() == m.latency_ns.count());
      CHECK(m.from_send_ns.percentile(95) > 0);
      CHECK(m.from_send_ns.max() <= m.latency_ns.max());
    }
    REQUIRE(r.energy_joules.has_value());
    CHECK(*r.energy_joules > 0);  // the estimate's idle watts alone make it positive
    CHECK_FALSE(r.energy_source.empty());
    const json j = r.to_json();
    CHECK(j["models"]["golden_dot"]["sla_ms"] == 50);
    CHECK(j["models"]["golden_dot"]["p95_from_send_ms"].get<double>() <=
          j["models"]["golden_dot"]["p95_ms"].get<double>());
    CHECK(j["energy"]["source"] == r.energy_source);
  }
  // The daemon counted what the generator sent.
  const json stats = json::parse(http_call(d.unix_ep, "GET", "/v1/stats").body);
  uint64_t ok = 0;
  for (const json& m : stats["models"]) ok += m["ok"].get<uint64_t>();
  CHECK(ok >= 200);
}

TEST_CASE("recsched-load --shm: every query's inputs through shared memory, the region gone after") {
  Daemon d;
  const std::vector<ModelInfo> models = fetch_models(d.unix_ep);
  RunOptions o;
  o.qps = 150 / kSlowdown;
  o.duration_s = 1.0 * kSlowdown;
  o.warmup_s = 0.2 * kSlowdown;
  o.sizes = SizeDistribution::parse("lognormal:3,0.3,64");
  o.max_connections = 8;  // few connections: each slot carries many queries in turn
  o.shared_memory = true;
  PoolOptions po;
  po.max_items = 64;
  const PayloadPool pool(models, o.sizes, po);
  const RunResult r = run_load(d.unix_ep, pool, o);
  INFO(r.summary());
  CHECK(r.scheduled > 50);
  CHECK(r.all.ok == r.scheduled);
  CHECK(r.errors.empty());
  CHECK(r.to_json()["shared_memory"] == true);
  // Unregistered when the run ended.
  const HttpReply st = http_call(d.unix_ep, "GET", "/v2/systemsharedmemory/status");
  CHECK(st.status == 200);
  CHECK(json::parse(st.body).empty());
  // A region /dev/shm cannot hold whole is refused at once (a write past tmpfs's room
  // would be a SIGBUS in the generator), and nothing is left behind.
  try {
    SharedRegion huge(d.unix_ep, "huge", size_t{1} << 50);
    FAIL("a 1 PiB region was made");
  } catch (const std::runtime_error& e) {
    CHECK(std::string(e.what()).find("MiB free") != std::string::npos);
  }
  CHECK(json::parse(http_call(d.unix_ep, "GET", "/v2/systemsharedmemory/status").body).empty());
  // Not over TCP, and not with JSON payloads: refused before any load.
  CHECK_THROWS_AS(run_load(d.tcp_ep, pool, o), std::invalid_argument);
  PoolOptions jo = po;
  jo.format = PayloadFormat::kJson;
  CHECK_THROWS_AS(run_load(d.unix_ep, PayloadPool(models, o.sizes, jo), o), std::invalid_argument);
}

TEST_CASE("recsched-load counts admission rejections and JSON payloads work") {
  Daemon d;
  const std::vector<ModelInfo> models = fetch_models(d.unix_ep);
  RunOptions o;
  o.qps = 100 / kSlowdown;
  o.duration_s = 0.6 * kSlowdown;
  o.sizes = SizeDistribution::parse("fixed:16");
  PoolOptions po;
  po.max_items = 16;
  po.sla_ms = 1e-6;  // no query can meet this: admission turns each one away with a 503
  const PayloadPool tight(models, o.sizes, po);
  const RunResult r = run_load(d.unix_ep, tight, o);
  CHECK(r.all.sent > 20);
  CHECK(r.all.ok == 0);
  CHECK(r.rejections.at("admission") == r.all.sent);
  CHECK(r.rejected_ns.count() == r.all.rejected);  // each 503 timed
  CHECK(r.rejected_ns.percentile(50) > 0);
  CHECK(r.reject_rate() == 1.0);
  CHECK_FALSE(judge(r, 0.01).pass);

  po.sla_ms.reset();
  po.format = PayloadFormat::kJson;
  po.json_pool = 4;
  const PayloadPool json_pool(models, o.sizes, po);
  const RunResult j = run_load(d.unix_ep, json_pool, o);
  CHECK(j.all.sent > 20);
  CHECK(j.all.ok == j.all.sent);
  CHECK(j.reject_rate() == 0);
  CHECK(j.error_rate() == 0);
}

// What the ceiling is on a given machine is a benchmark figure (docs/benchmarks.md); here the
// mode itself: it drives the route, every GET is answered, and the rate it reports is the
// answers over the wall time.
TEST_CASE("a pooled connection the daemon closed while idle: the query goes again on a new one") {
  Daemon d(30);  // the daemon closes a keep-alive connection idle for 30 ms
  const std::vector<ModelInfo> models = fetch_models(d.unix_ep);
  for (const Endpoint& ep : {d.unix_ep, d.tcp_ep}) {
    CAPTURE(ep.describe());
    // One connection, a query every 200 ms (slower in slow builds): each query after the
    // first is written to the pooled connection the daemon has closed since.
    RunOptions o;
    o.qps = 5 / kSlowdown;
    o.duration_s = 2 * kSlowdown;
    o.warmup_s = 0;
    o.max_connections = 1;
    o.sizes = SizeDistribution::parse("fixed:8");
    PoolOptions po;
    po.max_items = 8;
    const PayloadPool pool(models, o.sizes, po);
    const RunResult r = run_load(ep, pool, o);
    INFO(r.summary());
    CHECK(r.scheduled >= 5);
    CHECK(r.errors.empty());
    CHECK(r.all.ok == r.scheduled);
    CHECK(r.retried_on_new_connection >= r.scheduled / 2);
    CHECK(r.connections_opened == r.retried_on_new_connection + 1);
    CHECK(r.to_json()["generator"]["retried_on_new_connection"] == r.retried_on_new_connection);
  }
}

TEST_CASE("recsched-load --spin-us: polling before each send, every query answered, the run ends") {
  Daemon d;
  const fs::path out = d.dir / "spin.json";
  REQUIRE(load_main({"--socket", d.unix_ep.unix_path, "--qps", scaled(100 / kSlowdown),
                     "--duration", scaled(1 * kSlowdown), "--warmup", scaled(0.2 * kSlowdown),
                     "--spin-us", "500", "--quiet", "--out", out.string()}) == 0);
  const json run = json::parse(std::ifstream(out));
  INFO(run.dump());
  CHECK(run["spin_before_send_us"] == 500);
  CHECK(run["scheduled"].get<uint64_t>() > 40);
  CHECK(run["all"]["ok"] == run["scheduled"]);
  CHECK(run["errors"].empty());
  // The warm-up's queries answered too, before the run returned.
  CHECK(run["generator"]["answered"].get<uint64_t>() > run["scheduled"].get<uint64_t>());
  // Out of range: refused as usage, before any load.
  CHECK(load_main({"--socket", d.unix_ep.unix_path, "--spin-us", "-1"}) == 2);
}

TEST_CASE("the generator's ceiling mode answers every GET on a trivial route and reports the rate") {
  Daemon d;
  const std::string out = (d.dir / "ceiling.json").string();
  REQUIRE(load_main({"--socket", d.unix_ep.unix_path, "--ceiling", "--qps",
                     scaled(2000 / kSlowdown), "--duration", scaled(1 * kSlowdown), "--out",
                     out}) == 0);
  const json j = json::parse(std::ifstream(out));
  INFO(j.dump());
  CHECK(j["errors"].empty());
  CHECK(j["mode"] == "ceiling");
  const double rate = j["ceiling_qps"].get<double>();
  CHECK(rate > 0);
  const json& g = j["generator"];
  CHECK(rate == doctest::Approx(g["answered"].get<double>() / g["wall_s"].get<double>()));
}

TEST_CASE("recsched-load's modes: run, find-max-qps and a sweep over policies with a plot") {
  Daemon d;
  const std::string sock = d.unix_ep.unix_path;
  const fs::path out = d.dir / "run.json";
  REQUIRE(load_main({"--socket", sock, "--qps", scaled(80 / kSlowdown), "--duration",
                     scaled(1 * kSlowdown), "--warmup", scaled(0.2 * kSlowdown), "--models",
                     "golden_dot:3,golden_dien", "--sla", "golden_dot=" + scaled(40 * kSlowdown),
                     "--min-queries", "30", "--quiet", "--out", out.string()}) == 0);
  const json run = json::parse(std::ifstream(out));
  CHECK(run["mode"] == "run");
  CHECK(run["models"].size() == 2);
  CHECK(run["models"]["golden_dot"]["sla_ms"] == doctest::Approx(40 * kSlowdown));
  CHECK(run["models"]["golden_dot"]["sent"].get<int>() > run["models"]["golden_dien"]["sent"]);
  CHECK(run["policy"] == "static");
  // --min-queries: golden_dien has a quarter of 80 q/s, so 30 of its queries need 1.5 s.
  CHECK(run["duration_s"].get<double>() == doctest::Approx(1.7 * kSlowdown));

  const fs::path max_out = d.dir / "max.json";
  REQUIRE(load_main({"--tcp", "127.0.0.1:" + std::to_string(d.tcp_ep.port), "--token", "t0ken",
                     "--policy", "static", "--find-max-qps", "--start-qps",
                     scaled(40 / kSlowdown), "--max-qps", scaled(100 / kSlowdown),
                     "--step-duration", scaled(0.4 * kSlowdown), "--step-warmup",
                     scaled(0.1 * kSlowdown), "--sla",
                     "golden_dot=60000,golden_dien=60000,golden_multiout=60000", "--quiet",
                     "--out", max_out.string()}) == 0);
  const json max = json::parse(std::ifstream(max_out));
  // Targets of a minute: every step passes, so the search climbs to the bound.
  CHECK(max["max_qps"].get<double>() == doctest::Approx(100 / kSlowdown));
  CHECK(max["hit_max"] == true);
  CHECK(max["steps"].size() == 3);  // 40, 80, then the bound 100
  CHECK(max.contains("best"));

  const fs::path csv = d.dir / "sweep.csv", png = d.dir / "sweep.png";
  REQUIRE(
      load_main({"--socket", sock, "--sweep", scaled(30 / kSlowdown) + "," + scaled(60 / kSlowdown),
                 "--policies", "static", "--duration", scaled(0.5 * kSlowdown), "--warmup",
                 scaled(0.1 * kSlowdown), "--quiet", "--csv", csv.string(), "--png",
                 png.string()}) == 0);
  std::ifstream in(csv);
  std::string line;
  int lines = 0;
  while (std::getline(in, line)) ++lines;
  CHECK(lines == 1 + 2 * 4);                        // header, then (all + 3 models) per load
  CHECK(fs::file_size(png.string() + ".dat") > 0);  // the plotted points, one index per policy
  CHECK(fs::file_size(png) > 1000);  // gnuplot drew it (scripts/install-deps.sh installs it)

  CHECK(load_main({"--socket", sock, "--sizes", "poisson"}) == 2);
  CHECK(load_main({"--qps", "10"}) == 2);
  CHECK(load_main({"--socket", sock, "--models", "nope", "--quiet"}) == 1);
}

}  // namespace
}  // namespace recsched::load
