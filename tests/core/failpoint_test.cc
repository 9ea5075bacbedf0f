#include "core/failpoint.h"

#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <stdexcept>
#include <thread>
#include <vector>

namespace recsched::failpoint {
namespace {

struct Cleared {
  ~Cleared() { clear(); }
};

TEST_CASE("fail points throw, return an error, fire N times, and are inert when unset") {
  Cleared guard;
  CHECK(hit("x").is_ok());
  REQUIRE(set("x", "throw").is_ok());
  CHECK_THROWS_AS((void)hit("x"), std::runtime_error);
  REQUIRE(set("x", "2*error").is_ok());
  CHECK(hit("x").code() == StatusCode::kInternal);
  CHECK(hit("x").message() == "fail point x fired");
  CHECK(hit("x").is_ok());  // fired twice, gone
  CHECK_FALSE(any());
  CHECK(set("x", "sometimes").code() == StatusCode::kInvalidArgument);
  CHECK(set("x", "0*error").code() == StatusCode::kInvalidArgument);
  CHECK(set("x", "2*pause").code() == StatusCode::kInvalidArgument);
  REQUIRE(set_from_spec("a=error;b=throw").is_ok());
  CHECK_FALSE(hit("a").is_ok());
  REQUIRE(set("a", "off").is_ok());
  CHECK(hit("a").is_ok());
}

TEST_CASE("a pause point holds each thread until a permit lets it go, or the point is cleared") {
  Cleared guard;
  REQUIRE(set("p", "pause").is_ok());
  std::atomic<int> through{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < 3; ++i) {
    threads.emplace_back([&] {
      CHECK(hit("p").is_ok());
      ++through;
    });
  }
  REQUIRE(wait_paused("p", 3, 10000));
  CHECK(paused("p") == 3);
  CHECK(through == 0);  // nothing has a permit yet
  release("p", 1);
  // Exactly one goes on: the others stay held (wait for the count, then re-check).
  const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (through.load() < 1 && std::chrono::steady_clock::now() < give_up) {
    std::this_thread::yield();
  }
  REQUIRE(through == 1);
  CHECK(paused("p") == 2);
  CHECK_FALSE(wait_paused("p", 3, 50));  // a bounded wait that is not met says so
  clear();  // the rest go on
  for (auto& t : threads) t.join();
  CHECK(through == 3);
  CHECK(paused("p") == 0);
}

}  // namespace
}  // namespace recsched::failpoint
