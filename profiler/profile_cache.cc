#include "profiler/profile_cache.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <set>
#include <utility>

#include "profiler/file_io.h"

namespace recsched::profiler {
namespace {

// Ordered, so the file reads as documented: format, hardware, build, then the entries, and
// each point's fields in ProfilePoint's order.
using json = nlohmann::ordered_json;

constexpr const char* kPowerSources[] = {"rapl", "nvml", "estimated"};

// The parsers below return invalid_argument(reason), the reason starting with the JSON
// path of the offending value ("entries[2].points[0].p50_us is not a number"); the callers
// prefix it with what happened to the file.

Result<const json*> member(const json& object, const char* key, const std::string& where) {
  const auto it = object.find(key);
  if (it == object.end()) return invalid_argument(where + key + " is missing");
  return &*it;
}

Result<std::string> get_string(const json& object, const char* key, const std::string& where) {
  RECSCHED_ASSIGN_OR_RETURN(const json* v, member(object, key, where));
  if (!v->is_string()) return invalid_argument(where + key + " is not a string");
  return v->get<std::string>();
}

Result<std::string> get_name(const json& object, const char* key, const std::string& where) {
  RECSCHED_ASSIGN_OR_RETURN(std::string s, get_string(object, key, where));
  if (s.empty()) return invalid_argument(where + key + " is empty");
  return s;
}

// A finite number >= 0; JSON integers are accepted too.
Result<double> get_number(const json& object, const char* key, const std::string& where) {
  RECSCHED_ASSIGN_OR_RETURN(const json* v, member(object, key, where));
  if (!v->is_number()) return invalid_argument(where + key + " is not a number");
  const double x = v->get<double>();
  if (!std::isfinite(x)) return invalid_argument(where + key + " is not finite");
  if (x < 0) return invalid_argument(where + key + " is negative");
  return x;
}

// An integer in [min, UINT32_MAX]; 8.0 is not an integer here.
Result<uint32_t> get_uint32(const json& object, const char* key, uint32_t min,
                            const std::string& where) {
  RECSCHED_ASSIGN_OR_RETURN(const json* v, member(object, key, where));
  if (!v->is_number_integer()) return invalid_argument(where + key + " is not an integer");
  if (!v->is_number_unsigned()) return invalid_argument(where + key + " is negative");
  const uint64_t x = v->get<uint64_t>();
  if (x < min) {
    return invalid_argument(where + key + " is " + std::to_string(x) + ", must be at least " +
                            std::to_string(min));
  }
  if (x > std::numeric_limits<uint32_t>::max()) {
    return invalid_argument(where + key + " is " + std::to_string(x) + ", too large");
  }
  return static_cast<uint32_t>(x);
}

Result<ProfilePoint> parse_point(const json& j, const std::string& path) {
  if (!j.is_object()) return invalid_argument(path + " is not an object");
  const std::string where = path + ".";
  ProfilePoint p;
  RECSCHED_ASSIGN_OR_RETURN(p.batch_size, get_uint32(j, "batch_size", 1, where));
  RECSCHED_ASSIGN_OR_RETURN(p.p50_us, get_number(j, "p50_us", where));
  RECSCHED_ASSIGN_OR_RETURN(p.p95_us, get_number(j, "p95_us", where));
  RECSCHED_ASSIGN_OR_RETURN(p.p50_single_us, get_number(j, "p50_single_us", where));
  RECSCHED_ASSIGN_OR_RETURN(p.items_per_s, get_number(j, "items_per_s", where));
  RECSCHED_ASSIGN_OR_RETURN(p.power_w, get_number(j, "power_w", where));
  RECSCHED_ASSIGN_OR_RETURN(p.energy_per_item_j, get_number(j, "energy_per_item_j", where));
  RECSCHED_ASSIGN_OR_RETURN(p.power_source, get_string(j, "power_source", where));
  bool known = false;
  for (const char* source : kPowerSources) known = known || p.power_source == source;
  if (!known) {
    return invalid_argument(where + "power_source is '" + p.power_source +
                            "', not one of rapl, nvml, estimated");
  }
  RECSCHED_ASSIGN_OR_RETURN(p.best_sub_batch, get_uint32(j, "best_sub_batch", 0, where));
  RECSCHED_ASSIGN_OR_RETURN(p.best_workers, get_uint32(j, "best_workers", 0, where));
  // Measured on GPUs only (0 otherwise), so optional: a cache without them is still read.
  if (j.contains("best_streams")) {
    RECSCHED_ASSIGN_OR_RETURN(p.best_streams, get_uint32(j, "best_streams", 0, where));
  }
  if (j.contains("streams_items_per_s")) {
    RECSCHED_ASSIGN_OR_RETURN(p.streams_items_per_s, get_number(j, "streams_items_per_s", where));
  }
  return p;
}

Result<CachedProfile> parse_entry(const json& j, const std::string& path) {
  if (!j.is_object()) return invalid_argument(path + " is not an object");
  const std::string where = path + ".";
  CachedProfile e;
  RECSCHED_ASSIGN_OR_RETURN(e.model, get_name(j, "model", where));
  RECSCHED_ASSIGN_OR_RETURN(e.spec_hash, get_name(j, "spec_hash", where));
  RECSCHED_ASSIGN_OR_RETURN(e.device, get_name(j, "device", where));
  RECSCHED_ASSIGN_OR_RETURN(const json* points, member(j, "points", where));
  if (!points->is_array()) return invalid_argument(where + "points is not an array");
  if (points->empty()) return invalid_argument(where + "points is empty");
  std::set<uint32_t> sizes;
  for (size_t i = 0; i < points->size(); ++i) {
    const std::string point_path = where + "points[" + std::to_string(i) + "]";
    RECSCHED_ASSIGN_OR_RETURN(ProfilePoint p, parse_point((*points)[i], point_path));
    if (!sizes.insert(p.batch_size).second) {
      return invalid_argument(point_path + " repeats batch_size " + std::to_string(p.batch_size));
    }
    e.points.push_back(std::move(p));
  }
  return e;
}

// `entries` is the value of the file's "entries" member.
Result<std::vector<CachedProfile>> parse_entries(const json& entries) {
  if (!entries.is_array()) return invalid_argument("entries is not an array");
  std::vector<CachedProfile> out;
  std::set<std::pair<std::string, std::string>> seen;
  for (size_t i = 0; i < entries.size(); ++i) {
    const std::string path = "entries[" + std::to_string(i) + "]";
    RECSCHED_ASSIGN_OR_RETURN(CachedProfile e, parse_entry(entries[i], path));
    if (!seen.emplace(e.model, e.device).second) {
      return invalid_argument(path + " repeats model '" + e.model + "' on device '" + e.device +
                              "'");
    }
    out.push_back(std::move(e));
  }
  return out;
}

std::vector<std::string> split_parts(const std::string& conditions) {
  std::vector<std::string> parts;
  size_t from = 0;
  while (from <= conditions.size() && !conditions.empty()) {
    const size_t to = conditions.find("; ", from);
    parts.push_back(conditions.substr(from, to == std::string::npos ? std::string::npos : to - from));
    if (to == std::string::npos) break;
    from = to + 2;
  }
  return parts;
}

// "'A' then, 'B' now" for each part that is not in both, so that a warning names what
// changed, not two long lines to compare by eye.
std::string conditions_differ(const std::string& cached, const std::string& now) {
  if (cached.empty()) return "none recorded (an older cache), now '" + now + "'";
  const std::vector<std::string> a = split_parts(cached), b = split_parts(now);
  std::string then_only, now_only;
  for (const std::string& p : a) {
    if (std::find(b.begin(), b.end(), p) == b.end()) then_only += (then_only.empty() ? "" : "; ") + p;
  }
  for (const std::string& p : b) {
    if (std::find(a.begin(), a.end(), p) == a.end()) now_only += (now_only.empty() ? "" : "; ") + p;
  }
  return "'" + then_only + "' then, '" + now_only + "' now";
}

Result<std::vector<CachedProfile>> parse_cache(const json& doc, const CacheIdentity& identity) {
  if (!doc.is_object()) return invalid_argument("the file is not a JSON object");
  RECSCHED_ASSIGN_OR_RETURN(const json* format, member(doc, "format", ""));
  if (!format->is_number_integer()) return invalid_argument("format is not an integer");
  if (*format != kProfileCacheFormat) {
    return invalid_argument("format is " + format->dump() + ", expected " +
                            std::to_string(kProfileCacheFormat));
  }
  RECSCHED_ASSIGN_OR_RETURN(std::string hardware, get_string(doc, "hardware", ""));
  RECSCHED_ASSIGN_OR_RETURN(std::string build, get_string(doc, "build", ""));
  if (hardware != identity.hardware) {
    return invalid_argument("foreign: measured on hardware '" + hardware + "', this machine is '" +
                            identity.hardware + "'");
  }
  if (build != identity.build) {
    return invalid_argument("stale: written by build '" + build + "', this build is '" +
                            identity.build + "'");
  }
  // Written before the key had conditions: measured under settings no one recorded.
  std::string conditions;
  if (doc.contains("conditions")) {
    RECSCHED_ASSIGN_OR_RETURN(conditions, get_string(doc, "conditions", ""));
  }
  if (conditions != identity.conditions) {
    return invalid_argument("measured under other conditions: " +
                            conditions_differ(conditions, identity.conditions));
  }
  RECSCHED_ASSIGN_OR_RETURN(const json* entries, member(doc, "entries", ""));
  return parse_entries(*entries);
}

json to_json(const CachedProfile& e) {
  json points = json::array();
  for (const ProfilePoint& p : e.points) points.push_back(profiler::to_json(p));
  return {{"model", e.model},
          {"spec_hash", e.spec_hash},
          {"device", e.device},
          {"points", std::move(points)}};
}

// Reads the whole file; ENOENT is reported as kNotFound so the caller can stay quiet.
Result<std::string> read_file(const std::string& path) {
  std::string text;
  const int err = read_whole_file(path, text);
  if (err == ENOENT) return not_found(path);
  if (err != 0) return unavailable(std::string("cannot be read: ") + std::strerror(err));
  return text;
}

// The temporary file of one save: removed (and closed) unless it was renamed into place.
class TempFile {
 public:
  TempFile() = default;
  TempFile(const TempFile&) = delete;
  TempFile& operator=(const TempFile&) = delete;
  ~TempFile() {
    close();
    if (!path_.empty() && !renamed_) ::unlink(path_.c_str());
  }

  // mkostemp in the directory of `target`: a unique name, so two writers never collide.
  bool create(const std::string& target) {
    std::string name = target + ".tmp.XXXXXX";
    fd_ = ::mkostemp(name.data(), O_CLOEXEC);
    if (fd_ < 0) return false;
    path_ = std::move(name);
    return true;
  }

  bool write_all(std::string_view data) {
    while (!data.empty()) {
      const ssize_t n = ::write(fd_, data.data(), data.size());
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return false;
      data.remove_prefix(static_cast<size_t>(n));
    }
    return true;
  }

  // mkostemp creates 0600; a cache holds no secrets, and tools may read it.
  bool make_readable() { return ::fchmod(fd_, 0644) == 0; }
  bool sync() { return ::fsync(fd_) == 0; }
  bool close() { return fd_ < 0 || ::close(std::exchange(fd_, -1)) == 0; }

  bool rename_to(const std::string& target) {
    renamed_ = ::rename(path_.c_str(), target.c_str()) == 0;
    return renamed_;
  }

 private:
  std::string path_;
  int fd_ = -1;
  bool renamed_ = false;
};

// Makes the rename itself durable. Best effort: the file is already whole in place, and a
// crash before the directory reaches disk leaves the previous cache, which is also whole.
void sync_directory(const std::filesystem::path& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return;
  ::fsync(fd);
  ::close(fd);
}

}  // namespace

json to_json(const ProfilePoint& p) {
  return {{"batch_size", p.batch_size},
          {"p50_us", p.p50_us},
          {"p95_us", p.p95_us},
          {"p50_single_us", p.p50_single_us},
          {"items_per_s", p.items_per_s},
          {"power_w", p.power_w},
          {"energy_per_item_j", p.energy_per_item_j},
          {"power_source", p.power_source},
          {"best_sub_batch", p.best_sub_batch},
          {"best_workers", p.best_workers},
          {"best_streams", p.best_streams},
          {"streams_items_per_s", p.streams_items_per_s}};
}

std::string measuring_conditions(const MeasuringSettings& m) {
  auto num = [](double v) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%g", v);
    return std::string(buf);
  };
  std::string sizes;
  for (const uint32_t b : m.sweep.batch_sizes) sizes += (sizes.empty() ? "" : ",") + std::to_string(b);
  const PowerConfig& p = m.power;
  return "sweep " + sizes + " at " + num(m.sweep.seconds_per_point) + " s, " +
         std::to_string(m.sweep.min_reps) + "-" + std::to_string(m.sweep.max_reps) + " runs" +
         "; power estimates CPU " + num(p.cpu_active_w_per_core) + "/" +
         num(p.cpu_idle_w_per_core) + "/" + num(p.cpu_parked_w_per_core) + " W a core, GPU " +
         num(p.gpu_active_w) + "/" + num(p.gpu_idle_w) + " W, RAPL under " + p.powercap_root +
         "; GPU graphs up to " + std::to_string(m.gpu_graph_max_items) + " items, tables " +
         (m.gpu_table_batched ? "batched" : "one launch each") + "; CPU latency " +
         (m.cpu_latency_held_us ? std::to_string(*m.cpu_latency_held_us) + " us held"
                                : std::string("not held"));
}

CacheLoad load_profile_cache(const std::string& path, const CacheIdentity& identity) {
  CacheLoad load;
  auto ignored = [&](const std::string& why) {
    load.warnings.push_back("profile cache " + path + " ignored: " + why);
    return std::move(load);
  };

  Result<std::string> text = read_file(path);
  if (!text.has_value()) {
    if (text.status().code() == StatusCode::kNotFound) return load;
    return ignored(text.status().message());
  }
  json doc;
  try {
    doc = json::parse(*text);
  } catch (const json::exception& e) {
    return ignored(std::string("not valid JSON: ") + e.what());
  }
  Result<std::vector<CachedProfile>> entries = parse_cache(doc, identity);
  if (!entries.has_value()) return ignored(entries.status().message());
  load.entries = std::move(entries).value();
  return load;
}

Status save_profile_cache(const std::string& path, const CacheIdentity& identity,
                          std::span<const CachedProfile> entries) {
  json list = json::array();
  for (const CachedProfile& e : entries) list.push_back(to_json(e));
  // The reader's own rules, so that nothing is written that would not load back.
  if (Result<std::vector<CachedProfile>> check = parse_entries(list); !check.has_value()) {
    return invalid_argument("profile cache " + path + " not written: " + check.status().message());
  }
  const json doc = {{"format", kProfileCacheFormat},
                    {"hardware", identity.hardware},
                    {"build", identity.build},
                    {"conditions", identity.conditions},
                    {"entries", std::move(list)}};
  std::string text;
  try {
    text = doc.dump(2) + "\n";
  } catch (const json::type_error& e) {  // dump() throws only for a string that is not UTF-8
    return invalid_argument("profile cache " + path +
                            " not written: a string is not valid UTF-8: " + e.what());
  }

  auto fail = [&](const std::string& what) {
    return unavailable("cannot write profile cache " + path + ": " + what);
  };
  const std::filesystem::path target(path);
  const std::filesystem::path dir = target.has_parent_path() ? target.parent_path() : ".";
  if (target.has_parent_path()) {
    std::error_code ec;
    std::filesystem::create_directories(dir, ec);
    if (ec) return fail("cannot create directory " + dir.string() + ": " + ec.message());
  }
  TempFile tmp;
  if (!tmp.create(path)) return fail(std::strerror(errno));
  if (!tmp.write_all(text) || !tmp.make_readable() || !tmp.sync() || !tmp.close() ||
      !tmp.rename_to(path)) {
    return fail(std::strerror(errno));
  }
  sync_directory(dir);
  return Status::ok();
}

Result<std::string> spec_hash(const std::string& spec_path, const std::string& weights_path) {
  std::ifstream in(spec_path);
  if (!in) return not_found("model spec " + spec_path + ": cannot open file");
  const nlohmann::json j = nlohmann::json::parse(in, nullptr, false);
  if (j.is_discarded()) return invalid_argument("model spec " + spec_path + ": not valid JSON");
  return hash_hex(j.dump() + "|" + weights_path);
}

std::string hash_hex(std::string_view text) {
  uint64_t h = 0xcbf29ce484222325ULL;  // FNV-1a 64-bit offset basis
  for (const unsigned char c : text) {
    h ^= c;
    h *= 0x100000001b3ULL;  // FNV 64-bit prime
  }
  constexpr char kDigits[] = "0123456789abcdef";
  std::string out(16, '0');
  for (int i = 15; i >= 0; --i, h >>= 4) out[static_cast<size_t>(i)] = kDigits[h & 0xf];
  return out;
}

}  // namespace recsched::profiler
