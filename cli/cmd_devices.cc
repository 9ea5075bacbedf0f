// recschedctl devices: every device, and the load on the ones serving.
#include <ostream>

#include "cli/commands.h"
#include "cli/recschedctl.h"

namespace recsched::cli {

namespace {

constexpr std::string_view kHelp = R"(usage: recschedctl devices [--json]

Every device recschedd found: CPU groups (their cores, CPU set and NUMA node) and GPUs
(model, PCI bus id). For a device that serves, its workers, the queries queued on it,
the workers busy now, and where its power figures come from (rapl, nvml or estimated).
HARDWARE is a GPU's model and PCI bus id.

--json prints GET /v1/devices: {"devices": [{"id", "kind", "serving", "numa_node", ...}]}.
)";

int run(Context& ctx, const std::vector<std::string>& args) {
  return show_route(ctx, args, "/v1/devices", [&](const nlohmann::json& devices) {
    Table t({"ID", "KIND", "SERVING", "NUMA", "CORES", "CPUSET", "WORKERS", "QUEUED", "BUSY",
             "HARDWARE", "POWER"});
    for (const auto& d : array_at(devices, "devices")) {
      const bool serving = d.value("serving", false);
      std::string hw = field(d, "model");
      if (d.contains("pci_bus_id")) hw += " (" + field(d, "pci_bus_id") + ")";
      t.add_row({field(d, "id"), field(d, "kind"),
                 Cell(serving ? "yes" : "no", serving ? Color::kGreen : Color::kNone),
                 field(d, "numa_node"), field(d, "cores"), field(d, "cpuset"), field(d, "workers"),
                 field(d, "queued"), field(d, "busy_workers"), hw, field(d, "power")});
    }
    t.print(ctx.out, ctx.color);
  });
}

}  // namespace

const Command kDevicesCommand = {"devices", "CPU groups and GPUs, and the load on each", kHelp,
                                 &run};

}  // namespace recsched::cli
