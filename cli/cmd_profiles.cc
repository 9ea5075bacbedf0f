// recschedctl profiles: the measured latency and power of each model on each device.
#include <ostream>
#include <set>

#include "cli/commands.h"
#include "cli/recschedctl.h"

namespace recsched::cli {

namespace {

using nlohmann::json;

constexpr std::string_view kHelp = R"(usage: recschedctl profiles [--model MODEL] [--json]

The profile table the policies place queries by: for each model and device, at each
profiled batch size, the median (P50_US) and p95 (P95_US) latency of the best split,
the single-worker median, items per second, power and energy per item (with where the
power figure comes from: rapl, nvml or estimated), the best split (sub-batch size
and workers) and, on a GPU, how many passes at once pay (STREAMS; 0 where not
measured), which recschedd runs.

  --model MODEL   only this model's profiles (exit 1 if recschedd has none for it)

--json prints GET /v1/profiles (with --model, only that model's entries):
{"profiles": [{"model", "device", "points": [{"batch_size", "p50_us", "p95_us",
"p50_single_us", "items_per_s", "power_w", "energy_per_item_j", "power_source",
"best_sub_batch", "best_workers", "best_streams", "streams_items_per_s",
"measured_p50_single_us"}]}], "corrections", "profiling_seconds"}.
)";

int run(Context& ctx, const std::vector<std::string>& args) {
  static constexpr std::string_view kValues[] = {"--model"};
  auto parsed = parse_command_args(args, kValues, {});
  if (!parsed) return usage_error(ctx, parsed.status().message());
  if (!parsed->positional.empty()) {
    return usage_error(ctx, "unexpected argument '" + parsed->positional[0] + "'");
  }
  auto profiles = fetch(ctx, "GET", "/v1/profiles");
  if (!profiles) return ctx.failure;
  if (auto it = parsed->values.find("--model"); it != parsed->values.end()) {
    json kept = json::array();
    std::set<std::string> models;
    for (const auto& p : array_at(*profiles, "profiles")) {
      const std::string model = p.value("model", std::string());
      if (model == it->second) kept.push_back(p);
      models.insert(model);
    }
    std::string known;
    for (const std::string& m : models) known += (known.empty() ? "" : ", ") + m;
    if (kept.empty()) {
      return failed(ctx, "recschedd has no profiles for model '" + it->second +
                             "' (it has: " + (known.empty() ? "none" : known) + ")");
    }
    (*profiles)["profiles"] = kept;
  }
  if (ctx.json()) {
    print_json(ctx, *profiles);
    return kExitOk;
  }
  Table t({"MODEL", "DEVICE", "BATCH", "P50_US", "P95_US", "P50_1W_US", "ITEMS/S", "POWER_W",
           "UJ/ITEM", "SUB_BATCH", "WORKERS", "STREAMS", "SOURCE"});
  for (const auto& p : array_at(*profiles, "profiles")) {
    for (const auto& pt : array_at(p, "points")) {
      const auto j = pt.find("energy_per_item_j");
      const std::string uj =
          j != pt.end() && j->is_number() ? cell_text(json(j->get<double>() * 1e6), 2) : "-";
      t.add_row({field(p, "model"), field(p, "device"), field(pt, "batch_size"),
                 field(pt, "p50_us", 1), field(pt, "p95_us", 1), field(pt, "p50_single_us", 1),
                 field(pt, "items_per_s", 0), field(pt, "power_w", 1), uj,
                 field(pt, "best_sub_batch"), field(pt, "best_workers"),
                 field(pt, "best_streams"), field(pt, "power_source")});
    }
  }
  t.print(ctx.out, ctx.color);
  if (profiles->contains("profiling_seconds")) {
    ctx.out << "profiled in " << field(*profiles, "profiling_seconds", 1) << " s\n";
  }
  return kExitOk;
}

}  // namespace

const Command kProfilesCommand = {
    "profiles", "measured latency and power per model, device and size", kHelp, &run};

}  // namespace recsched::cli
