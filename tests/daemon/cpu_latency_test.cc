// limits.cpu_latency_us: the CPU latency QoS request (daemon/cpu_latency.h) on a plain file
// standing in for /dev/cpu_dma_latency, and the daemon's report of it in /v1/stats.
#include "daemon/cpu_latency.h"

#include <doctest/doctest.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>

#include "tests/daemon/harness.h"

namespace recsched::daemon {
namespace {

using namespace testing;  // NOLINT: the shared harness
namespace fs = std::filesystem;

// The file's bytes as the kernel would read them: one native-endian int32.
int32_t written_value(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  REQUIRE(bytes.size() == sizeof(int32_t));
  int32_t v;
  std::memcpy(&v, bytes.data(), sizeof v);
  return v;
}

TEST_CASE("a CPU latency request writes the microseconds as the kernel reads them (an int32) and reads back what is in effect") {
  const fs::path f = fs::temp_directory_path() / ("recsched_qos_" + std::to_string(::getpid()));
  std::ofstream(f).close();
  {
    Result<CpuLatencyRequest> r = CpuLatencyRequest::hold(37, f.string());
    REQUIRE_MESSAGE(r.has_value(), r.status().to_string());
    CHECK(r->requested_us() == 37);
    CHECK(written_value(f) == 37);
    const Result<int64_t> now = r->effective_us();
    REQUIRE_MESSAGE(now.has_value(), now.status().to_string());
    CHECK(*now == 37);
    // Moved, it is still one request (the moved-from one closes nothing).
    CpuLatencyRequest moved = std::move(r).value();
    CHECK(moved.requested_us() == 37);
    const Result<int64_t> again = moved.effective_us();
    REQUIRE(again.has_value());
    CHECK(*again == 37);
  }
  fs::remove(f);
}

TEST_CASE("a CPU latency request that cannot be held says which file and why") {
  const Result<CpuLatencyRequest> r = CpuLatencyRequest::hold(0, "/nonexistent/cpu_dma_latency");
  REQUIRE_FALSE(r.has_value());
  CHECK(r.status().code() == StatusCode::kUnavailable);
  CHECK(r.status().message().find("cannot open /nonexistent/cpu_dma_latency") != std::string::npos);
  CHECK(r.status().message().find("No such file") != std::string::npos);
}

TEST_CASE("a CPU latency hold reports none asked as null, a held request with what is in effect, and one not held with why") {
  const CpuLatencyHold none = CpuLatencyHold::take(std::nullopt);
  CHECK_FALSE(none.asked());
  CHECK_FALSE(none.held());
  CHECK(none.report().is_null());
  CHECK_FALSE(none.held_us());

  const fs::path f = fs::temp_directory_path() / ("recsched_qos_hold_" + std::to_string(::getpid()));
  std::ofstream(f).close();
  {
    const CpuLatencyHold held = CpuLatencyHold::take(12, f.string());
    CHECK(held.asked());
    REQUIRE_MESSAGE(held.held(), held.error());
    CHECK(held.error().empty());
    CHECK(held.in_effect() == "12 us");
    CHECK(held.held_us() == 12u);
    const nlohmann::json j = held.report();
    CHECK(j.at("requested_us") == 12);
    CHECK(j.at("held") == true);
    CHECK(j.at("effective_us") == 12);
    CHECK_FALSE(j.contains("error"));
  }
  fs::remove(f);

  const CpuLatencyHold refused = CpuLatencyHold::take(3, "/nonexistent/cpu_dma_latency");
  CHECK(refused.asked());
  CHECK_FALSE(refused.held());
  CHECK_FALSE(refused.held_us());
  CHECK(refused.error().find("cannot open /nonexistent/cpu_dma_latency") != std::string::npos);
  const nlohmann::json j = refused.report();
  CHECK(j.at("requested_us") == 3);
  CHECK(j.at("held") == false);
  CHECK(j.at("error") == refused.error());
  CHECK_FALSE(j.contains("effective_us"));
}

TEST_CASE("the daemon reports its CPU latency request in /v1/stats: null when none is asked") {
  SUBCASE("none asked") {
    Daemon d;
    const json s = request(d.port, http::verb::get, "/v1/stats").json_body();
    REQUIRE(s.contains("cpu_latency"));
    CHECK(s["cpu_latency"].is_null());
  }
  SUBCASE("asked: held with at most that in effect, or not held with the reason") {
    Daemon d("secret", 1 << 20, json::parse(R"({"limits": {"cpu_latency_us": 5}})"));
    const json q = request(d.port, http::verb::get, "/v1/stats").json_body()["cpu_latency"];
    REQUIRE(q.is_object());
    CHECK(q["requested_us"] == 5);
    // Root can write /dev/cpu_dma_latency (CI runs as root); an unprivileged user, or a
    // container without the device, cannot: both are real outcomes, reported as such.
    const bool can_write = ::access(CpuLatencyRequest::kDevice, W_OK) == 0;
    CHECK(q["held"] == can_write);
    if (can_write) {
      // The least of every holder's request: this daemon's 5 or a smaller one.
      REQUIRE(q["effective_us"].is_number_integer());
      CHECK(q["effective_us"].get<int64_t>() >= 0);
      CHECK(q["effective_us"].get<int64_t>() <= 5);
    } else {
      CHECK(q["error"].get<std::string>().find(CpuLatencyRequest::kDevice) != std::string::npos);
    }
  }
}

}  // namespace
}  // namespace recsched::daemon
