#include "engine/tools/engine_cli.h"

#include <doctest/doctest.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

namespace recsched::engine::tools {
namespace {

using nlohmann::json;

struct Run {
  int code;
  std::string out;
  std::string err;
};

Run run(std::vector<std::string> args) {
  std::ostringstream out, err;
  const int code = run_engine_cli(args, out, err);
  return {code, out.str(), err.str()};
}

std::string golden(const std::string& c, const std::string& suffix) {
  return std::string(RECSCHED_SOURCE_DIR) + "/tests/fixtures/golden/" + c + suffix;
}

int lines(const std::string& s) { return static_cast<int>(std::count(s.begin(), s.end(), '\n')); }

TEST_CASE("score prints one row of scores per item, matching the golden file") {
  const Run r =
      run({"score", "--model", golden("multiout", ".model.json"), "--weights",
           golden("multiout", ".safetensors"), "--inputs", golden("multiout", ".inputs.json")});
  REQUIRE_MESSAGE(r.code == 0, r.err);
  const json got = json::parse(r.out)["scores"];
  std::ifstream in(golden("multiout", ".expected.json"));
  const json want = json::parse(in)["scores"];
  REQUIRE(got.size() == want.size());
  for (size_t i = 0; i < got.size(); ++i) {
    REQUIRE(got[i].size() == 2);
    for (size_t k = 0; k < 2; ++k) {
      CHECK(got[i][k].get<double>() == doctest::Approx(want[i][k].get<double>()).epsilon(1e-5));
    }
  }
}

TEST_CASE("score and bench work for every zoo model type") {
  for (const char* c : {"ncf", "wnd", "mtwnd", "din", "dien"}) {
    CAPTURE(c);
    const Run r = run({"score", "--model", golden(c, ".model.json"), "--weights",
                       golden(c, ".safetensors"), "--inputs", golden(c, ".inputs.json")});
    REQUIRE_MESSAGE(r.code == 0, r.err);
    std::ifstream in(golden(c, ".expected.json"));
    const json want = json::parse(in)["scores"];
    const json got = json::parse(r.out)["scores"];
    REQUIRE(got.size() == want.size());
    for (size_t i = 0; i < got.size(); ++i) {
      REQUIRE(got[i].size() == want[i].size());
      for (size_t k = 0; k < got[i].size(); ++k) {
        CHECK(got[i][k].get<double>() == doctest::Approx(want[i][k].get<double>()).epsilon(1e-4));
      }
    }
    const Run b = run({"bench", "--model", golden(c, ".model.json"), "--batch-sizes", "3", "--reps",
                       "5", "--min-seconds", "0"});
    REQUIRE_MESSAGE(b.code == 0, b.err);
    CHECK(json::parse(b.out)["results"][0]["reps"] == 5);
  }
}

TEST_CASE("bench reports each batch size with median and p95") {
  const Run r = run({"bench", "--model", golden("wide", ".model.json"), "--batch-sizes", "1,8",
                     "--threads", "2", "--reps", "5", "--min-seconds", "0"});
  REQUIRE_MESSAGE(r.code == 0, r.err);
  const json j = json::parse(r.out);
  CHECK(j["model"] == "golden_wide");
  CHECK(j["threads"] == 2);
  REQUIRE(j["results"].size() == 2);
  CHECK(j["results"][1]["batch_size"] == 8);
  CHECK(j["results"][1]["reps"] == 5);
  CHECK(j["results"][1]["median_ms"].get<double>() > 0.0);
  CHECK(j["results"][1]["p95_ms"].get<double>() >= j["results"][1]["median_ms"].get<double>());
}

TEST_CASE("export-weights writes weights that score like the seeded model") {
  const std::string model =
      std::string(RECSCHED_SOURCE_DIR) + "/tests/fixtures/golden/cat.model.json";
  const std::string path = "/tmp/recsched_cli_" + std::to_string(getpid()) + ".safetensors";
  REQUIRE(run({"export-weights", "--model", model, "--out", path}).code == 0);
  const std::string inputs = golden("cat", ".inputs.json");
  const Run seeded = run({"score", "--model", model, "--inputs", inputs});
  const Run loaded = run({"score", "--model", model, "--weights", path, "--inputs", inputs});
  REQUIRE(seeded.code == 0);
  CHECK(seeded.out == loaded.out);
  std::remove(path.c_str());
}

TEST_CASE("bad usage and bad files exit non-zero with one line saying what is wrong") {
  struct Case {
    std::vector<std::string> args;
    int code;
    const char* expect;
  };
  const std::string model = golden("dot", ".model.json");
  const Case cases[] = {
      {{}, 2, "usage"},
      {{"frobnicate"}, 2, "unknown command 'frobnicate'"},
      {{"score", "--model", model}, 2, "missing --inputs"},
      {{"score", "--model"}, 2, "needs a value"},
      {{"score", "--modle", model}, 2, "unknown option '--modle'"},
      {{"bench", "--model", model, "--batch-sizes", "1,x"}, 2, "--batch-sizes must be"},
      {{"bench", "--model", model, "--threads", "0"}, 2, "--threads must be"},
      {{"bench", "--model", model, "--gpu-graphs", "8"}, 2, "need --device cuda"},
      {{"score", "--model", model, "--inputs", "x", "--gpu-tables", "one"}, 2, "need --device cuda"},
      {{"bench", "--model", model, "--device", "cuda", "--gpu-graphs", "-1"}, 2,
       "--gpu-graphs must be"},
      {{"bench", "--model", model, "--device", "cuda", "--gpu-tables", "some"}, 2,
       "--gpu-tables takes one or each, got 'some'"},
      {{"score", "--model", "/nonexistent.json", "--inputs", "x"}, 1, "cannot open"},
      {{"score", "--model", model, "--inputs", "/nonexistent.json"}, 1, "cannot open"},
      {{"score", "--model", model, "--inputs", golden("cat", ".inputs.json")}, 1, "dense[0]"},
  };
  for (const Case& c : cases) {
    CAPTURE(c.expect);
    const Run r = run(c.args);
    CHECK(r.code == c.code);
    CHECK_MESSAGE(r.err.find(c.expect) != std::string::npos, r.err);
    if (!c.args.empty()) CHECK(lines(r.err) == 1);
    CHECK(r.out.empty());
  }
}

TEST_CASE("--help prints the usage on stdout and exits 0") {
  const Run r = run({"--help"});
  CHECK(r.code == 0);
  CHECK(r.out.find("recsched-engine COMMAND") != std::string::npos);
  CHECK(run({"bench", "--help"}).code == 0);
}

}  // namespace
}  // namespace recsched::engine::tools
