#include "core/failpoint.h"

#include <atomic>
#include <charconv>
#include <map>
#include <mutex>
#include <stdexcept>

namespace recsched::failpoint {
namespace {

struct Point {
  bool throws = false;
  int64_t remaining = -1;  // -1: every time
};

std::atomic<bool> g_any{false};
std::mutex g_mu;
std::map<std::string, Point, std::less<>>& points() {
  static std::map<std::string, Point, std::less<>> p;
  return p;
}

}  // namespace

Status set(std::string_view name, std::string_view action) {
  if (name.empty()) return invalid_argument("fail point: empty name");
  int64_t count = -1;
  if (const size_t star = action.find('*'); star != std::string_view::npos) {
    const std::string_view n = action.substr(0, star);
    const auto [end, ec] = std::from_chars(n.data(), n.data() + n.size(), count);
    if (ec != std::errc() || end != n.data() + n.size() || count < 1) {
      return invalid_argument("fail point " + std::string(name) + ": bad count in '" +
                              std::string(action) + "'");
    }
    action = action.substr(star + 1);
  }
  std::lock_guard<std::mutex> lock(g_mu);
  if (action == "off") {
    points().erase(std::string(name));
  } else if (action == "throw" || action == "error") {
    points()[std::string(name)] = {action == "throw", count};
  } else {
    return invalid_argument("fail point " + std::string(name) + ": unknown action '" +
                            std::string(action) + "' (throw, error, off, N*throw, N*error)");
  }
  g_any.store(!points().empty(), std::memory_order_relaxed);
  return Status::ok();
}

Status set_from_spec(std::string_view spec) {
  while (!spec.empty()) {
    const size_t semi = spec.find(';');
    const std::string_view item = spec.substr(0, semi);
    spec = semi == std::string_view::npos ? std::string_view() : spec.substr(semi + 1);
    if (item.empty()) continue;
    const size_t eq = item.find('=');
    if (eq == std::string_view::npos) {
      return invalid_argument("fail point '" + std::string(item) + "': expected name=action");
    }
    RECSCHED_RETURN_IF_ERROR(set(item.substr(0, eq), item.substr(eq + 1)));
  }
  return Status::ok();
}

void clear() {
  std::lock_guard<std::mutex> lock(g_mu);
  points().clear();
  g_any.store(false, std::memory_order_relaxed);
}

bool any() { return g_any.load(std::memory_order_relaxed); }

Status hit(std::string_view name) {
  if (!any()) return Status::ok();
  bool throws = false;
  {
    std::lock_guard<std::mutex> lock(g_mu);
    auto it = points().find(name);
    if (it == points().end()) return Status::ok();
    throws = it->second.throws;
    if (it->second.remaining > 0 && --it->second.remaining == 0) {
      points().erase(it);
      g_any.store(!points().empty(), std::memory_order_relaxed);
    }
  }
  const std::string what = "fail point " + std::string(name) + " fired";
  if (throws) throw std::runtime_error(what);
  return internal_error(what);
}

}  // namespace recsched::failpoint
