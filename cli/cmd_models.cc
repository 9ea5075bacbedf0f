// recschedctl models: what recschedd serves, with each model's SLA and device.
#include <ostream>

#include "cli/commands.h"
#include "cli/recschedctl.h"

namespace recsched::cli {

namespace {

constexpr std::string_view kHelp = R"(usage: recschedctl models [--json]

Every model recschedd serves: its type, embedding tables and their size, its
tail-latency target (SLA_MS at the PCTL percentile), the device it runs on, the kernels
it uses, its weights ("seeded" or a safetensors file) and its spec file.

--json prints GET /v1/models: {"models": [{"name", "type", "spec", "weights", "tables",
"table_rows", "table_bytes", "sla_ms", "sla_percentile", "device", "kernels"}]}.
)";

int run(Context& ctx, const std::vector<std::string>& args) {
  return show_route(ctx, args, "/v1/models", [&](const nlohmann::json& models) {
    Table t({"NAME", "TYPE", "TABLES", "EMBEDDINGS", "SLA_MS", "PCTL", "DEVICE", "KERNELS",
             "WEIGHTS", "SPEC"});
    for (const auto& m : array_at(models, "models")) {
      const auto bytes = m.find("table_bytes");
      const bool has_bytes = bytes != m.end() && bytes->is_number();
      t.add_row({field(m, "name"), field(m, "type"), field(m, "tables"),
                 has_bytes ? bytes_text(bytes->get<double>()) : "-",
                 field(m, "sla_ms", 1), field(m, "sla_percentile", 1), field(m, "device"),
                 field(m, "kernels"), field(m, "weights"), field(m, "spec")});
    }
    t.print(ctx.out, ctx.color);
  });
}

}  // namespace

const Command kModelsCommand = {"models", "the models served, their SLAs and devices", kHelp, &run};

}  // namespace recsched::cli
