// recschedctl stats: per-model counters and tail latency over the recent window.
#include <ostream>

#include "cli/commands.h"
#include "cli/recschedctl.h"

namespace recsched::cli {

namespace {

constexpr std::string_view kHelp = R"(usage: recschedctl stats [--json]

Per model: requests, and how they ended (ok, invalid, rejected by admission, failed),
items scored, the SLA and how many answered queries missed it, and the p50/p95/p99
latency in ms over the last WINDOW answered queries (limits.window). Then the number of
queries in flight, and, when limits.cpu_latency_us is set, whether the daemon holds that
CPU wake-up latency (and why not when it does not). Last, what the I/O threads did each
time they ran out of work: found more by polling (limits.idle_poll_us: a wake-up saved)
or slept until it came (a request, or a worker's answer to finish; they never poll while
a query is in flight). Many sleeps against few polls under steady traffic: requests come
further apart than the poll window (see docs/operations.md).

--json prints GET /v1/stats: {"models": [{"model", "requests", "ok", "invalid",
"rejected", "failed", "items", "sla_ms", "sla_violations", "window", "p50_ms", "p95_ms",
"p99_ms"}], "in_flight", "cpu_latency": null or {"requested_us", "held",
"effective_us" or "error"}, "io": {"idle_poll_us", "polled", "slept"}}.
)";

int run(Context& ctx, const std::vector<std::string>& args) {
  return show_route(ctx, args, "/v1/stats", [&](const nlohmann::json& stats) {
    Table t({"MODEL", "REQUESTS", "OK", "INVALID", "REJECTED", "FAILED", "ITEMS", "SLA_MS",
             "SLA_MISSES", "WINDOW", "P50_MS", "P95_MS", "P99_MS"});
    for (const auto& m : array_at(stats, "models")) {
      // A p95 over the SLA is what an operator must see first.
      Color p95 = Color::kNone;
      if (m.value("window", 0) > 0 && m.contains("p95_ms") && m.contains("sla_ms") &&
          m["p95_ms"].is_number() && m["sla_ms"].is_number()) {
        p95 = m["p95_ms"].get<double>() > m["sla_ms"].get<double>() ? Color::kRed : Color::kGreen;
      }
      const bool misses = m.value("sla_violations", 0) > 0;
      t.add_row({field(m, "model"), field(m, "requests"), field(m, "ok"), field(m, "invalid"),
                 field(m, "rejected"), field(m, "failed"), field(m, "items"), field(m, "sla_ms", 1),
                 Cell(field(m, "sla_violations"), misses ? Color::kYellow : Color::kNone),
                 field(m, "window"), field(m, "p50_ms"), Cell(field(m, "p95_ms"), p95),
                 field(m, "p99_ms")});
    }
    t.print(ctx.out, ctx.color);
    ctx.out << "in flight: " << field(stats, "in_flight") << "\n";
    if (auto it = stats.find("cpu_latency"); it != stats.end() && it->is_object()) {
      const nlohmann::json& q = *it;
      ctx.out << "cpu latency: " << field(q, "requested_us") << " us requested, ";
      if (q.value("held", false)) {
        ctx.out << "held (" << field(q, "effective_us") << " us in effect)\n";
      } else {
        ctx.out << "NOT held: " << field(q, "error") << "\n";
      }
    }
    if (auto it = stats.find("io"); it != stats.end() && it->is_object()) {
      const nlohmann::json& io = *it;
      if (io.value("idle_poll_us", 0) == 0) {
        ctx.out << "I/O threads: no polling (limits.idle_poll_us 0): every wait a sleep\n";
      } else {
        ctx.out << "I/O threads: " << field(io, "polled") << " polls found work, "
                << field(io, "slept") << " sleeps (limits.idle_poll_us "
                << field(io, "idle_poll_us") << ")\n";
      }
    }
  });
}

}  // namespace

const Command kStatsCommand = {"stats", "per-model counters and tail latency", kHelp, &run};

}  // namespace recsched::cli
