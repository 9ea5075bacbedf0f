// External policies: the example plugin loads and keeps the contract; unsafe files, a
// wrong API version, a missing entry point and a name clash are each refused, by name.
#include "policies/plugin.h"

#include <doctest/doctest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>

#include "policies/registry.h"
#include "tests/policies/contract.h"

namespace recsched::policies {
namespace {

namespace fs = std::filesystem;
using Files = std::vector<std::pair<std::string, std::string>>;

// A fresh plugin directory (mode 0755) holding copies of `files` as name -> source path.
struct PluginDir {
  fs::path dir;
  explicit PluginDir(const Files& files) {
    dir = fs::temp_directory_path() /
          ("recsched_plugins_" + std::to_string(getpid()) + "_" + std::to_string(counter()++));
    fs::remove_all(dir);
    fs::create_directories(dir);
    chmod(dir.c_str(), 0755);
    for (const auto& [name, src] : files) {
      fs::copy_file(src, dir / name, fs::copy_options::overwrite_existing);
      chmod((dir / name).c_str(), 0644);
    }
  }
  ~PluginDir() { fs::remove_all(dir); }
  static int& counter() {
    static int n = 0;
    return n;
  }
};

const Plugins::Outcome& outcome(const std::vector<Plugins::Outcome>& all, const std::string& file) {
  for (const auto& o : all) {
    if (fs::path(o.path).filename() == file) return o;
  }
  FAIL("no outcome for " << file);
  static Plugins::Outcome none;
  return none;
}

TEST_CASE("the example plugin loads and its policy places queries") {
  PluginDir d(Files{{"rr.so", RECSCHED_PLUGIN_ROUND_ROBIN}});
  Plugins plugins;
  auto out = plugins.load_dir(d.dir.string(), policy_names());
  REQUIRE_MESSAGE(out.has_value(), out.status().to_string());
  REQUIRE(out->size() == 1);
  CHECK((*out)[0].error == "");
  CHECK((*out)[0].name == "round-robin");
  CHECK(plugins.names() == std::vector<std::string>{"round-robin"});
  CHECK(plugins.create("round-robin", {{"start", "x"}}).status().code() ==
        StatusCode::kInvalidArgument);
  CHECK(plugins.create("nope", nlohmann::json::object()).status().code() == StatusCode::kNotFound);
  auto p = plugins.create("round-robin", nlohmann::json::object());
  REQUIRE_MESSAGE(p.has_value(), p.status().to_string());
  CHECK((*p)->name() == "round-robin");
  ProfileTable t;
  ProfilePoint pt;
  pt.batch_size = 1;
  pt.p50_single_us = pt.p50_us = 100;
  for (const char* dev : {"cpu0", "cpu1"}) t.add("m", dev, pt);
  const std::vector<DeviceView> devices = {{"cpu0", DeviceKind::kCpu, 2, 0, 0, 0, 3},
                                           {"cpu1", DeviceKind::kCpu, 2, 0, 0, 0, 3},
                                           {"gpu0", DeviceKind::kGpu, 1, 0, 0, 0, 70}};
  const ModelView model{"m", 10, 0};
  std::vector<std::string> got;
  for (uint64_t i = 0; i < 4; ++i) {
    auto placed = (*p)->place({i, &model, 8, 10}, {devices, t, Clock::now()});
    REQUIRE(placed.has_value());
    got.push_back(placed->device);
  }
  // In turn, skipping the device with no profile for the model.
  CHECK(got == std::vector<std::string>{"cpu0", "cpu1", "cpu0", "cpu1"});
}

TEST_CASE("the example plugin keeps the contract every built-in keeps") {
  PluginDir d(Files{{"rr.so", RECSCHED_PLUGIN_ROUND_ROBIN}});
  Plugins plugins;
  REQUIRE(plugins.load_dir(d.dir.string(), policy_names()).has_value());
  auto p = plugins.create("round-robin", nlohmann::json::object());
  REQUIRE(p.has_value());
  check_contract(**p, "round-robin");
}

TEST_CASE("unsafe, foreign-version, entry-less and clashing plugins are refused by name") {
  PluginDir d(Files{{"a_rr.so", RECSCHED_PLUGIN_ROUND_ROBIN},
                    {"b_rr_again.so", RECSCHED_PLUGIN_ROUND_ROBIN},
                    {"c_version.so", RECSCHED_PLUGIN_BAD_VERSION},
                    {"d_no_entry.so", RECSCHED_PLUGIN_NO_ENTRY},
                    {"e_writable.so", RECSCHED_PLUGIN_ROUND_ROBIN},
                    {"f_not_elf.so", RECSCHED_PLUGIN_SOURCE}});
  chmod((d.dir / "e_writable.so").c_str(), 0666);
  fs::create_symlink(d.dir / "a_rr.so", d.dir / "g_link.so");
  Plugins plugins;
  auto out = plugins.load_dir(d.dir.string(), policy_names());
  REQUIRE(out.has_value());
  CHECK(outcome(*out, "a_rr.so").name == "round-robin");
  CHECK(outcome(*out, "b_rr_again.so").error.find("already taken") != std::string::npos);
  CHECK(outcome(*out, "c_version.so").error.find("API version 42") != std::string::npos);
  CHECK(outcome(*out, "d_no_entry.so").error.find("no entry point 'recsched_policy_plugin'") !=
        std::string::npos);
  CHECK(outcome(*out, "e_writable.so").error.find("writable by others") != std::string::npos);
  CHECK(outcome(*out, "f_not_elf.so").error.find("cannot load") != std::string::npos);
  CHECK(outcome(*out, "g_link.so").error.find("not a regular file") != std::string::npos);
  CHECK(plugins.names() == std::vector<std::string>{"round-robin"});

  // A plugin may not take a built-in's name.
  Plugins again;
  auto clash = again.load_dir(d.dir.string(), {"round-robin"});
  REQUIRE(clash.has_value());
  CHECK(outcome(*clash, "a_rr.so").error.find("already taken") != std::string::npos);
  CHECK(again.names().empty());
}

TEST_CASE("a plugin directory writable by others is refused whole") {
  PluginDir d(Files{{"rr.so", RECSCHED_PLUGIN_ROUND_ROBIN}});
  chmod(d.dir.c_str(), 0777);
  Plugins plugins;
  auto out = plugins.load_dir(d.dir.string(), {});
  CHECK(out.status().code() == StatusCode::kInvalidArgument);
  CHECK(out.status().message().find("writable by others") != std::string::npos);
  CHECK(plugins.names().empty());
  CHECK(plugins.load_dir((d.dir / "missing").string(), {}).status().message().find("cannot stat") !=
        std::string::npos);
}

}  // namespace
}  // namespace recsched::policies
