// The command-line conventions recsched-sim and recsched-plan share: `--key VALUE` options
// and `--flag` switches read into a map, numbers checked against their range, and usage
// errors thrown as UsageError, which each tool turns into exit status 2. Header only.
#pragma once

#include <algorithm>
#include <exception>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace recsched::sim::tools {

struct UsageError {
  std::string message;
};

/// `v` as a number in [lo, hi], or a UsageError naming `flag`.
inline double number(const std::string& flag, const std::string& v, double lo, double hi) {
  try {
    size_t used = 0;
    const double x = std::stod(v, &used);
    if (used == v.size() && x >= lo && x <= hi) return x;
  } catch (const std::exception&) {
  }
  throw UsageError{flag + " takes a number in [" + std::to_string(lo) + ", " + std::to_string(hi) +
                   "], not '" + v + "'"};
}

/// `v` as a whole number in [lo, hi] (a count: workers, streams, a seed), or a UsageError
/// naming `flag`; "2.5" is refused rather than cut to 2.
inline long long whole_number(const std::string& flag, const std::string& v, long long lo,
                              long long hi) {
  try {
    size_t used = 0;
    const long long x = std::stoll(v, &used);
    if (used == v.size() && x >= lo && x <= hi) return x;
  } catch (const std::exception&) {
  }
  throw UsageError{flag + " takes a whole number in [" + std::to_string(lo) + ", " +
                   std::to_string(hi) + "], not '" + v + "'"};
}

/// The options in `args` (key without "--" -> value, "" for a flag); nullopt when -h or
/// --help is among them. UsageError for anything else.
inline std::optional<std::map<std::string, std::string>> parse_options(
    const std::vector<std::string>& args, const std::vector<std::string>& valued,
    const std::vector<std::string>& flags) {
  std::map<std::string, std::string> o;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a == "-h" || a == "--help") return std::nullopt;
    if (a.rfind("--", 0) != 0) throw UsageError{"unexpected argument '" + a + "'"};
    const std::string key = a.substr(2);
    if (std::find(flags.begin(), flags.end(), key) != flags.end()) {
      o[key] = "";
    } else if (std::find(valued.begin(), valued.end(), key) != valued.end()) {
      if (i + 1 >= args.size()) throw UsageError{a + " needs a value"};
      o[key] = args[++i];
    } else {
      throw UsageError{"unknown option '" + a + "'"};
    }
  }
  return o;
}

}  // namespace recsched::sim::tools
