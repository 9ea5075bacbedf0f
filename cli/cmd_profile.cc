// recschedctl profile: re-profile every model in the background.
#include <ostream>

#include "cli/commands.h"
#include "cli/recschedctl.h"

namespace recsched::cli {

namespace {

constexpr std::string_view kHelp = R"(usage: recschedctl profile [--json]

Asks recschedd to re-profile every model on its device in the background (POST
/v1/profile) and swap the new table in when done; it keeps serving meanwhile. Use it
after a hardware or firmware change the profile cache cannot see. recschedctl does not
wait: 'recschedctl profiles' shows the new table (and its profiling_seconds) once the
daemon has swapped it in, and the daemon logs "re-profiled N models".

Exit 1 if a profiling run is already going. Needs the unix socket, or over --url the
daemon's token (--token or RECSCHED_TOKEN).

--json prints the daemon's answer: {"profiling": true}.
)";

int run(Context& ctx, const std::vector<std::string>& args) {
  auto parsed = parse_command_args(args, {}, {});
  if (!parsed) return usage_error(ctx, parsed.status().message());
  if (!parsed->positional.empty()) {
    return usage_error(ctx, "unexpected argument '" + parsed->positional[0] + "'");
  }
  auto answer = fetch(ctx, "POST", "/v1/profile", "{}");
  if (!answer) return ctx.failure;
  if (ctx.json()) {
    print_json(ctx, *answer);
  } else {
    ctx.err << "recschedctl: re-profiling every model in the background; 'recschedctl "
               "profiles' shows the new table once it is done\n";
  }
  return kExitOk;
}

}  // namespace

const Command kProfileCommand = {"profile", "re-profile every model (in the background)", kHelp,
                                 &run};

}  // namespace recsched::cli
