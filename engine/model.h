// A runnable model: weights in memory plus a forward pass over a batch of items.
// Built from a ModelSpec and a weight source by load_model(). Depends on core and
// the rest of engine/.
#pragma once

#include <memory>
#include <span>
#include <string>
#include <vector>

#include "core/batch.h"
#include "core/status.h"
#include "engine/host_buffer.h"
#include "engine/isa.h"
#include "engine/model_spec.h"
#include "engine/safetensors.h"

namespace recsched::engine {

/// Cooperative preemption: what a forward pass offers its worker between two steps of
/// its work (an embedding table, a Linear layer or a block of its rows, a recurrent
/// step). The worker may run other, more urgent work there, on another Workspace, and
/// return; the interrupted pass then goes on with its state (its stack and its own
/// Workspace) untouched, so it scores exactly as if it had not stopped.
class YieldPoint {
 public:
  virtual ~YieldPoint() = default;
  virtual void at_yield_point() = 0;
  /// Whether points are wanted now: when false, passes skip the cuts that only make
  /// points (Workspace::yields).
  virtual bool active() const { return true; }
};

/// Per-thread scratch memory for forward passes. Grows (allocates) only when a batch
/// is larger than any before it; in steady state a forward pass allocates nothing.
/// Not thread-safe: one per worker thread (and one per level of preemption on it).
class Workspace {
 public:
  /// `count` floats of scratch in slot `slot`; contents are unspecified.
  Result<float*> floats(size_t slot, size_t count);

  /// Where the forward passes run with this workspace offer to yield; nullptr (the
  /// default): they never do. The hook outlives every pass run with it.
  void set_yield(YieldPoint* hook) { yield_ = hook; }
  /// Called by the models between steps: a branch when no hook is set.
  void yield_point() {
    if (yield_ != nullptr) yield_->at_yield_point();
  }
  /// Whether passes run with it want yield points now (a hook that is active): they then
  /// also cut their longest steps (large GEMMs, large tables' pooling) into blocks with a
  /// point between (engine/layers.h, YieldBlocks), which costs a little speed.
  bool yields() const { return yield_ != nullptr && yield_->active(); }

 private:
  std::vector<HostBuffer> slots_;
  YieldPoint* yield_ = nullptr;
};

struct LoadOptions {
  /// A .safetensors file with facebookresearch/dlrm's state_dict names; empty means
  /// deterministic weights from the spec's seed.
  std::string weights_path;
  /// Kernels to use; defaults to the widest this CPU supports.
  Isa isa = detect_isa();
};

/// Immutable once loaded. forward() is thread-safe given one Workspace per thread.
class Model {
 public:
  virtual ~Model() = default;
  virtual const ModelSpec& spec() const = 0;
  virtual Isa isa() const = 0;
  /// Where and with what the model runs, for logs and reports: "cpu avx512",
  /// "cuda NVIDIA H200 (sm_90)".
  virtual std::string kernels() const { return "cpu " + std::string(to_string(isa())); }

  /// Scores the items of `batch` into `scores` [batch.batch_size, spec().num_outputs()],
  /// row-major. `batch` must have passed validate_batch() for this spec; the kernels
  /// check ids again and return kInvalidArgument rather than read out of bounds.
  /// kInvalidArgument if `scores` has the wrong size; kInternal if the BLAS fails.
  virtual Status forward(const BatchView& batch, Workspace& ws, std::span<float> scores) const = 0;

  /// Every weight tensor, named as facebookresearch/dlrm's state_dict names them.
  virtual std::vector<TensorToWrite> tensors() const = 0;
};

/// forward() as a device's worker runs it: the fail point "forward.<device>" first
/// (core/failpoint.h), and an exception becomes kInternal naming the device, so a model
/// that throws fails its query instead of ending the process. `fail_points` false: no
/// fail point (a pass that serves no query, such as a runner's warm-up, must not use up a
/// rehearsed failure meant for one).
Status guarded_forward(const Model& model, const BatchView& batch, Workspace& ws,
                       std::span<float> scores, const std::string& device,
                       bool fail_points = true);

/// Builds a model. Errors: kInvalidArgument naming the tensor for a missing, extra,
/// mis-shaped or non-F32 tensor in the weights file; kNotFound if the file cannot be
/// opened; kUnavailable if memory for the tables cannot be had.
Result<std::unique_ptr<Model>> load_model(const ModelSpec& spec, const LoadOptions& options);

}  // namespace recsched::engine
