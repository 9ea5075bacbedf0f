#include "cli/args.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdlib>

namespace recsched::cli {

using nlohmann::json;

Result<uint64_t> parse_count(std::string_view text, std::string_view what, uint64_t min,
                             uint64_t max) {
  uint64_t v = 0;
  auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (text.empty() || ec != std::errc() || p != text.data() + text.size() || v < min || v > max) {
    return invalid_argument(std::string(what) + " must be a whole number in " +
                            std::to_string(min) + "-" + std::to_string(max) + ", not '" +
                            std::string(text) + "'");
  }
  return v;
}

Result<Invocation> parse_invocation(const std::vector<std::string>& args,
                                    const std::string& env_token) {
  Invocation inv;
  std::optional<std::string> socket, url, token;
  bool options_done = false;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (options_done || a.empty() || a[0] != '-' || a == "-") {
      if (inv.command.empty()) {
        inv.command = a;
      } else {
        inv.args.push_back(a);
      }
      continue;
    }
    if (a == "--") {
      // Everything after it is the command's (or the command itself), never an option.
      options_done = true;
      if (!inv.command.empty()) inv.args.push_back(a);
      continue;
    }
    // "--name=value" or "--name value".
    std::string name = a;
    std::optional<std::string> inline_value;
    if (const size_t eq = a.find('='); a.rfind("--", 0) == 0 && eq != std::string::npos) {
      name = a.substr(0, eq);
      inline_value = a.substr(eq + 1);
    }
    auto value = [&]() -> Result<std::string> {
      if (inline_value) return *inline_value;
      if (i + 1 >= args.size()) return invalid_argument(name + " needs a value");
      return args[++i];
    };
    auto no_value = [&]() -> Status {
      if (inline_value) return invalid_argument(name + " takes no value");
      return Status::ok();
    };
    if (name == "--socket") {
      RECSCHED_ASSIGN_OR_RETURN(socket, value());
      if (socket->empty()) return invalid_argument("--socket needs a path");
    } else if (name == "--url") {
      RECSCHED_ASSIGN_OR_RETURN(url, value());
    } else if (name == "--token") {
      RECSCHED_ASSIGN_OR_RETURN(token, value());
    } else if (name == "--timeout") {
      RECSCHED_ASSIGN_OR_RETURN(std::string t, value());
      char* end = nullptr;
      const double s = std::strtod(t.c_str(), &end);
      if (t.empty() || end != t.c_str() + t.size() || !(s > 0) || s > 86400) {
        return invalid_argument("--timeout must be a number of seconds in (0, 86400], not '" + t +
                                "'");
      }
      inv.options.timeout =
          std::chrono::milliseconds(std::max<long long>(1, std::llround(s * 1000)));
    } else if (name == "--json") {
      RECSCHED_RETURN_IF_ERROR(no_value());
      inv.options.format = Format::kJson;
    } else if (name == "-h" || name == "--help") {
      RECSCHED_RETURN_IF_ERROR(no_value());
      inv.options.help = true;
    } else if (name == "--version") {
      RECSCHED_RETURN_IF_ERROR(no_value());
      inv.options.version = true;
    } else if (inv.command.empty()) {
      return invalid_argument("unknown option '" + a + "'");
    } else {
      inv.args.push_back(a);  // the command's own option; it checks it
    }
  }
  if (socket && url) return invalid_argument("give --socket or --url, not both");
  if (url) {
    RECSCHED_ASSIGN_OR_RETURN(inv.options.endpoint, parse_url(*url));
    inv.options.endpoint.token = token ? *token : env_token;
  } else {
    if (token) {
      return invalid_argument(
          "--token goes with --url (the unix socket needs no token: who may open it is who "
          "may use it)");
    }
    if (socket) inv.options.endpoint.socket_path = *socket;
  }
  return inv;
}

Result<CommandArgs> parse_command_args(const std::vector<std::string>& args,
                                       std::span<const std::string_view> value_options,
                                       std::span<const std::string_view> flag_options) {
  CommandArgs out;
  bool options_done = false;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (options_done || a.size() < 2 || a[0] != '-') {
      out.positional.push_back(a);
      continue;
    }
    if (a == "--") {
      options_done = true;
      continue;
    }
    const size_t eq = a.find('=');
    const std::string name = a.substr(0, eq);
    const bool takes_value =
        std::find(value_options.begin(), value_options.end(), name) != value_options.end();
    const bool is_flag =
        std::find(flag_options.begin(), flag_options.end(), name) != flag_options.end();
    if (takes_value) {
      if (eq != std::string::npos) {
        out.values[name] = a.substr(eq + 1);
      } else if (i + 1 < args.size()) {
        out.values[name] = args[++i];
      } else {
        return invalid_argument(name + " needs a value");
      }
    } else if (is_flag) {
      if (eq != std::string::npos) return invalid_argument(name + " takes no value");
      out.flags.insert(name);
    } else {
      return invalid_argument("unknown option '" + name + "'");
    }
  }
  return out;
}

Result<json> parse_params(std::span<const std::string> assignments) {
  json params = json::object();
  for (const std::string& kv : assignments) {
    const size_t eq = kv.find('=');
    if (eq == std::string::npos) {
      return invalid_argument("parameter '" + kv + "' is not key=value");
    }
    const std::string key = kv.substr(0, eq);
    if (key.empty()) return invalid_argument("parameter '" + kv + "' has an empty key");
    if (params.contains(key)) return invalid_argument("parameter '" + key + "' is given twice");
    const std::string text = kv.substr(eq + 1);
    json value = json::parse(text, nullptr, false);
    params[key] = value.is_discarded() ? json(text) : value;
  }
  return params;
}

}  // namespace recsched::cli
