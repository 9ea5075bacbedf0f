// recschedctl's subcommands: one file each (cmd_*.cc), listed in one table (commands.cc),
// and what they share: the request helper that turns every failure into one line and an
// exit code, and the formatting of the daemon's JSON values for tables.
#pragma once

#include <functional>
#include <iosfwd>
#include <nlohmann/json.hpp>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "cli/args.h"
#include "cli/http_client.h"
#include "cli/table.h"

namespace recsched::cli {

/// What a running command has: where the daemon is, how to print, where to.
struct Context {
  GlobalOptions options;
  bool color = false;          ///< ANSI colour in tables (a tty, and NO_COLOR unset)
  std::ostream& out;           ///< data
  std::ostream& err;           ///< messages
  std::function<bool()> stop;  ///< --follow ends when this says true (empty: never)
  std::string command;         ///< for messages: "recschedctl placements: ..."
  int failure = 1;             ///< exit code of the last failed fetch()

  bool json() const { return options.format == Format::kJson; }
};

/// One subcommand. `run` gets the arguments after its name and returns the exit code.
struct Command {
  std::string_view name;
  std::string_view summary;  ///< one line for "recschedctl --help"
  std::string_view help;     ///< the whole "recschedctl NAME --help" text
  int (*run)(Context& ctx, const std::vector<std::string>& args);
};

/// Every subcommand, in the order --help lists them.
std::span<const Command> commands();

/// Sends one request and parses the JSON reply. On any failure prints one line to
/// ctx.err ("recschedctl: ...", saying what to do), sets ctx.failure (kExitUnreachable
/// when recschedd cannot be reached, kExitFailed when it answered an error status or not
/// JSON) and returns nullopt. Statuses in `accept` (besides 2xx) count as answers.
std::optional<nlohmann::json> fetch(Context& ctx, std::string_view method, std::string_view target,
                                    std::string_view body = "",
                                    std::span<const unsigned> accept = {});

/// Prints "recschedctl CMD: message (see recschedctl CMD --help)" to ctx.err; returns 2.
int usage_error(Context& ctx, const std::string& message);
/// Prints "recschedctl: message" to ctx.err; returns kExitFailed.
int failed(Context& ctx, const std::string& message);

/// The daemon's JSON as it came (indented), for --json.
void print_json(Context& ctx, const nlohmann::json& value);

/// A command that takes no argument of its own and shows one GET route: `args` parsed
/// (anything but the global flags is a usage error), `target` fetched, then printed as
/// JSON with --json, else drawn by `draw` (a table on ctx.out). Returns the exit code.
int show_route(Context& ctx, const std::vector<std::string>& args, std::string_view target,
               const std::function<void(const nlohmann::json&)>& draw);

/// A JSON value as a table cell: "-" for null or missing, integers as they are, other
/// numbers with `decimals` digits, true/false as yes/no, arrays joined by ",", objects
/// as compact JSON.
std::string cell_text(const nlohmann::json& value, int decimals = 2);
/// cell_text of object[key], "-" when `object` is not an object or has no such key.
std::string field(const nlohmann::json& object, std::string_view key, int decimals = 2);
/// Bytes as "512 B", "1.5 KiB", "2.0 GiB".
std::string bytes_text(double bytes);
/// The array at object[key], or an empty array.
const nlohmann::json& array_at(const nlohmann::json& object, std::string_view key);

// The subcommands, one per cmd_*.cc.
extern const Command kStatusCommand;
extern const Command kTopologyCommand;
extern const Command kDevicesCommand;
extern const Command kModelsCommand;
extern const Command kProfilesCommand;
extern const Command kPlacementsCommand;
extern const Command kStatsCommand;
extern const Command kCapacityCommand;
extern const Command kPolicyCommand;
extern const Command kProfileCommand;

}  // namespace recsched::cli
