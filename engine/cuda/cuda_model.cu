// CUDA runner for every zoo model type. The model is first built on the host by the CPU
// engine (so seeded weights and safetensors loading are the same code), then each
// tensor is copied to GPU memory by name. A forward pass packs the query into pinned
// memory, copies it in with one transfer, runs the same steps as the CPU models (see
// engine/dlrm.h and engine/zoo.h for the math) as kernels and cuBLAS calls on one
// stream, and copies the scores out. Passes of up to CudaOptions::graph_max_items rows
// replay a CUDA graph of those steps (one launch instead of one per kernel), captured
// once per stream and row bucket; a query is padded with empty rows to its bucket.
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <condition_variable>
#include <cstring>
#include <functional>
#include <map>
#include <mutex>

#include "engine/cuda/cuda_model.h"
#include "engine/dense.h"

namespace recsched::engine::cuda {
namespace {

#define RECSCHED_CUDA_OK(expr, what)                                                       \
  do {                                                                                     \
    const cudaError_t recsched_err_ = (expr);                                              \
    if (recsched_err_ != cudaSuccess) {                                                    \
      return internal_error(std::string(what) + ": " + cudaGetErrorString(recsched_err_)); \
    }                                                                                      \
  } while (0)

#define RECSCHED_CUBLAS_OK(expr, what)                               \
  do {                                                               \
    const cublasStatus_t recsched_st_ = (expr);                      \
    if (recsched_st_ != CUBLAS_STATUS_SUCCESS) {                     \
      return internal_error(std::string(what) + ": cuBLAS status " + \
                            std::to_string(int(recsched_st_)));      \
    }                                                                \
  } while (0)

constexpr int kThreads = 256;
inline unsigned blocks_for(int64_t items) {
  return static_cast<unsigned>(std::max<int64_t>(1, (items + kThreads - 1) / kThreads));
}

// ---------------------------------------------------------------------------------------
// Kernels. Each thread computes one output element unless said otherwise.

// Sum-pooled embedding bag, the contract of engine/embedding_bag.h: one warp per bag,
// lanes over the row's floats, lookups summed in order. An out-of-range id sets *error
// and is skipped (the caller then fails the query).
__global__ void embedding_bag_kernel(const float* __restrict__ table, int64_t rows, int dim,
                                     const int64_t* __restrict__ indices,
                                     const int64_t* __restrict__ offsets, int num_bags,
                                     float* __restrict__ out, int64_t stride, int* error) {
  const int bag = blockIdx.x * blockDim.y + threadIdx.y;
  if (bag >= num_bags) return;
  const int64_t s = offsets[bag], e = offsets[bag + 1];
  for (int d = threadIdx.x; d < dim; d += 32) {
    float acc = 0.0f;
    for (int64_t j = s; j < e; ++j) {
      const int64_t idx = indices[j];
      if (static_cast<uint64_t>(idx) >= static_cast<uint64_t>(rows)) {
        *error = 1;
        continue;
      }
      acc += table[idx * dim + d];
    }
    out[bag * stride + d] = acc;
  }
}

// One table's bags in a table-batched launch (issue 18: every table of a model in one
// kernel launch, as FBGEMM's table-batched embedding): where its bags' pooled rows go.
struct TablePool {
  const float* table = nullptr;
  int64_t rows = 0;
  int src = 0;         // its table index: its bags' offsets are offsets[src * n ..]
  int buffer = 0;      // the output buffer: 0 or 1 (DIEN's behaviour sequence)
  int64_t col = 0;     // first column of its rows in that buffer
  int64_t stride = 0;  // floats per item in that buffer
};

// Every table's bags in one launch: blockIdx.y is the entry of `plan`, and within it the
// same work as embedding_bag_kernel (one warp per bag, lookups summed in order), so the
// sums are bit for bit those of a launch per table.
__global__ void embedding_bags_kernel(const TablePool* __restrict__ plan, int dim,
                                      const int64_t* __restrict__ indices,
                                      const int64_t* __restrict__ offsets, int n,
                                      float* __restrict__ out0, float* __restrict__ out1,
                                      int* error) {
  const int bag = blockIdx.x * blockDim.y + threadIdx.y;
  if (bag >= n) return;
  const TablePool p = plan[blockIdx.y];
  const int64_t* off = offsets + int64_t(p.src) * n;
  const int64_t s = off[bag], e = off[bag + 1];
  float* out = (p.buffer == 0 ? out0 : out1) + int64_t(bag) * p.stride + p.col;
  for (int d = threadIdx.x; d < dim; d += 32) {
    float acc = 0.0f;
    for (int64_t j = s; j < e; ++j) {
      const int64_t idx = indices[j];
      if (static_cast<uint64_t>(idx) >= static_cast<uint64_t>(p.rows)) {
        *error = 1;
        continue;
      }
      acc += p.table[idx * dim + d];
    }
    out[d] = acc;
  }
}

// y = act(y + bias) for kNone, kRelu, kSigmoid.
__global__ void bias_act_kernel(float* y, int64_t ld, int n, int cols, const float* bias, int act) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= int64_t(n) * cols) return;
  const int64_t r = i / cols, c = i % cols;
  float v = y[r * ld + c] + bias[c];
  if (act == int(Activation::kRelu)) v = fmaxf(v, 0.0f);
  if (act == int(Activation::kSigmoid)) v = 1.0f / (1.0f + expf(-v));
  y[r * ld + c] = v;
}

// Row-wise softmax of (y + bias): one thread per row (rows are a handful of outputs).
__global__ void bias_softmax_kernel(float* y, int64_t ld, int n, int cols, const float* bias) {
  const int r = blockIdx.x * blockDim.x + threadIdx.x;
  if (r >= n) return;
  float* row = y + int64_t(r) * ld;
  float top = -INFINITY;
  for (int c = 0; c < cols; ++c) top = fmaxf(top, row[c] += bias[c]);
  float sum = 0.0f;
  for (int c = 0; c < cols; ++c) sum += (row[c] = expf(row[c] - top));
  for (int c = 0; c < cols; ++c) row[c] /= sum;
}

// Strided copy of `width` columns of n rows.
__global__ void copy_rows_kernel(const float* src, int64_t lds, float* dst, int64_t ldd, int n,
                                 int width) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= int64_t(n) * width) return;
  const int64_t r = i / width, c = i % width;
  dst[r * ldd + c] = src[r * lds + c];
}

// DLRM "dot": out = [x, <z_i, z_j> for the pairs], z_0 = x (engine/dense.h).
__global__ void dot_interaction_kernel(const float* feats, int64_t ldf, int n, int dim,
                                       const int2* pairs, int num_pairs, float* out, int64_t ldo) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  const int width = dim + num_pairs;
  if (i >= int64_t(n) * width) return;
  const int64_t r = i / width, c = i % width;
  const float* z = feats + r * ldf;
  if (c < dim) {
    out[r * ldo + c] = z[c];
    return;
  }
  const int2 p = pairs[c - dim];
  float acc = 0.0f;
  for (int d = 0; d < dim; ++d) acc += z[p.x * dim + d] * z[p.y * dim + d];
  out[r * ldo + c] = acc;
}

// NCF's GMF branch: g = e0 * e1.
__global__ void product_kernel(const float* feats, int64_t ldf, int n, int dim, float* g,
                               int64_t ldg) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= int64_t(n) * dim) return;
  const int64_t r = i / dim, d = i % dim;
  g[r * ldg + d] = feats[r * ldf + d] * feats[r * ldf + dim + d];
}

// DIN: attention inputs [b_i, a, b_i * a] for every (item, behaviour).
__global__ void din_att_input_kernel(const float* feats, int64_t ldf, int n, int nb, int dim,
                                     float* att_in) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= int64_t(n) * nb * dim) return;
  const int64_t d = i % dim, rb = i / dim, b = rb % nb, r = rb / nb;
  const float x = feats[r * ldf + (b + 1) * dim + d];
  const float a = feats[r * ldf + int64_t(nb + 1) * dim + d];
  float* o = att_in + rb * 3 * dim;
  o[d] = x;
  o[dim + d] = a;
  o[2 * dim + d] = x * a;
}

// DIN: top input [u, sum_i w_i b_i, a, c].
__global__ void din_top_kernel(const float* feats, int64_t ldf, const float* w, int n, int nb,
                               int dim, float* top) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= int64_t(n) * dim) return;
  const int64_t r = i / dim, d = i % dim;
  const float* f = feats + r * ldf;
  float acc = 0.0f;
  for (int b = 0; b < nb; ++b) acc += w[r * nb + b] * f[(b + 1) * dim + d];
  float* t = top + r * 4 * dim;
  t[d] = f[d];
  t[dim + d] = acc;
  t[2 * dim + d] = f[int64_t(nb + 1) * dim + d];
  t[3 * dim + d] = f[int64_t(nb + 2) * dim + d];
}

// DIEN: mask[r, t] = 1 if step t's bag (table t + 1) of item r is non-empty.
__global__ void dien_mask_kernel(const int64_t* offsets, int n, int steps, float* mask) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= int64_t(n) * steps) return;
  const int64_t r = i / steps, t = i % steps;
  const int64_t* off = offsets + (t + 1) * n;
  mask[i] = off[r + 1] > off[r] ? 1.0f : 0.0f;
}

__device__ inline float sigmoidf(float x) { return 1.0f / (1.0f + expf(-x)); }

// One GRU step (alpha == nullptr) or AUGRU step for every (item, hidden unit); gates in
// PyTorch's order r, z, n. Masked steps keep the state. `record` (optional) keeps h_t.
__global__ void gru_step_kernel(const float* gi, const float* gh, const float* mask,
                                const float* alpha, int n, int steps, int t, int h, float* state,
                                float* record) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= int64_t(n) * h) return;
  const int64_t r = i / h, k = i % h;
  const int64_t rt = r * steps + t;
  float s = state[i];
  if (mask[rt] != 0.0f) {
    const float* a = gi + rt * 3 * h;
    const float* b = gh + r * 3 * h;
    const float reset = sigmoidf(a[k] + b[k]);
    const float z = sigmoidf(a[h + k] + b[h + k]);
    const float cand = tanhf(a[2 * h + k] + reset * b[2 * h + k]);
    s = alpha == nullptr ? (1.0f - z) * cand + z * s : s + alpha[rt] * (1.0f - z) * (cand - s);
    state[i] = s;
  }
  if (record != nullptr) record[rt * h + k] = s;
}

// DIEN attention: alpha = softmax over valid steps of h_t . (W_a a). One thread per item.
__global__ void dien_attention_kernel(const float* states, const float* ad_proj, const float* mask,
                                      int n, int steps, int h, float* alpha) {
  const int r = blockIdx.x * blockDim.x + threadIdx.x;
  if (r >= n) return;
  float* a = alpha + int64_t(r) * steps;
  float top = -INFINITY;
  for (int t = 0; t < steps; ++t) {
    if (mask[int64_t(r) * steps + t] == 0.0f) continue;
    const float* st = states + (int64_t(r) * steps + t) * h;
    float dot = 0.0f;
    for (int k = 0; k < h; ++k) dot += st[k] * ad_proj[int64_t(r) * h + k];
    a[t] = dot;
    top = fmaxf(top, dot);
  }
  float sum = 0.0f;
  for (int t = 0; t < steps; ++t) {
    a[t] = mask[int64_t(r) * steps + t] == 0.0f ? 0.0f : expf(a[t] - top);
    sum += a[t];
  }
  if (sum > 0.0f) {
    for (int t = 0; t < steps; ++t) a[t] /= sum;
  }
}

// DIEN top input [u, g, a, c] from feats [u, a, c] and the final AUGRU state g.
__global__ void dien_top_kernel(const float* feats, const float* g, int n, int dim, int h,
                                float* top) {
  const int width = 3 * dim + h;
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= int64_t(n) * width) return;
  const int64_t r = i / width, c = i % width;
  float v;
  if (c < dim) {
    v = feats[r * 3 * dim + c];
  } else if (c < dim + h) {
    v = g[r * h + (c - dim)];
  } else {
    v = feats[r * 3 * dim + dim + (c - dim - h)];
  }
  top[r * width + c] = v;
}

// ---------------------------------------------------------------------------------------
// Memory.

class DeviceMemory {
 public:
  DeviceMemory() = default;
  DeviceMemory(const DeviceMemory&) = delete;
  DeviceMemory& operator=(const DeviceMemory&) = delete;
  ~DeviceMemory() {
    if (ptr_ != nullptr) cudaFree(ptr_);
  }
  /// Makes room for `bytes`, reallocating (contents lost) only when growing, and then
  /// to at least twice the old size: a buffer that moves invalidates the CUDA graphs
  /// captured on it, so it should move rarely.
  Status reserve(size_t bytes, const char* what) {
    if (bytes <= bytes_) return Status::ok();
    bytes = std::max(bytes, 2 * bytes_);
    if (ptr_ != nullptr) cudaFree(ptr_);
    ptr_ = nullptr;
    bytes_ = 0;
    const cudaError_t e = cudaMalloc(&ptr_, bytes);
    if (e != cudaSuccess) {
      return unavailable(std::string("cannot allocate ") + std::to_string(bytes >> 20) +
                         " MiB of GPU memory for " + what + ": " + cudaGetErrorString(e));
    }
    bytes_ = bytes;
    return Status::ok();
  }
  template <class T>
  T* as() const {
    return static_cast<T*>(ptr_);
  }
  const void* address() const { return ptr_; }

 private:
  void* ptr_ = nullptr;
  size_t bytes_ = 0;
};

class PinnedMemory {
 public:
  PinnedMemory() = default;
  PinnedMemory(const PinnedMemory&) = delete;
  PinnedMemory& operator=(const PinnedMemory&) = delete;
  ~PinnedMemory() {
    if (ptr_ != nullptr) cudaFreeHost(ptr_);
  }
  Status reserve(size_t bytes) {
    if (bytes <= bytes_) return Status::ok();
    if (ptr_ != nullptr) cudaFreeHost(ptr_);
    ptr_ = nullptr;
    bytes_ = 0;
    RECSCHED_CUDA_OK(cudaMallocHost(&ptr_, bytes), "pinned host buffer");
    bytes_ = bytes;
    return Status::ok();
  }
  char* data() const { return static_cast<char*>(ptr_); }

 private:
  void* ptr_ = nullptr;
  size_t bytes_ = 0;
};

// One forward pass of a fixed row count, captured on one stream. Replaying it reads the
// query from the buffers it was captured on; `layout` records their addresses, and a
// graph whose buffers have since moved is captured again.
struct CapturedPass {
  cudaGraphExec_t exec = nullptr;
  std::vector<const void*> layout;
  CapturedPass() = default;
  CapturedPass(const CapturedPass&) = delete;
  CapturedPass& operator=(const CapturedPass&) = delete;
  ~CapturedPass() {
    if (exec != nullptr) cudaGraphExecDestroy(exec);
  }
};

// One stream's state: everything a forward pass touches, so streams never share.
struct StreamContext {
  cudaStream_t stream = nullptr;
  cublasHandle_t blas = nullptr;
  PinnedMemory host_in;   // packed query
  PinnedMemory host_out;  // scores + error flag
  DeviceMemory dev_in;
  DeviceMemory dev_out;
  DeviceMemory blas_workspace;  // set on the handle, so cuBLAS allocates nothing in a capture
  std::vector<std::unique_ptr<DeviceMemory>> scratch;
  std::map<int, std::unique_ptr<CapturedPass>> graphs;  // by padded row count

  // The addresses a captured pass depends on.
  std::vector<const void*> layout() const {
    std::vector<const void*> out = {dev_in.address(), dev_out.address()};
    for (const auto& m : scratch) out.push_back(m->address());
    return out;
  }
  // The pass of `rows` rows captured on the buffers as they are now; null if none is.
  const CapturedPass* captured(int rows) const {
    auto it = graphs.find(rows);
    return it != graphs.end() && it->second->layout == layout() ? it->second.get() : nullptr;
  }

  Result<float*> floats(size_t slot, size_t count) {
    while (scratch.size() <= slot) scratch.push_back(std::make_unique<DeviceMemory>());
    RECSCHED_RETURN_IF_ERROR(
        scratch[slot]->reserve(std::max<size_t>(count, 1) * sizeof(float), "forward-pass scratch"));
    return scratch[slot]->as<float>();
  }
  ~StreamContext() {
    graphs.clear();
    if (blas != nullptr) cublasDestroy(blas);
    if (stream != nullptr) cudaStreamDestroy(stream);
  }
};

struct GpuLinear {
  const float* weight = nullptr;  // [out, in]
  const float* bias = nullptr;    // [out]
  int in = 0;
  int out = 0;
  Activation act = Activation::kRelu;
};

size_t align_up(size_t x) { return (x + 255) / 256 * 256; }

// cuBLAS's workspace per stream when graphs are on (its SGEMMs need far less).
constexpr size_t kBlasWorkspaceBytes = size_t{4} << 20;

// The row count a pass of n rows is padded to for a captured graph: the next size of
// the form 2^k or 3 * 2^(k-1) (1, 2, 3, 4, 6, 8, 12, 16, 24, ...), so that 20 graphs
// cover 1-1024 rows and padding adds less than half the rows.
int graph_rows(int n) {
  int p = 1;
  while (p < n) {
    if (p >= 2 && p + p / 2 >= n) return p + p / 2;
    p *= 2;
  }
  return p;
}

// ---------------------------------------------------------------------------------------

class CudaModel final : public Model {
 public:
  CudaModel(const ModelSpec& spec, int device) : spec_(spec), device_(device) {}
  ~CudaModel() override {
    cudaSetDevice(device_);
    contexts_.clear();
    for (void* p : weights_) cudaFree(p);
  }

  const ModelSpec& spec() const override { return spec_; }
  Isa isa() const override { return Isa::kGeneric; }
  std::string kernels() const override {
    std::lock_guard<std::mutex> lock(mu_);
    if (graph_max_items_ == 0) return "cuda " + device_name_;
    if (!graph_failure_.empty()) return "cuda " + device_name_ + ", graphs off: " + graph_failure_;
    return "cuda " + device_name_ + ", graphs up to " + std::to_string(graph_max_items_) + " rows";
  }
  std::vector<TensorToWrite> tensors() const override { return {}; }  // weights live on the GPU

  Status upload(const Model& host, const CudaOptions& options);
  Status forward(const BatchView& batch, Workspace& ws, std::span<float> scores) const override;

 private:
  // Captures `pass` (run() at `rows` rows) into ctx.graphs. Call only after running it
  // directly on ctx, so that every buffer the pass needs is already allocated.
  Status capture(StreamContext& ctx, int rows, const std::function<Status()>& pass) const;
  bool graphs_enabled() const;
  Status run(StreamContext& ctx, int n, const float* dense, const int64_t* offsets,
             const int64_t* indices, float* scores, int* error) const;
  Status linear(StreamContext& ctx, const GpuLinear& l, const float* x, int64_t ldx, int n,
                float* y, int64_t ldy) const;
  Status mlp(StreamContext& ctx, const std::vector<GpuLinear>& layers, const float* x, int64_t ldx,
             int n, float* y, int64_t ldy, size_t scratch) const;
  Status pool(StreamContext& ctx, int t, int first_table_col, int n, const int64_t* offsets,
              const int64_t* indices, float* out, int64_t stride, int* error) const;
  // Every table's bags into its place in out0 / out1 (plan_): one launch, or with
  // table_batched_ off a launch per table.
  Status pool_tables(StreamContext& ctx, int n, const int64_t* offsets, const int64_t* indices,
                     float* out0, float* out1, int* error) const;
  // Where each table's pooled rows go for this model type (run()'s layouts).
  std::vector<TablePool> pool_plan() const;
  Result<std::vector<GpuLinear>> layers(const std::string& prefix, size_t count, Activation last,
                                        bool single = false) const;
  Result<const float*> tensor(const std::string& name) const;

  StreamContext* acquire() const;
  void release(StreamContext* ctx) const;

  ModelSpec spec_;
  int device_;
  std::string device_name_;
  std::vector<void*> weights_;
  std::map<std::string, const float*> by_name_;
  std::vector<const float*> tables_;
  // Prepared at upload: the MLPs of each type, DLRM's interaction pairs.
  std::vector<GpuLinear> mlp_a_, mlp_b_, mlp_c_;
  std::vector<std::vector<GpuLinear>> heads_;
  GpuLinear gru_ih_, gru_hh_, augru_ih_, augru_hh_, att_;
  const float* zero_bias_ = nullptr;
  const int2* pairs_ = nullptr;
  int num_pairs_ = 0;
  bool table_batched_ = true;
  int graph_max_items_ = 0;
  mutable std::string graph_failure_;  // why graphs were turned off, under mu_
  std::vector<TablePool> plan_host_;
  const TablePool* plan_ = nullptr;  // on the GPU

  mutable std::mutex mu_;
  mutable std::condition_variable cv_;
  mutable std::vector<std::unique_ptr<StreamContext>> contexts_;
  mutable std::vector<StreamContext*> free_;
};

Result<const float*> CudaModel::tensor(const std::string& name) const {
  auto it = by_name_.find(name);
  if (it == by_name_.end()) return internal_error("GPU model has no tensor '" + name + "'");
  return it->second;
}

Result<std::vector<GpuLinear>> CudaModel::layers(const std::string& prefix, size_t count,
                                                 Activation last, bool single) const {
  std::vector<GpuLinear> out;
  for (size_t k = 0; k < count; ++k) {
    const std::string base = single ? prefix : prefix + "." + std::to_string(2 * k);
    GpuLinear l;
    RECSCHED_ASSIGN_OR_RETURN(l.weight, tensor(base + ".weight"));
    RECSCHED_ASSIGN_OR_RETURN(l.bias, tensor(base + ".bias"));
    l.act = k + 1 == count ? last : Activation::kRelu;
    out.push_back(l);
  }
  return out;
}

Status CudaModel::upload(const Model& host, const CudaOptions& options) {
  table_batched_ = options.table_batched;
  graph_max_items_ = std::max(0, options.graph_max_items);
  const int streams = options.streams;
  RECSCHED_CUDA_OK(cudaSetDevice(device_), "selecting the GPU");
  cudaDeviceProp prop{};
  RECSCHED_CUDA_OK(cudaGetDeviceProperties(&prop, device_), "reading the GPU's properties");
  device_name_ = std::string(prop.name) + " (sm_" + std::to_string(prop.major) +
                 std::to_string(prop.minor) + ")";

  // Refuse up front, with both sizes, rather than fail half-way through the copies.
  const std::vector<TensorToWrite> tensors = host.tensors();
  uint64_t need = 0;
  for (const TensorToWrite& t : tensors) need += t.data.size() * sizeof(float);
  size_t free_bytes = 0, total_bytes = 0;
  RECSCHED_CUDA_OK(cudaMemGetInfo(&free_bytes, &total_bytes), "reading GPU memory");
  if (need + (uint64_t{256} << 20) > free_bytes) {
    return unavailable("model '" + spec_.name + "' needs " + std::to_string(need >> 20) +
                       " MiB of GPU memory for its weights; " + device_name_ + " has " +
                       std::to_string(free_bytes >> 20) + " MiB free");
  }
  std::map<std::string, std::vector<int64_t>> shapes;
  for (const TensorToWrite& t : tensors) {
    void* p = nullptr;
    RECSCHED_CUDA_OK(cudaMalloc(&p, std::max<size_t>(t.data.size(), 1) * sizeof(float)),
                     "allocating tensor '" + t.name + "'");
    weights_.push_back(p);
    RECSCHED_CUDA_OK(
        cudaMemcpy(p, t.data.data(), t.data.size() * sizeof(float), cudaMemcpyHostToDevice),
        "copying tensor '" + t.name + "'");
    by_name_[t.name] = static_cast<const float*>(p);
    shapes[t.name] = t.shape;
  }
  for (int t = 0; t < spec_.num_tables(); ++t) {
    RECSCHED_ASSIGN_OR_RETURN(const float* table, tensor("emb_l." + std::to_string(t) + ".weight"));
    tables_.push_back(table);
  }
  plan_host_ = pool_plan();
  if (!plan_host_.empty()) {
    void* p = nullptr;
    RECSCHED_CUDA_OK(cudaMalloc(&p, plan_host_.size() * sizeof(TablePool)), "the pooling plan");
    weights_.push_back(p);
    RECSCHED_CUDA_OK(cudaMemcpy(p, plan_host_.data(), plan_host_.size() * sizeof(TablePool),
                                cudaMemcpyHostToDevice),
                     "the pooling plan");
    plan_ = static_cast<const TablePool*>(p);
  }
  auto fill_shapes = [&](std::vector<GpuLinear>& ls, const std::string& prefix, bool single) {
    for (size_t k = 0; k < ls.size(); ++k) {
      const auto& s = shapes[(single ? prefix : prefix + "." + std::to_string(2 * k)) + ".weight"];
      ls[k].out = static_cast<int>(s[0]);
      ls[k].in = static_cast<int>(s[1]);
    }
  };
  auto mlp_of = [&](std::vector<GpuLinear>& dst, const std::string& prefix, size_t count,
                    Activation last, bool single = false) -> Status {
    RECSCHED_ASSIGN_OR_RETURN(dst, layers(prefix, count, last, single));
    fill_shapes(dst, prefix, single);
    return Status::ok();
  };
  const Activation head_act = spec_.top_mlp.empty() || spec_.top_mlp.back() < 2
                                  ? Activation::kSigmoid
                                  : Activation::kSoftmax;
  switch (spec_.type) {
    case ModelType::kDlrm: {
      RECSCHED_RETURN_IF_ERROR(mlp_of(mlp_a_, "bot_l", spec_.bottom_mlp.size(), Activation::kRelu));
      RECSCHED_RETURN_IF_ERROR(mlp_of(mlp_b_, "top_l", spec_.top_mlp.size(), Activation::kSigmoid));
      if (spec_.interaction == Interaction::kDot) {
        std::vector<int2> pairs;
        for (int i = 1; i <= spec_.num_tables(); ++i) {
          for (int j = 0; j < i; ++j) pairs.push_back(make_int2(i, j));
        }
        num_pairs_ = static_cast<int>(pairs.size());
        void* p = nullptr;
        RECSCHED_CUDA_OK(cudaMalloc(&p, std::max<size_t>(pairs.size(), 1) * sizeof(int2)),
                         "interaction pairs");
        weights_.push_back(p);
        RECSCHED_CUDA_OK(
            cudaMemcpy(p, pairs.data(), pairs.size() * sizeof(int2), cudaMemcpyHostToDevice),
            "interaction pairs");
        pairs_ = static_cast<const int2*>(p);
      }
      break;
    }
    case ModelType::kNcf:
      RECSCHED_RETURN_IF_ERROR(mlp_of(mlp_a_, "mlp", spec_.mlp.size(), Activation::kRelu));
      RECSCHED_RETURN_IF_ERROR(mlp_of(mlp_b_, "predict", 1, Activation::kSigmoid, true));
      break;
    case ModelType::kWnd:
      RECSCHED_RETURN_IF_ERROR(mlp_of(mlp_a_, "mlp", spec_.mlp.size(), Activation::kSigmoid));
      break;
    case ModelType::kMtwnd:
      RECSCHED_RETURN_IF_ERROR(mlp_of(mlp_a_, "mlp", spec_.mlp.size(), Activation::kRelu));
      heads_.resize(spec_.tasks);
      for (int i = 0; i < spec_.tasks; ++i) {
        RECSCHED_RETURN_IF_ERROR(mlp_of(heads_[i], "heads." + std::to_string(i),
                                        spec_.task_mlp.size(), Activation::kSigmoid));
      }
      break;
    case ModelType::kDin:
      RECSCHED_RETURN_IF_ERROR(
          mlp_of(mlp_a_, "att", spec_.attention_mlp.size(), Activation::kNone));
      RECSCHED_RETURN_IF_ERROR(mlp_of(mlp_b_, "top_l", spec_.top_mlp.size(), head_act));
      break;
    case ModelType::kDien: {
      const int h = spec_.gru_hidden, d = spec_.embedding_dim;
      auto gru = [&](GpuLinear& l, const std::string& w, const std::string& b, int in) -> Status {
        RECSCHED_ASSIGN_OR_RETURN(l.weight, tensor(w));
        RECSCHED_ASSIGN_OR_RETURN(l.bias, tensor(b));
        l.in = in;
        l.out = 3 * h;
        l.act = Activation::kNone;
        return Status::ok();
      };
      RECSCHED_RETURN_IF_ERROR(gru(gru_ih_, "gru.weight_ih", "gru.bias_ih", d));
      RECSCHED_RETURN_IF_ERROR(gru(gru_hh_, "gru.weight_hh", "gru.bias_hh", h));
      RECSCHED_RETURN_IF_ERROR(gru(augru_ih_, "augru.weight_ih", "augru.bias_ih", h));
      RECSCHED_RETURN_IF_ERROR(gru(augru_hh_, "augru.weight_hh", "augru.bias_hh", h));
      void* zeros = nullptr;
      RECSCHED_CUDA_OK(cudaMalloc(&zeros, sizeof(float) * h), "attention bias");
      weights_.push_back(zeros);
      RECSCHED_CUDA_OK(cudaMemset(zeros, 0, sizeof(float) * h), "attention bias");
      zero_bias_ = static_cast<const float*>(zeros);
      RECSCHED_ASSIGN_OR_RETURN(att_.weight, tensor("att.weight"));
      att_.bias = zero_bias_;
      att_.in = d;
      att_.out = h;
      att_.act = Activation::kNone;
      RECSCHED_RETURN_IF_ERROR(mlp_of(mlp_b_, "top_l", spec_.top_mlp.size(), head_act));
      break;
    }
  }

  for (int s = 0; s < std::max(1, streams); ++s) {
    auto ctx = std::make_unique<StreamContext>();
    RECSCHED_CUDA_OK(cudaStreamCreateWithFlags(&ctx->stream, cudaStreamNonBlocking), "stream");
    RECSCHED_CUBLAS_OK(cublasCreate(&ctx->blas), "creating a cuBLAS handle");
    RECSCHED_CUBLAS_OK(cublasSetStream(ctx->blas, ctx->stream), "binding cuBLAS to a stream");
    // Plain FP32 (the default math mode uses no TF32), so scores track the CPU engine.
    RECSCHED_CUBLAS_OK(cublasSetMathMode(ctx->blas, CUBLAS_DEFAULT_MATH), "cuBLAS math mode");
    if (graph_max_items_ > 0) {
      RECSCHED_RETURN_IF_ERROR(ctx->blas_workspace.reserve(kBlasWorkspaceBytes, "cuBLAS workspace"));
      RECSCHED_CUBLAS_OK(cublasSetWorkspace(ctx->blas, ctx->blas_workspace.as<void>(),
                                            kBlasWorkspaceBytes),
                         "setting cuBLAS's workspace");
    }
    free_.push_back(ctx.get());
    contexts_.push_back(std::move(ctx));
  }
  return Status::ok();
}

StreamContext* CudaModel::acquire() const {
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait(lock, [&] { return !free_.empty(); });
  StreamContext* ctx = free_.back();
  free_.pop_back();
  return ctx;
}

void CudaModel::release(StreamContext* ctx) const {
  {
    std::lock_guard<std::mutex> lock(mu_);
    free_.push_back(ctx);
  }
  cv_.notify_one();
}

Status CudaModel::linear(StreamContext& ctx, const GpuLinear& l, const float* x, int64_t ldx, int n,
                         float* y, int64_t ldy) const {
  // Row-major y[n, out] = x[n, in] . W^T is column-major y^T = W . x^T, with W stored
  // row-major [out, in] (column-major [in, out], hence the transpose).
  const float one = 1.0f, zero = 0.0f;
  RECSCHED_CUBLAS_OK(cublasSgemm(ctx.blas, CUBLAS_OP_T, CUBLAS_OP_N, l.out, n, l.in, &one, l.weight,
                                 l.in, x, int(ldx), &zero, y, int(ldy)),
                     "cublasSgemm");
  if (l.act == Activation::kSoftmax) {
    bias_softmax_kernel<<<blocks_for(n), kThreads, 0, ctx.stream>>>(y, ldy, n, l.out, l.bias);
  } else {
    bias_act_kernel<<<blocks_for(int64_t(n) * l.out), kThreads, 0, ctx.stream>>>(
        y, ldy, n, l.out, l.bias, int(l.act));
  }
  return Status::ok();
}

Status CudaModel::mlp(StreamContext& ctx, const std::vector<GpuLinear>& ls, const float* x,
                      int64_t ldx, int n, float* y, int64_t ldy, size_t scratch) const {
  int widest = 0;
  for (size_t k = 0; k + 1 < ls.size(); ++k) widest = std::max(widest, ls[k].out);
  float* hidden[2] = {nullptr, nullptr};
  for (size_t i = 0; i < 2 && i + 1 < ls.size(); ++i) {
    RECSCHED_ASSIGN_OR_RETURN(hidden[i], ctx.floats(scratch + i, size_t(n) * widest));
  }
  const float* in = x;
  int64_t ld = ldx;
  for (size_t k = 0; k < ls.size(); ++k) {
    const bool last = k + 1 == ls.size();
    float* out = last ? y : hidden[k % 2];
    const int64_t ldo = last ? ldy : ls[k].out;
    RECSCHED_RETURN_IF_ERROR(linear(ctx, ls[k], in, ld, n, out, ldo));
    in = out;
    ld = ldo;
  }
  return Status::ok();
}

Status CudaModel::pool(StreamContext& ctx, int t, int, int n, const int64_t* offsets,
                       const int64_t* indices, float* out, int64_t stride, int* error) const {
  const dim3 block(32, 8);
  const unsigned grid = static_cast<unsigned>((n + 7) / 8);
  embedding_bag_kernel<<<grid, block, 0, ctx.stream>>>(
      tables_[t], spec_.table_rows[t], spec_.embedding_dim, indices, offsets + int64_t(t) * n, n,
      out, stride, error);
  return Status::ok();
}

std::vector<TablePool> CudaModel::pool_plan() const {
  const int dim = spec_.embedding_dim;
  const int nt = spec_.num_tables();
  std::vector<TablePool> plan;
  auto add = [&](int t, int buffer, int64_t col, int64_t stride) {
    plan.push_back({tables_[t], spec_.table_rows[t], t, buffer, col, stride});
  };
  switch (spec_.type) {
    case ModelType::kDlrm:
      for (int t = 0; t < nt; ++t) add(t, 0, int64_t(t + 1) * dim, int64_t(nt + 1) * dim);
      break;
    case ModelType::kNcf:
      for (int t = 0; t < 4; ++t) add(t, 0, int64_t(t) * dim, 4 * int64_t(dim));
      break;
    case ModelType::kWnd:
    case ModelType::kMtwnd: {
      const int d = spec_.dense_features;
      for (int t = 0; t < nt; ++t) add(t, 0, d + int64_t(t) * dim, d + int64_t(nt) * dim);
      break;
    }
    case ModelType::kDin:
      for (int t = 0; t < nt; ++t) {
        add(t, 0, int64_t(t) * dim, int64_t(spec_.behaviour_tables + 3) * dim);
      }
      break;
    case ModelType::kDien: {
      // The user, the ad and its category into feats; the behaviour sequence into x.
      const int steps = spec_.behaviour_tables;
      add(0, 0, 0, 3 * int64_t(dim));
      add(steps + 1, 0, dim, 3 * int64_t(dim));
      add(steps + 2, 0, 2 * int64_t(dim), 3 * int64_t(dim));
      for (int t = 0; t < steps; ++t) add(t + 1, 1, int64_t(t) * dim, int64_t(steps) * dim);
      break;
    }
  }
  return plan;
}

Status CudaModel::pool_tables(StreamContext& ctx, int n, const int64_t* offsets,
                              const int64_t* indices, float* out0, float* out1,
                              int* error) const {
  if (plan_host_.empty() || n == 0) return Status::ok();
  if (!table_batched_) {
    for (const TablePool& p : plan_host_) {
      RECSCHED_RETURN_IF_ERROR(pool(ctx, p.src, 0, n, offsets, indices,
                                    (p.buffer == 0 ? out0 : out1) + p.col, p.stride, error));
    }
    return Status::ok();
  }
  const dim3 block(32, 8);
  const dim3 grid(static_cast<unsigned>((n + 7) / 8), static_cast<unsigned>(plan_host_.size()));
  embedding_bags_kernel<<<grid, block, 0, ctx.stream>>>(plan_, spec_.embedding_dim, indices,
                                                        offsets, n, out0, out1, error);
  return Status::ok();
}

// Scratch slots of one forward pass on the GPU (MLP hidden layers use kHidden, +1).
enum Slot : size_t { kFeats, kJoined, kAux, kGi, kStates, kGh, kState, kAlpha, kMask, kHidden };

Status CudaModel::run(StreamContext& ctx, int n, const float* dense, const int64_t* offsets,
                      const int64_t* indices, float* scores, int* error) const {
  const int dim = spec_.embedding_dim;
  const int nt = spec_.num_tables();
  const int k = spec_.num_outputs();
  cudaStream_t st = ctx.stream;
  switch (spec_.type) {
    case ModelType::kDlrm: {
      const int64_t ldf = int64_t(nt + 1) * dim;
      RECSCHED_ASSIGN_OR_RETURN(float* feats, ctx.floats(kFeats, size_t(n) * ldf));
      RECSCHED_RETURN_IF_ERROR(
          mlp(ctx, mlp_a_, dense, spec_.dense_features, n, feats, ldf, kHidden));
      RECSCHED_RETURN_IF_ERROR(pool_tables(ctx, n, offsets, indices, feats, nullptr, error));
      const float* top_in = feats;
      int64_t ldt = ldf;
      if (spec_.interaction == Interaction::kDot) {
        const int width = spec_.top_input_width();
        RECSCHED_ASSIGN_OR_RETURN(float* inter, ctx.floats(kJoined, size_t(n) * width));
        dot_interaction_kernel<<<blocks_for(int64_t(n) * width), kThreads, 0, st>>>(
            feats, ldf, n, dim, pairs_, num_pairs_, inter, width);
        top_in = inter;
        ldt = width;
      }
      return mlp(ctx, mlp_b_, top_in, ldt, n, scores, k, kHidden);
    }
    case ModelType::kNcf: {
      const int64_t ldf = 4 * dim, ldj = dim + mlp_a_.back().out;
      RECSCHED_ASSIGN_OR_RETURN(float* feats, ctx.floats(kFeats, size_t(n) * ldf));
      RECSCHED_ASSIGN_OR_RETURN(float* joined, ctx.floats(kJoined, size_t(n) * ldj));
      RECSCHED_RETURN_IF_ERROR(pool_tables(ctx, n, offsets, indices, feats, nullptr, error));
      product_kernel<<<blocks_for(int64_t(n) * dim), kThreads, 0, st>>>(feats, ldf, n, dim, joined,
                                                                        ldj);
      RECSCHED_RETURN_IF_ERROR(
          mlp(ctx, mlp_a_, feats + 2 * dim, ldf, n, joined + dim, ldj, kHidden));
      return mlp(ctx, mlp_b_, joined, ldj, n, scores, k, kHidden);
    }
    case ModelType::kWnd:
    case ModelType::kMtwnd: {
      const int d = spec_.dense_features;
      const int64_t ld = d + int64_t(nt) * dim;
      RECSCHED_ASSIGN_OR_RETURN(float* feats, ctx.floats(kFeats, size_t(n) * ld));
      if (d > 0) {
        copy_rows_kernel<<<blocks_for(int64_t(n) * d), kThreads, 0, st>>>(dense, d, feats, ld, n,
                                                                          d);
      }
      RECSCHED_RETURN_IF_ERROR(pool_tables(ctx, n, offsets, indices, feats, nullptr, error));
      if (heads_.empty()) return mlp(ctx, mlp_a_, feats, ld, n, scores, k, kHidden);
      const int trunk_w = mlp_a_.back().out;
      RECSCHED_ASSIGN_OR_RETURN(float* trunk, ctx.floats(kJoined, size_t(n) * trunk_w));
      RECSCHED_RETURN_IF_ERROR(mlp(ctx, mlp_a_, feats, ld, n, trunk, trunk_w, kHidden));
      for (size_t i = 0; i < heads_.size(); ++i) {
        RECSCHED_RETURN_IF_ERROR(mlp(ctx, heads_[i], trunk, trunk_w, n, scores + i, k, kHidden));
      }
      return Status::ok();
    }
    case ModelType::kDin: {
      const int nb = spec_.behaviour_tables;
      const int64_t ldf = int64_t(nb + 3) * dim, rows = int64_t(n) * nb;
      RECSCHED_ASSIGN_OR_RETURN(float* feats, ctx.floats(kFeats, size_t(n) * ldf));
      RECSCHED_ASSIGN_OR_RETURN(float* att_in, ctx.floats(kJoined, size_t(rows) * 3 * dim));
      RECSCHED_ASSIGN_OR_RETURN(float* w, ctx.floats(kAux, size_t(rows)));
      RECSCHED_ASSIGN_OR_RETURN(float* top, ctx.floats(kGi, size_t(n) * 4 * dim));
      RECSCHED_RETURN_IF_ERROR(pool_tables(ctx, n, offsets, indices, feats, nullptr, error));
      din_att_input_kernel<<<blocks_for(rows * dim), kThreads, 0, st>>>(feats, ldf, n, nb, dim,
                                                                        att_in);
      RECSCHED_RETURN_IF_ERROR(mlp(ctx, mlp_a_, att_in, 3 * dim, int(rows), w, 1, kHidden));
      din_top_kernel<<<blocks_for(int64_t(n) * dim), kThreads, 0, st>>>(feats, ldf, w, n, nb, dim,
                                                                        top);
      return mlp(ctx, mlp_b_, top, 4 * dim, n, scores, k, kHidden);
    }
    case ModelType::kDien: {
      const int steps = spec_.behaviour_tables, h = spec_.gru_hidden;
      const int64_t rows = int64_t(n) * steps, g3 = 3 * int64_t(h);
      RECSCHED_ASSIGN_OR_RETURN(float* feats, ctx.floats(kFeats, size_t(n) * 3 * dim));
      RECSCHED_ASSIGN_OR_RETURN(float* x, ctx.floats(kJoined, size_t(rows) * dim));
      RECSCHED_ASSIGN_OR_RETURN(float* ad_proj, ctx.floats(kAux, size_t(n) * h));
      RECSCHED_ASSIGN_OR_RETURN(float* gi, ctx.floats(kGi, size_t(rows) * g3));
      RECSCHED_ASSIGN_OR_RETURN(float* states, ctx.floats(kStates, size_t(rows) * h));
      RECSCHED_ASSIGN_OR_RETURN(float* gh, ctx.floats(kGh, size_t(n) * g3));
      RECSCHED_ASSIGN_OR_RETURN(float* state, ctx.floats(kState, size_t(n) * h));
      RECSCHED_ASSIGN_OR_RETURN(float* alpha, ctx.floats(kAlpha, size_t(rows)));
      RECSCHED_ASSIGN_OR_RETURN(float* mask, ctx.floats(kMask, size_t(rows)));
      RECSCHED_ASSIGN_OR_RETURN(float* top, ctx.floats(kHidden + 2, size_t(n) * (3 * dim + h)));
      const int64_t ldf = 3 * dim;
      RECSCHED_RETURN_IF_ERROR(pool_tables(ctx, n, offsets, indices, feats, x, error));
      dien_mask_kernel<<<blocks_for(rows), kThreads, 0, st>>>(offsets, n, steps, mask);
      auto recur = [&](const GpuLinear& ih, const GpuLinear& hh, const float* in, int in_w,
                       const float* a, float* record) -> Status {
        RECSCHED_RETURN_IF_ERROR(linear(ctx, ih, in, in_w, int(rows), gi, g3));
        RECSCHED_CUDA_OK(cudaMemsetAsync(state, 0, sizeof(float) * n * h, st), "state reset");
        for (int t = 0; t < steps; ++t) {
          RECSCHED_RETURN_IF_ERROR(linear(ctx, hh, state, h, n, gh, g3));
          gru_step_kernel<<<blocks_for(int64_t(n) * h), kThreads, 0, st>>>(
              gi, gh, mask, a, n, steps, t, h, state, record);
        }
        return Status::ok();
      };
      RECSCHED_RETURN_IF_ERROR(recur(gru_ih_, gru_hh_, x, dim, nullptr, states));
      RECSCHED_RETURN_IF_ERROR(linear(ctx, att_, feats + dim, ldf, n, ad_proj, h));
      dien_attention_kernel<<<blocks_for(n), kThreads, 0, st>>>(states, ad_proj, mask, n, steps, h,
                                                                alpha);
      RECSCHED_RETURN_IF_ERROR(recur(augru_ih_, augru_hh_, states, h, alpha, nullptr));
      dien_top_kernel<<<blocks_for(int64_t(n) * (3 * dim + h)), kThreads, 0, st>>>(feats, state, n,
                                                                                   dim, h, top);
      return mlp(ctx, mlp_b_, top, 3 * dim + h, n, scores, k, kHidden);
    }
  }
  return internal_error("unhandled model type");
}

bool CudaModel::graphs_enabled() const {
  if (graph_max_items_ == 0) return false;
  std::lock_guard<std::mutex> lock(mu_);
  return graph_failure_.empty();
}

Status CudaModel::capture(StreamContext& ctx, int rows, const std::function<Status()>& pass) const {
  ctx.graphs.erase(rows);
  // Thread-local mode: another stream's thread may allocate while this one captures.
  RECSCHED_CUDA_OK(cudaStreamBeginCapture(ctx.stream, cudaStreamCaptureModeThreadLocal),
                   "starting a graph capture");
  const Status ran = pass();
  cudaGraph_t graph = nullptr;
  const cudaError_t ended = cudaStreamEndCapture(ctx.stream, &graph);
  if (!ran.is_ok() || ended != cudaSuccess) {
    if (graph != nullptr) cudaGraphDestroy(graph);
    cudaGetLastError();  // a failed capture leaves nothing sticky; clear the last error
    return internal_error("capturing a pass of " + std::to_string(rows) + " rows: " +
                          (ran.is_ok() ? cudaGetErrorString(ended) : ran.message()));
  }
  auto captured = std::make_unique<CapturedPass>();
  const cudaError_t made = cudaGraphInstantiate(&captured->exec, graph, 0);
  cudaGraphDestroy(graph);
  RECSCHED_CUDA_OK(made, "instantiating a pass's graph");
  captured->layout = ctx.layout();
  ctx.graphs[rows] = std::move(captured);
  return Status::ok();
}

Status CudaModel::forward(const BatchView& batch, Workspace&, std::span<float> scores) const {
  const int64_t n = batch.batch_size;
  const int k = spec_.num_outputs();
  const int nt = spec_.num_tables();
  const int d = spec_.dense_features;
  if (scores.size() != size_t(n) * k) {
    return invalid_argument("scores buffer has " + std::to_string(scores.size()) +
                            " floats, expected " + std::to_string(n * k));
  }
  if (batch.num_dense != uint32_t(d) || batch.num_tables != uint32_t(nt) ||
      batch.dense.size() != size_t(n) * d) {
    return invalid_argument("batch shape does not match model '" + spec_.name + "'");
  }
  if (n == 0) return Status::ok();

  // The query's layout in one transfer: dense | offsets (rebased to this window) | indices,
  // padded to `rows` rows (empty bags, zero dense features) when a graph runs it.
  int64_t num_indices = 0;
  for (int t = 0; t < nt; ++t) {
    const auto off = batch.table_offsets(uint32_t(t));
    if (off.front() < 0 || off.back() > int64_t(batch.num_indices())) {
      return invalid_argument("table " + std::to_string(t) + ": bag offsets are malformed");
    }
    num_indices += off.back() - off.front();
  }
  // A graph runs it when its bucket is within the limit; it is padded to the bucket then.
  const bool graphed =
      n <= graph_max_items_ && graph_rows(int(n)) <= graph_max_items_ && graphs_enabled();
  const int64_t rows = graphed ? graph_rows(int(n)) : n;
  const size_t dense_bytes = align_up(size_t(rows) * d * sizeof(float));
  const size_t off_bytes = align_up((size_t(nt) * rows + 1) * sizeof(int64_t));
  const size_t idx_bytes = align_up(std::max<int64_t>(num_indices, 1) * sizeof(int64_t));
  const size_t in_bytes = dense_bytes + off_bytes + idx_bytes;
  const size_t out_bytes = align_up(size_t(rows) * k * sizeof(float)) + sizeof(int);

  StreamContext* ctx = acquire();
  struct Release {
    const CudaModel* m;
    StreamContext* c;
    ~Release() { m->release(c); }
  } release_on_exit{this, ctx};
  RECSCHED_CUDA_OK(cudaSetDevice(device_), "selecting the GPU");
  RECSCHED_RETURN_IF_ERROR(ctx->host_in.reserve(in_bytes));
  RECSCHED_RETURN_IF_ERROR(ctx->host_out.reserve(out_bytes));
  RECSCHED_RETURN_IF_ERROR(ctx->dev_in.reserve(in_bytes, "query inputs"));
  RECSCHED_RETURN_IF_ERROR(ctx->dev_out.reserve(out_bytes, "scores"));

  char* host = ctx->host_in.data();
  std::memcpy(host, batch.dense.data(), size_t(n) * d * sizeof(float));
  std::memset(host + size_t(n) * d * sizeof(float), 0, size_t(rows - n) * d * sizeof(float));
  auto* offs = reinterpret_cast<int64_t*>(host + dense_bytes);
  auto* idx = reinterpret_cast<int64_t*>(host + dense_bytes + off_bytes);
  int64_t pos = 0;
  for (int t = 0; t < nt; ++t) {
    const auto off = batch.table_offsets(uint32_t(t));
    for (int64_t b = 0; b < n; ++b) {
      if (off[b + 1] < off[b]) {
        return invalid_argument("table " + std::to_string(t) + ": bag offsets decrease");
      }
      offs[t * rows + b] = pos + (off[b] - off.front());
    }
    const int64_t count = off.back() - off.front();
    if (count > 0 && batch.narrow_indices.empty()) {
      std::memcpy(idx + pos, batch.indices.data() + off.front(), size_t(count) * sizeof(int64_t));
    } else if (count > 0) {  // 32-bit ids widened as they are staged (the kernels read 64)
      std::copy_n(batch.narrow_indices.data() + off.front(), count, idx + pos);
    }
    pos += count;
    for (int64_t b = n; b < rows; ++b) offs[t * rows + b] = pos;  // padding: empty bags
  }
  offs[int64_t(nt) * rows] = pos;

  char* dev = ctx->dev_in.as<char>();
  float* dev_scores = ctx->dev_out.as<float>();
  int* dev_error = reinterpret_cast<int*>(ctx->dev_out.as<char>() + out_bytes - sizeof(int));
  RECSCHED_CUDA_OK(cudaMemcpyAsync(dev, host, in_bytes, cudaMemcpyHostToDevice, ctx->stream),
                   "copying the query to the GPU");
  RECSCHED_CUDA_OK(cudaMemsetAsync(dev_error, 0, sizeof(int), ctx->stream), "error flag");
  const auto pass = [&] {
    return run(*ctx, int(rows), reinterpret_cast<const float*>(dev),
               reinterpret_cast<const int64_t*>(dev + dense_bytes),
               reinterpret_cast<const int64_t*>(dev + dense_bytes + off_bytes), dev_scores,
               dev_error);
  };
  const CapturedPass* graph = graphed ? ctx->captured(int(rows)) : nullptr;
  if (graph != nullptr) {
    RECSCHED_CUDA_OK(cudaGraphLaunch(graph->exec, ctx->stream), "replaying the pass's graph");
  } else {
    RECSCHED_RETURN_IF_ERROR(pass());
  }
  RECSCHED_CUDA_OK(cudaGetLastError(), "launching the model's kernels");
  RECSCHED_CUDA_OK(cudaMemcpyAsync(ctx->host_out.data(), ctx->dev_out.as<char>(), out_bytes,
                                   cudaMemcpyDeviceToHost, ctx->stream),
                   "copying scores from the GPU");
  RECSCHED_CUDA_OK(cudaStreamSynchronize(ctx->stream), "running the model on the GPU");
  if (graphed && graph == nullptr) {
    // This pass ran directly: capture it for the next one of this size. A capture that
    // fails turns graphs off for the model (kernels() says why); the scores stand.
    const Status st = capture(*ctx, int(rows), pass);
    if (!st.is_ok()) {
      std::lock_guard<std::mutex> lock(mu_);
      if (graph_failure_.empty()) graph_failure_ = st.message();
    }
  }
  int error = 0;
  std::memcpy(&error, ctx->host_out.data() + out_bytes - sizeof(int), sizeof(int));
  if (error != 0) {
    return invalid_argument("an id is outside its embedding table (checked on the GPU)");
  }
  std::memcpy(scores.data(), ctx->host_out.data(), size_t(n) * k * sizeof(float));
  return Status::ok();
}

}  // namespace

std::vector<CudaDeviceInfo> list_devices(std::string* why) {
  std::vector<CudaDeviceInfo> out;
  int count = 0;
  const cudaError_t e = cudaGetDeviceCount(&count);
  if (e != cudaSuccess) {
    if (why != nullptr) *why = std::string("no CUDA device: ") + cudaGetErrorString(e);
    return out;
  }
  if (count == 0 && why != nullptr) *why = "no CUDA device: the driver reports none";
  for (int i = 0; i < count; ++i) {
    cudaDeviceProp p{};
    if (cudaGetDeviceProperties(&p, i) != cudaSuccess) continue;
    CudaDeviceInfo info;
    info.index = i;
    info.name = p.name;
    char bus[32] = {0};
    if (cudaDeviceGetPCIBusId(bus, sizeof(bus), i) == cudaSuccess) info.pci_bus_id = bus;
    info.memory_bytes = p.totalGlobalMem;
    info.multiprocessors = p.multiProcessorCount;
    info.compute_major = p.major;
    info.compute_minor = p.minor;
    out.push_back(info);
  }
  return out;
}

Result<std::unique_ptr<Model>> load_cuda_model(const ModelSpec& spec, const LoadOptions& options,
                                               const CudaOptions& cuda) {
  std::string why;
  const std::vector<CudaDeviceInfo> devices = list_devices(&why);
  if (devices.empty()) return unavailable(why);
  if (cuda.device < 0 || cuda.device >= int(devices.size())) {
    return invalid_argument("CUDA device " + std::to_string(cuda.device) + " does not exist (" +
                            std::to_string(devices.size()) + " found)");
  }
  RECSCHED_ASSIGN_OR_RETURN(std::unique_ptr<Model> host, load_model(spec, options));
  auto model = std::make_unique<CudaModel>(spec, cuda.device);
  RECSCHED_RETURN_IF_ERROR(model->upload(*host, cuda));
  return std::unique_ptr<Model>(std::move(model));
}

}  // namespace recsched::engine::cuda
