#include "core/status.h"

#include <doctest/doctest.h>

#include <memory>

namespace recsched {
namespace {

Status fails_with(StatusCode code) { return Status(code, "boom"); }

Status propagates(StatusCode code, bool* reached_end) {
  RECSCHED_RETURN_IF_ERROR(fails_with(code));
  *reached_end = true;
  return Status::ok();
}

Result<std::unique_ptr<int>> make_int(bool ok) {
  if (!ok) return invalid_argument("no int");
  return std::make_unique<int>(7);
}

Result<int> doubled(bool ok) {
  RECSCHED_ASSIGN_OR_RETURN(std::unique_ptr<int> p, make_int(ok));
  return *p * 2;
}

TEST_CASE("a default Status is OK and prints as ok") {
  Status s;
  CHECK(s.is_ok());
  CHECK(s.code() == StatusCode::kOk);
  CHECK(s.to_string() == "ok");
}

TEST_CASE("a Status carries its code and message") {
  Status s = unavailable("queue full");
  CHECK_FALSE(s.is_ok());
  CHECK(s.code() == StatusCode::kUnavailable);
  CHECK(s.to_string() == "unavailable: queue full");
}

TEST_CASE("RECSCHED_RETURN_IF_ERROR returns early on error only") {
  bool reached = false;
  CHECK(propagates(StatusCode::kNotFound, &reached).code() == StatusCode::kNotFound);
  CHECK_FALSE(reached);
  CHECK(propagates(StatusCode::kOk, &reached).is_ok());
  CHECK(reached);
}

TEST_CASE("RECSCHED_ASSIGN_OR_RETURN unwraps move-only values and forwards errors") {
  Result<int> good = doubled(true);
  REQUIRE(good.has_value());
  CHECK(*good == 14);
  Result<int> bad = doubled(false);
  REQUIRE_FALSE(bad.has_value());
  CHECK(bad.status().code() == StatusCode::kInvalidArgument);
  CHECK(bad.status().message() == "no int");
}

TEST_CASE("a Result built from an OK status becomes an internal error") {
  Result<int> r = Status::ok();
  CHECK_FALSE(r.has_value());
  CHECK(r.status().code() == StatusCode::kInternal);
}

}  // namespace
}  // namespace recsched
