// recschedctl policy: the placement policy in force, and switching or re-tuning it.
#include <ostream>

#include "cli/commands.h"
#include "cli/recschedctl.h"

namespace recsched::cli {

namespace {

using nlohmann::json;

constexpr std::string_view kHelp = R"(usage: recschedctl policy [show] [--json]
       recschedctl policy set NAME [KEY=VALUE...] [--json]

show (the default) prints the placement policy in force, its parameters and the
policies this recschedd has.

set switches to policy NAME with exactly the parameters given (any not given take the
policy's defaults; to re-tune one parameter, give the others again). A VALUE that parses
as JSON is sent as JSON (256, 0.5, true, "cpu0", [1,2]); anything else as a string, so
device=cpu0 and device='"cpu0"' are the same. recschedd checks the name and parameters
and refuses bad ones (exit 1, with its reason). Changing the policy needs the unix
socket, or over --url the daemon's token (--token or RECSCHED_TOKEN).

--json prints GET /v1/policy (for set: PUT /v1/policy's answer): {"name", "params",
"available"}.
)";

void print_policy(Context& ctx, const json& policy) {
  if (ctx.json()) {
    print_json(ctx, policy);
    return;
  }
  std::vector<std::pair<std::string, Cell>> fields = {{"policy", Cell(field(policy, "name"))}};
  std::string available;
  for (const auto& name : array_at(policy, "available")) {
    available += (available.empty() ? "" : ", ") + cell_text(name);
  }
  if (!available.empty()) fields.emplace_back("available", Cell(available));
  const auto params = policy.find("params");
  if (params == policy.end() || !params->is_object() || params->empty()) {
    fields.emplace_back("params", Cell("(none: the policy's defaults)"));
  } else {
    bool first = true;
    for (const auto& [k, v] : params->items()) {
      fields.emplace_back(first ? "params" : "", Cell(k + "=" + v.dump()));
      first = false;
    }
  }
  print_fields(ctx.out, fields, ctx.color);
}

int run(Context& ctx, const std::vector<std::string>& args) {
  auto parsed = parse_command_args(args, {}, {});
  if (!parsed) return usage_error(ctx, parsed.status().message());
  const std::vector<std::string>& pos = parsed->positional;
  if (pos.empty() || pos[0] == "show") {
    if (pos.size() > 1) return usage_error(ctx, "'policy show' takes no arguments");
    auto policy = fetch(ctx, "GET", "/v1/policy");
    if (!policy) return ctx.failure;
    print_policy(ctx, *policy);
    return kExitOk;
  }
  if (pos[0] != "set") {
    return usage_error(ctx, "unknown policy action '" + pos[0] + "' (show or set)");
  }
  if (pos.size() < 2) return usage_error(ctx, "'policy set' needs a policy NAME");
  if (pos[1].find('=') != std::string::npos) {
    return usage_error(ctx, "'policy set' needs the policy NAME before KEY=VALUE parameters");
  }
  auto params = parse_params(std::span<const std::string>(pos).subspan(2));
  if (!params) return usage_error(ctx, params.status().message());
  const json body = {{"name", pos[1]}, {"params", *params}};
  auto policy = fetch(ctx, "PUT", "/v1/policy", body.dump());
  if (!policy) return ctx.failure;
  ctx.err << "recschedctl: policy set to " << pos[1] << "\n";
  print_policy(ctx, *policy);
  return kExitOk;
}

}  // namespace

const Command kPolicyCommand = {
    "policy", "show the placement policy; 'policy set NAME k=v...' changes it", kHelp, &run};

}  // namespace recsched::cli
