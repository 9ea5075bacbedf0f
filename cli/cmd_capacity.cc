// recschedctl capacity: each model's modelled capacity at its target, what it is offered and
// served, and the host's headroom (GET /v1/capacity; policies/capacity.h).
#include <ostream>

#include "cli/commands.h"
#include "cli/recschedctl.h"

namespace recsched::cli {

namespace {

constexpr std::string_view kHelp = R"(usage: recschedctl capacity [--json]

Per model: its target, its recent mean query size, the queries per second this host can
take within the target (modelled from the profiles, corrected by what serving measured:
each device's throughput at that size within the admission bound, times
fleet.max_utilisation), the offered and served rates over the last ~10 s, and the
headroom (capacity x the host's free share). Then the host: its utilisation (sum over
models of served / capacity), its capacity for the current mix, its headroom, and whether
it is draining or degraded. This is what the HAProxy agent, the ORCA header and the
Prometheus gauges report.

--json prints GET /v1/capacity: {"host": {"ready", "draining", "degraded", "devices",
"degraded_devices", "utilisation", "mix_capacity_qps", "served_qps", "headroom_qps",
"max_utilisation"}, "models": [{"model", "target_ms", "items", "capacity_qps",
"offered_qps", "served_qps", "headroom_qps", "devices": [{"device", "capacity_qps",
"service_ms", "workers_per_query", "degraded"}]}], "model"}.
)";

int run(Context& ctx, const std::vector<std::string>& args) {
  return show_route(ctx, args, "/v1/capacity", [&](const nlohmann::json& cap) {
    Table t({"MODEL", "TARGET_MS", "ITEMS", "CAPACITY_QPS", "OFFERED_QPS", "SERVED_QPS",
             "HEADROOM_QPS"});
    for (const auto& m : array_at(cap, "models")) {
      // A model offered more than its capacity, or with none at all, is what to see first.
      Color c = Color::kNone;
      if (m.contains("capacity_qps") && m["capacity_qps"].is_number() &&
          m.contains("offered_qps") && m["offered_qps"].is_number()) {
        const double capacity = m["capacity_qps"].get<double>();
        if (capacity <= 0 || m["offered_qps"].get<double>() > capacity) c = Color::kRed;
      }
      t.add_row({field(m, "model"), field(m, "target_ms", 1), field(m, "items", 0),
                 Cell(field(m, "capacity_qps", 1), c), field(m, "offered_qps", 1),
                 field(m, "served_qps", 1), field(m, "headroom_qps", 1)});
    }
    t.print(ctx.out, ctx.color);
    const nlohmann::json host = cap.value("host", nlohmann::json::object());
    ctx.out << "host: utilisation " << field(host, "utilisation", 3) << ", capacity for the mix "
            << field(host, "mix_capacity_qps", 1) << " q/s, headroom "
            << field(host, "headroom_qps", 1) << " q/s";
    if (host.value("draining", false)) ctx.out << ", draining";
    if (host.value("degraded", false)) ctx.out << ", degraded";
    ctx.out << "\n(modelled from the profiles, not measured at the target)\n";
  });
}

}  // namespace

const Command kCapacityCommand = {"capacity", "each model's capacity at its target, and headroom",
                                  kHelp, &run};

}  // namespace recsched::cli
