#include "policies/plugin.h"

#include <dlfcn.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <filesystem>

#include "policies/plugin_api.h"

namespace recsched::policies {
namespace {

// Forwards to the plugin's policy and frees it with the plugin's own destroy().
class PluginPolicy final : public Policy {
 public:
  PluginPolicy(const RecschedPolicyPlugin* plugin, Policy* inner)
      : plugin_(plugin), inner_(inner) {}
  ~PluginPolicy() override { plugin_->destroy(inner_); }
  std::string_view name() const override { return inner_->name(); }
  Result<Placement> place(const QueryInfo& q, const ClusterView& v) override {
    return inner_->place(q, v);
  }
  void observe(const Completion& done) override { inner_->observe(done); }
  nlohmann::json params() const override { return inner_->params(); }
  Status configure(const nlohmann::json& p) override { return inner_->configure(p); }

 private:
  const RecschedPolicyPlugin* plugin_;
  Policy* inner_;
};

}  // namespace

struct Plugins::Loaded {
  std::string path;
  void* handle = nullptr;
  const RecschedPolicyPlugin* plugin = nullptr;
};

Plugins::Plugins() = default;
Plugins::~Plugins() = default;

std::string unsafe_file_reason(const std::string& path, bool directory) {
  struct stat st {};
  if (lstat(path.c_str(), &st) != 0) return std::string("cannot stat: ") + std::strerror(errno);
  if (directory ? !S_ISDIR(st.st_mode) : !S_ISREG(st.st_mode)) {
    return directory ? "not a directory" : "not a regular file (links are not followed)";
  }
  if (st.st_uid != 0 && st.st_uid != geteuid()) {
    return "owned by uid " + std::to_string(st.st_uid) + ", neither root nor this user";
  }
  if (st.st_mode & (S_IWGRP | S_IWOTH)) {
    char mode[8];
    std::snprintf(mode, sizeof mode, "%04o", unsigned(st.st_mode & 07777));
    return std::string("writable by ") + ((st.st_mode & S_IWOTH) ? "others" : "its group") +
           " (mode " + mode + ")";
  }
  return "";
}

Result<std::vector<Plugins::Outcome>> Plugins::load_dir(const std::string& dir,
                                                        const std::vector<std::string>& reserved) {
  if (const std::string why = unsafe_file_reason(dir, true); !why.empty()) {
    return invalid_argument("policy plugin directory " + dir + " refused: " + why);
  }
  std::error_code ec;
  std::vector<std::string> files;
  for (const auto& e : std::filesystem::directory_iterator(dir, ec)) {
    if (e.path().extension() == ".so") files.push_back(e.path().string());
  }
  if (ec) return invalid_argument("policy plugin directory " + dir + ": " + ec.message());
  std::sort(files.begin(), files.end());
  std::vector<Outcome> out;
  for (const std::string& path : files) {
    Outcome o{path, "", ""};
    if (const std::string why = unsafe_file_reason(path, false); !why.empty()) {
      o.error = why;
      out.push_back(o);
      continue;
    }
    void* handle = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (handle == nullptr) {
      const char* e = dlerror();
      o.error = std::string("cannot load: ") + (e ? e : "unknown dlopen error");
      out.push_back(o);
      continue;
    }
    // Refused plugins are unloaded again; loaded ones stay for the process's life.
    auto refuse = [&](std::string why) {
      o.error = std::move(why);
      dlclose(handle);
      out.push_back(o);
    };
    auto entry = reinterpret_cast<RecschedPolicyEntry>(dlsym(handle, RECSCHED_POLICY_ENTRY_POINT));
    if (entry == nullptr) {
      refuse(std::string("no entry point '") + RECSCHED_POLICY_ENTRY_POINT +
             "' (see policies/plugin_api.h)");
      continue;
    }
    const RecschedPolicyPlugin* plugin = entry();
    if (plugin == nullptr) {
      refuse("its entry point returned no descriptor");
      continue;
    }
    if (plugin->api_version != RECSCHED_POLICY_API_VERSION) {
      refuse("built for policy API version " + std::to_string(plugin->api_version) +
             ", this recschedd speaks version " + std::to_string(RECSCHED_POLICY_API_VERSION) +
             ": rebuild it against this release's policies/plugin_api.h");
      continue;
    }
    if (plugin->name == nullptr || plugin->name[0] == '\0' || plugin->create == nullptr ||
        plugin->destroy == nullptr) {
      refuse("its descriptor lacks a name, create or destroy");
      continue;
    }
    const std::string name = plugin->name;
    if (std::find(reserved.begin(), reserved.end(), name) != reserved.end() || has(name)) {
      refuse("policy name '" + name + "' is already taken");
      continue;
    }
    auto loaded = std::make_unique<Loaded>();
    loaded->path = path;
    loaded->handle = handle;
    loaded->plugin = plugin;
    loaded_.push_back(std::move(loaded));
    o.name = name;
    out.push_back(o);
  }
  return out;
}

std::vector<std::string> Plugins::names() const {
  std::vector<std::string> out;
  for (const auto& l : loaded_) out.push_back(l->plugin->name);
  return out;
}

bool Plugins::has(const std::string& name) const {
  return std::any_of(loaded_.begin(), loaded_.end(),
                     [&](const auto& l) { return name == l->plugin->name; });
}

Result<std::unique_ptr<Policy>> Plugins::create(const std::string& name,
                                                const nlohmann::json& params) const {
  for (const auto& l : loaded_) {
    if (name != l->plugin->name) continue;
    char error[256] = {0};
    Policy* p = l->plugin->create(params.dump().c_str(), error, sizeof error);
    if (p == nullptr) {
      error[sizeof error - 1] = '\0';
      return invalid_argument(name + ": " + (error[0] ? error : "the plugin refused its params"));
    }
    return std::unique_ptr<Policy>(new PluginPolicy(l->plugin, p));
  }
  return not_found("no policy plugin named '" + name + "'");
}

}  // namespace recsched::policies
