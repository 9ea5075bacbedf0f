// Profile cache: the measured profiles saved as JSON, so a restart on the same machine and
// build can skip profiling. Depends on core/ and nlohmann/json (json_fwd in this header).
#pragma once

#include <cstdint>
#include <nlohmann/json_fwd.hpp>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/profile.h"
#include "core/status.h"
#include "profiler/power.h"
#include "profiler/profiler.h"

namespace recsched::profiler {

/// The "format" number this code writes and the only one it reads.
inline constexpr int kProfileCacheFormat = 2;  // 2: points carry p50_single_us

/// What a cache must match to be used: the machine and the build that measured it, and the
/// conditions it measured under (measuring_conditions()).
struct CacheIdentity {
  std::string hardware;    ///< hardware fingerprint (the topology's, opaque here)
  std::string build;       ///< recsched version and compiler, opaque here
  std::string conditions;  ///< measuring_conditions(); a cache without one matches none
};

/// What a profile's figures depend on besides the hardware and the build: the settings of
/// a config that the measuring reads, and the CPU latency request held while measuring.
struct MeasuringSettings {
  ProfileOptions sweep;  ///< profile.*
  PowerConfig power;     ///< power.* (the estimates, where no meter measures)
  uint32_t gpu_graph_max_items = 256;
  bool gpu_table_batched = true;
  std::optional<uint32_t> cpu_latency_held_us;  ///< limits.cpu_latency_us, if held
};

/// The settings as one line of "; "-separated parts, the cache's key:
/// "sweep 1,16,256 at 0.01 s, 2-10 runs; power estimates CPU 8/1.5/0.2 W a core, GPU 400/70
/// W, RAPL under /sys/class/powercap; GPU graphs up to 256 items, tables batched; CPU
/// latency 0 us held" (or "CPU latency not held"). recschedd and recsched-profile build it
/// the same way from the same file, so a host profiled ahead is read back by the service,
/// and a changed setting is measured again rather than served from old figures.
std::string measuring_conditions(const MeasuringSettings& settings);

/// One profiled (model, device): the model's spec hash says which spec was measured.
struct CachedProfile {
  std::string model;
  std::string spec_hash;
  std::string device;
  std::vector<ProfilePoint> points;
};

/// What load_profile_cache found.
struct CacheLoad {
  std::vector<CachedProfile> entries;  ///< empty when the file is missing, corrupt or foreign
  std::vector<std::string> warnings;   ///< one line each, for the log; empty when all is well
};

/// Reads the cache at `path`. Entries and their points come back in file order.
/// A missing file is no warning. A file that cannot be read, is not valid JSON, has another
/// "format", malformed entries, a different hardware fingerprint ("foreign"), build
/// ("stale") or measuring conditions ("measured under other conditions", naming the parts
/// that differ) is ignored whole, with one warning naming the reason, e.g.
/// "profile cache PATH ignored: entries[2].points[0].p50_us is not a number"; never an error.
/// An entry is well formed when model, spec_hash and device are non-empty strings, no other
/// entry has the same (model, device), and its points are a non-empty array with distinct
/// batch sizes, each point having every ProfilePoint field: batch_size an integer >= 1,
/// best_sub_batch and best_workers integers >= 0 (all three fitting in 32 bits), the other
/// numbers finite and >= 0, and power_source one of "rapl", "nvml", "estimated";
/// best_streams and streams_items_per_s (measured on GPUs) may be missing, then 0.
CacheLoad load_profile_cache(const std::string& path, const CacheIdentity& identity);

/// Writes every entry, atomically: a temporary file in the same directory, flushed and
/// fsync'ed, then renamed over `path`, so a crash never leaves a half-written cache.
/// Creates the parent directory if missing. The file is readable by all (mode 0644).
/// Failures, after which any previous cache at `path` is left as it was:
/// kInvalidArgument naming the entry and field if an entry is not well formed (as
/// load_profile_cache defines it, e.g. a NaN latency), since the file would not load back,
/// or if a string is not valid UTF-8 (JSON cannot hold it);
/// kUnavailable naming the path and the OS error if it cannot be written (the daemon then
/// serves without a cache).
Status save_profile_cache(const std::string& path, const CacheIdentity& identity,
                          std::span<const CachedProfile> entries);

/// One point as the cache (and recsched-profile's JSON) writes it, fields in declaration order.
nlohmann::ordered_json to_json(const ProfilePoint& point);

/// What identifies a model for the cache: the hash of its spec file's JSON (reformatting
/// does not change it, any value does) and its weights path. kNotFound / kInvalidArgument
/// if the spec file cannot be read or is not JSON.
Result<std::string> spec_hash(const std::string& spec_path, const std::string& weights_path);

/// FNV-1a 64-bit of `text` as 16 lowercase hex digits (spec hashes, fingerprints).
std::string hash_hex(std::string_view text);

}  // namespace recsched::profiler
