// recschedctl placements: the placement log, "why did that query go there?"; --follow
// keeps printing new entries as they are recorded.
#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <ostream>
#include <set>
#include <thread>

#include "cli/commands.h"
#include "cli/recschedctl.h"

namespace recsched::cli {

namespace {

using nlohmann::json;

constexpr std::string_view kHelp =
    R"(usage: recschedctl placements [--limit N] [--follow [--interval SECONDS]] [--json]

The last placements recschedd recorded (a query is recorded when it is answered or
rejected), oldest first: the query number (QUERY) and request id, the model and its
item count, the device, sub-batch size and workers the policy chose, the predicted and
actual latency, the policy, the outcome ("ok", or what ended it) and the policy's reason.

  --limit N             how many of the latest to show (default 20; the daemon keeps
                        limits.placement_log of them)
  --follow              then keep polling and print each new placement once, until
                        interrupted (Ctrl-C)
  --interval SECONDS    how often --follow polls (default 1)

--json prints GET /v1/placements?limit=N: {"placements": [{"query", "id", "model",
"items", "device", "sub_batch", "workers", "predicted_ms", "actual_ms", "policy",
"reason", "outcome"}]}. With --follow it prints one placement object per line (JSON
Lines) instead, the first N included.
)";

// What --follow asks for on each poll: more than arrive between two polls on any host
// we know, so none is missed; if more do arrive, a warning says so.
constexpr size_t kFollowWindow = 1000;

void add_rows(Table& t, const json& placements) {
  for (const auto& p : placements) {
    const std::string outcome = field(p, "outcome");
    t.add_row({field(p, "query"), field(p, "id"), field(p, "model"), field(p, "items"),
               field(p, "device"), field(p, "sub_batch"), field(p, "workers"),
               field(p, "predicted_ms"), field(p, "actual_ms"), field(p, "policy"),
               Cell(outcome, outcome == "ok" ? Color::kGreen : Color::kRed), field(p, "reason")});
  }
}

Table empty_table() {
  return Table({"QUERY", "ID", "MODEL", "ITEMS", "DEVICE", "SUB_BATCH", "WORKERS", "PRED_MS",
                "ACTUAL_MS", "POLICY", "OUTCOME", "REASON"});
}

// A placement's identity: its query number (unique per query, assigned at admission).
std::optional<uint64_t> query_of(const json& p) {
  if (!p.is_object() || !p.contains("query") || !p["query"].is_number_unsigned())
    return std::nullopt;
  return p["query"].get<uint64_t>();
}

int run(Context& ctx, const std::vector<std::string>& args) {
  static constexpr std::string_view kValues[] = {"--limit", "--interval"};
  static constexpr std::string_view kFlags[] = {"--follow"};
  auto parsed = parse_command_args(args, kValues, kFlags);
  if (!parsed) return usage_error(ctx, parsed.status().message());
  if (!parsed->positional.empty()) {
    return usage_error(ctx, "unexpected argument '" + parsed->positional[0] + "'");
  }
  uint64_t limit = 20;
  if (auto it = parsed->values.find("--limit"); it != parsed->values.end()) {
    auto n = parse_count(it->second, "--limit", 0, 1u << 20);
    if (!n) return usage_error(ctx, n.status().message());
    limit = *n;
  }
  const bool follow = parsed->flags.count("--follow") > 0;
  std::chrono::milliseconds interval(1000);
  if (auto it = parsed->values.find("--interval"); it != parsed->values.end()) {
    if (!follow) return usage_error(ctx, "--interval goes with --follow");
    char* end = nullptr;
    const double s = std::strtod(it->second.c_str(), &end);
    if (it->second.empty() || end != it->second.c_str() + it->second.size() || !(s >= 0.01) ||
        s > 3600) {
      return usage_error(
          ctx, "--interval must be a number of seconds in [0.01, 3600], not '" + it->second + "'");
    }
    interval = std::chrono::milliseconds(static_cast<long long>(s * 1000));
  }

  if (!follow) {
    auto placements = fetch(ctx, "GET", "/v1/placements?limit=" + std::to_string(limit));
    if (!placements) return ctx.failure;
    if (ctx.json()) {
      print_json(ctx, *placements);
    } else {
      Table t = empty_table();
      add_rows(t, array_at(*placements, "placements"));
      t.print(ctx.out, ctx.color);
    }
    return kExitOk;
  }

  // --follow. Each poll asks for the latest `window`; a placement is new if its query
  // number was not in the previous answer. The log only grows at its end, so an entry
  // still among the latest `window` was among them at the previous poll too. Queries are
  // recorded when answered, so their numbers are not in order: hence a set, not "greater
  // than the last one seen".
  const uint64_t window = std::max<uint64_t>(limit, kFollowWindow);
  const std::string target = "/v1/placements?limit=" + std::to_string(window);
  auto first = fetch(ctx, "GET", target);
  if (!first) return ctx.failure;
  const json& all = array_at(*first, "placements");
  std::set<uint64_t> seen;
  for (const auto& p : all) {
    if (auto q = query_of(p)) seen.insert(*q);
  }
  json shown = json::array();
  for (size_t i = all.size() - std::min<size_t>(all.size(), limit); i < all.size(); ++i) {
    shown.push_back(all[i]);
  }
  Table header = empty_table();
  add_rows(header, shown);
  if (ctx.json()) {
    for (const auto& p : shown) ctx.out << p.dump() << "\n";
  } else {
    header.print(ctx.out, ctx.color);
  }
  ctx.out.flush();
  while (!(ctx.stop && ctx.stop())) {
    std::this_thread::sleep_for(interval);
    auto next = fetch(ctx, "GET", target);
    if (!next) return ctx.failure;
    const json& latest = array_at(*next, "placements");
    std::set<uint64_t> now;
    json fresh = json::array();
    for (const auto& p : latest) {
      const std::optional<uint64_t> q = query_of(p);
      if (!q) continue;
      now.insert(*q);
      if (!seen.count(*q)) fresh.push_back(p);
    }
    if (latest.size() >= window && !seen.empty() && fresh.size() == latest.size()) {
      ctx.err << "recschedctl: more than " << window
              << " placements between two polls: some were not shown (try a shorter --interval)\n";
    }
    seen = std::move(now);
    if (fresh.empty()) continue;
    if (ctx.json()) {
      for (const auto& p : fresh) ctx.out << p.dump() << "\n";
    } else {
      Table rows = empty_table();
      add_rows(rows, fresh);
      rows.print_rows_like(header, ctx.out, ctx.color);
    }
    ctx.out.flush();
  }
  return kExitOk;
}

}  // namespace

const Command kPlacementsCommand = {
    "placements", "the latest placements and why; --follow for new ones", kHelp, &run};

}  // namespace recsched::cli
