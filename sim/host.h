// A simulated host from recorded profiles: the profile table and the devices the simulator
// runs, as recsched-sim and recsched-plan both build them. The CPU devices take their
// worker count from the file's "devices" (recsched-profile's output) unless told, so a
// bigger host can be modelled from one machine's per-core profile; GPUs come from the same
// file or from a second one (a recorded profile of an accelerator this host lacks).
// `speed` scales every latency (1.5 = a host 1.5x slower than the one profiled), for host
// types we have no profile of. Depends on sim.
#pragma once

#include <string>
#include <vector>

#include "core/profile.h"
#include "core/status.h"
#include "sim/simulator.h"

namespace recsched::sim {

struct HostOptions {
  std::string profiles;      ///< recsched-profile --json output or a daemon profile cache
  std::string gpu_profiles;  ///< optional: take the gpu* entries of this file too
  bool gpu = true;           ///< false: leave the GPUs out
  int cpu_workers = 0;       ///< workers per CPU device; 0 = its cores in the file, else 1
  int gpu_streams = 0;       ///< passes at once per GPU; 0 = streams_paying of its profile, else 1
  double speed = 1;          ///< latency multiplier applied to every profile point
  double cpu_idle_w = 1.5;   ///< idle watts per CPU core
  double cpu_parked_w = 0.2; ///< watts per parked core
  double gpu_idle_w = 70;    ///< idle watts per GPU
};

struct Host {
  ProfileTable profiles;
  std::vector<Device> devices;
  std::string cpu;   ///< the first CPU device (relative targets are taken on it)
  std::string note;  ///< what load_profiles said of the files (older formats), or empty
};

/// kInvalidArgument / kNotFound from the files, or when no CPU device remains.
Result<Host> load_host(const HostOptions& options);

}  // namespace recsched::sim
