// What the daemon's end-to-end tests share: real HTTP requests over TCP or the unix socket,
// the golden fixtures as KServe bodies, and a recschedd (service + HTTP server) running in
// the test's own process.
#pragma once

#include <doctest/doctest.h>
#include <unistd.h>

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "core/failpoint.h"
#include "daemon/config.h"
#include "daemon/http_server.h"
#include "daemon/service.h"

namespace recsched::daemon::testing {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace fs = std::filesystem;
using nlohmann::json;

inline std::string golden(const std::string& c, const std::string& suffix) {
  return std::string(RECSCHED_SOURCE_DIR) + "/tests/fixtures/golden/" + c + suffix;
}

inline std::string read_text(const fs::path& path) {
  std::ifstream in(path);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

inline json read_json(const std::string& path) {
  std::ifstream in(path);
  return json::parse(in);
}

struct Reply {
  unsigned status = 0;
  std::string body;
  std::map<std::string, std::string> headers;
  json json_body() const { return json::parse(body, nullptr, false); }
};

// One request on a fresh connection, TCP or unix socket.
inline Reply request(const std::string& where, http::verb method, const std::string& target,
              const std::string& body = "",
              const std::vector<std::pair<std::string, std::string>>& headers = {}) {
  asio::io_context io;
  http::request<http::string_body> req(method, target, 11);
  req.set(http::field::host, "localhost");
  for (const auto& [k, v] : headers) req.set(k, v);
  req.body() = body;
  req.prepare_payload();
  beast::flat_buffer buf;
  http::response<http::string_body> res;
  if (where.rfind("unix:", 0) == 0) {
    asio::local::stream_protocol::socket s(io);
    s.connect(asio::local::stream_protocol::endpoint(where.substr(5)));
    http::write(s, req);
    http::read(s, buf, res);
  } else {
    asio::ip::tcp::socket s(io);
    s.connect({asio::ip::make_address("127.0.0.1"), static_cast<uint16_t>(std::stoi(where))});
    http::write(s, req);
    http::read(s, buf, res);
  }
  Reply r;
  r.status = res.result_int();
  r.body = res.body();
  for (const auto& f : res) r.headers[std::string(f.name_string())] = std::string(f.value());
  return r;
}

// What a line-per-connection TCP service on 127.0.0.1:port (HAProxy's agent protocol)
// writes before it closes.
inline std::string read_until_close(uint16_t port, const std::string& send = "") {
  asio::io_context io;
  asio::ip::tcp::socket s(io);
  s.connect({asio::ip::make_address("127.0.0.1"), port});
  if (!send.empty()) asio::write(s, asio::buffer(send));  // HAProxy's agent-send
  std::string out;
  boost::system::error_code ec;
  asio::read(s, asio::dynamic_buffer(out), ec);  // until EOF
  return out;
}

// A TCP port free now on 127.0.0.1 (for a listener that needs a fixed one).
inline uint16_t free_tcp_port() {
  asio::io_context io;
  asio::ip::tcp::acceptor a(io, {asio::ip::make_address("127.0.0.1"), 0});
  return a.local_endpoint().port();
}

// The KServe v2 JSON body for a golden case's inputs.
inline json infer_body(const std::string& c, bool binary_output = false) {
  const json in = read_json(golden(c, ".inputs.json"));
  const size_t n =
      in["sparse_lengths"].empty() ? in["dense"].size() : in["sparse_lengths"][0].size();
  const size_t d = in["dense"].empty() ? 0 : in["dense"][0].size();
  json dense = json::array(), lengths = json::array();
  for (const auto& row : in["dense"])
    for (const auto& v : row) dense.push_back(v);
  for (const auto& row : in["sparse_lengths"])
    for (const auto& v : row) lengths.push_back(v);
  json body = {{"id", "q-" + c},
               {"inputs",
                {{{"name", "dense"}, {"datatype", "FP32"}, {"shape", {n, d}}, {"data", dense}},
                 {{"name", "sparse_lengths"},
                  {"datatype", "INT32"},
                  {"shape", {in["sparse_lengths"].size(), n}},
                  {"data", lengths}},
                 {{"name", "sparse_indices"},
                  {"datatype", "INT64"},
                  {"shape", {in["sparse_indices"].size()}},
                  {"data", in["sparse_indices"]}}}}};
  if (binary_output)
    body["outputs"] = {{{"name", "scores"}, {"parameters", {{"binary_data", true}}}}};
  return body;
}

inline std::vector<float> expected_scores(const std::string& c) {
  std::vector<float> out;
  const json doc = read_json(golden(c, ".expected.json"));  // outlives the loop
  for (const auto& row : doc["scores"]) {
    for (const auto& v : row) out.push_back(v.get<float>());
  }
  return out;
}

// Clears every fail point when a test ends, however it ends.
struct FailpointGuard {
  ~FailpointGuard() { failpoint::clear(); }
};

// Holds every query that reaches any device's forward() (a pause fail point per device,
// named from /v1/devices) until failpoint::clear(); returns the points' names.
template <typename D>
std::vector<std::string> pause_every_device(const D& d) {
  std::vector<std::string> points;
  const json devices = request("unix:" + d.socket, http::verb::get, "/v1/devices").json_body();
  for (const json& dev : devices["devices"]) {
    points.push_back("forward." + dev["id"].get<std::string>());
    REQUIRE(failpoint::set(points.back(), "pause").is_ok());
  }
  REQUIRE_MESSAGE(!points.empty(), devices.dump());
  return points;
}

// Whether some thread is held at one of `points` within a minute (a bounded wait).
inline bool some_query_held(const std::vector<std::string>& points) {
  const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (std::chrono::steady_clock::now() < give_up) {
    for (const std::string& p : points) {
      if (failpoint::paused(p) > 0) return true;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return false;
}

// A running daemon in this process.
struct Daemon {
  fs::path dir = fs::temp_directory_path() / ("recschedd_test_" + std::to_string(getpid()));
  std::unique_ptr<Service> service;
  std::unique_ptr<HttpServer> server;
  std::string port, socket;

  explicit Daemon(const std::string& token = "secret", uint64_t max_body = 1 << 20,
                  const json& extra = json::object()) {
    fs::create_directories(dir);
    socket = (dir / "s.sock").string();
    json cfg = {
        {"listen", {{"socket", socket}, {"tcp", "127.0.0.1:0"}}},
        {"models",
         {{{"spec", golden("dot", ".model.json")}, {"weights", golden("dot", ".safetensors")}},
          {{"spec", golden("dien", ".model.json")}, {"weights", golden("dien", ".safetensors")}},
          {{"spec", golden("multiout", ".model.json")},
           {"weights", golden("multiout", ".safetensors")}}}},
        {"state_dir", (dir / "state").string()},
        {"token", token},
        {"gpus", false},
        {"profile", {{"quick", true}}},
        {"limits", {{"max_body_bytes", max_body}, {"read_timeout_ms", 1500}}}};
    cfg.merge_patch(extra);
    auto config = parse_config(cfg.dump(), dir.string(), (dir / "cfg.json").string());
    REQUIRE_MESSAGE(config.has_value(), config.status().to_string());
    auto s = Service::create(*config, [](const std::string&) {});
    REQUIRE_MESSAGE(s.has_value(), s.status().to_string());
    service = std::move(s).value();
    Service* svc = service.get();
    server = create_server(*svc, config->limits);  // as main.cc does
    REQUIRE(server->listen_tcp("127.0.0.1", 0).is_ok());
    REQUIRE(server->listen_unix(socket).is_ok());
    server->start();
    port = std::to_string(server->tcp_port());
  }
  ~Daemon() {
    server->stop(5000);
    service.reset();
    fs::remove_all(dir);
  }
};

}  // namespace recsched::daemon::testing
