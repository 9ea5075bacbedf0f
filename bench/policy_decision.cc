// policy_decision: how long one placement decision takes, per built-in policy (the issue's
// target: under 1 us median, 5 us p99). Each decision is timed on its own with
// steady_clock (its own cost, ~20 ns here, is included) on a realistic view: a 16-worker
// CPU and a GPU, profiles of the whole zoo at 11 batch sizes each (the recorded H200 host
// profile when given, else a synthetic one of the same shape), query sizes drawn from
// DeepRecInfra's lognormal, devices with some backlog.
//
//   policy_decision [--profiles docs/bench-2026-11-26-h200/profile.json] [--n 200000]
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "policies/dispatcher.h"
#include "policies/registry.h"
#include "sim/simulator.h"

using namespace recsched;

int main(int argc, char** argv) {
  std::string profiles_path;
  size_t n = 200000;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i];
    if (a == "--profiles") profiles_path = argv[i + 1];
    if (a == "--n") n = std::stoul(argv[i + 1]);
  }
  const std::vector<std::string> models = {"rmc1", "rmc2",  "rmc3", "ncf",
                                           "wnd",  "mtwnd", "din",  "dien"};
  ProfileTable table;
  if (!profiles_path.empty()) {
    auto t = sim::load_profiles(profiles_path, nullptr);
    if (!t) {
      std::fprintf(stderr, "policy_decision: %s\n", t.status().message().c_str());
      return 1;
    }
    table = *t;
  } else {
    for (size_t m = 0; m < models.size(); ++m) {
      for (uint32_t b = 1; b <= 1024; b *= 2) {
        for (const char* dev : {"cpu0", "gpu0"}) {
          ProfilePoint p;
          p.batch_size = b;
          p.p50_single_us = (dev[0] == 'c' ? 20 + 2.0 * b : 150 + 0.3 * b) * (1 + m * 0.3);
          p.p50_us = p.p50_single_us / 4;
          p.power_w = dev[0] == 'c' ? 60 : 150;
          p.best_workers = dev[0] == 'c' ? 8 : 1;
          table.add(models[m], dev, p);
        }
      }
    }
  }
  std::vector<policies::DeviceView> devices = {
      {"cpu0", policies::DeviceKind::kCpu, 16, 6, 9, 12.0, 24.0},
      {"gpu0", policies::DeviceKind::kGpu, 2, 1, 2, 1.5, 70.0}};
  std::vector<policies::ModelView> views;
  for (const std::string& m : models) views.push_back({m, 50.0, 10.0});
  std::mt19937_64 rng(1);
  std::lognormal_distribution<double> size(5.1, 0.2);
  std::vector<uint32_t> sizes(4096);
  for (auto& s : sizes) s = std::clamp<uint32_t>(uint32_t(std::lround(size(rng))), 1, 1024);

  std::printf("%-16s %10s %10s %10s  (%zu decisions each, one timed at a time)\n", "policy",
              "median_ns", "p99_ns", "max_ns", n);
  for (const std::string& name : policies::policy_names()) {
    auto policy = std::move(policies::create_policy(name, nlohmann::json::object()).value());
    std::vector<double> ns(n);
    size_t checksum = 0;
    for (size_t i = 0; i < n; ++i) {
      const policies::QueryInfo q{i + 1, &views[i % views.size()], sizes[i % sizes.size()], 50.0};
      const policies::ClusterView view{devices, table, Clock::now()};
      const auto t0 = Clock::now();
      auto p = policy->place(q, view);
      const auto t1 = Clock::now();
      ns[i] = std::chrono::duration<double, std::nano>(t1 - t0).count();
      checksum += p ? p->sub_batch : 0;
      if (p) policy->observe({q.id, q.model->name, q.items, *p, 5.0 + i % 7, true});
    }
    std::sort(ns.begin(), ns.end());
    std::printf("%-16s %10.0f %10.0f %10.0f  (checksum %zu)\n", name.c_str(), ns[n / 2],
                ns[size_t(n * 0.99)], ns.back(), checksum);
  }
  return 0;
}
