// recsched-smoke: a short load through a running recschedd, for the quick start (the real
// load generator, recsched-load, is its own issue). For each served model it sends
// --queries queries one after another, each with a size drawn from DeepRecInfra's default
// distribution (lognormal, mu 5.1, sigma 0.2, capped at 1024) and random features, as
// KServe v2 binary tensors over the unix socket; then prints each model's latencies
// (client side: request sent to response read) and the daemon's last placements.
//
//   recsched-smoke --socket /run/recsched/recschedd.sock [--queries 20] [--seed 1]
//                  [--sizes 8,256,1024] [--policy NAME] [--placements 8]
// --get PATH prints one GET's body and exits; --sizes cycles through fixed query sizes; --policy
// switches the daemon's policy first (PUT /v1/policy); --placements says how many of the last
// placements to print.
#include <algorithm>
#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>
#include <string>
#include <vector>

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using nlohmann::json;

namespace {

struct Reply {
  unsigned status;
  std::string body;
};

Reply call(const std::string& socket, http::verb verb, const std::string& target,
           const std::string& body = "", size_t header_length = 0) {
  asio::io_context io;
  asio::local::stream_protocol::socket s(io);
  s.connect(asio::local::stream_protocol::endpoint(socket));
  http::request<http::string_body> req(verb, target, 11);
  req.set(http::field::host, "localhost");
  req.set(http::field::content_type, "application/json");
  if (header_length > 0) req.set("Inference-Header-Content-Length", std::to_string(header_length));
  req.body() = body;
  req.prepare_payload();
  http::write(s, req);
  beast::flat_buffer buf;
  http::response<http::string_body> res;
  http::read(s, buf, res);
  return {res.result_int(), res.body()};
}

}  // namespace

int main(int argc, char** argv) {
  std::string socket = "/run/recsched/recschedd.sock";
  int queries = 20;
  unsigned seed = 1;
  std::vector<int> sizes;
  std::string policy, get;
  int show = 8;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--help" || a == "-h") {
      std::cout << "usage: recsched-smoke [--socket PATH] [--queries N] [--seed N] [--sizes "
                   "N,N,...] [--policy NAME] [--placements N] [--get PATH]\n";
      return 0;
    }
    if (i + 1 >= argc) {
      std::cerr << "recsched-smoke: " << a << " needs a value\n";
      return 2;
    }
    const std::string v = argv[++i];
    if (a == "--socket")
      socket = v;
    else if (a == "--queries")
      queries = std::max(1, std::stoi(v));
    else if (a == "--seed")
      seed = static_cast<unsigned>(std::stoul(v));
    else if (a == "--policy")
      policy = v;
    else if (a == "--get")
      get = v;
    else if (a == "--placements")
      show = std::max(0, std::stoi(v));
    else if (a == "--sizes") {
      std::stringstream ss(v);
      for (std::string part; std::getline(ss, part, ',');) {
        sizes.push_back(std::clamp(std::stoi(part), 1, 1 << 20));
      }
    } else {
      std::cerr << "recsched-smoke: unknown option " << a << "\n";
      return 2;
    }
  }
  try {
    if (!get.empty()) {
      const Reply r = call(socket, http::verb::get, get);
      std::cout << r.body << "\n";
      return r.status == 200 ? 0 : 1;
    }
    if (!policy.empty()) {
      const Reply r = call(socket, http::verb::put, "/v1/policy", json{{"name", policy}}.dump());
      if (r.status != 200) {
        std::cerr << "recsched-smoke: PUT /v1/policy: " << r.status << " " << r.body << "\n";
        return 1;
      }
      std::printf("policy: %s\n", policy.c_str());
    }
    const json models = json::parse(call(socket, http::verb::get, "/v1/models").body)["models"];
    std::mt19937 rng(seed);
    std::lognormal_distribution<double> size_dist(5.1, 0.2);
    std::uniform_real_distribution<float> uni(0.0f, 1.0f);
    std::printf("%-8s %8s %10s %10s %10s %8s %6s\n", "MODEL", "QUERIES", "MEAN_ITEMS", "P50_MS",
                "P95_MS", "SLA_MS", "ERRORS");
    for (const json& m : models) {
      const std::string name = m["name"];
      const json meta = json::parse(call(socket, http::verb::get, "/v2/models/" + name).body);
      int64_t dense = 0, tables = 0;
      for (const json& in : meta["inputs"]) {
        if (in["name"] == "dense") dense = in["shape"][1];
        if (in["name"] == "sparse_lengths") tables = in["shape"][0];
      }
      std::vector<double> ms;
      int errors = 0;
      double items_sum = 0;
      for (int q = 0; q < queries; ++q) {
        const int n = sizes.empty()
                          ? std::clamp(static_cast<int>(std::lround(size_dist(rng))), 1, 1024)
                          : sizes[q % sizes.size()];
        items_sum += n;
        // KServe v2 binary tensors (as Triton's clients send them): a JSON header, then
        // the raw little-endian values of each input in order.
        std::string blob;
        json inputs = json::array();
        auto add = [&](const char* input, const char* dtype, std::vector<int64_t> shape,
                       const void* data, size_t bytes) {
          inputs.push_back({{"name", input},
                            {"datatype", dtype},
                            {"shape", shape},
                            {"parameters", {{"binary_data_size", bytes}}}});
          blob.append(static_cast<const char*>(data), bytes);
        };
        std::vector<float> dense_data(size_t(n) * dense);
        for (float& v : dense_data) v = uni(rng);
        if (dense > 0) add("dense", "FP32", {n, dense}, dense_data.data(), dense_data.size() * 4);
        if (tables > 0) {
          std::vector<int32_t> lengths(size_t(tables) * n, 1);
          std::vector<int64_t> ids;
          for (int64_t t = 0; t < tables; ++t) {
            std::uniform_int_distribution<int64_t> pick(0, m["table_rows"][t].get<int64_t>() - 1);
            for (int b = 0; b < n; ++b) ids.push_back(pick(rng));
          }
          add("sparse_lengths", "INT32", {tables, n}, lengths.data(), lengths.size() * 4);
          add("sparse_indices", "INT64", {int64_t(ids.size())}, ids.data(), ids.size() * 8);
        }
        const std::string header = json{{"inputs", inputs}}.dump();
        const auto t0 = std::chrono::steady_clock::now();
        const Reply r = call(socket, http::verb::post, "/v2/models/" + name + "/infer",
                             header + blob, header.size());
        ms.push_back(
            std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0)
                .count());
        if (r.status != 200) {
          ++errors;
          if (errors == 1)
            std::fprintf(stderr, "recsched-smoke: %s: %u %s\n", name.c_str(), r.status,
                         r.body.c_str());
        }
      }
      std::sort(ms.begin(), ms.end());
      auto pct = [&](double p) {
        return ms[std::min(ms.size() - 1, size_t(std::ceil(p / 100 * ms.size())) - 1)];
      };
      std::printf("%-8s %8d %10.0f %10.2f %10.2f %8.0f %6d\n", name.c_str(), queries,
                  items_sum / queries, pct(50), pct(95), m["sla_ms"].get<double>(), errors);
    }
    std::printf("\nlast placements (GET /v1/placements?limit=%d):\n", show);
    const json p =
        json::parse(call(socket, http::verb::get, "/v1/placements?limit=" + std::to_string(show))
                        .body)["placements"];
    std::printf("%-6s %-8s %6s %-6s %9s %9s %s\n", "QUERY", "MODEL", "ITEMS", "DEVICE", "PRED_MS",
                "ACTUAL_MS", "WHY");
    for (const json& e : p) {
      std::printf("%-6llu %-8s %6u %-6s %9.2f %9.2f %s\n",
                  (unsigned long long)e["query"].get<uint64_t>(),
                  e["model"].get<std::string>().c_str(), e["items"].get<unsigned>(),
                  e["device"].get<std::string>().c_str(), e["predicted_ms"].get<double>(),
                  e["actual_ms"].get<double>(), e["reason"].get<std::string>().c_str());
    }
  } catch (const std::exception& e) {
    std::cerr << "recsched-smoke: " << e.what() << " (is recschedd running on " << socket << "?)\n";
    return 1;
  }
  return 0;
}
