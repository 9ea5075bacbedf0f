#include "core/device.h"
#include "engine/tools/engine_cli.h"

#include <algorithm>
#include <atomic>
#include <barrier>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <functional>
#include <iomanip>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <ostream>
#include <sstream>
#include <thread>

#include "engine/dense.h"
#include "engine/inputs.h"
#include "engine/model.h"
#if defined(RECSCHED_WITH_CUDA)
#include "engine/cuda/cuda_model.h"
#endif

namespace recsched::engine::tools {
namespace {

using nlohmann::json;

constexpr const char* kUsage = R"(usage: recsched-engine COMMAND [OPTIONS]

Runs recsched's inference engine on one model, outside the daemon. Model types:
dlrm (RMC1-3), ncf, wnd, mtwnd, din, dien; the default zoo is in models/.

commands:
  score   --model SPEC.json [--weights W.safetensors] --inputs IN.json [--device D]
          Scores the items in IN.json and prints {"scores": [[...], ...]}, one row
          per item. IN.json: {"dense": [[D floats] x N], "sparse_lengths": [[N ints]
          x T], "sparse_indices": [all ids, table by table]}; a model without
          dense features (ncf, din, dien) takes "dense": [].
  bench   --model SPEC.json [--weights W.safetensors] [--batch-sizes 1,64,1024]
          [--threads T] [--reps N] [--min-seconds S] [--seed N] [--format json|table]
          [--device D]
          Times forward passes on random inputs (the spec's lookups per table, a
          fresh input every run, generated outside the timed region). With T > 1
          each batch is split into T sub-batches run on T threads. Prints
          {"model", "threads", "isa", "results": [{"batch_size", "median_ms",
          "p95_ms", "reps"}]}.
  export-weights --model SPEC.json --out W.safetensors
          Writes the model's deterministic (seeded) weights with
          facebookresearch/dlrm's tensor names.
  info    --model SPEC.json
          Prints the model's derived shapes, sizes and the kernels chosen.

--device is cpu (default), cuda or cuda:N (a GPU, where built with CUDA); on a GPU
the timings include copying each query in and its scores out, and two options set
how it runs (score and bench): --gpu-graphs N replays a captured CUDA graph for
passes of up to N rows (default 256, recschedd's; 0 = every kernel launched one by
one), --gpu-tables one|each pools every embedding table in one launch (the default)
or launches one kernel per table.
Weights default to deterministic values from the spec's seed. Set RECSCHED_ISA
(generic|avx2|avx512) to use narrower SIMD kernels than the CPU supports.
Exit status: 0 ok, 1 failure, 2 bad usage.
)";

/// Parsed --key value options; every option takes a value.
class Options {
 public:
  static std::optional<Options> parse(const std::vector<std::string>& args, size_t first,
                                      const std::vector<std::string>& known, std::string* error) {
    Options o;
    for (size_t i = first; i < args.size(); ++i) {
      const std::string& a = args[i];
      if (a.rfind("--", 0) != 0) {
        *error = "unexpected argument '" + a + "'";
        return std::nullopt;
      }
      const std::string key = a.substr(2);
      if (std::find(known.begin(), known.end(), key) == known.end()) {
        *error = "unknown option '" + a + "'";
        return std::nullopt;
      }
      if (i + 1 >= args.size()) {
        *error = "option '" + a + "' needs a value";
        return std::nullopt;
      }
      o.values_[key] = args[++i];
    }
    return o;
  }
  bool has(const std::string& key) const { return values_.count(key) != 0; }
  std::string get(const std::string& key, std::string fallback = "") const {
    auto it = values_.find(key);
    return it == values_.end() ? fallback : it->second;
  }

 private:
  std::map<std::string, std::string> values_;
};

struct UsageError {
  std::string message;
};

int64_t parse_int(const std::string& option, const std::string& text, int64_t lo, int64_t hi) {
  try {
    size_t used = 0;
    const long long v = std::stoll(text, &used);
    if (used == text.size() && v >= lo && v <= hi) return v;
  } catch (const std::exception&) {
  }
  throw UsageError{"--" + option + " must be an integer in [" + std::to_string(lo) + ", " +
                   std::to_string(hi) + "], got '" + text + "'"};
}

double parse_double(const std::string& option, const std::string& text, double lo, double hi) {
  try {
    size_t used = 0;
    const double v = std::stod(text, &used);
    if (used == text.size() && v >= lo && v <= hi) return v;
  } catch (const std::exception&) {
  }
  throw UsageError{"--" + option + " must be a number in [" + std::to_string(lo) + ", " +
                   std::to_string(hi) + "], got '" + text + "'"};
}

std::vector<uint32_t> parse_batch_sizes(const std::string& text) {
  std::vector<uint32_t> out;
  std::stringstream ss(text);
  std::string item;
  while (std::getline(ss, item, ',')) {
    out.push_back(static_cast<uint32_t>(parse_int("batch-sizes", item, 1, kMaxBatchItems)));
  }
  if (out.empty()) throw UsageError{"--batch-sizes needs at least one size"};
  return out;
}

// --device cpu (default) or cuda[:N].
Result<std::unique_ptr<Model>> load(const Options& o) {
  const std::string device = o.get("device", "cpu");
  int gpu = -1;
  if (device.rfind("cuda", 0) == 0) {
    gpu = device == "cuda" ? 0 : -1;
    if (device.size() > 5 && device[4] == ':')
      gpu = static_cast<int>(parse_int("device", device.substr(5), 0, 63));
    if (gpu < 0) throw UsageError{"--device must be cpu, cuda or cuda:N, got '" + device + "'"};
  } else if (device != "cpu") {
    throw UsageError{"--device must be cpu, cuda or cuda:N, got '" + device + "'"};
  }
  const bool gpu_options = o.has("gpu-graphs") || o.has("gpu-tables");
  if (gpu < 0 && gpu_options) throw UsageError{"--gpu-graphs and --gpu-tables need --device cuda"};
  const int graphs = static_cast<int>(parse_int("gpu-graphs", o.get("gpu-graphs", "256"), 0,
                                                kMaxBatchItems));
  const std::string tables = o.get("gpu-tables", "one");
  if (tables != "one" && tables != "each") {
    throw UsageError{"--gpu-tables takes one or each, got '" + tables + "'"};
  }
  RECSCHED_ASSIGN_OR_RETURN(ModelSpec spec, load_model_spec(o.get("model")));
  LoadOptions lo;
  lo.weights_path = o.get("weights");
  if (gpu < 0) return load_model(spec, lo);
#if defined(RECSCHED_WITH_CUDA)
  cuda::CudaOptions co;
  co.device = gpu;
  co.graph_max_items = graphs;
  co.table_batched = tables == "one";
  return cuda::load_cuda_model(spec, lo, co);
#else
  return unavailable("this recsched-engine was built without CUDA (RECSCHED_WITH_CUDA=OFF)");
#endif
}

void require(const Options& o, const char* key) {
  if (!o.has(key)) throw UsageError{std::string("missing --") + key};
}

int cmd_score(const Options& o, std::ostream& out, std::ostream& err) {
  require(o, "model");
  require(o, "inputs");
  auto model = load(o);
  if (!model) {
    err << "recsched-engine: " << model.status().message() << "\n";
    return 1;
  }
  const ModelSpec& spec = (*model)->spec();
  std::ifstream in(o.get("inputs"));
  if (!in) {
    err << "recsched-engine: inputs " << o.get("inputs") << ": cannot open file\n";
    return 1;
  }
  json j;
  try {
    j = json::parse(in);
  } catch (const json::exception& e) {
    err << "recsched-engine: inputs " << o.get("inputs") << ": not valid JSON: " << e.what()
        << "\n";
    return 1;
  }
  Result<Batch> batch = batch_from_json(spec, j);
  if (!batch) {
    err << "recsched-engine: " << o.get("inputs") << ": " << batch.status().message() << "\n";
    return 1;
  }
  set_blas_threads(1);
  Workspace ws;
  const int k = spec.num_outputs();
  std::vector<float> scores(size_t(batch->batch_size) * k);
  Status st = (*model)->forward(view_of(*batch), ws, scores);
  if (!st.is_ok()) {
    err << "recsched-engine: " << st.message() << "\n";
    return 1;
  }
  json rows = json::array();
  for (uint32_t r = 0; r < batch->batch_size; ++r) {
    rows.push_back(
        std::vector<float>(scores.begin() + size_t(r) * k, scores.begin() + size_t(r + 1) * k));
  }
  out << json{{"scores", rows}}.dump() << "\n";
  return 0;
}

/// T persistent threads that each run their share of a batch, started together.
class SplitRunner {
 public:
  SplitRunner(const Model& model, int threads)
      : model_(model),
        threads_(threads),
        workspaces_(threads),
        status_(threads),
        start_(threads),
        done_(threads) {
    for (int t = 1; t < threads_; ++t) pool_.emplace_back([this, t] { worker(t); });
  }
  ~SplitRunner() {
    stop_ = true;
    if (threads_ > 1) start_.arrive_and_wait();
    for (auto& th : pool_) th.join();
  }

  /// Runs the whole batch split into `threads` contiguous sub-batches.
  Status run(const Batch& batch, std::vector<float>& scores) {
    view_ = view_of(batch);
    scores_ = &scores;
    if (threads_ > 1) start_.arrive_and_wait();
    run_share(0);
    if (threads_ > 1) done_.arrive_and_wait();
    for (Status& s : status_) RECSCHED_RETURN_IF_ERROR(s);
    return Status::ok();
  }

 private:
  void worker(int t) {
    set_blas_threads(1);
    while (true) {
      start_.arrive_and_wait();
      if (stop_) return;
      run_share(t);
      done_.arrive_and_wait();
    }
  }
  void run_share(int t) {
    if (t == 0) set_blas_threads(1);
    const uint32_t n = view_.batch_size;
    const uint32_t begin = uint32_t(uint64_t(n) * t / threads_);
    const uint32_t end = uint32_t(uint64_t(n) * (t + 1) / threads_);
    status_[t] = Status::ok();
    if (begin == end) return;
    const size_t k = model_.spec().num_outputs();
    std::span<float> out(scores_->data() + begin * k, (end - begin) * k);
    status_[t] = model_.forward(view_.slice(begin, end - begin), workspaces_[t], out);
  }

  const Model& model_;
  const int threads_;
  std::vector<Workspace> workspaces_;
  std::vector<Status> status_;
  std::barrier<> start_;
  std::barrier<> done_;
  std::vector<std::thread> pool_;
  std::atomic<bool> stop_{false};
  BatchView view_;
  std::vector<float>* scores_ = nullptr;
};

double percentile(std::vector<double> v, double p) {
  std::sort(v.begin(), v.end());
  // Nearest-rank percentile: the smallest sample with at least p% of samples <= it.
  const size_t rank = static_cast<size_t>(std::ceil(p / 100.0 * v.size()));
  return v[std::clamp<size_t>(rank, 1, v.size()) - 1];
}

int cmd_bench(const Options& o, std::ostream& out, std::ostream& err) {
  require(o, "model");
  const std::vector<uint32_t> sizes = parse_batch_sizes(o.get("batch-sizes", "1,64,1024"));
  const int threads = static_cast<int>(parse_int("threads", o.get("threads", "1"), 1, 1024));
  const int64_t max_reps = parse_int("reps", o.get("reps", "200"), 1, 1000000);
  const double min_seconds = parse_double("min-seconds", o.get("min-seconds", "2"), 0, 3600);
  const uint64_t seed = static_cast<uint64_t>(parse_int("seed", o.get("seed", "1"), 0, INT64_MAX));
  const std::string format = o.get("format", "json");
  if (format != "json" && format != "table") throw UsageError{"--format must be json or table"};

  auto t0 = Clock::now();
  auto model = load(o);
  if (!model) {
    err << "recsched-engine: " << model.status().message() << "\n";
    return 1;
  }
  const double load_s = std::chrono::duration<double>(Clock::now() - t0).count();
  const ModelSpec& spec = (*model)->spec();
  SplitRunner runner(**model, threads);

  json results = json::array();
  uint64_t input_seed = seed;
  for (uint32_t b : sizes) {
    std::vector<float> scores(size_t(b) * spec.num_outputs());
    std::vector<double> ms;
    double timed = 0;
    constexpr int kWarmup = 3;
    constexpr int64_t kMinReps = 5;
    for (int64_t rep = 0; rep < kWarmup + max_reps; ++rep) {
      const Batch batch = random_batch(spec, b, input_seed++);
      const auto start = Clock::now();
      Status st = runner.run(batch, scores);
      const double dt = std::chrono::duration<double, std::milli>(Clock::now() - start).count();
      if (!st.is_ok()) {
        err << "recsched-engine: " << st.message() << "\n";
        return 1;
      }
      if (rep < kWarmup) continue;
      ms.push_back(dt);
      timed += dt / 1000.0;
      if (static_cast<int64_t>(ms.size()) >= kMinReps && timed >= min_seconds) break;
    }
    results.push_back({{"batch_size", b},
                       {"median_ms", percentile(ms, 50)},
                       {"p95_ms", percentile(ms, 95)},
                       {"reps", ms.size()}});
  }
  json report = {{"model", spec.name},
                 {"threads", threads},
                 {"isa", std::string(to_string((*model)->isa()))},
                 {"kernels", (*model)->kernels()},
                 {"load_seconds", load_s},
                 {"table_bytes", spec.table_bytes()},
                 {"results", results}};
  if (format == "json") {
    out << report.dump() << "\n";
    return 0;
  }
  out << spec.name << ": " << spec.num_tables() << " tables, " << std::fixed << std::setprecision(2)
      << spec.table_bytes() / double(1 << 30) << " GiB of embeddings, " << threads << " thread(s), "
      << (*model)->kernels() << "\n";
  out << "  batch    median_ms       p95_ms   items/s\n";
  for (const json& r : results) {
    const double med = r["median_ms"];
    out << "  " << std::setw(5) << r["batch_size"].get<uint32_t>() << std::setw(13)
        << std::setprecision(3) << med << std::setw(13) << r["p95_ms"].get<double>()
        << std::setw(10) << std::setprecision(0) << r["batch_size"].get<uint32_t>() / med * 1000
        << "\n";
  }
  return 0;
}

int cmd_export(const Options& o, std::ostream& out, std::ostream& err) {
  require(o, "model");
  require(o, "out");
  auto model = load(o);
  if (!model) {
    err << "recsched-engine: " << model.status().message() << "\n";
    return 1;
  }
  const auto tensors = (*model)->tensors();
  Status st = write_safetensors(o.get("out"), tensors);
  if (!st.is_ok()) {
    err << "recsched-engine: " << st.message() << "\n";
    return 1;
  }
  err << "recsched-engine: wrote " << tensors.size() << " tensors to " << o.get("out") << "\n";
  return 0;
}

int cmd_info(const Options& o, std::ostream& out, std::ostream& err) {
  require(o, "model");
  Result<ModelSpec> spec = load_model_spec(o.get("model"));
  if (!spec) {
    err << "recsched-engine: " << spec.status().message() << "\n";
    return 1;
  }
  json j = {{"name", spec->name},
            {"type", std::string(to_string(spec->type))},
            {"dense_features", spec->dense_features},
            {"tables", spec->num_tables()},
            {"table_rows", spec->table_rows},
            {"row_scale", spec->row_scale},
            {"embedding_dim", spec->embedding_dim},
            {"lookups_per_table", spec->lookups_per_table},
            {"outputs", spec->num_outputs()},
            {"table_bytes", spec->table_bytes()},
            {"dense_bytes", spec->dense_bytes()},
            {"dense_macs_per_item", spec->dense_macs_per_item()},
            {"isa", std::string(to_string(detect_isa()))}};
  // Each type's own shape keys, as the spec states them.
  auto widths = [&](const char* key, const std::vector<int32_t>& v) {
    if (!v.empty()) j[key] = v;
  };
  widths("bottom_mlp", spec->bottom_mlp);
  widths("top_mlp", spec->top_mlp);
  widths("mlp", spec->mlp);
  widths("task_mlp", spec->task_mlp);
  widths("attention_mlp", spec->attention_mlp);
  if (spec->type == ModelType::kDlrm) {
    j["interaction"] = std::string(to_string(spec->interaction));
    j["top_input_width"] = spec->top_input_width();
  }
  if (spec->tasks > 0) j["tasks"] = spec->tasks;
  if (spec->behaviour_tables > 0) j["behaviour_tables"] = spec->behaviour_tables;
  if (spec->gru_hidden > 0) j["gru_hidden"] = spec->gru_hidden;
  out << j.dump(2) << "\n";
  return 0;
}

}  // namespace

int run_engine_cli(const std::vector<std::string>& args, std::ostream& out, std::ostream& err) {
  if (args.empty()) {
    err << kUsage;
    return 2;
  }
  const std::string& cmd = args[0];
  if (cmd == "-h" || cmd == "--help" || cmd == "help") {
    out << kUsage;
    return 0;
  }
  using Handler = int (*)(const Options&, std::ostream&, std::ostream&);
  struct Command {
    const char* name;
    Handler handler;
    std::vector<std::string> options;
  };
  static const Command kCommands[] = {
      {"score", &cmd_score, {"model", "weights", "inputs", "device", "gpu-graphs", "gpu-tables"}},
      {"bench",
       &cmd_bench,
       {"model", "weights", "batch-sizes", "threads", "reps", "min-seconds", "seed", "format",
        "device", "gpu-graphs", "gpu-tables"}},
      {"export-weights", &cmd_export, {"model", "out"}},
      {"info", &cmd_info, {"model"}},
  };
  for (const Command& c : kCommands) {
    if (cmd != c.name) continue;
    if (std::find(args.begin(), args.end(), "--help") != args.end()) {
      out << kUsage;
      return 0;
    }
    std::string error;
    auto opts = Options::parse(args, 1, c.options, &error);
    try {
      if (!opts) throw UsageError{error};
      return c.handler(*opts, out, err);
    } catch (const UsageError& e) {
      err << "recsched-engine " << cmd << ": " << e.message << " (see recsched-engine --help)\n";
      return 2;
    }
  }
  err << "recsched-engine: unknown command '" << cmd << "' (see recsched-engine --help)\n";
  return 2;
}

}  // namespace recsched::engine::tools
