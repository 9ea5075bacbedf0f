// recschedctl's argument parsing: the global options (anywhere before "--"), the command
// and its own options, and policy parameters written key=value. Depends on core, JSON.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "cli/http_client.h"
#include "core/status.h"

namespace recsched::cli {

enum class Format : uint8_t { kTable, kJson };

/// The options every command takes.
struct GlobalOptions {
  Endpoint endpoint;  ///< --socket PATH (default /run/recsched/recschedd.sock) or --url
  Format format = Format::kTable;            ///< --json
  std::chrono::milliseconds timeout{10000};  ///< --timeout SECONDS
  bool help = false;                         ///< -h, --help
  bool version = false;                      ///< --version
};

struct Invocation {
  GlobalOptions options;
  std::string command;            ///< "" when none was given
  std::vector<std::string> args;  ///< the command's own arguments, in order
};

/// Splits the arguments. `env_token` ($RECSCHED_TOKEN) is used with --url unless --token
/// says otherwise. kInvalidArgument, one line naming the argument, for: a missing value,
/// --socket with --url, --token without --url, a bad --url or --timeout.
Result<Invocation> parse_invocation(const std::vector<std::string>& args,
                                    const std::string& env_token);

/// A command's own arguments once split.
struct CommandArgs {
  std::vector<std::string> positional;
  std::map<std::string, std::string> values;  ///< "--limit" -> "5" ("--limit 5", "--limit=5")
  std::set<std::string> flags;                ///< "--follow"
};

/// Splits a command's arguments given the options it takes; "--" ends the options.
/// kInvalidArgument for an unknown option, a missing value, or a value given to a flag.
Result<CommandArgs> parse_command_args(const std::vector<std::string>& args,
                                       std::span<const std::string_view> value_options,
                                       std::span<const std::string_view> flag_options);

/// "key=value" pairs into a JSON object: a value that parses as JSON is taken as JSON
/// (5, 0.5, true, null, "s", [1,2], {"a":1}), anything else as a string. kInvalidArgument
/// for a pair without '=', an empty key, or a key given twice.
Result<nlohmann::json> parse_params(std::span<const std::string> assignments);

/// A whole number in [min, max] from an option's text; kInvalidArgument naming `what`.
Result<uint64_t> parse_count(std::string_view text, std::string_view what, uint64_t min,
                             uint64_t max);

}  // namespace recsched::cli
