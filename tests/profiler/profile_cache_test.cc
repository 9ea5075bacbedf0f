#include "profiler/profile_cache.h"

#include <doctest/doctest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <string>
#include <vector>

namespace recsched::profiler {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

// A fresh directory under /tmp, removed with everything in it at the end of the test.
class TempDir {
 public:
  TempDir() {
    static int counter = 0;
    path_ = fs::path("/tmp") / ("recsched_profile_cache_" + std::to_string(getpid()) + "_" +
                                std::to_string(counter++));
    fs::remove_all(path_);
    fs::create_directories(path_);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }

  std::string file(const std::string& name) const { return (path_ / name).string(); }
  // Names of everything directly inside the directory.
  std::set<std::string> listing() const {
    std::set<std::string> names;
    for (const auto& e : fs::directory_iterator(path_)) names.insert(e.path().filename());
    return names;
  }

 private:
  fs::path path_;
};

const CacheIdentity kIdentity = {"hw-0123456789abcdef", "recsched 0.1.0 gcc 12.2.0",
                                 "sweep 1,16,256 at 0.01 s, 2-10 runs; CPU latency not held"};

ProfilePoint make_point(uint32_t batch_size, double p50_us, std::string power_source,
                        uint32_t best_sub_batch, uint32_t best_workers) {
  ProfilePoint p;
  p.batch_size = batch_size;
  p.p50_us = p50_us;
  p.p95_us = p50_us * 1.37;
  p.p50_single_us = p50_us * 1.61;
  p.items_per_s = batch_size * 1e6 / p50_us;
  p.power_w = 1.0 / 3.0 + batch_size;  // not exactly representable in decimal
  p.energy_per_item_j = p.power_w * p50_us * 1e-6 / batch_size;
  p.power_source = std::move(power_source);
  p.best_sub_batch = best_sub_batch;
  p.best_workers = best_workers;
  return p;
}

std::vector<CachedProfile> sample_entries() {
  return {
      {"dlrm_small",
       hash_hex("dlrm_small spec"),
       "cpu0",
       {make_point(1, 87.25, "rapl", 1, 1), make_point(16, 412.0625, "rapl", 8, 2),
        make_point(256, 5123.456789, "estimated", 64, 16)}},
      {"din",
       hash_hex("din spec"),
       "cuda0",
       {make_point(8, 31.5, "nvml", 8, 1), make_point(64, 44.0, "nvml", 64, 1),
        make_point(1024, 1e-3 + 300, "nvml", 512, 0), make_point(4096, 977.1, "nvml", 4096, 4)}},
  };
}

// sample_entries() with the GPU's streams measured (profile_whole with streams > 1).
std::vector<CachedProfile> sample_entries_with_streams() {
  std::vector<CachedProfile> entries = sample_entries();
  for (size_t k = 0; k < entries[1].points.size(); ++k) {
    entries[1].points[k].best_streams = uint32_t(k % 3 + 1);
    entries[1].points[k].streams_items_per_s = 1.0 / 7.0 + 1e5 * double(k);
  }
  return entries;
}

void check_same(const ProfilePoint& got, const ProfilePoint& want) {
  CAPTURE(want.batch_size);
  CHECK(got.batch_size == want.batch_size);
  CHECK(got.p50_us == want.p50_us);
  CHECK(got.p95_us == want.p95_us);
  CHECK(got.p50_single_us == want.p50_single_us);
  CHECK(got.items_per_s == want.items_per_s);
  CHECK(got.power_w == want.power_w);
  CHECK(got.energy_per_item_j == want.energy_per_item_j);
  CHECK(got.power_source == want.power_source);
  CHECK(got.best_sub_batch == want.best_sub_batch);
  CHECK(got.best_workers == want.best_workers);
  CHECK(got.best_streams == want.best_streams);
  CHECK(got.streams_items_per_s == want.streams_items_per_s);
}

void check_same(const std::vector<CachedProfile>& got, const std::vector<CachedProfile>& want) {
  REQUIRE(got.size() == want.size());
  for (size_t i = 0; i < want.size(); ++i) {
    CAPTURE(i);
    CHECK(got[i].model == want[i].model);
    CHECK(got[i].spec_hash == want[i].spec_hash);
    CHECK(got[i].device == want[i].device);
    REQUIRE(got[i].points.size() == want[i].points.size());
    for (size_t k = 0; k < want[i].points.size(); ++k)
      check_same(got[i].points[k], want[i].points[k]);
  }
}

std::string read_text(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream s;
  s << f.rdbuf();
  return s.str();
}

void write_text(const std::string& path, const std::string& text) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f << text;
}

// Loads `path`, expecting it ignored whole with one warning that contains `reason`.
void check_ignored(const std::string& path, const CacheIdentity& identity,
                   const std::string& reason) {
  const CacheLoad load = load_profile_cache(path, identity);
  CHECK(load.entries.empty());
  REQUIRE(load.warnings.size() == 1);
  const std::string& w = load.warnings[0];
  CAPTURE(w);
  CHECK(w.rfind("profile cache " + path + " ignored: ", 0) == 0);
  CHECK(w.find(reason) != std::string::npos);
  CHECK(w.find('\n') == std::string::npos);
}

TEST_CASE("save_profile_cache then load_profile_cache round-trips every entry and field") {
  TempDir dir;
  const std::string path = dir.file("profiles.json");
  const std::vector<CachedProfile> entries = sample_entries();
  const Status st = save_profile_cache(path, kIdentity, entries);
  REQUIRE_MESSAGE(st.is_ok(), st.to_string());

  const CacheLoad load = load_profile_cache(path, kIdentity);
  CHECK(load.warnings.empty());
  check_same(load.entries, entries);

  // The file is the documented format, in the documented order.
  const std::string text = read_text(path);
  CHECK(text.rfind(
            "{\n  \"format\": " + std::to_string(kProfileCacheFormat) + ",\n  \"hardware\": ", 0) ==
        0);
  const json doc = json::parse(text);
  CHECK(doc["format"] == kProfileCacheFormat);
  CHECK(doc["hardware"] == kIdentity.hardware);
  CHECK(doc["build"] == kIdentity.build);
  CHECK(doc["entries"][1]["points"][0]["power_source"] == "nvml");

  // A GPU's measured streams round-trip too.
  const std::vector<CachedProfile> gpu = sample_entries_with_streams();
  REQUIRE(save_profile_cache(path, kIdentity, gpu).is_ok());
  check_same(load_profile_cache(path, kIdentity).entries, gpu);
}

TEST_CASE("a profile cache written before streams were measured loads with them as 0") {
  TempDir dir;
  const std::string path = dir.file("profiles.json");
  REQUIRE(save_profile_cache(path, kIdentity, sample_entries_with_streams()).is_ok());
  json doc = json::parse(read_text(path));
  for (json& e : doc["entries"]) {
    for (json& p : e["points"]) {
      p.erase("best_streams");
      p.erase("streams_items_per_s");
    }
  }
  write_text(path, doc.dump());
  const CacheLoad load = load_profile_cache(path, kIdentity);
  CHECK(load.warnings.empty());
  check_same(load.entries, sample_entries());
}

TEST_CASE("an empty profile cache round-trips as no entries and no warnings") {
  TempDir dir;
  const std::string path = dir.file("profiles.json");
  REQUIRE(save_profile_cache(path, kIdentity, {}).is_ok());
  const CacheLoad load = load_profile_cache(path, kIdentity);
  CHECK(load.entries.empty());
  CHECK(load.warnings.empty());
}

TEST_CASE("a missing profile cache loads as no entries and no warnings") {
  TempDir dir;
  for (const std::string& path : {dir.file("absent.json"), dir.file("no/such/dir/cache.json")}) {
    CAPTURE(path);
    const CacheLoad load = load_profile_cache(path, kIdentity);
    CHECK(load.entries.empty());
    CHECK(load.warnings.empty());
  }
}

TEST_CASE("a profile cache that cannot be read is ignored with a warning") {
  TempDir dir;
  const std::string path = dir.file("a_directory");
  fs::create_directories(path);
  check_ignored(path, kIdentity, "cannot be read: Is a directory");
}

TEST_CASE("a profile cache that is not valid JSON, corrupt or truncated, is ignored") {
  TempDir dir;
  const std::string good = dir.file("good.json");
  REQUIRE(save_profile_cache(good, kIdentity, sample_entries()).is_ok());
  const std::string text = read_text(good);
  struct Case {
    std::string name;
    std::string text;
  };
  const Case cases[] = {
      {"empty", ""},
      {"corrupt", "{nope"},
      {"binary", std::string("\x00\xff\x13\x37", 4)},
      {"truncated", text.substr(0, text.size() / 2)},
      {"truncated by one byte", text.substr(0, text.rfind('}'))},
      {"trailing garbage", text + "]"},
  };
  for (const Case& c : cases) {
    CAPTURE(c.name);
    const std::string path = dir.file("bad.json");
    write_text(path, c.text);
    check_ignored(path, kIdentity, "not valid JSON");
  }
}

TEST_CASE("a malformed profile cache is ignored whole with a warning naming the problem") {
  TempDir dir;
  const std::string good = dir.file("good.json");
  REQUIRE(save_profile_cache(good, kIdentity, sample_entries()).is_ok());
  const json valid = json::parse(read_text(good));
  struct Case {
    std::string reason;
    std::function<void(json&)> mutate;
  };
  const Case cases[] = {
      {"the file is not a JSON object", [](json& j) { j = json::array(); }},
      {"format is missing", [](json& j) { j.erase("format"); }},
      {"format is 1, expected 2", [](json& j) { j["format"] = 1; }},
      {"format is not an integer", [](json& j) { j["format"] = "2"; }},
      {"hardware is missing", [](json& j) { j.erase("hardware"); }},
      {"build is not a string", [](json& j) { j["build"] = 7; }},
      {"entries is missing", [](json& j) { j.erase("entries"); }},
      {"entries is not an array", [](json& j) { j["entries"] = json::object(); }},
      {"entries[1] is not an object", [](json& j) { j["entries"][1] = 3; }},
      {"entries[0].model is missing", [](json& j) { j["entries"][0].erase("model"); }},
      {"entries[0].spec_hash is not a string",
       [](json& j) { j["entries"][0]["spec_hash"] = nullptr; }},
      {"entries[1].device is empty", [](json& j) { j["entries"][1]["device"] = ""; }},
      {"entries[1] repeats model 'dlrm_small' on device 'cpu0'",
       [](json& j) {
         j["entries"][1]["model"] = "dlrm_small";
         j["entries"][1]["device"] = "cpu0";
       }},
      {"entries[0].points is not an array", [](json& j) { j["entries"][0]["points"] = "many"; }},
      {"entries[0].points is empty", [](json& j) { j["entries"][0]["points"] = json::array(); }},
      {"entries[0].points[2] is not an object",
       [](json& j) { j["entries"][0]["points"][2] = json::array(); }},
      {"entries[0].points[2] repeats batch_size 1",
       [](json& j) { j["entries"][0]["points"][2]["batch_size"] = 1; }},
      {"entries[1].points[0].p50_us is not a number",
       [](json& j) { j["entries"][1]["points"][0]["p50_us"] = "fast"; }},
      {"entries[1].points[3].p95_us is missing",
       [](json& j) { j["entries"][1]["points"][3].erase("p95_us"); }},
      {"entries[0].points[1].items_per_s is negative",
       [](json& j) { j["entries"][0]["points"][1]["items_per_s"] = -0.5; }},
      {"entries[0].points[1].power_w is not a number",
       [](json& j) { j["entries"][0]["points"][1]["power_w"] = true; }},
      {"entries[0].points[0].energy_per_item_j is missing",
       [](json& j) { j["entries"][0]["points"][0].erase("energy_per_item_j"); }},
      {"entries[0].points[0].batch_size is 0, must be at least 1",
       [](json& j) { j["entries"][0]["points"][0]["batch_size"] = 0; }},
      {"entries[0].points[0].batch_size is negative",
       [](json& j) { j["entries"][0]["points"][0]["batch_size"] = -4; }},
      {"entries[0].points[0].batch_size is not an integer",
       [](json& j) { j["entries"][0]["points"][0]["batch_size"] = 8.0; }},
      {"entries[0].points[0].batch_size is 4294967296, too large",
       [](json& j) { j["entries"][0]["points"][0]["batch_size"] = uint64_t{1} << 32; }},
      {"entries[1].points[1].power_source is 'guess', not one of rapl, nvml, estimated",
       [](json& j) { j["entries"][1]["points"][1]["power_source"] = "guess"; }},
      {"entries[1].points[1].power_source is not a string",
       [](json& j) { j["entries"][1]["points"][1]["power_source"] = 1; }},
      {"entries[1].points[2].best_sub_batch is not an integer",
       [](json& j) { j["entries"][1]["points"][2]["best_sub_batch"] = "8"; }},
      {"entries[1].points[2].best_workers is negative",
       [](json& j) { j["entries"][1]["points"][2]["best_workers"] = -1; }},
      {"entries[1].points[1].best_streams is not an integer",
       [](json& j) { j["entries"][1]["points"][1]["best_streams"] = 1.5; }},
      {"entries[1].points[1].streams_items_per_s is not a number",
       [](json& j) { j["entries"][1]["points"][1]["streams_items_per_s"] = "fast"; }},
  };
  for (const Case& c : cases) {
    CAPTURE(c.reason);
    json doc = valid;
    c.mutate(doc);
    const std::string path = dir.file("bad.json");
    write_text(path, doc.dump());
    check_ignored(path, kIdentity, c.reason);
  }
}

TEST_CASE("a profile cache from other hardware is ignored as foreign, another build's as stale") {
  TempDir dir;
  const std::string path = dir.file("profiles.json");
  REQUIRE(save_profile_cache(path, kIdentity, sample_entries()).is_ok());
  struct Case {
    std::string name;
    CacheIdentity identity;
    std::string reason;
  };
  const Case cases[] = {
      {"other hardware",
       {"hw-other", kIdentity.build, kIdentity.conditions},
       "foreign: measured on hardware 'hw-0123456789abcdef', this machine is 'hw-other'"},
      {"other build",
       {kIdentity.hardware, "recsched 0.2.0 gcc 13.1.0", kIdentity.conditions},
       "stale: written by build 'recsched 0.1.0 gcc 12.2.0', this build is 'recsched 0.2.0 gcc "
       "13.1.0'"},
      {"both differ", {"hw-other", "recsched 0.2.0", kIdentity.conditions}, "foreign"},
      {"other conditions",
       {kIdentity.hardware, kIdentity.build,
        "sweep 1,16,256 at 0.01 s, 2-10 runs; CPU latency 0 us held"},
       "measured under other conditions: 'CPU latency not held' then, 'CPU latency 0 us held' "
       "now"},
  };
  for (const Case& c : cases) {
    CAPTURE(c.name);
    check_ignored(path, c.identity, c.reason);
  }
}

TEST_CASE("a profile cache written before the key had conditions is measured again") {
  TempDir dir;
  const std::string path = dir.file("profiles.json");
  REQUIRE(save_profile_cache(path, kIdentity, sample_entries()).is_ok());
  json doc = json::parse(read_text(path));
  REQUIRE(doc.contains("conditions"));
  CHECK(doc["conditions"] == kIdentity.conditions);
  doc.erase("conditions");
  write_text(path, doc.dump());
  check_ignored(path, kIdentity,
                "measured under other conditions: none recorded (an older cache), now '" +
                    kIdentity.conditions + "'");
  // A key that is there must be a string.
  doc["conditions"] = 3;
  write_text(path, doc.dump());
  check_ignored(path, kIdentity, "conditions");
}

TEST_CASE("the measuring conditions change with every setting the figures depend on, and only with them") {
  const MeasuringSettings base;
  const std::string key = measuring_conditions(base);
  CHECK(key == measuring_conditions(MeasuringSettings{}));
  CHECK(key ==
        "sweep 1,2,4,8,16,32,64,128,256,512,1024 at 0.05 s, 3-50 runs; power estimates CPU "
        "8/1.5/0.2 W a core, GPU 400/70 W, RAPL under /sys/class/powercap; GPU graphs up to "
        "256 items, tables batched; CPU latency not held");
  struct Case {
    const char* name;
    void (*change)(MeasuringSettings&);
    const char* part;  // the part of the key that names the change
  };
  const Case cases[] = {
      {"quick sweep", [](MeasuringSettings& m) { m.sweep = ProfileOptions::quick(); },
       "sweep 1,16,256 at 0.01 s, 2-10 runs"},
      {"seconds a point", [](MeasuringSettings& m) { m.sweep.seconds_per_point = 0.2; }, "at 0.2 s"},
      {"busy watts", [](MeasuringSettings& m) { m.power.cpu_active_w_per_core = 6.5; }, "CPU 6.5/1.5/0.2"},
      {"GPU watts", [](MeasuringSettings& m) { m.power.gpu_idle_w = 50; }, "GPU 400/50 W"},
      {"powercap root", [](MeasuringSettings& m) { m.power.powercap_root = "/tmp/pc"; }, "RAPL under /tmp/pc"},
      {"graphs", [](MeasuringSettings& m) { m.gpu_graph_max_items = 0; }, "graphs up to 0 items"},
      {"tables", [](MeasuringSettings& m) { m.gpu_table_batched = false; }, "tables one launch each"},
      {"CPU latency held", [](MeasuringSettings& m) { m.cpu_latency_held_us = 0; }, "CPU latency 0 us held"},
  };
  for (const Case& c : cases) {
    CAPTURE(c.name);
    MeasuringSettings m;
    c.change(m);
    const std::string changed = measuring_conditions(m);
    CHECK(changed != key);
    CHECK(changed.find(c.part) != std::string::npos);
  }
}

TEST_CASE("save_profile_cache creates the missing parent directories") {
  TempDir dir;
  const std::string path = dir.file("var/cache/recsched/profiles.json");
  const Status st = save_profile_cache(path, kIdentity, sample_entries());
  REQUIRE_MESSAGE(st.is_ok(), st.to_string());
  const CacheLoad load = load_profile_cache(path, kIdentity);
  CHECK(load.warnings.empty());
  check_same(load.entries, sample_entries());
}

TEST_CASE("save_profile_cache gives kUnavailable naming the path when it cannot write") {
  // The tests may run as root, whom permissions do not stop: use paths no one can write.
  TempDir dir;
  const std::string file = dir.file("regular_file");
  write_text(file, "not a directory");
  fs::create_directories(dir.file("a_directory"));
  struct Case {
    std::string name;
    std::string path;
  };
  const Case cases[] = {
      {"parent is a regular file", file + "/profiles.json"},
      {"grandparent is a regular file", file + "/sub/profiles.json"},
      {"destination is a directory", dir.file("a_directory")},
  };
  for (const Case& c : cases) {
    CAPTURE(c.name);
    const Status st = save_profile_cache(c.path, kIdentity, sample_entries());
    CHECK(st.code() == StatusCode::kUnavailable);
    CAPTURE(st.message());
    CHECK(st.message().find("cannot write profile cache " + c.path + ": ") == 0);
  }
  CHECK(read_text(file) == "not a directory");
  CHECK(dir.listing() == std::set<std::string>{"regular_file", "a_directory"});
  CHECK(fs::is_empty(dir.file("a_directory")));
}

TEST_CASE("save_profile_cache replaces an older cache and leaves no temporary file behind") {
  TempDir dir;
  const std::string path = dir.file("profiles.json");
  std::vector<CachedProfile> entries = sample_entries();
  REQUIRE(save_profile_cache(path, kIdentity, entries).is_ok());
  CHECK(dir.listing() == std::set<std::string>{"profiles.json"});

  entries.pop_back();
  entries[0].points[0].p50_us = 99.5;
  REQUIRE(save_profile_cache(path, kIdentity, entries).is_ok());
  CHECK(dir.listing() == std::set<std::string>{"profiles.json"});
  check_same(load_profile_cache(path, kIdentity).entries, entries);

  struct stat st {};
  REQUIRE(::stat(path.c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0644);
}

TEST_CASE("save_profile_cache refuses an entry that would not load back, keeping the old cache") {
  TempDir dir;
  const std::string path = dir.file("profiles.json");
  REQUIRE(save_profile_cache(path, kIdentity, sample_entries()).is_ok());
  const std::string before = read_text(path);
  struct Case {
    std::string reason;
    std::function<void(std::vector<CachedProfile>&)> mutate;
  };
  const Case cases[] = {
      {"entries[1].points[0].p50_us is not finite",
       [](auto& e) { e[1].points[0].p50_us = std::nan(""); }},
      {"entries[0].points[2].power_w is not finite",
       [](auto& e) { e[0].points[2].power_w = std::numeric_limits<double>::infinity(); }},
      {"entries[0].points[1].power_source is '', not one of",
       [](auto& e) { e[0].points[1].power_source.clear(); }},
      {"entries[0].points[0].batch_size is 0", [](auto& e) { e[0].points[0].batch_size = 0; }},
      {"entries[1].model is empty", [](auto& e) { e[1].model.clear(); }},
      {"entries[1].points is empty", [](auto& e) { e[1].points.clear(); }},
      {"not valid UTF-8", [](auto& e) { e[0].model = "dlrm\xff"; }},
  };
  for (const Case& c : cases) {
    CAPTURE(c.reason);
    std::vector<CachedProfile> entries = sample_entries();
    c.mutate(entries);
    const Status st = save_profile_cache(path, kIdentity, entries);
    CHECK(st.code() == StatusCode::kInvalidArgument);
    CAPTURE(st.message());
    CHECK(st.message().find("profile cache " + path + " not written: ") == 0);
    CHECK(st.message().find(c.reason) != std::string::npos);
  }
  CHECK(read_text(path) == before);
  CHECK(dir.listing() == std::set<std::string>{"profiles.json"});
}

TEST_CASE("hash_hex is the FNV-1a 64-bit hash that cache keys use, in 16 lowercase hex digits") {
  struct Case {
    std::string text;
    std::string hex;
  };
  // Reference values of FNV-1a 64 (the FNV authors' test vectors).
  const Case cases[] = {
      {"", "cbf29ce484222325"},
      {"a", "af63dc4c8601ec8c"},
      {"abc", "e71fa2190541574b"},
      {"foobar", "85944171f73967e8"},
  };
  for (const Case& c : cases) {
    CAPTURE(c.text);
    CHECK(hash_hex(c.text) == c.hex);
    CHECK(hash_hex(c.text) == hash_hex(std::string_view(c.text)));  // stable
  }
  CHECK(hash_hex("abc") != hash_hex("abd"));
  CHECK(hash_hex("abc") != hash_hex("acb"));
  CHECK(hash_hex(std::string_view("a\0b", 3)) != hash_hex("a"));  // every byte counts
}

}  // namespace
}  // namespace recsched::profiler
