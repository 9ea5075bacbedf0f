#include "cli/recschedctl.h"

#include <algorithm>
#include <ostream>

#include "cli/args.h"
#include "cli/commands.h"

namespace recsched::cli {

namespace {

constexpr std::string_view kUsageHead = R"(usage: recschedctl [OPTIONS] COMMAND [ARGS...]

Shows what recschedd is doing and steers it, over its HTTP API.

Commands:
)";

constexpr std::string_view kUsageTail = R"(
Options (before or after the command):
  --socket PATH      recschedd's unix socket (default /run/recsched/recschedd.sock)
  --url URL          talk to recschedd over TCP instead: http://HOST:PORT
  --token TOKEN      bearer token for changes over --url (default: $RECSCHED_TOKEN)
  --json             print the daemon's JSON instead of a table (field names are stable)
  --timeout SECONDS  give up on an answer after this long (default 10)
  -h, --help         this text; 'recschedctl COMMAND --help' for a command's own
  --version          recschedctl's version

Tables are coloured only on a terminal and when NO_COLOR is unset. Data goes to stdout,
messages to stderr. Exit status: 0 ok, 1 recschedd answered with an error, 2 bad
arguments, 3 recschedd could not be reached (not running, no permission, no answer).
)";

void print_usage(std::ostream& out) {
  out << kUsageHead;
  for (const Command& c : commands()) {
    out << "  " << c.name << std::string(12 - std::min<size_t>(11, c.name.size()), ' ') << c.summary
        << "\n";
  }
  out << kUsageTail;
}

const Command* find_command(std::string_view name) {
  for (const Command& c : commands()) {
    if (c.name == name) return &c;
  }
  return nullptr;
}

}  // namespace

int run_recschedctl(const std::vector<std::string>& args, std::ostream& out, std::ostream& err,
                    const Environment& env) {
  Result<Invocation> inv = parse_invocation(args, env.token);
  if (!inv) {
    err << "recschedctl: " << inv.status().message() << " (see recschedctl --help)\n";
    return kExitUsage;
  }
  if (inv->options.version) {
    out << "recschedctl " << RECSCHED_VERSION << "\n";
    return kExitOk;
  }
  // "recschedctl help [COMMAND]" is "--help".
  if (inv->command == "help") {
    inv->options.help = true;
    inv->command = inv->args.empty() ? "" : inv->args[0];
    inv->args.clear();
  }
  if (inv->command.empty()) {
    if (inv->options.help) {
      print_usage(out);
      return kExitOk;
    }
    err << "recschedctl: no command given (see recschedctl --help)\n";
    return kExitUsage;
  }
  const Command* cmd = find_command(inv->command);
  if (cmd == nullptr) {
    std::string names;
    for (const Command& c : commands()) names += (names.empty() ? "" : ", ") + std::string(c.name);
    err << "recschedctl: unknown command '" << inv->command << "' (commands: " << names
        << "; see recschedctl --help)\n";
    return kExitUsage;
  }
  if (inv->options.help) {
    out << cmd->help;
    return kExitOk;
  }
  Context ctx{.options = inv->options,
              .color = env.stdout_is_tty && env.no_color.empty(),
              .out = out,
              .err = err,
              .stop = env.stop,
              .command = inv->command};
  return cmd->run(ctx, inv->args);
}

}  // namespace recsched::cli
