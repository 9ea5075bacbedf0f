// gather_bw: single-core random-row read bandwidth, the memory-system limit that an
// embedding-bag kernel is compared against.
//
// Question answered: how many uniformly random rows per second can one core read and
// sum-pool from a table far larger than the last-level cache? Each "lookup" reads one
// whole row of `dim` floats at a row id taken from a pre-generated int64 id array and adds
// it into `dim` float accumulators; every `--bag` lookups the sum is stored to an output
// ring, exactly like a sum-pooled embedding bag. Several access methods are timed on the
// same table and the same ids:
//
//   plain/4k         plain loads, table advised MADV_NOHUGEPAGE (4 KiB pages)
//   prefetch-D/4k    plus __builtin_prefetch of every 64-byte line of the row D lookups
//                    ahead, D in {4, 8, 16, 32, 64}
//   plain/huge,      the same on a second table advised MADV_HUGEPAGE (transparent
//   prefetch-D/huge  2 MiB pages), which removes most of the TLB-miss page walks
//
// Results: a readable table on stderr, one JSON object on stdout.
//
// Build and run (pin to one core; the benchmark is single-threaded):
//   cmake -S . -B build -G Ninja && ninja -C build gather_bw
//   taskset -c 0 ./build/bench/gather_bw --dim 32
//
// Standalone on purpose: standard library, POSIX and <immintrin.h> only. SIMD code uses
// per-function target attributes chosen at run time, never -march=native.

#include <immintrin.h>
#include <sys/mman.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

namespace {

constexpr uint64_t kHugePageBytes = uint64_t{2} << 20;
constexpr uint64_t kCacheLineBytes = 64;
// 16M ids (128 MiB) cycled: long enough that the id stream itself never sits in cache
// in a way that would correlate with the table accesses.
constexpr uint64_t kNumIds = uint64_t{1} << 24;
// Output ring of pooled bags; small enough to stay in L2, so stores cost almost nothing.
constexpr uint64_t kOutBags = 256;
constexpr int kPrefetchDistances[] = {4, 8, 16, 32, 64};

struct Options {
  double table_gib = 4.0;
  int dim = 32;
  int bag = 80;
  double seconds = 1.0;
};

void PrintUsage(FILE* f) {
  std::fprintf(f,
               "usage: gather_bw [--table-gib G] [--dim N] [--bag N] [--seconds S]\n"
               "  Single-core random-row read-and-sum bandwidth (embedding-bag limit).\n"
               "  --table-gib G  size of each of the two tables in GiB (default 4)\n"
               "  --dim N        floats per row: 16, 32, 64 or 128 (default 32)\n"
               "  --bag N        lookups sum-pooled per bag (default 80)\n"
               "  --seconds S    timed seconds per variant (default 1.0)\n"
               "  Table on stderr, JSON on stdout. Pin it: taskset -c 0 gather_bw ...\n");
}

[[noreturn]] void Fail(const std::string& msg) {
  std::fprintf(stderr, "gather_bw: %s\n", msg.c_str());
  std::exit(2);
}

double ParseDouble(const std::string& flag, const std::string& text) {
  char* end = nullptr;
  errno = 0;
  const double v = std::strtod(text.c_str(), &end);
  if (text.empty() || *end != '\0' || errno != 0) {
    Fail("bad value for " + flag + ": '" + text + "'");
  }
  return v;
}

long ParseInt(const std::string& flag, const std::string& text) {
  char* end = nullptr;
  errno = 0;
  const long v = std::strtol(text.c_str(), &end, 10);
  if (text.empty() || *end != '\0' || errno != 0) {
    Fail("bad value for " + flag + ": '" + text + "'");
  }
  return v;
}

Options ParseOptions(int argc, char** argv) {
  Options opt;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      PrintUsage(stdout);
      std::exit(0);
    }
    // Accept both "--flag value" and "--flag=value".
    std::string value;
    bool has_value = false;
    if (const size_t eq = arg.find('='); arg.rfind("--", 0) == 0 && eq != std::string::npos) {
      value = arg.substr(eq + 1);
      arg = arg.substr(0, eq);
      has_value = true;
    }
    if (arg != "--table-gib" && arg != "--dim" && arg != "--bag" && arg != "--seconds") {
      Fail("unknown option '" + std::string(argv[i]) + "' (try --help)");
    }
    if (!has_value) {
      if (i + 1 >= argc) Fail("missing value for " + arg);
      value = argv[++i];
    }
    if (arg == "--table-gib") {
      opt.table_gib = ParseDouble(arg, value);
      if (!(opt.table_gib > 0.0 && opt.table_gib <= 1024.0)) {
        Fail("--table-gib must be in (0, 1024]");
      }
    } else if (arg == "--dim") {
      const long d = ParseInt(arg, value);
      if (d != 16 && d != 32 && d != 64 && d != 128) Fail("--dim must be 16, 32, 64 or 128");
      opt.dim = static_cast<int>(d);
    } else if (arg == "--bag") {
      const long b = ParseInt(arg, value);
      if (b < 1 || b > 1000000) Fail("--bag must be in [1, 1000000]");
      opt.bag = static_cast<int>(b);
    } else {
      opt.seconds = ParseDouble(arg, value);
      if (!(opt.seconds > 0.0 && opt.seconds <= 3600.0)) Fail("--seconds must be in (0, 3600]");
    }
  }
  return opt;
}

// ---------------------------------------------------------------------------------------
// Kernels. One instantiation per (ISA, dim) so the accumulators live in registers; the
// prefetch distance is a run-time value (0 = none) because its branch is perfectly
// predicted and costs nothing next to a DRAM miss.

struct GatherArgs {
  const float* table;
  const int64_t* ids;
  uint64_t id_mask;  // kNumIds - 1: ids are cycled
  int bag;
  int prefetch;  // lookups ahead; 0 disables software prefetch
  float* out;    // kOutBags * dim floats
};

// Runs `num_bags` bags starting at id position `pos`; returns the next position.
using GatherFn = uint64_t (*)(const GatherArgs& a, uint64_t pos, int64_t num_bags);

template <int kDim>
inline __attribute__((always_inline)) void PrefetchRow(const float* row) {
  constexpr int kLines = static_cast<int>(kDim * sizeof(float) / kCacheLineBytes);
  const char* p = reinterpret_cast<const char*>(row);
  for (int l = 0; l < std::max(kLines, 1); ++l) {
    __builtin_prefetch(p + l * kCacheLineBytes, 0, 3);
  }
}

// Issues the optional prefetch for lookup `pos + D` and returns the row of lookup `pos`.
// Both walk the id array sequentially, so the hardware prefetcher keeps the id stream in
// cache and only the table rows miss. Default-target and always_inline, so it is inlined
// into (and compiled for) each ISA-specific kernel below.
template <int kDim>
inline __attribute__((always_inline)) const float* LookupRow(const GatherArgs& a, uint64_t pos) {
  if (a.prefetch != 0) PrefetchRow<kDim>(a.table + a.ids[(pos + a.prefetch) & a.id_mask] * kDim);
  return a.table + a.ids[pos & a.id_mask] * kDim;
}

template <int kDim>
__attribute__((target("avx512f"))) uint64_t GatherAvx512(const GatherArgs& a, uint64_t pos,
                                                         int64_t num_bags) {
  constexpr int kVecs = kDim / 16;
  for (int64_t b = 0; b < num_bags; ++b) {
    __m512 acc[kVecs];
    for (int v = 0; v < kVecs; ++v) acc[v] = _mm512_setzero_ps();
    for (int i = 0; i < a.bag; ++i, ++pos) {
      const float* row = LookupRow<kDim>(a, pos);
      for (int v = 0; v < kVecs; ++v) acc[v] = _mm512_add_ps(acc[v], _mm512_loadu_ps(row + 16 * v));
    }
    float* out = a.out + (pos / a.bag % kOutBags) * kDim;
    for (int v = 0; v < kVecs; ++v) _mm512_storeu_ps(out + 16 * v, acc[v]);
  }
  return pos;
}

template <int kDim>
__attribute__((target("avx2"))) uint64_t GatherAvx2(const GatherArgs& a, uint64_t pos,
                                                    int64_t num_bags) {
  constexpr int kVecs = kDim / 8;
  for (int64_t b = 0; b < num_bags; ++b) {
    __m256 acc[kVecs];
    for (int v = 0; v < kVecs; ++v) acc[v] = _mm256_setzero_ps();
    for (int i = 0; i < a.bag; ++i, ++pos) {
      const float* row = LookupRow<kDim>(a, pos);
      for (int v = 0; v < kVecs; ++v) acc[v] = _mm256_add_ps(acc[v], _mm256_loadu_ps(row + 8 * v));
    }
    float* out = a.out + (pos / a.bag % kOutBags) * kDim;
    for (int v = 0; v < kVecs; ++v) _mm256_storeu_ps(out + 8 * v, acc[v]);
  }
  return pos;
}

template <int kDim>
uint64_t GatherScalar(const GatherArgs& a, uint64_t pos, int64_t num_bags) {
  for (int64_t b = 0; b < num_bags; ++b) {
    float acc[kDim] = {};
    for (int i = 0; i < a.bag; ++i, ++pos) {
      const float* row = LookupRow<kDim>(a, pos);
      for (int j = 0; j < kDim; ++j) acc[j] += row[j];
    }
    std::memcpy(a.out + (pos / a.bag % kOutBags) * kDim, acc, sizeof(acc));
  }
  return pos;
}

template <int kDim>
GatherFn PickForDim(const char** isa) {
  if (__builtin_cpu_supports("avx512f")) {
    *isa = "avx512f";
    return &GatherAvx512<kDim>;
  }
  if (__builtin_cpu_supports("avx2")) {
    *isa = "avx2";
    return &GatherAvx2<kDim>;
  }
  *isa = "scalar";
  return &GatherScalar<kDim>;
}

GatherFn PickKernel(int dim, const char** isa) {
  __builtin_cpu_init();
  switch (dim) {
    case 16:
      return PickForDim<16>(isa);
    case 32:
      return PickForDim<32>(isa);
    case 64:
      return PickForDim<64>(isa);
    default:
      return PickForDim<128>(isa);
  }
}

// ---------------------------------------------------------------------------------------
// Memory.

struct Table {
  float* data = nullptr;  // 2 MiB aligned
  void* map = nullptr;    // what munmap needs
  size_t map_bytes = 0;
};

// Maps `bytes` of anonymous memory, 2 MiB aligned (so every 2 MiB of the table can become
// one huge page), and applies `advice` before the first touch: the page-fault path decides
// the page size, so advising after filling would be too late.
Table MapTable(uint64_t bytes, int advice, const char* what) {
  Table t;
  t.map_bytes = bytes + kHugePageBytes;
  t.map = mmap(nullptr, t.map_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (t.map == MAP_FAILED) {
    std::fprintf(stderr, "gather_bw: mmap of %llu bytes for %s failed: %s\n",
                 static_cast<unsigned long long>(t.map_bytes), what, std::strerror(errno));
    std::exit(1);
  }
  const uintptr_t aligned =
      (reinterpret_cast<uintptr_t>(t.map) + kHugePageBytes - 1) & ~(kHugePageBytes - 1);
  t.data = reinterpret_cast<float*>(aligned);
  if (madvise(t.data, bytes, advice) != 0) {
    std::fprintf(stderr, "gather_bw: warning: madvise(%s) on %s failed: %s\n",
                 advice == MADV_HUGEPAGE ? "MADV_HUGEPAGE" : "MADV_NOHUGEPAGE", what,
                 std::strerror(errno));
  }
  return t;
}

// Writes every float with a cheap hash of its index: values in [0.5, 1.5), never zero,
// so every page is really backed (no shared zero page) and sums cannot degenerate.
void FillTable(float* data, uint64_t count) {
  for (uint64_t i = 0; i < count; ++i) {
    const uint32_t h = static_cast<uint32_t>(i) * 2654435761u;
    data[i] = 0.5f + static_cast<float>(h >> 22) * (1.0f / 1024.0f);
  }
}

// AnonHugePages of this process in bytes, from /proc/self/smaps_rollup (-1 if unreadable).
int64_t AnonHugeBytes() {
  std::ifstream in("/proc/self/smaps_rollup");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("AnonHugePages:", 0) == 0) {
      return std::strtoll(line.c_str() + std::strlen("AnonHugePages:"), nullptr, 10) * 1024;
    }
  }
  return -1;
}

// The selected THP mode, e.g. "madvise" from "always [madvise] never"; "unknown" if absent.
std::string ThpMode() {
  std::ifstream in("/sys/kernel/mm/transparent_hugepage/enabled");
  std::string text;
  std::getline(in, text);
  const size_t open = text.find('[');
  const size_t close = text.find(']', open);
  if (open == std::string::npos || close == std::string::npos) return "unknown";
  return text.substr(open + 1, close - open - 1);
}

// splitmix64: fast, well-mixed 64-bit generator for the id array.
uint64_t SplitMix64(uint64_t& state) {
  uint64_t z = (state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

// Uniform ids in [0, rows) via the multiply-high range reduction (bias < rows / 2^64).
std::vector<int64_t> MakeIds(uint64_t rows) {
  std::vector<int64_t> ids(kNumIds);
  uint64_t state = 0x5eed;
  for (auto& id : ids) {
    id = static_cast<int64_t>((static_cast<unsigned __int128>(SplitMix64(state)) * rows) >> 64);
  }
  return ids;
}

// ---------------------------------------------------------------------------------------
// Timing.

struct Result {
  std::string name;
  double rows_per_s = 0;
  double gb_per_s = 0;
  double ns_per_row = 0;
};

double Seconds(std::chrono::steady_clock::time_point a, std::chrono::steady_clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

// Runs whole batches of bags until `seconds` have passed; returns lookups done and time.
// A batch is ~16K lookups (about a millisecond), so reading the clock costs nothing.
std::pair<uint64_t, double> RunFor(GatherFn fn, const GatherArgs& args, uint64_t& pos,
                                   double seconds) {
  const int64_t batch = std::max<int64_t>(1, 16384 / args.bag);
  const auto start = std::chrono::steady_clock::now();
  uint64_t lookups = 0;
  double elapsed = 0;
  do {
    pos = fn(args, pos, batch);
    lookups += static_cast<uint64_t>(batch) * args.bag;
    elapsed = Seconds(start, std::chrono::steady_clock::now());
  } while (elapsed < seconds);
  return {lookups, elapsed};
}

std::string JsonNumber(double v) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%.6g", v);
  return buf;
}

}  // namespace

int main(int argc, char** argv) {
  const Options opt = ParseOptions(argc, argv);
  const uint64_t row_bytes = static_cast<uint64_t>(opt.dim) * sizeof(float);
  // Round down to whole huge pages (a multiple of every row size); at least one.
  const uint64_t requested = static_cast<uint64_t>(opt.table_gib * double(uint64_t{1} << 30));
  const uint64_t table_bytes =
      std::max(kHugePageBytes, requested / kHugePageBytes * kHugePageBytes);
  const uint64_t rows = table_bytes / row_bytes;
  const uint64_t floats = table_bytes / sizeof(float);

  const char* isa = "";
  const GatherFn fn = PickKernel(opt.dim, &isa);
  const std::string thp = ThpMode();
  const bool thp_allows = thp == "always" || thp == "madvise";

  std::fprintf(stderr,
               "gather_bw: 2 tables x %.2f GiB, %llu rows x %d floats (%llu B), bag %d, "
               "%.2f s per variant, isa %s\n",
               double(table_bytes) / double(uint64_t{1} << 30),
               static_cast<unsigned long long>(rows), opt.dim,
               static_cast<unsigned long long>(row_bytes), opt.bag, opt.seconds, isa);
  std::fprintf(stderr, "THP enabled: [%s] -> MADV_HUGEPAGE %s\n", thp.c_str(),
               thp_allows ? "allowed" : "NOT allowed (huge variants will use 4 KiB pages)");

  // Fill both tables before timing anything, and measure how much of the huge-advised
  // table the kernel really backed with 2 MiB pages (the 4k table contributes none).
  Table small = MapTable(table_bytes, MADV_NOHUGEPAGE, "4k table");
  Table huge = MapTable(table_bytes, MADV_HUGEPAGE, "huge table");
  FillTable(small.data, floats);
  const int64_t huge_before = AnonHugeBytes();
  FillTable(huge.data, floats);
  const int64_t huge_after = AnonHugeBytes();
  const int64_t huge_bytes =
      huge_before < 0 || huge_after < 0 ? -1 : std::max<int64_t>(0, huge_after - huge_before);
  std::fprintf(stderr, "huge table: %.0f of %.0f MiB backed by huge pages (%.1f%%)\n",
               double(huge_bytes) / double(1 << 20), double(table_bytes) / double(1 << 20),
               100.0 * double(huge_bytes) / double(table_bytes));

  const std::vector<int64_t> ids = MakeIds(rows);
  std::vector<float> out(kOutBags * opt.dim, 0.0f);

  struct Variant {
    std::string name;
    const float* table;
    int prefetch;
  };
  std::vector<Variant> variants;
  for (const auto& [suffix, table] : {std::pair<const char*, const float*>{"4k", small.data},
                                      std::pair<const char*, const float*>{"huge", huge.data}}) {
    variants.push_back({std::string("plain/") + suffix, table, 0});
    for (int d : kPrefetchDistances) {
      variants.push_back({"prefetch-" + std::to_string(d) + "/" + suffix, table, d});
    }
  }

  std::fprintf(stderr, "\n%-18s %12s %10s %10s\n", "variant", "Mrows/s", "GB/s", "ns/row");
  std::vector<Result> results;
  double checksum = 0;
  for (const Variant& v : variants) {
    const GatherArgs args{v.table, ids.data(), kNumIds - 1, opt.bag, v.prefetch, out.data()};
    uint64_t pos = 0;
    // Warm-up: brings the id stream, output ring and code into cache and settles the
    // frequency; a fifth of the timed period (at most half a second) is plenty.
    RunFor(fn, args, pos, std::min(0.5, 0.2 * opt.seconds));
    const auto [lookups, elapsed] = RunFor(fn, args, pos, opt.seconds);
    for (float x : out) checksum += x;  // Consumes the output so no store is dead.

    Result r;
    r.name = v.name;
    r.rows_per_s = double(lookups) / elapsed;
    r.gb_per_s = r.rows_per_s * double(row_bytes) / 1e9;
    r.ns_per_row = 1e9 / r.rows_per_s;
    std::fprintf(stderr, "%-18s %12.2f %10.2f %10.2f\n", r.name.c_str(), r.rows_per_s / 1e6,
                 r.gb_per_s, r.ns_per_row);
    results.push_back(r);
  }

  const Result& best = *std::max_element(
      results.begin(), results.end(),
      [](const Result& a, const Result& b) { return a.rows_per_s < b.rows_per_s; });
  const Result& base = results.front();  // plain/4k
  std::fprintf(stderr, "\nbest: %s, %.2f Mrows/s = %.2fx plain/4k (checksum %.6g)\n",
               best.name.c_str(), best.rows_per_s / 1e6, best.rows_per_s / base.rows_per_s,
               checksum);

  std::ostringstream js;
  js << "{\"table_bytes\":" << table_bytes << ",\"dim\":" << opt.dim
     << ",\"row_bytes\":" << row_bytes << ",\"bag\":" << opt.bag << ",\"isa\":\"" << isa
     << "\",\"thp\":\"" << thp << "\",\"huge_bytes\":" << huge_bytes << ",\"variants\":[";
  for (size_t i = 0; i < results.size(); ++i) {
    const Result& r = results[i];
    js << (i ? "," : "") << "{\"name\":\"" << r.name
       << "\",\"rows_per_s\":" << JsonNumber(r.rows_per_s)
       << ",\"gb_per_s\":" << JsonNumber(r.gb_per_s)
       << ",\"ns_per_row\":" << JsonNumber(r.ns_per_row) << "}";
  }
  js << "],\"best\":{\"name\":\"" << best.name
     << "\",\"rows_per_s\":" << JsonNumber(best.rows_per_s) << "}}";
  std::printf("%s\n", js.str().c_str());

  munmap(small.map, small.map_bytes);
  munmap(huge.map, huge.map_bytes);
  return 0;
}
