#include "daemon/config.h"

#include <grp.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <initializer_list>
#include <map>
#include <set>
#include <sstream>
#include <system_error>
#include <vector>

namespace recsched::daemon {
namespace {

using nlohmann::json;
namespace fs = std::filesystem;

// sockaddr_un::sun_path is 108 bytes on Linux, one of them the terminating NUL.
constexpr size_t kMaxSocketPath = 107;
constexpr uint64_t kMaxCount = uint64_t{1} << 20;
constexpr uint64_t kMaxMs = 3'600'000;  // an hour: SLA targets and timeouts
constexpr double kMaxWatts = 10'000;

// Messages are one line: a key or a value quoted in one may hold any character.
std::string one_line(std::string_view text) {
  std::string out;
  for (const char c : text) {
    const auto u = static_cast<unsigned char>(c);
    if (u < 0x20 || u == 0x7f) {
      char hex[8];
      std::snprintf(hex, sizeof hex, "\\x%02x", u);
      out += hex;
    } else {
      out += c;
    }
  }
  return out;
}

Status key_error(const std::string& key, const std::string& what) {
  return invalid_argument("key '" + key + "': " + what);
}

// 3600000 rather than 3.6e+06, 0.05 rather than 0.050000.
std::string number_text(double x) {
  if (x == std::floor(x) && std::fabs(x) < 1e15) return std::to_string(static_cast<int64_t>(x));
  std::ostringstream s;
  s << x;
  return s.str();
}

// An interval of allowed numbers, closed unless said otherwise.
struct Interval {
  double lo = 0;
  double hi = 0;
  bool open_lo = false;
  bool open_hi = false;

  bool contains(double x) const {
    return std::isfinite(x) && (open_lo ? x > lo : x >= lo) && (open_hi ? x < hi : x <= hi);
  }
  std::string text() const {
    return (open_lo ? "(" : "[") + number_text(lo) + ", " + number_text(hi) + (open_hi ? ")" : "]");
  }
};

Result<uint64_t> read_integer(const json& v, const std::string& key, uint64_t lo, uint64_t hi) {
  const std::string want =
      "must be an integer in [" + std::to_string(lo) + ", " + std::to_string(hi) + "]";
  if (!v.is_number_integer()) return key_error(key, want);
  if (v.is_number_unsigned()) {
    const auto u = v.get<uint64_t>();
    if (u < lo || u > hi) return key_error(key, want);
    return u;
  }
  const auto i = v.get<int64_t>();
  if (i < 0 || static_cast<uint64_t>(i) < lo || static_cast<uint64_t>(i) > hi) {
    return key_error(key, want);
  }
  return static_cast<uint64_t>(i);
}

Result<double> read_number(const json& v, const std::string& key, Interval range) {
  if (!v.is_number() || !range.contains(v.get<double>())) {
    return key_error(key, "must be a number in " + range.text());
  }
  return v.get<double>();
}

Result<std::string> read_string(const json& v, const std::string& key) {
  if (!v.is_string()) return key_error(key, "must be a string");
  return v.get<std::string>();
}

Result<bool> read_bool(const json& v, const std::string& key) {
  if (!v.is_boolean()) return key_error(key, "must be true or false");
  return v.get<bool>();
}

// One key of a JSON object and how to read it; `key` is its full path, for errors.
struct Field {
  std::string_view name;
  std::function<Status(const json& v, const std::string& key)> read;
};

// Reads object `v` (at path `key`) field by field, in key order; any other key is an error
// that lists the known ones.
Status read_object(const json& v, const std::string& key, std::initializer_list<Field> fields) {
  if (!v.is_object()) return key_error(key, "must be an object");
  for (const auto& [name, value] : v.items()) {
    const std::string path = key.empty() ? name : key + "." + name;
    const Field* field = nullptr;
    for (const Field& f : fields) {
      if (f.name == name) field = &f;
    }
    if (field == nullptr) {
      std::string known;
      for (const Field& f : fields) known += (known.empty() ? "" : ", ") + std::string(f.name);
      return key_error(path, "unknown key (known: " + known + ")");
    }
    RECSCHED_RETURN_IF_ERROR(field->read(value, path));
  }
  return Status::ok();
}

template <class T>
Field integer_field(std::string_view name, T& out, uint64_t lo, uint64_t hi) {
  return {name, [&out, lo, hi](const json& v, const std::string& key) -> Status {
            RECSCHED_ASSIGN_OR_RETURN(const uint64_t x, read_integer(v, key, lo, hi));
            out = static_cast<T>(x);
            return Status::ok();
          }};
}

Field number_field(std::string_view name, double& out, Interval range) {
  return {name, [&out, range](const json& v, const std::string& key) -> Status {
            RECSCHED_ASSIGN_OR_RETURN(out, read_number(v, key, range));
            return Status::ok();
          }};
}

// An integer in [lo, hi], or null for none.
template <class T>
Field optional_integer_field(std::string_view name, std::optional<T>& out, uint64_t lo,
                             uint64_t hi) {
  return {name, [&out, lo, hi](const json& v, const std::string& key) -> Status {
            if (v.is_null()) {
              out.reset();
              return Status::ok();
            }
            Result<uint64_t> x = read_integer(v, key, lo, hi);
            if (!x) return Status(x.status().code(), x.status().message() + ", or null (none)");
            out = static_cast<T>(*x);
            return Status::ok();
          }};
}

Field bool_field(std::string_view name, bool& out) {
  return {name, [&out](const json& v, const std::string& key) -> Status {
            RECSCHED_ASSIGN_OR_RETURN(out, read_bool(v, key));
            return Status::ok();
          }};
}

// A path against `base` (lexically normalised); "" stays "" (it means "none").
std::string resolve(const fs::path& base, const std::string& p) {
  if (p.empty() || fs::path(p).is_absolute()) return p;
  return (base / p).lexically_normal().string();
}

// What is wrong with a unix socket path, or "" if nothing.
std::string socket_path_problem(const std::string& p) {
  if (p.size() > kMaxSocketPath) {
    return "a unix socket path has at most " + std::to_string(kMaxSocketPath) + " bytes, not " +
           std::to_string(p.size());
  }
  return "";
}

// What is wrong with a listen.tcp value, or "" if nothing ("" turns TCP off).
std::string tcp_problem(const std::string& text) {
  if (text.empty()) return "";
  Result<std::pair<std::string, uint16_t>> hp = split_host_port(text);
  return hp ? "" : hp.status().message();
}

// RFC 6750's b64token: 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"=".
bool is_bearer_token(const std::string& t) {
  const size_t body = t.find_last_not_of('=') + 1;  // npos + 1 == 0: all '='
  if (body == 0) return false;
  return std::all_of(t.begin(), t.begin() + static_cast<std::ptrdiff_t>(body), [](char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '.' || c == '_' || c == '~' || c == '+' || c == '/';
  });
}

bool is_readable_file(const std::string& p) {
  std::error_code ec;
  return fs::is_regular_file(p, ec) && std::ifstream(p).good();
}

// Finds the first key given twice in one object, which nlohmann/json would otherwise
// resolve silently to the last value: a config edited in two places is an operator error.
class DuplicateKeyFinder {
 public:
  bool operator()(int /*depth*/, json::parse_event_t event, json& parsed) {
    switch (event) {
      case json::parse_event_t::object_start:
      case json::parse_event_t::array_start:
        stack_.push_back({event == json::parse_event_t::object_start, "", 0, {}});
        break;
      case json::parse_event_t::key:
        if (!stack_.empty()) {
          Frame& top = stack_.back();
          top.key = parsed.get<std::string>();
          if (!top.keys.insert(top.key).second && duplicate_.empty()) duplicate_ = path();
        }
        break;
      case json::parse_event_t::object_end:
      case json::parse_event_t::array_end:
        if (!stack_.empty()) stack_.pop_back();
        element_done();
        break;
      case json::parse_event_t::value:
        element_done();
        break;
    }
    return true;
  }

  /// The path of the first repeated key; "" if none.
  const std::string& duplicate() const { return duplicate_; }

 private:
  struct Frame {
    bool object;
    std::string key;  // object: the current key
    size_t index;     // array: the current element
    std::set<std::string> keys;
  };

  void element_done() {
    if (!stack_.empty() && !stack_.back().object) ++stack_.back().index;
  }

  std::string path() const {
    std::string p;
    for (const Frame& f : stack_) {
      p += f.object ? (p.empty() ? "" : ".") + f.key : "[" + std::to_string(f.index) + "]";
    }
    return p;
  }

  std::vector<Frame> stack_;
  std::string duplicate_;
};

Result<ModelConfig> read_model(const json& v, const std::string& key, const fs::path& base) {
  ModelConfig m;
  std::optional<double> sla_ms;
  if (v.is_string()) {
    m.spec_path = resolve(base, v.get<std::string>());
  } else if (v.is_object()) {
    bool has_spec = false;
    RECSCHED_RETURN_IF_ERROR(read_object(
        v, key,
        {{"spec",
          [&](const json& s, const std::string& k) -> Status {
            RECSCHED_ASSIGN_OR_RETURN(m.spec_path, read_string(s, k));
            m.spec_path = resolve(base, m.spec_path);
            has_spec = true;
            return Status::ok();
          }},
         {"weights",
          [&](const json& w, const std::string& k) -> Status {
            RECSCHED_ASSIGN_OR_RETURN(m.weights_path, read_string(w, k));
            m.weights_path = resolve(base, m.weights_path);
            if (!m.weights_path.empty() && !is_readable_file(m.weights_path)) {
              return key_error(k, "'" + m.weights_path + "' is not a readable regular file");
            }
            return Status::ok();
          }},
         {"sla_ms",
          [&](const json& s, const std::string& k) -> Status {
            RECSCHED_ASSIGN_OR_RETURN(sla_ms,
                                      read_number(s, k, {0, static_cast<double>(kMaxMs), true}));
            return Status::ok();
          }},
         number_field("sla_percentile", m.sla_percentile, {0, 100, true, true})}));
    if (!has_spec) return key_error(key + ".spec", "required but missing");
  } else {
    return key_error(key,
                     "must be a spec path or an object {\"spec\", \"weights\", \"sla_ms\", "
                     "\"sla_percentile\"}");
  }
  if (m.spec_path.empty()) return key_error(key, "the spec path is empty");
  // Loaded now, so a bad spec stops the daemon before it binds a socket or profiles.
  Result<engine::ModelSpec> spec = engine::load_model_spec(m.spec_path);
  if (!spec) return key_error(key, spec.status().message());
  m.spec = std::move(spec).value();
  m.sla_ms = sla_ms.value_or(default_sla_ms(m.spec.name).value_or(100.0));
  return m;
}

Status read_models(const json& v, const std::string& key, const fs::path& base,
                   std::vector<ModelConfig>& out) {
  if (!v.is_array() || v.empty()) {
    return key_error(key, "must be a non-empty array of model specs");
  }
  std::map<std::string, size_t> seen;
  for (size_t i = 0; i < v.size(); ++i) {
    const std::string k = key + "[" + std::to_string(i) + "]";
    RECSCHED_ASSIGN_OR_RETURN(ModelConfig m, read_model(v[i], k, base));
    const auto [it, inserted] = seen.emplace(m.spec.name, i);
    if (!inserted) {
      return key_error(k, "model name '" + m.spec.name + "' is already models[" +
                              std::to_string(it->second) + "]'s");
    }
    out.push_back(std::move(m));
  }
  return Status::ok();
}

Status read_profile(const json& v, const std::string& key, profiler::ProfileOptions& out) {
  bool quick = false;
  RECSCHED_RETURN_IF_ERROR(read_object(
      v, key,
      {{"batch_sizes",
        [&](const json& b, const std::string& k) -> Status {
          if (!b.is_array() || b.empty()) return key_error(k, "must be a non-empty array");
          std::vector<uint32_t> sizes;
          for (size_t i = 0; i < b.size(); ++i) {
            const std::string ki = k + "[" + std::to_string(i) + "]";
            RECSCHED_ASSIGN_OR_RETURN(const uint64_t s, read_integer(b[i], ki, 1, kMaxCount));
            if (std::find(sizes.begin(), sizes.end(), s) != sizes.end()) {
              return key_error(ki, "batch size " + std::to_string(s) + " is listed twice");
            }
            sizes.push_back(static_cast<uint32_t>(s));
          }
          std::sort(sizes.begin(), sizes.end());
          out.batch_sizes = std::move(sizes);
          return Status::ok();
        }},
       number_field("seconds_per_point", out.seconds_per_point, {0, 60, true}),
       bool_field("quick", quick)}));
  if (quick) out = profiler::ProfileOptions::quick();
  return Status::ok();
}

Status read_power(const json& v, const std::string& key, profiler::PowerConfig& out) {
  const Interval watts{0, kMaxWatts};
  RECSCHED_RETURN_IF_ERROR(
      read_object(v, key,
                  {number_field("cpu_active_w_per_core", out.cpu_active_w_per_core, watts),
                   number_field("cpu_idle_w_per_core", out.cpu_idle_w_per_core, watts),
                   number_field("cpu_parked_w_per_core", out.cpu_parked_w_per_core, watts),
                   number_field("gpu_active_w", out.gpu_active_w, watts),
                   number_field("gpu_idle_w", out.gpu_idle_w, watts),
                   {"powercap_root", [&](const json& p, const std::string& k) -> Status {
                      RECSCHED_ASSIGN_OR_RETURN(out.powercap_root, read_string(p, k));
                      if (out.powercap_root.empty()) {
                        return key_error(k, "must be a non-empty path");
                      }
                      return Status::ok();
                    }}}));
  if (out.cpu_idle_w_per_core > out.cpu_active_w_per_core) {
    return key_error(
        key + ".cpu_idle_w_per_core",
        "must not exceed cpu_active_w_per_core (" + number_text(out.cpu_active_w_per_core) + ")");
  }
  if (out.cpu_parked_w_per_core > out.cpu_idle_w_per_core) {
    return key_error(
        key + ".cpu_parked_w_per_core",
        "must not exceed cpu_idle_w_per_core (" + number_text(out.cpu_idle_w_per_core) + ")");
  }
  if (out.gpu_idle_w > out.gpu_active_w) {
    return key_error(key + ".gpu_idle_w",
                     "must not exceed gpu_active_w (" + number_text(out.gpu_active_w) + ")");
  }
  return Status::ok();
}

Status read_limits(const json& v, const std::string& key, LimitsConfig& out) {
  RECSCHED_RETURN_IF_ERROR(read_object(
      v, key,
      {integer_field("max_body_bytes", out.max_body_bytes, 1024, uint64_t{1} << 30),
       integer_field("max_header_bytes", out.max_header_bytes, 1024, kMaxCount),
       integer_field("max_headers", out.max_headers, 1, 10000),
       integer_field("max_connections", out.max_connections, 1, 65536),
       integer_field("header_timeout_ms", out.header_timeout_ms, 1, kMaxMs),
       integer_field("read_timeout_ms", out.read_timeout_ms, 1, kMaxMs),
       integer_field("idle_timeout_ms", out.idle_timeout_ms, 1, kMaxMs),
       integer_field("io_threads", out.io_threads, 1, 64),
       integer_field("idle_poll_us", out.idle_poll_us, 0, 10000),
       optional_integer_field("cpu_latency_us", out.cpu_latency_us, 0, 100000),
       integer_field("max_queue", out.max_queue, 1, kMaxCount),
       number_field("inline_max_ms", out.inline_max_ms, {0, 10}),
       number_field("inline_idle_max_ms", out.inline_idle_max_ms, {0, 10}),
       integer_field("max_items", out.max_items, 1, kMaxCount),
       integer_field("max_elements", out.max_elements, 1, uint64_t{1} << 32),
       integer_field("max_json_depth", out.max_json_depth, 2, 1000),
       integer_field("max_shm_regions", out.max_shm_regions, 0, 4096),
       number_field("reject_factor", out.reject_factor, {0.1, 1000}),
       number_field("normal_priority_share", out.normal_priority_share, {0, 1, true}),
       number_field("low_priority_share", out.low_priority_share, {0, 1, true}),
       number_field("late_budget", out.late_budget, {0, 1}),
       number_field("wait_bound_fraction", out.wait_bound_fraction, {0, 1}),
       bool_field("preemption", out.preemption),
       bool_field("gpu_merging", out.gpu_merging),
       integer_field("worker_nice", out.worker_nice, 0, 19),
       integer_field("degraded_ms", out.degraded_ms, 0, kMaxMs),
       integer_field("window", out.window, 1, kMaxCount),
       integer_field("placement_log", out.placement_log, 0, kMaxCount)}));
  if (out.low_priority_share > out.normal_priority_share) {
    return key_error(key + ".low_priority_share",
                     "must not exceed normal_priority_share (" +
                         number_text(out.normal_priority_share) + ")");
  }
  return Status::ok();
}

Status read_fleet(const json& v, const std::string& key, const fs::path& base, FleetConfig& out) {
  return read_object(
      v, key,
      {{"agent_check",
        [&](const json& a, const std::string& k) -> Status {
          RECSCHED_ASSIGN_OR_RETURN(out.agent_check, read_string(a, k));
          if (out.agent_check.empty()) return Status::ok();
          const std::string problem = tcp_problem(out.agent_check);
          if (!problem.empty()) return key_error(k, problem);
          if (split_host_port(out.agent_check)->second == 0) {
            return key_error(k, "needs a fixed port (the balancer is configured with it)");
          }
          return Status::ok();
        }},
       number_field("agent_weight_qps", out.agent_weight_qps, {0, 1e9}),
       number_field("max_utilisation", out.max_utilisation, {0, 1, true}),
       integer_field("drain_ms", out.drain_ms, 0, kMaxMs),
       {"nfd_feature_file",
        [&](const json& f, const std::string& k) -> Status {
          RECSCHED_ASSIGN_OR_RETURN(out.nfd_feature_file, read_string(f, k));
          out.nfd_feature_file = resolve(base, out.nfd_feature_file);
          return Status::ok();
        }},
       bool_field("orca_load_report", out.orca_load_report)});
}

Status read_listen(const json& v, const std::string& key, const fs::path& base, ListenConfig& out) {
  RECSCHED_RETURN_IF_ERROR(
      read_object(v, key,
                  {{"socket",
                    [&](const json& s, const std::string& k) -> Status {
                      RECSCHED_ASSIGN_OR_RETURN(out.socket, read_string(s, k));
                      out.socket = resolve(base, out.socket);
                      const std::string problem = socket_path_problem(out.socket);
                      return problem.empty() ? Status::ok() : key_error(k, problem);
                    }},
                   {"tcp",
                    [&](const json& t, const std::string& k) -> Status {
                      RECSCHED_ASSIGN_OR_RETURN(out.tcp, read_string(t, k));
                      const std::string problem = tcp_problem(out.tcp);
                      return problem.empty() ? Status::ok() : key_error(k, problem);
                    }},
                   {"socket_group", [&](const json& g, const std::string& k) -> Status {
                      RECSCHED_ASSIGN_OR_RETURN(out.socket_group, read_string(g, k));
                      if (out.socket_group.empty()) return Status::ok();
                      if (!group_id(out.socket_group)) {
                        return key_error(k, "no group '" + one_line(out.socket_group) +
                                                "' on this host");
                      }
                      return Status::ok();
                    }}}));
  if (out.socket.empty() && out.tcp.empty()) {
    return key_error(key, "socket and tcp are both \"\": the daemon would not listen");
  }
  return Status::ok();
}

Status read_policy(const json& v, const std::string& key, const fs::path& base, PolicyConfig& out) {
  return read_object(v, key,
                     {{"name",
                       [&](const json& n, const std::string& k) -> Status {
                         RECSCHED_ASSIGN_OR_RETURN(out.name, read_string(n, k));
                         if (out.name.empty()) return key_error(k, "must be a non-empty string");
                         return Status::ok();
                       }},
                      {"params",
                       [&](const json& p, const std::string& k) -> Status {
                         if (!p.is_object()) return key_error(k, "must be an object");
                         out.params = p;
                         return Status::ok();
                       }},
                      {"plugin_dir", [&](const json& d, const std::string& k) -> Status {
                         RECSCHED_ASSIGN_OR_RETURN(out.plugin_dir, read_string(d, k));
                         out.plugin_dir = resolve(base, out.plugin_dir);
                         return Status::ok();
                       }}});
}

Status read_config(const json& root, const fs::path& base, DaemonConfig& c) {
  if (!root.is_object()) return invalid_argument("must be a JSON object");
  RECSCHED_RETURN_IF_ERROR(read_object(
      root, "",
      {{"listen",
        [&](const json& v, const std::string& k) { return read_listen(v, k, base, c.listen); }},
       {"models",
        [&](const json& v, const std::string& k) { return read_models(v, k, base, c.models); }},
       {"partition",
        [&](const json& v, const std::string& k) -> Status {
          auto p =
              v.is_string() ? hw::partition_from_string(v.get<std::string>()) : std::nullopt;
          if (!p) return key_error(k, "must be one of numa, l3, core-kind, core");
          c.partition = *p;
          return Status::ok();
        }},
       {"policy",
        [&](const json& v, const std::string& k) { return read_policy(v, k, base, c.policy); }},
       {"devices",
        [&](const json& v, const std::string& k) -> Status {
          if (!v.is_array()) return key_error(k, "must be an array of device ids");
          c.devices.clear();
          for (size_t i = 0; i < v.size(); ++i) {
            const std::string ki = k + "[" + std::to_string(i) + "]";
            RECSCHED_ASSIGN_OR_RETURN(std::string id, read_string(v[i], ki));
            if (id.empty()) return key_error(ki, "must be a device id such as \"cpu0\"");
            if (std::find(c.devices.begin(), c.devices.end(), id) != c.devices.end())
              return key_error(ki, "'" + id + "' is listed twice");
            c.devices.push_back(id);
          }
          return Status::ok();
        }},
       {"state_dir",
        [&](const json& v, const std::string& k) -> Status {
          RECSCHED_ASSIGN_OR_RETURN(c.state_dir, read_string(v, k));
          if (c.state_dir.empty()) return key_error(k, "must be a non-empty path");
          c.state_dir = resolve(base, c.state_dir);
          return Status::ok();
        }},
       {"token",
        [&](const json& v, const std::string& k) -> Status {
          RECSCHED_ASSIGN_OR_RETURN(c.token, read_string(v, k));
          if (!c.token.empty() && !is_bearer_token(c.token)) {
            return key_error(k,
                             "must be \"\" or an RFC 6750 token (A-Z a-z 0-9 - . _ ~ + /, "
                             "then any '=')");
          }
          return Status::ok();
        }},
       bool_field("gpus", c.gpus),
       integer_field("gpu_graph_max_items", c.gpu_graph_max_items, 0, 1048576),
       bool_field("gpu_table_batched", c.gpu_table_batched),
       {"profile",
        [&](const json& v, const std::string& k) { return read_profile(v, k, c.profile); }},
       {"power", [&](const json& v, const std::string& k) { return read_power(v, k, c.power); }},
       {"limits",
        [&](const json& v, const std::string& k) { return read_limits(v, k, c.limits); }},
       {"fleet",
        [&](const json& v, const std::string& k) { return read_fleet(v, k, base, c.fleet); }}}));
  if (c.models.empty()) return key_error("models", "required but missing");
  // "listen" omitted keeps the defaults, which listen on both.
  return Status::ok();
}

// "" stays ""; a relative path becomes absolute against the current directory.
Result<std::string> absolute_path(const std::string& p) {
  if (p.empty()) return p;
  std::error_code ec;
  fs::path abs = fs::absolute(p, ec);
  if (ec) return invalid_argument("cannot make '" + p + "' absolute: " + ec.message());
  return abs.lexically_normal().string();
}

}  // namespace

Result<DaemonConfig> parse_config(std::string_view text, const std::string& base_dir,
                                  const std::string& path_for_errors) {
  auto fail = [&](const Status& st) -> Status {
    return invalid_argument(one_line("config " + path_for_errors + ": " + st.message()));
  };
  DuplicateKeyFinder duplicates;
  json root;
  try {
    root = json::parse(text, std::ref(duplicates));
  } catch (const json::exception& e) {
    return fail(invalid_argument(std::string("not valid JSON: ") + e.what()));
  }
  if (!duplicates.duplicate().empty()) {
    return fail(key_error(duplicates.duplicate(), "given twice (JSON would keep only the last)"));
  }
  DaemonConfig c;
  c.path = path_for_errors;
  const Status st = read_config(root, fs::path(base_dir), c);
  if (!st.is_ok()) return fail(st);
  return c;
}

Result<DaemonConfig> load_config(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::error_code dir_ec;
  if (!in || fs::is_directory(path, dir_ec)) {
    return not_found("config " + path + ": cannot open file");
  }
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) return not_found("config " + path + ": cannot read file");
  // Absolute, so the paths stay right if the daemon later changes directory.
  std::error_code ec;
  fs::path base = fs::absolute(path, ec).parent_path();
  if (ec) base = fs::path(path).parent_path();
  return parse_config(text.str(), base.lexically_normal().string(), path);
}

Status apply_overrides(DaemonConfig& config, const std::optional<std::string>& tcp,
                       const std::optional<std::string>& socket,
                       const std::optional<std::string>& state_dir) {
  auto fail = [](const std::string& option, const std::string& what) {
    return invalid_argument(one_line(option + ": " + what));
  };
  ListenConfig listen = config.listen;
  std::string dir = config.state_dir;
  if (tcp) {
    const std::string problem = tcp_problem(*tcp);
    if (!problem.empty()) return fail("--tcp", problem);
    listen.tcp = *tcp;
  }
  if (socket) {
    Result<std::string> p = absolute_path(*socket);
    if (!p) return fail("--socket", p.status().message());
    const std::string problem = socket_path_problem(*p);
    if (!problem.empty()) return fail("--socket", problem);
    listen.socket = *p;
  }
  if (state_dir) {
    if (state_dir->empty()) return fail("--state-dir", "must be a non-empty path");
    Result<std::string> p = absolute_path(*state_dir);
    if (!p) return fail("--state-dir", p.status().message());
    dir = *p;
  }
  if (listen.socket.empty() && listen.tcp.empty()) {
    return fail(tcp ? "--tcp" : "--socket",
                "the unix socket and TCP would both be off: the daemon would not listen");
  }
  config.listen = std::move(listen);
  config.state_dir = std::move(dir);
  return Status::ok();
}

Result<std::pair<std::string, uint16_t>> split_host_port(const std::string& text) {
  auto bad = [&](const std::string& why) {
    return invalid_argument("'" + text + "' is not HOST:PORT: " + why);
  };
  std::string host;
  std::string port;
  if (!text.empty() && text.front() == '[') {
    const size_t close = text.find(']');
    if (close == std::string::npos) return bad("'[' without ']'");
    host = text.substr(1, close - 1);
    if (close + 1 >= text.size() || text[close + 1] != ':') return bad("no ':PORT' after ']'");
    if (!host.empty() && host.find(':') == std::string::npos) {
      return bad("brackets are for IPv6 addresses");
    }
    port = text.substr(close + 2);
  } else {
    const size_t colon = text.rfind(':');
    if (colon == std::string::npos) return bad("no ':PORT'");
    host = text.substr(0, colon);
    if (host.find(':') != std::string::npos) {
      return bad("an IPv6 address goes in brackets, as in [::1]:8000");
    }
    port = text.substr(colon + 1);
  }
  if (host.empty()) return bad("the host is empty");
  for (const char c : host) {
    const auto u = static_cast<unsigned char>(c);
    if (u <= 0x20 || u == 0x7f || c == '[' || c == ']' || c == '/') {
      return bad("the host has a character no host name or address has");
    }
  }
  if (port.empty() || port.size() > 5 ||
      !std::all_of(port.begin(), port.end(), [](char c) { return c >= '0' && c <= '9'; }) ||
      std::stoul(port) > 65535) {
    return bad("the port must be a number in [0, 65535]");
  }
  return std::make_pair(host, static_cast<uint16_t>(std::stoul(port)));
}

std::optional<uint32_t> group_id(const std::string& name) {
  if (name.empty() || name.find('\0') != std::string::npos) return std::nullopt;
  group grp{};
  group* found = nullptr;
  std::vector<char> buf(16384);
  while (getgrnam_r(name.c_str(), &grp, buf.data(), buf.size(), &found) == ERANGE &&
         buf.size() < (size_t{1} << 24)) {
    buf.resize(buf.size() * 2);
  }
  if (found == nullptr) return std::nullopt;
  return static_cast<uint32_t>(found->gr_gid);
}

std::optional<double> default_sla_ms(std::string_view model_name) {
  // DeepRecSys (Gupta et al., ISCA 2020): each model's tail-latency target.
  static constexpr std::array<std::pair<std::string_view, double>, 8> kTargets = {{
      {"rmc1", 100},
      {"rmc2", 400},
      {"rmc3", 100},
      {"ncf", 5},
      {"wnd", 25},
      {"mtwnd", 25},
      {"din", 100},
      {"dien", 35},
  }};
  for (const auto& [name, ms] : kTargets) {
    if (name == model_name) return ms;
  }
  return std::nullopt;
}

}  // namespace recsched::daemon
