// recschedctl against a running recschedd (the binary, on a temporary unix socket and a
// TCP port, serving one tiny golden model): every subcommand in table and JSON form,
// --follow, changes over TCP with and without the token, colour, and the daemon-down,
// permission-denied and bad-argument paths with their exit codes.
#include "cli/recschedctl.h"

#include <doctest/doctest.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <regex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "cli/http_client.h"

namespace recsched::cli {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using namespace std::chrono_literals;

constexpr const char* kToken = "cli-test-token";

std::string golden(const std::string& name) {
  return std::string(RECSCHED_SOURCE_DIR) + "/tests/fixtures/golden/" + name;
}

std::string read_text(const fs::path& path) {
  std::ifstream in(path);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

// The KServe v2 JSON body for the golden "dot" model's inputs.
std::string infer_body(const std::string& id) {
  const json in = json::parse(read_text(golden("dot.inputs.json")));
  const size_t n = in["sparse_lengths"][0].size();
  const size_t d = in["dense"][0].size();
  json dense = json::array(), lengths = json::array();
  for (const auto& row : in["dense"])
    for (const auto& v : row) dense.push_back(v);
  for (const auto& row : in["sparse_lengths"])
    for (const auto& v : row) lengths.push_back(v);
  return json{{"id", id},
              {"inputs",
               {{{"name", "dense"}, {"datatype", "FP32"}, {"shape", {n, d}}, {"data", dense}},
                {{"name", "sparse_lengths"},
                 {"datatype", "INT32"},
                 {"shape", {in["sparse_lengths"].size(), n}},
                 {"data", lengths}},
                {{"name", "sparse_indices"},
                 {"datatype", "INT64"},
                 {"shape", {in["sparse_indices"].size()}},
                 {"data", in["sparse_indices"]}}}}}
      .dump();
}

// One recschedd for the whole test binary, stopped (SIGTERM) at exit.
struct Daemon {
  fs::path dir = fs::temp_directory_path() / ("recschedctl_test_" + std::to_string(getpid()));
  std::string socket;
  uint16_t port = 0;
  pid_t pid = -1;

  Daemon() {
    fs::remove_all(dir);
    fs::create_directories(dir);
    socket = (dir / "s.sock").string();
    const json cfg = {{"listen", {{"socket", socket}, {"tcp", "127.0.0.1:0"}}},
                      {"models", {{{"spec", golden("dot.model.json")}, {"sla_ms", 50}}}},
                      {"state_dir", (dir / "state").string()},
                      {"token", kToken},
                      {"gpus", false},
                      {"profile", {{"quick", true}}},
                      // A loose CPU latency request (5 ms: every idle state but the
                      // deepest), so that `stats` has one to show; held or not.
                      {"limits", {{"cpu_latency_us", 5000}}}};
    std::ofstream(dir / "cfg.json") << cfg.dump();
    const std::string log = (dir / "log.txt").string();
    pid = fork();
    if (pid == 0) {
      if (freopen(log.c_str(), "w", stderr) == nullptr) _exit(126);
      unsetenv("NOTIFY_SOCKET");
      execl(RECSCHED_DAEMON_BINARY, "recschedd", "--config", (dir / "cfg.json").c_str(), nullptr);
      _exit(127);
    }
    // Up when the log names its TCP port and the socket answers.
    const std::regex listening("listening on 127\\.0\\.0\\.1:([0-9]+)");
    for (int i = 0; i < 1200 && port == 0; ++i) {
      std::this_thread::sleep_for(50ms);
      std::smatch m;
      const std::string text = read_text(log);
      if (std::regex_search(text, m, listening) && text.find("ready:") != std::string::npos) {
        port = static_cast<uint16_t>(std::stoi(m[1]));
      }
    }
    if (port == 0) FAIL("recschedd did not start: " << read_text(log));
  }
  ~Daemon() {
    if (pid > 0) {
      kill(pid, SIGTERM);
      waitpid(pid, nullptr, 0);
    }
    fs::remove_all(dir);
  }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port); }

  static Daemon& get() {
    static Daemon d;
    return d;
  }
};

struct Run {
  int code = -1;
  std::string out, err;
  json json_out() const { return json::parse(out, nullptr, false); }
  /// stderr is empty or exactly one line.
  bool one_line_err() const {
    return !err.empty() && err.back() == '\n' && err.find('\n') == err.size() - 1;
  }
};

Run ctl(std::vector<std::string> args, Environment env = {}) {
  std::ostringstream out, err;
  Run r;
  r.code = run_recschedctl(args, out, err, env);
  r.out = out.str();
  r.err = err.str();
  return r;
}

// The same against the shared daemon's socket.
Run ctl_socket(std::vector<std::string> args, Environment env = {}) {
  args.insert(args.begin(), {"--socket", Daemon::get().socket});
  return ctl(std::move(args), std::move(env));
}

// Sends `n` queries for the golden model over the socket, each answered.
void send_queries(int n, const std::string& prefix) {
  Endpoint ep;
  ep.socket_path = Daemon::get().socket;
  for (int i = 0; i < n; ++i) {
    auto r = http_request(ep, "POST", "/v2/models/golden_dot/infer",
                          infer_body(prefix + std::to_string(i)), 10s);
    REQUIRE_MESSAGE(r.has_value(), r.status().to_string());
    REQUIRE_MESSAGE(r->status == 200, r->body);
  }
}

TEST_CASE("every subcommand prints a table, and with --json the daemon's JSON") {
  send_queries(3, "table-");
  struct Case {
    std::vector<std::string> args;
    std::vector<std::string> table_has;  // words the table shows
    std::vector<std::string> json_keys;  // top-level keys of the JSON
  };
  const std::vector<Case> cases = {
      {{"status"},
       {"daemon:", "recschedd", "ready:", "yes", "policy:", "golden_dot"},
       {"server", "ready", "topology", "policy", "stats"}},
      {{"topology"},
       {"summary:", "partition:", "fingerprint:"},
       {"summary", "fingerprint", "partition"}},
      {{"devices"}, {"ID", "KIND", "SERVING", "cpu0", "yes"}, {"devices"}},
      {{"models"}, {"NAME", "SLA_MS", "golden_dot", "dlrm", "50.0"}, {"models"}},
      {{"profiles"},
       {"MODEL", "P95_US", "golden_dot", "profiled in"},
       {"profiles", "profiling_seconds"}},
      {{"profiles", "--model", "golden_dot"}, {"golden_dot"}, {"profiles"}},
      {{"placements", "--limit", "2"}, {"QUERY", "OUTCOME", "table-2", "ok"}, {"placements"}},
      {{"stats"},
       {"REQUESTS", "P95_MS", "golden_dot", "in flight:", "cpu latency: 5000 us requested",
        "I/O threads: ", "sleeps (limits.idle_poll_us 200)"},
       {"models", "in_flight", "cpu_latency", "io"}},
      {{"capacity"},
       {"CAPACITY_QPS", "HEADROOM_QPS", "golden_dot", "host: utilisation", "modelled"},
       {"host", "models", "model"}},
      {{"policy"}, {"policy:", "static", "available:"}, {"name", "params", "available"}},
      {{"policy", "show"}, {"policy:", "static"}, {"name", "params"}},
  };
  for (const Case& c : cases) {
    CAPTURE(c.args[0]);
    const Run table = ctl_socket(c.args);
    CHECK_MESSAGE(table.code == kExitOk, table.err);
    CHECK(table.err.empty());
    for (const std::string& word : c.table_has) {
      CHECK_MESSAGE(table.out.find(word) != std::string::npos, word << " not in:\n" << table.out);
    }
    CHECK(table.out.find('\033') == std::string::npos);  // not a tty: no colour

    std::vector<std::string> args = c.args;
    args.push_back("--json");
    const Run js = ctl_socket(args);
    CHECK_MESSAGE(js.code == kExitOk, js.err);
    CHECK(js.err.empty());
    const json j = js.json_out();
    REQUIRE_MESSAGE(j.is_object(), js.out);
    for (const std::string& key : c.json_keys) CHECK_MESSAGE(j.contains(key), key);
  }
}

TEST_CASE("placements --json has the documented fields, the latest last") {
  send_queries(2, "fields-");
  const Run r = ctl_socket({"placements", "--limit", "1", "--json"});
  REQUIRE(r.code == kExitOk);
  const json p = r.json_out()["placements"];
  REQUIRE(p.size() == 1);
  for (const char* key : {"query", "id", "model", "items", "device", "sub_batch", "workers",
                          "predicted_ms", "actual_ms", "policy", "reason", "outcome"}) {
    CHECK_MESSAGE(p[0].contains(key), key);
  }
  CHECK(p[0]["id"] == "fields-1");
  CHECK(p[0]["outcome"] == "ok");
}

TEST_CASE("profiles --model for a model recschedd lacks exits 1 naming the ones it has") {
  const Run r = ctl_socket({"profiles", "--model", "nosuch"});
  CHECK(r.code == kExitFailed);
  CHECK(r.one_line_err());
  CHECK(r.err.find("no profiles for model 'nosuch' (it has: golden_dot)") != std::string::npos);
  CHECK(r.out.empty());
}

TEST_CASE("placements --follow prints each new placement once, in table and JSON form") {
  send_queries(1, "before-");
  for (const bool as_json : {false, true}) {
    CAPTURE(as_json);
    const std::string prefix = as_json ? "fj-" : "ft-";
    int polls = 0;
    Environment env;
    // The loop asks stop() before each poll: queries sent on the first ask are what the
    // first poll must print; the second ask ends it.
    env.stop = [&] {
      if (++polls == 1) send_queries(3, prefix);
      return polls > 1;
    };
    std::vector<std::string> args = {"placements", "--follow",   "--limit",
                                     "1",          "--interval", "0.01"};
    if (as_json) args.push_back("--json");
    const Run r = ctl_socket(args, env);
    REQUIRE_MESSAGE(r.code == kExitOk, r.err);
    CHECK(polls == 2);
    std::vector<std::string> lines;
    std::istringstream in(r.out);
    for (std::string line; std::getline(in, line);) lines.push_back(line);
    if (as_json) {
      // The latest one before, then the three new ones, one JSON object per line.
      REQUIRE(lines.size() == 4);
      for (int i = 0; i < 3; ++i)
        CHECK(json::parse(lines[1 + i])["id"] == prefix + std::to_string(i));
    } else {
      REQUIRE(lines.size() == 5);  // header, the latest one, three new
      CHECK(lines[0].find("QUERY") == 0);
      for (int i = 0; i < 3; ++i) {
        CHECK(lines[2 + i].find(" " + prefix + std::to_string(i) + " ") != std::string::npos);
      }
    }
  }
}

TEST_CASE("policy set changes the policy over the socket and prints the new one") {
  const Run r = ctl_socket({"policy", "set", "static"});
  CHECK_MESSAGE(r.code == kExitOk, r.err);
  CHECK(r.err == "recschedctl: policy set to static\n");
  CHECK(r.out.find("policy:") != std::string::npos);
  const Run js = ctl_socket({"policy", "set", "static", "--json"});
  CHECK(js.code == kExitOk);
  CHECK(js.json_out()["name"] == "static");
}

TEST_CASE("policy set with a policy recschedd refuses exits 1 with the daemon's reason") {
  const Run r = ctl_socket({"policy", "set", "no-such-policy"});
  CHECK(r.code == kExitFailed);
  CHECK(r.one_line_err());
  CHECK(r.err.find("recschedd answered 400") != std::string::npos);
  CHECK(r.err.find("no-such-policy") != std::string::npos);
  CHECK(r.out.empty());
}

TEST_CASE("over TCP, changes need the token: 403 without it, done with --token or RECSCHED_TOKEN") {
  const std::string url = Daemon::get().url();
  const Run reads = ctl({"--url", url, "stats", "--json"});
  CHECK_MESSAGE(reads.code == kExitOk, reads.err);

  const Run denied = ctl({"--url", url, "policy", "set", "static"});
  CHECK(denied.code == kExitFailed);
  CHECK(denied.one_line_err());
  CHECK(denied.err.find("403") != std::string::npos);
  CHECK(denied.err.find("--token") != std::string::npos);

  const Run wrong = ctl({"--url", url, "--token", "wrong", "policy", "set", "static"});
  CHECK(wrong.code == kExitFailed);

  CHECK(ctl({"--url", url, "--token", kToken, "policy", "set", "static"}).code == kExitOk);
  Environment env;
  env.token = kToken;
  CHECK(ctl({"--url", url, "policy", "set", "static"}, env).code == kExitOk);
}

TEST_CASE("profile starts a re-profile and says so on stderr, and --json prints the answer") {
  const Run r = ctl_socket({"profile", "--json"});
  REQUIRE_MESSAGE(r.code == kExitOk, r.err);
  CHECK(r.json_out() == json{{"profiling", true}});
  // Wait for that run to finish (the daemon answers 409 meanwhile), then the table form.
  Run again;
  for (int i = 0; i < 600; ++i) {
    again = ctl_socket({"profile"});
    if (again.code == kExitOk) break;
    CHECK(again.err.find("409") != std::string::npos);
    std::this_thread::sleep_for(50ms);
  }
  CHECK(again.code == kExitOk);
  CHECK(again.out.empty());
  CHECK(again.err.find("re-profiling every model") != std::string::npos);
}

TEST_CASE("colour only on a tty, and never with NO_COLOR") {
  Environment tty;
  tty.stdout_is_tty = true;
  CHECK(ctl_socket({"stats"}, tty).out.find("\033[") != std::string::npos);
  Environment no_color = tty;
  no_color.no_color = "1";
  CHECK(ctl_socket({"stats"}, no_color).out.find('\033') == std::string::npos);
  // --json is never coloured.
  CHECK(ctl_socket({"stats", "--json"}, tty).out.find('\033') == std::string::npos);
}

TEST_CASE("a daemon that is down: exit 3 and one line saying what to do") {
  const std::string missing = "/nonexistent/recschedd.sock";
  for (const auto& args :
       std::vector<std::vector<std::string>>{{"--socket", missing, "status"},
                                             {"--socket", missing, "placements", "--follow"},
                                             {"--socket", missing, "policy", "set", "static"}}) {
    const Run r = ctl(args);
    CHECK(r.code == kExitUnreachable);
    CHECK(r.one_line_err());
    CHECK(r.err.find("is recschedd running?") != std::string::npos);
    CHECK(r.out.empty());
  }
  // A socket file nobody listens on, and a TCP port nobody listens on.
  const fs::path dir = Daemon::get().dir;
  const std::string stale = (dir / "stale.sock").string();
  {
    const int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strcpy(addr.sun_path, stale.c_str());
    REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
    ::close(fd);  // bound, never listened: connect is refused
  }
  const Run refused = ctl({"--socket", stale, "status"});
  CHECK(refused.code == kExitUnreachable);
  CHECK(refused.err.find("nothing is listening") != std::string::npos);
  const Run tcp = ctl({"--url", "http://127.0.0.1:1", "status"});
  CHECK(tcp.code == kExitUnreachable);
  CHECK(tcp.one_line_err());
  CHECK(tcp.err.find("connection refused") != std::string::npos);
}

TEST_CASE("permission denied on the socket: exit 3 and who may use it") {
  // A listening socket with mode 0000. root ignores file modes, so as root the binary is
  // run as user nobody.
  const fs::path dir = Daemon::get().dir;
  const std::string locked = (dir / "locked.sock").string();
  const int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strcpy(addr.sun_path, locked.c_str());
  REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
  REQUIRE(::listen(fd, 4) == 0);
  REQUIRE(::chmod(locked.c_str(), 0) == 0);
  Run r;
  if (geteuid() != 0) {
    r = ctl({"--socket", locked, "status"});
  } else {
    // Dropped to 'nobody', or to uid/gid 65534 where no such entry exists: setuid needs no
    // passwd entry, so this case runs on every host.
    const passwd* nobody = getpwnam("nobody");
    const uid_t uid = nobody != nullptr ? nobody->pw_uid : 65534;
    const gid_t gid = nobody != nullptr ? nobody->pw_gid : 65534;
    // The directory must be searchable by nobody.
    fs::permissions(dir, fs::perms::others_exec, fs::perm_options::add);
    const std::string out = (dir / "nobody.err").string();
    const pid_t pid = fork();
    if (pid == 0) {
      if (freopen(out.c_str(), "w", stderr) == nullptr) _exit(126);
      if (setgroups(0, nullptr) != 0 || setgid(gid) != 0 || setuid(uid) != 0) {
        _exit(125);
      }
      execl(RECSCHEDCTL_BINARY, "recschedctl", "--socket", locked.c_str(), "status", nullptr);
      _exit(127);
    }
    int status = 0;
    REQUIRE(waitpid(pid, &status, 0) == pid);
    REQUIRE(WIFEXITED(status));
    r.code = WEXITSTATUS(status);
    r.err = read_text(out);
  }
  ::close(fd);
  CHECK(r.code == kExitUnreachable);
  CHECK(r.one_line_err());
  CHECK(r.err.find("permission denied on " + locked) != std::string::npos);
  CHECK(r.err.find("run as root or as a member of group") != std::string::npos);
}

TEST_CASE("bad arguments: exit 2 and one line, before any connection") {
  // The socket does not exist: a usage error must be reported as such, not as "daemon down".
  const std::vector<std::vector<std::string>> cases = {
      {},
      {"frobnicate"},
      {"status", "extra"},
      {"placements", "--limit", "many"},
      {"placements", "--limit"},
      {"placements", "--interval", "1"},
      {"placements", "--follow", "--interval", "0"},
      {"profiles", "--model"},
      {"profiles", "--bogus"},
      {"policy", "set"},
      {"policy", "set", "a=1"},
      {"policy", "set", "static", "novalue"},
      {"policy", "set", "static", "a=1", "a=2"},
      {"policy", "explain"},
      {"--token", "t", "status"},
      {"--socket", "/a", "--url", "http://127.0.0.1:1", "status"},
      {"--url", "https://127.0.0.1:1", "status"},
      {"--timeout", "-1", "status"},
  };
  for (std::vector<std::string> args : cases) {
    std::string joined;
    for (const auto& a : args) joined += a + " ";
    CAPTURE(joined);
    args.insert(args.begin(), {"--socket", "/nonexistent/x.sock"});
    if (joined.find("--url") != std::string::npos || joined.find("--token") != std::string::npos) {
      args.erase(args.begin(), args.begin() + 2);
    }
    const Run r = ctl(args);
    CHECK(r.code == kExitUsage);
    CHECK(r.one_line_err());
    CHECK(r.err.rfind("recschedctl", 0) == 0);
    CHECK(r.err.find("--help") != std::string::npos);
    CHECK(r.out.empty());
  }
}

TEST_CASE("--help prints the usage, and each command's own") {
  const Run all = ctl({"--help"});
  CHECK(all.code == kExitOk);
  CHECK(all.out.rfind("usage: recschedctl", 0) == 0);
  for (const char* cmd : {"status", "topology", "devices", "models", "profiles", "placements",
                          "stats", "capacity", "policy", "profile"}) {
    CAPTURE(cmd);
    CHECK(all.out.find(std::string("  ") + cmd + " ") != std::string::npos);
    for (const auto& args : std::vector<std::vector<std::string>>{
             {cmd, "--help"}, {"help", cmd}, {"--socket", "/nonexistent", cmd, "-h"}}) {
      const Run r = ctl(args);
      CHECK(r.code == kExitOk);
      CHECK(r.out.rfind(std::string("usage: recschedctl ") + cmd, 0) == 0);
      CHECK(r.err.empty());
    }
  }
  CHECK(ctl({"--version"}).out.rfind("recschedctl ", 0) == 0);
}

// The binary itself: its exit codes and where its output goes.
int run_binary(const std::string& args, std::string& out) {
  const std::string cmd = std::string(RECSCHEDCTL_BINARY) + " " + args + " 2>/dev/null";
  FILE* p = popen(cmd.c_str(), "r");
  REQUIRE(p != nullptr);
  char buf[4096];
  out.clear();
  while (size_t n = fread(buf, 1, sizeof buf, p)) out.append(buf, n);
  const int status = pclose(p);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

TEST_CASE("the recschedctl binary: data on stdout, exit codes 0, 1, 2 and 3") {
  std::string out;
  CHECK(run_binary("--socket " + Daemon::get().socket + " stats --json", out) == kExitOk);
  CHECK(json::parse(out, nullptr, false).contains("models"));
  CHECK(run_binary("--socket " + Daemon::get().socket + " policy set nope", out) == kExitFailed);
  CHECK(run_binary("frobnicate", out) == kExitUsage);
  CHECK(run_binary("--socket /nonexistent/x.sock status", out) == kExitUnreachable);
  CHECK(out.empty());
}

}  // namespace
}  // namespace recsched::cli
