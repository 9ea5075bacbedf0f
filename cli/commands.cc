#include "cli/commands.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <ostream>

#include "cli/recschedctl.h"

namespace recsched::cli {

using nlohmann::json;

std::span<const Command> commands() {
  // The only list: adding a subcommand is a cmd_*.cc file and one line here.
  static const std::array<const Command*, 10> kList = {
      &kStatusCommand,     &kTopologyCommand, &kDevicesCommand, &kModelsCommand,
      &kProfilesCommand,   &kPlacementsCommand, &kStatsCommand,  &kCapacityCommand,
      &kPolicyCommand,     &kProfileCommand,
  };
  static const std::vector<Command> kCommands = [] {
    std::vector<Command> v;
    for (const Command* c : kList) v.push_back(*c);
    return v;
  }();
  return kCommands;
}

std::optional<json> fetch(Context& ctx, std::string_view method, std::string_view target,
                          std::string_view body, std::span<const unsigned> accept) {
  Result<HttpReply> reply =
      http_request(ctx.options.endpoint, method, target, body, ctx.options.timeout);
  if (!reply) {
    ctx.err << "recschedctl: " << reply.status().message() << "\n";
    ctx.failure = kExitUnreachable;
    return std::nullopt;
  }
  json j = json::parse(reply->body, nullptr, false);
  const bool accepted = (reply->status >= 200 && reply->status < 300) ||
                        std::find(accept.begin(), accept.end(), reply->status) != accept.end();
  if (!accepted) {
    std::string why = j.is_object() && j.contains("error") && j["error"].is_string()
                          ? j["error"].get<std::string>()
                          : reply->body.substr(0, 200);
    std::string hint;
    if (reply->status == 403) {
      hint = ctx.options.endpoint.kind == Endpoint::Kind::kTcp
                 ? " (give the daemon's token: --token TOKEN or RECSCHED_TOKEN, or use the unix "
                   "socket on its host)"
                 : "";
    } else if (reply->status == 404 && why.rfind("no route", 0) == 0) {
      hint = " (is this recschedd, and as new as recschedctl?)";
    }
    ctx.err << "recschedctl: recschedd answered " << reply->status << " " << reply->reason << ": "
            << why << hint << "\n";
    ctx.failure = kExitFailed;
    return std::nullopt;
  }
  if (j.is_discarded()) {
    ctx.err << "recschedctl: " << ctx.options.endpoint.describe()
            << " answered something that is not JSON (is it recschedd? check --socket/--url)\n";
    ctx.failure = kExitFailed;
    return std::nullopt;
  }
  return j;
}

int show_route(Context& ctx, const std::vector<std::string>& args, std::string_view target,
               const std::function<void(const json&)>& draw) {
  auto parsed = parse_command_args(args, {}, {});
  if (!parsed) return usage_error(ctx, parsed.status().message());
  if (!parsed->positional.empty()) {
    return usage_error(ctx, "unexpected argument '" + parsed->positional[0] + "'");
  }
  auto answer = fetch(ctx, "GET", target);
  if (!answer) return ctx.failure;
  if (ctx.json()) {
    print_json(ctx, *answer);
  } else {
    draw(*answer);
  }
  return kExitOk;
}

int usage_error(Context& ctx, const std::string& message) {
  ctx.err << "recschedctl " << ctx.command << ": " << message << " (see recschedctl " << ctx.command
          << " --help)\n";
  return kExitUsage;
}

int failed(Context& ctx, const std::string& message) {
  ctx.err << "recschedctl: " << message << "\n";
  return kExitFailed;
}

void print_json(Context& ctx, const json& value) { ctx.out << value.dump(2) << "\n"; }

std::string cell_text(const json& v, int decimals) {
  if (v.is_null()) return "-";
  if (v.is_boolean()) return v.get<bool>() ? "yes" : "no";
  if (v.is_number_integer()) return v.dump();
  if (v.is_number_float()) {
    const double d = v.get<double>();
    if (!std::isfinite(d)) return "-";
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.*f", decimals, d);
    return buf;
  }
  if (v.is_string()) {
    const std::string s = v.get<std::string>();
    return s.empty() ? "-" : s;
  }
  if (v.is_array()) {
    std::string out;
    for (const auto& e : v) {
      if (!out.empty()) out += ",";
      out += cell_text(e, decimals);
    }
    return out.empty() ? "-" : out;
  }
  return v.dump();
}

std::string field(const json& object, std::string_view key, int decimals) {
  if (!object.is_object()) return "-";
  auto it = object.find(key);
  return it == object.end() ? "-" : cell_text(*it, decimals);
}

std::string bytes_text(double bytes) {
  static constexpr const char* kUnits[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int u = 0;
  while (bytes >= 1024 && u < 4) {
    bytes /= 1024;
    ++u;
  }
  char buf[32];
  std::snprintf(buf, sizeof buf, u == 0 ? "%.0f %s" : "%.1f %s", bytes, kUnits[u]);
  return buf;
}

const json& array_at(const json& object, std::string_view key) {
  static const json kEmpty = json::array();
  if (!object.is_object()) return kEmpty;
  auto it = object.find(key);
  return it != object.end() && it->is_array() ? *it : kEmpty;
}

}  // namespace recsched::cli
