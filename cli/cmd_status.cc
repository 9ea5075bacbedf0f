// recschedctl status: is the daemon up and ready, what it serves, how it is doing.
#include <ostream>

#include "cli/commands.h"
#include "cli/recschedctl.h"

namespace recsched::cli {

namespace {

using nlohmann::json;

constexpr std::string_view kHelp = R"(usage: recschedctl status [--json]

Whether recschedd answers and is ready, its version, the host's topology, the policy,
the models it serves, and its counters summed over the models.

--json prints {"server": GET /v2, "ready": bool, "topology": GET /v1/topology,
"policy": GET /v1/policy, "stats": GET /v1/stats}, each as the daemon sent it.
)";

int run(Context& ctx, const std::vector<std::string>& args) {
  auto parsed = parse_command_args(args, {}, {});
  if (!parsed) return usage_error(ctx, parsed.status().message());
  if (!parsed->positional.empty()) {
    return usage_error(ctx, "unexpected argument '" + parsed->positional[0] + "'");
  }
  auto server = fetch(ctx, "GET", "/v2");
  if (!server) return ctx.failure;
  static constexpr unsigned kNotReady[] = {503};
  auto ready = fetch(ctx, "GET", "/v2/health/ready", "", kNotReady);
  if (!ready) return ctx.failure;
  auto topology = fetch(ctx, "GET", "/v1/topology");
  if (!topology) return ctx.failure;
  auto policy = fetch(ctx, "GET", "/v1/policy");
  if (!policy) return ctx.failure;
  auto stats = fetch(ctx, "GET", "/v1/stats");
  if (!stats) return ctx.failure;
  const bool is_ready = ready->value("ready", false);
  if (ctx.json()) {
    print_json(ctx, {{"server", *server},
                     {"ready", is_ready},
                     {"topology", *topology},
                     {"policy", *policy},
                     {"stats", *stats}});
    return kExitOk;
  }
  uint64_t requests = 0, ok = 0, invalid = 0, rejected = 0, failed_n = 0, violations = 0;
  std::string names;
  const json& models = array_at(*stats, "models");
  for (const auto& m : models) {
    auto count = [&m](const char* key) { return m.value(key, uint64_t{0}); };
    requests += count("requests");
    ok += count("ok");
    invalid += count("invalid");
    rejected += count("rejected");
    failed_n += count("failed");
    violations += count("sla_violations");
    names += (names.empty() ? "" : ", ") + m.value("model", std::string("?"));
  }
  const std::string version = field(*server, "name") + " " + field(*server, "version");
  std::vector<std::pair<std::string, Cell>> fields = {
      {"daemon", Cell(version + " at " + ctx.options.endpoint.describe())},
      {"ready",
       Cell(is_ready ? "yes" : "no (starting)", is_ready ? Color::kGreen : Color::kYellow)},
      {"topology", Cell(field(*topology, "summary"))},
      {"partition", Cell(field(*topology, "partition"))},
      {"policy", Cell(field(*policy, "name"))},
      {"models", Cell(std::to_string(models.size()) + (names.empty() ? "" : " (" + names + ")"))},
      {"in flight", Cell(field(*stats, "in_flight"))},
      {"requests", Cell(std::to_string(requests) + " (ok " + std::to_string(ok) + ", invalid " +
                        std::to_string(invalid) + ", rejected " + std::to_string(rejected) +
                        ", failed " + std::to_string(failed_n) + ")")},
      {"SLA misses",
       Cell(std::to_string(violations), violations > 0 ? Color::kYellow : Color::kNone)},
  };
  print_fields(ctx.out, fields, ctx.color);
  return kExitOk;
}

}  // namespace

const Command kStatusCommand = {"status", "is recschedd up and ready; what it serves; its counters",
                                kHelp, &run};

}  // namespace recsched::cli
