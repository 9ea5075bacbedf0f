// The CUDA device runner: any zoo model with its tables and weights in GPU memory,
// embedding bags and element-wise steps as CUDA kernels, dense layers on cuBLAS.
// This header needs no CUDA headers; it is compiled only with RECSCHED_WITH_CUDA.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/status.h"
#include "engine/model.h"

namespace recsched::engine::cuda {

struct CudaDeviceInfo {
  int index = 0;
  std::string name;
  std::string pci_bus_id;  ///< "0000:17:00.0", as hwloc and nvidia-smi write it
  uint64_t memory_bytes = 0;
  int multiprocessors = 0;
  int compute_major = 0;
  int compute_minor = 0;
};

/// The GPUs the CUDA runtime sees. Empty, with `why` saying so, where there is no
/// driver or no device (as on the build machines).
std::vector<CudaDeviceInfo> list_devices(std::string* why);

/// The streams recschedd and recsched-profile load each model with on a GPU: the profile
/// measures how many of them pay at once (profiler::profile_whole with streams), and
/// recschedd's runner runs that many.
inline constexpr int kServingStreams = 4;

struct CudaOptions {
  int device = 0;
  /// Independent streams (each with its own pinned buffers and scratch): concurrent
  /// forward() calls overlap one query's transfers with another's kernels.
  int streams = 2;
  /// Every embedding table of a model pooled in one kernel launch (false: a launch per
  /// table, the path verified on an H200 on 2026-11-26). The one-launch path is written and
  /// built but, as of 2026-12-06, not yet run on a GPU (issue 18).
  bool table_batched = true;
  /// Passes of up to this many rows replay a CUDA graph: the pass's kernels and cuBLAS
  /// calls captured once per stream and row bucket (1, 2, 3, 4, 6, 8, 12, ...: powers of
  /// two and 1.5x them), the query padded with empty rows to its bucket, so one launch
  /// replaces dozens. Larger passes, where the launches are a small part of the time and
  /// padding would cost more than they save, run kernel by kernel. 0 = no graphs.
  /// Written and built but, as of 2026-12-06, not yet run on a GPU (issue 18).
  int graph_max_items = 256;
};

/// Builds `spec` on the host (seeded or from options.weights_path, exactly as
/// load_model does), copies every tensor to GPU memory and frees the host copy.
/// kUnavailable if there is no GPU or the model does not fit in its memory (the message
/// gives both sizes); other errors as load_model.
/// The model's forward() is thread-safe: each call takes a free stream (waiting if all
/// are busy), copies the query in through pinned memory, runs, and copies scores out.
Result<std::unique_ptr<Model>> load_cuda_model(const ModelSpec& spec, const LoadOptions& options,
                                               const CudaOptions& cuda);

}  // namespace recsched::engine::cuda
