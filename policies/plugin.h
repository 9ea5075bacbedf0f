// Loading external policies: every *.so in one directory, checked before it is opened
// (the directory and each file owned by root or this process's user, writable by no one
// else, a regular file), then its entry point and API version (policies/plugin_api.h).
// A refused file is reported with the reason and the others still load.
// Depends on policies/policy.h and dlopen.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "policies/policy.h"

namespace recsched::policies {

class Plugins {
 public:
  /// What load_dir() did with one file.
  struct Outcome {
    std::string path;
    std::string name;   ///< the policy it provides ("" if refused)
    std::string error;  ///< why it was refused ("" if loaded)
  };

  Plugins();
  ~Plugins();  // plugins stay mapped for the process's life: a policy may outlive this
  Plugins(const Plugins&) = delete;
  Plugins& operator=(const Plugins&) = delete;

  /// Loads every *.so in `dir` (sorted by name). `reserved` are names taken already (the
  /// built-ins): a plugin claiming one is refused. kInvalidArgument if the directory
  /// itself is unsafe (writable by others, or owned by someone other than root or this
  /// user) or cannot be read: then nothing is loaded.
  Result<std::vector<Outcome>> load_dir(const std::string& dir,
                                        const std::vector<std::string>& reserved);

  /// Names of the loaded policies, in load order.
  std::vector<std::string> names() const;
  bool has(const std::string& name) const;
  /// A new instance of plugin policy `name`; kInvalidArgument with the plugin's message
  /// for bad params, kNotFound for an unknown name.
  Result<std::unique_ptr<Policy>> create(const std::string& name,
                                         const nlohmann::json& params) const;

 private:
  struct Loaded;
  std::vector<std::unique_ptr<Loaded>> loaded_;
};

/// Why `path` may not be loaded as code by this process ("" if it may): not a regular
/// file / directory as expected, owned by someone other than root or the effective user,
/// or writable by group or others.
std::string unsafe_file_reason(const std::string& path, bool directory);

}  // namespace recsched::policies
