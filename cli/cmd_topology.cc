// recschedctl topology: the host as recschedd sees it.
#include <ostream>

#include "cli/commands.h"
#include "cli/recschedctl.h"

namespace recsched::cli {

namespace {

constexpr std::string_view kHelp = R"(usage: recschedctl topology [--json]

The host's hardware as recschedd discovered it (hwloc): a one-line summary, the
fingerprint that keys the profile cache, and how the CPUs are cut into devices.

--json prints GET /v1/topology: {"summary", "fingerprint", "partition"}.
)";

int run(Context& ctx, const std::vector<std::string>& args) {
  return show_route(ctx, args, "/v1/topology", [&](const nlohmann::json& topology) {
    print_fields(ctx.out,
                 {{"summary", Cell(field(topology, "summary"))},
                  {"partition", Cell(field(topology, "partition"))},
                  {"fingerprint", Cell(field(topology, "fingerprint"))}},
                 ctx.color);
  });
}

}  // namespace

const Command kTopologyCommand = {"topology", "the host's hardware as recschedd sees it", kHelp,
                                  &run};

}  // namespace recsched::cli
