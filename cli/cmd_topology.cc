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
  auto parsed = parse_command_args(args, {}, {});
  if (!parsed) return usage_error(ctx, parsed.status().message());
  if (!parsed->positional.empty()) {
    return usage_error(ctx, "unexpected argument '" + parsed->positional[0] + "'");
  }
  auto topology = fetch(ctx, "GET", "/v1/topology");
  if (!topology) return ctx.failure;
  if (ctx.json()) {
    print_json(ctx, *topology);
    return kExitOk;
  }
  print_fields(ctx.out,
               {{"summary", Cell(field(*topology, "summary"))},
                {"partition", Cell(field(*topology, "partition"))},
                {"fingerprint", Cell(field(*topology, "fingerprint"))}},
               ctx.color);
  return kExitOk;
}

}  // namespace

const Command kTopologyCommand = {"topology", "the host's hardware as recschedd sees it", kHelp,
                                  &run};

}  // namespace recsched::cli
