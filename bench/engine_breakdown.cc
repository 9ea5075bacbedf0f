// engine_breakdown: where one forward pass of a model spends its time, against this
// machine's own limits. At one batch size it times, single-threaded:
//   forward     the whole model (seeded weights, full-size tables)
//   embedding   every table's embedding_bag_sum on tables of the spec's sizes;
//               compare rows_per_s with bench/gather_bw run on the same footprint
//   dense       every Linear layer of both MLPs through engine::linear_forward, and the
//               same shapes through bare dnnl_sgemm: the BLAS's own rate, the limit
//   yield       the forward pass's yield points (cooperative preemption, engine/model.h):
//               how many per pass, and the longest stretch between two (the pass's start
//               and end included), the most a preempting query waits for this one
// Each phase: 2 warm-up runs, then the median of --reps runs, fresh random ids each run
// (made outside the timed region). Prints one JSON object.
//
//   taskset -c 0 ./build/bench/engine_breakdown --model models/rmc1.json --batch 1024
#include <dnnl.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/device.h"
#include "engine/dense.h"
#include "engine/embedding_bag.h"
#include "engine/inputs.h"
#include "engine/layers.h"
#include "engine/model.h"
#include "engine/weights.h"

namespace recsched::engine {
namespace {

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

template <class Prepare, class Run>
double time_ms(int reps, Prepare prepare, Run run) {
  std::vector<double> ms;
  for (int r = 0; r < reps + 2; ++r) {
    prepare(r);
    const auto t0 = Clock::now();
    run();
    const double dt = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
    if (r >= 2) ms.push_back(dt);
  }
  return median(ms);
}

[[noreturn]] void die(const std::string& msg) {
  std::cerr << "engine_breakdown: " << msg << "\n";
  std::exit(1);
}

int run(int argc, char** argv) {
  std::string model_path;
  uint32_t batch = 1024;
  int reps = 20;
  YieldBlocks blocks;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--help" || a == "-h") {
      std::cout << "usage: engine_breakdown --model SPEC.json [--batch N] [--reps N]\n"
                   "         [--blocks FLOPS:LOOKUPS:MIN_ROWS]  the yield blocks to time\n"
                   "                                            (default: engine/layers.h's)\n";
      return 0;
    }
    if (i + 1 >= argc) die("option " + a + " needs a value (see --help)");
    if (a == "--model") {
      model_path = argv[++i];
    } else if (a == "--batch") {
      batch = static_cast<uint32_t>(std::stoul(argv[++i]));
    } else if (a == "--reps") {
      reps = std::stoi(argv[++i]);
    } else if (a == "--blocks") {
      double f = 0;
      long long l = 0, m = 0;
      if (std::sscanf(argv[++i], "%lf:%lld:%lld", &f, &l, &m) != 3) die("--blocks F:L:R");
      blocks = {.flops = f, .lookups = l, .min_rows = m};
    } else {
      die("unknown option " + a + " (see --help)");
    }
  }
  if (model_path.empty()) die("missing --model (see --help)");
  if (batch < 1 || reps < 1) die("--batch and --reps must be >= 1");
  Result<ModelSpec> spec_or = load_model_spec(model_path);
  if (!spec_or) die(spec_or.status().message());
  const ModelSpec& spec = *spec_or;
  set_blas_threads(1);
  const Isa isa = detect_isa();

  // Whole forward pass.
  LoadOptions lo;
  lo.isa = isa;
  auto model = load_model(spec, lo);
  if (!model) die(model.status().message());
  // Timestamps at the yield points: the stretches between them, per pass.
  struct Stretches final : YieldPoint {
    void at_yield_point() override {
      const auto now = Clock::now();
      longest = std::max(longest, std::chrono::duration<double, std::milli>(now - last).count());
      last = now;
      ++points;
    }
    Clock::time_point last;
    double longest = 0;
    int points = 0;
  };
  // Three ways to run the pass, interleaved run by run so that they see the same machine:
  // no hook (no points offered), points without cutting GEMMs and pooling into blocks, and
  // points with the blocks (what a CPU runner's worker runs).
  struct Way {
    const char* name;
    bool hook;
    YieldBlocks blocks;
    Stretches stretches;
    Workspace ws;
    std::vector<double> ms, longest_ms;
  };
  std::vector<Way> ways(3);
  ways[0].name = "plain";
  ways[0].hook = false;
  ways[1].name = "points";
  ways[1].hook = true;
  ways[1].blocks = {.flops = 0, .lookups = 0};
  ways[2].name = "points_and_blocks";
  ways[2].hook = true;
  ways[2].blocks = blocks;
  for (Way& w : ways) {
    if (w.hook) w.ws.set_yield(&w.stretches);
  }
  std::vector<float> scores(size_t(batch) * spec.num_outputs());
  Batch in;
  uint64_t seed = 1;
  for (int r = 0; r < reps + 2; ++r) {
    for (Way& w : ways) {
      in = random_batch(spec, batch, seed++);
      set_yield_blocks(w.blocks);
      w.stretches = {};
      const auto t0 = Clock::now();
      w.stretches.last = t0;
      if (!(*model)->forward(view_of(in), w.ws, scores).is_ok()) die("forward failed");
      const auto t1 = Clock::now();
      if (r < 2) continue;  // warm-up
      w.ms.push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
      if (w.hook) {
        w.stretches.at_yield_point();  // the stretch from the last point to the end
        --w.stretches.points;
        w.longest_ms.push_back(w.stretches.longest);
      }
    }
  }
  set_yield_blocks({});
  const double forward_ms = median(ways[0].ms);
  nlohmann::json yield = nlohmann::json::object();
  for (Way& w : ways) {
    nlohmann::json& o = yield[w.name];
    o["forward_ms"] = median(w.ms);
    if (!w.hook) continue;
    o["points"] = w.stretches.points;
    o["longest_stretch_ms_median"] = median(w.longest_ms);
    o["longest_stretch_ms_max"] = *std::max_element(w.longest_ms.begin(), w.longest_ms.end());
  }
  model = Status(StatusCode::kInternal, "released");  // free the tables before the next phase

  // Embedding bags alone, on tables of the same shapes.
  std::vector<HostBuffer> tables;
  for (int t = 0; t < spec.num_tables(); ++t) {
    auto buf = HostBuffer::allocate(size_t(spec.table_rows[t]) * spec.embedding_dim);
    if (!buf) die(buf.status().message());
    fill_uniform(buf->span(), 7, std::to_string(t), 0.01f);
    tables.push_back(std::move(buf).value());
  }
  const int64_t ld = int64_t{spec.num_tables()} * spec.embedding_dim;
  std::vector<float> pooled(size_t(batch) * std::max<int64_t>(ld, 1));
  const double emb_ms = time_ms(
      reps, [&](int) { in = random_batch(spec, batch, seed++); },
      [&] {
        const BatchView v = view_of(in);
        for (int t = 0; t < spec.num_tables(); ++t) {
          const EmbeddingTable table{tables[t].data(), spec.table_rows[t], spec.embedding_dim};
          if (!embedding_bag_sum(isa, table, v.indices, v.table_offsets(t),
                                 {pooled.data() + int64_t{t} * spec.embedding_dim, ld})) {
            die("embedding bag failed");
          }
        }
      });
  const double lookups = double(batch) * spec.num_tables() * spec.lookups_per_table;
  tables.clear();

  // Dense layers: the engine's linear_forward vs bare sgemm at the same shapes.
  std::vector<LinearLayer> layers;
  auto add = [&](int32_t in_w, const std::vector<int32_t>& widths) {
    for (int32_t w : widths) {
      LinearLayer l;
      l.in = in_w;
      l.out = w;
      l.weight = std::move(HostBuffer::allocate(size_t(in_w) * w).value());
      l.bias = std::move(HostBuffer::allocate(size_t(w)).value());
      fill_uniform(l.weight.span(), 3, "w", 0.05f);
      layers.push_back(std::move(l));
      in_w = w;
    }
  };
  add(spec.dense_features, spec.bottom_mlp);
  add(spec.top_input_width(), spec.top_mlp);
  int32_t widest = 0;
  double flops = 0;
  for (const LinearLayer& l : layers) {
    widest = std::max({widest, l.in, l.out});
    flops += 2.0 * batch * l.in * l.out;
  }
  std::vector<float> x(size_t(batch) * widest, 0.5f), y(size_t(batch) * widest);
  const double dense_ms = time_ms(
      reps, [](int) {},
      [&] {
        for (const LinearLayer& l : layers) {
          if (!linear_forward(l, {x.data(), batch, l.in}, {y.data(), batch, l.out}).is_ok()) {
            die("linear_forward failed");
          }
        }
      });
  const double sgemm_ms = time_ms(
      reps, [](int) {},
      [&] {
        for (const LinearLayer& l : layers) {
          dnnl_sgemm('N', 'T', batch, l.out, l.in, 1.0f, x.data(), l.in, l.weight.data(), l.in,
                     0.0f, y.data(), l.out);
        }
      });

  nlohmann::json j = {
      {"model", spec.name},
      {"batch", batch},
      {"isa", std::string(to_string(isa))},
      {"table_bytes", spec.table_bytes()},
      {"forward_ms", forward_ms},
      {"yield", yield},
      {"yield_blocks",
       {{"flops", blocks.flops}, {"lookups", blocks.lookups}, {"min_rows", blocks.min_rows}}},
      {"embedding",
       {{"ms", emb_ms}, {"lookups", lookups}, {"rows_per_s", lookups / (emb_ms / 1e3)}}},
      {"dense",
       {{"engine_ms", dense_ms},
        {"sgemm_ms", sgemm_ms},
        {"engine_gflops", flops / (dense_ms / 1e3) / 1e9},
        {"sgemm_gflops", flops / (sgemm_ms / 1e3) / 1e9},
        {"engine_vs_sgemm", sgemm_ms / dense_ms}}},
  };
  std::cout << j.dump() << "\n";
  return 0;
}

}  // namespace
}  // namespace recsched::engine

int main(int argc, char** argv) { return recsched::engine::run(argc, argv); }
