#include "core/failpoint.h"

#include <atomic>
#include <charconv>
#include <chrono>
#include <condition_variable>
#include <map>
#include <mutex>
#include <stdexcept>

namespace recsched::failpoint {
namespace {

enum class Action { kThrow, kError, kPause };

struct Point {
  Action action = Action::kError;
  int64_t remaining = -1;  // -1: every time
  int64_t permits = 0;     // kPause: held threads that may go on
};

std::atomic<bool> g_any{false};
std::mutex g_mu;
std::condition_variable g_cv;  // a permit granted, a point cleared, a thread held
std::map<std::string, Point, std::less<>>& points() {
  static std::map<std::string, Point, std::less<>> p;
  return p;
}
// Threads held at each pause point; kept apart from points() so that clearing a point
// while threads wait there leaves the count right.
std::map<std::string, int, std::less<>>& held() {
  static std::map<std::string, int, std::less<>> h;
  return h;
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
    points()[std::string(name)] = {action == "throw" ? Action::kThrow : Action::kError, count};
  } else if (action == "pause" && count == -1) {
    points()[std::string(name)] = {Action::kPause, -1};
  } else {
    return invalid_argument("fail point " + std::string(name) + ": unknown action '" +
                            std::string(action) +
                            "' (throw, error, pause, off, N*throw, N*error)");
  }
  g_any.store(!points().empty(), std::memory_order_relaxed);
  g_cv.notify_all();  // a pause point turned into something else lets its threads go
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
  g_cv.notify_all();
}

bool any() { return g_any.load(std::memory_order_relaxed); }

Status hit(std::string_view name) {
  if (!any()) return Status::ok();
  bool throws = false;
  {
    std::unique_lock<std::mutex> lock(g_mu);
    auto it = points().find(name);
    if (it == points().end()) return Status::ok();
    if (it->second.action == Action::kPause) {
      const std::string key(name);
      ++held()[key];
      g_cv.notify_all();
      // Re-found on each wake: the point may have been cleared (and the iterator with it).
      auto may_go = [&] {
        auto p = points().find(key);
        return p == points().end() || p->second.action != Action::kPause || p->second.permits > 0;
      };
      g_cv.wait(lock, may_go);
      if (auto p = points().find(key); p != points().end() && p->second.action == Action::kPause) {
        --p->second.permits;
      }
      --held()[key];
      return Status::ok();
    }
    throws = it->second.action == Action::kThrow;
    if (it->second.remaining > 0 && --it->second.remaining == 0) {
      points().erase(it);
      g_any.store(!points().empty(), std::memory_order_relaxed);
    }
  }
  const std::string what = "fail point " + std::string(name) + " fired";
  if (throws) throw std::runtime_error(what);
  return internal_error(what);
}

int paused(std::string_view name) {
  std::lock_guard<std::mutex> lock(g_mu);
  auto it = held().find(name);
  return it == held().end() ? 0 : it->second;
}

bool wait_paused(std::string_view name, int n, int timeout_ms) {
  std::unique_lock<std::mutex> lock(g_mu);
  return g_cv.wait_for(lock, std::chrono::milliseconds(timeout_ms), [&] {
    auto it = held().find(name);
    return it != held().end() && it->second >= n;
  });
}

void release(std::string_view name, int n) {
  std::lock_guard<std::mutex> lock(g_mu);
  auto it = points().find(name);
  if (it == points().end() || it->second.action != Action::kPause) return;
  it->second.permits += n;
  g_cv.notify_all();
}

}  // namespace recsched::failpoint
