// KServe v2 / Triton HTTP inference codec: infer request bodies (JSON, or JSON plus the
// binary tensor data extension) to a validated Batch, scores to a response body, and model
// metadata. Pure functions, no I/O. Depends on core, engine and nlohmann/json.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <nlohmann/json_fwd.hpp>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "core/batch.h"
#include "core/status.h"
#include "engine/model_spec.h"

namespace recsched::daemon {

/// HTTP header of the binary extension: the body's first H bytes are the JSON header.
inline constexpr std::string_view kInferHeaderContentLength = "Inference-Header-Content-Length";
/// Tensor names on the wire.
inline constexpr std::string_view kDenseInput = "dense";             ///< FP32 [N, D]
inline constexpr std::string_view kLengthsInput = "sparse_lengths";  ///< INT32 [T, N]
inline constexpr std::string_view kIndicesInput = "sparse_indices";  ///< INT64 [L]
inline constexpr std::string_view kScoresOutput = "scores";          ///< FP32 [N, K]

/// The error of a query whose ids lay in a client's shared-memory region that shrank
/// while the query read them (InferRequest::shared_ids_intact).
inline constexpr std::string_view kSharedIdsShrank =
    "sparse_indices: the shared-memory object that holds them shrank while the query read them";

/// Request limits (the daemon's config sets them).
struct InferLimits {
  uint32_t max_items = 4096;          ///< N per query
  uint64_t max_elements = 64u << 20;  ///< elements across all input tensors
  int max_json_depth = 32;            ///< nesting depth of the JSON header (top object = 1)
};

/// Bytes of a shared-memory region where they lie (a read-only mapping of the client's
/// object), valid while `shrank` is held. The client may rewrite them at any time, so
/// what is read there is checked as it is used (the ids: by every embedding-bag kernel);
/// if the client shrinks its object meanwhile, the pages past its new end read as zeros
/// and *shrank turns true (daemon/shared_memory.h), so that the query using them is
/// refused instead of answered.
struct SharedBytes {
  std::span<const std::byte> bytes;
  std::shared_ptr<const std::atomic<bool>> shrank;  ///< also keeps the mapping alive
  bool intact() const { return !shrank || !shrank->load(std::memory_order_acquire); }
};

/// Where an input sent through shared memory (Triton's system shared-memory extension:
/// parameters shared_memory_region, shared_memory_byte_size, shared_memory_offset) is read
/// from: daemon/shared_memory.h. Ids may be used where they lie (map()); every other input
/// is copied out (read()).
class SharedMemoryReader {
 public:
  virtual ~SharedMemoryReader() = default;
  /// Copies into.size() bytes at `offset` of `region` into `into`; kInvalidArgument with a
  /// one-line reason when it cannot.
  virtual Status read(std::string_view region, uint64_t offset,
                      std::span<std::byte> into) const = 0;
  /// `size` bytes at `offset` of `region` where they lie; kInvalidArgument as read() says,
  /// kUnavailable where the region is not mapped (then read() copies them).
  virtual Result<SharedBytes> map(std::string_view /*region*/, uint64_t /*offset*/,
                                  uint64_t /*size*/) const {
    return unavailable("not mapped");
  }
};

/// Caller text quoted in an error message: printable ASCII only (anything else '?'), so a
/// message stays one line of valid UTF-8 whatever the request held, and cut to `max_chars`
/// ("..." after), so a huge token cannot make a huge message.
std::string printable_excerpt(std::string_view s, size_t max_chars = 64);

/// One parsed, validated infer request.
struct InferRequest {
  std::string id;                ///< the request's id, "" if none
  Batch batch;                   ///< validated against the spec (engine::validate_batch)
  std::optional<double> sla_ms;  ///< parameters.sla_ms (> 0)
  int priority = 0;              ///< parameters.priority (integer, higher = more important)
  bool binary_output = false;    ///< the response should carry scores as binary data
  /// The body, kept when its binary ids are read where they lie (then
  /// batch.sparse.indices is empty and ids_in_place or narrow_ids is set):
  /// parse_infer_request_in_place.
  std::unique_ptr<const std::string> wire;
  /// INT64 ids read from shared memory, into memory not zeroed first (ids_in_place is set).
  std::unique_ptr<int64_t[]> own_ids;
  std::span<const int64_t> ids_in_place;  ///< into *wire or own_ids; empty if in the batch
  /// INT32 ids (binary or shared memory), kept 32-bit for the engine: where they lie in
  /// *wire, or read into own_narrow_ids.
  std::unique_ptr<int32_t[]> own_narrow_ids;
  std::span<const int32_t> narrow_ids;
  /// Set when ids_in_place or narrow_ids lie in a client's shared-memory region
  /// (SharedMemoryReader::map): checked as they were decoded and again as the kernels read
  /// them, since the client may rewrite them; keeps the mapping alive.
  std::shared_ptr<const std::atomic<bool>> shared_ids;

  /// Whether ids read in a client's region were there whole while they were used (its
  /// object did not shrink under them); true when they were not in a region.
  bool shared_ids_intact() const {
    return !shared_ids || !shared_ids->load(std::memory_order_acquire);
  }
  /// Ids in a client's region copied into memory of the request's own and checked against
  /// `spec` again (a device that reads them other than through the checking CPU kernels,
  /// or merges them with other queries' before reading, gets a copy the client cannot
  /// change); the region is then no longer used. No-op without shared ids.
  Status own_shared_ids(const engine::ModelSpec& spec);

  /// The batch as the engine reads it: batch, with the ids in place when they are.
  BatchView view() const {
    BatchView v = view_of(batch);
    if (!ids_in_place.empty()) v.indices = ids_in_place;
    if (!narrow_ids.empty()) v.narrow_indices = narrow_ids;
    return v;
  }
};

/// Parses and validates one infer request (POST /v2/models/{m}/infer) for `spec`.
///
/// The request is {"id"?, "parameters"?, "inputs", "outputs"?}. Inputs are "dense" (FP32
/// [N, D]), "sparse_lengths" (INT32 [T, N], table-major bag lengths) and "sparse_indices"
/// (INT64 [L], table by table). "dense" may be omitted when D = 0 and the sparse inputs when
/// T = 0. Each input's "data" is flat (row-major) or nested exactly as its shape; with the
/// binary extension an input instead has parameters.binary_data_size = B and its B bytes
/// (little-endian) follow the JSON header, sections in the order the inputs appear.
/// Known request parameters: sla_ms, priority, binary_data_output; other parameters and
/// unknown keys are ignored, as Triton does. binary_output is parameters.binary_data_output,
/// overridden by outputs[].parameters.binary_data of "scores".
///
/// `header_length` is the value of Inference-Header-Content-Length when the request had it.
/// Nothing reads past `body`. Every error is kInvalidArgument with a one-line message that
/// names the input (or key) and what is wrong; caller text quoted in it is cut short and
/// reduced to printable ASCII. The errors:
/// - header_length larger than the body; the JSON header is not JSON, not an object, or
///   nests deeper than limits.max_json_depth (checked while parsing, before a deep tree is
///   built); "id" not a string; "inputs" missing or not an array; an input that is not an
///   object or has no "name";
/// - an unknown or duplicate input; a missing required input; a datatype other than the one
///   above; a shape that is not an array of non-negative integers or does not match
///   [N, D] / [T, N] / [L] (wrong rank, D, T, or N differing between inputs); N = 0;
///   N > limits.max_items; more than limits.max_elements elements over all inputs (checked
///   before anything is allocated);
/// - an input with both or neither of "data" and binary_data_size; binary_data_size without
///   the header-length header, or not equal to elements x datatype size; binary sections
///   longer than the bytes after the header ("truncated") or shorter ("trailing bytes");
///   an input with shared_memory_region and without `shm` (then shared memory is off), or
///   with only one of shared_memory_region and shared_memory_byte_size, or with them and
///   "data" or binary_data_size; shared_memory_byte_size not equal to elements x datatype
///   size; whatever `shm` says is wrong with the region (unknown, too small);
/// - "data" whose count or nesting does not match the shape; a non-number in FP32 data or a
///   value outside FP32's finite range (JSON or binary); a non-integer or out-of-range
///   value in INT32/INT64 data; a negative bag length; lengths not adding up to L; an id
///   outside its table (engine::validate_batch's message);
/// - parameters not an object, sla_ms not a positive number, priority not an integer
///   that fits in int, binary_data_output not a boolean; "outputs" not an array of objects,
///   an output other than "scores", binary_data not a boolean, or an unsupported output
///   parameter (shared memory, classification).
///
/// An input may instead name its bytes in a shared-memory region (parameters
/// shared_memory_region, shared_memory_byte_size, shared_memory_offset, default 0): they are
/// read through `shm` into the batch and validated there, as binary data is; such an input
/// has no section after the JSON header.
Result<InferRequest> parse_infer_request(std::string_view body, std::optional<size_t> header_length,
                                         const engine::ModelSpec& spec, const InferLimits& limits,
                                         const SharedMemoryReader* shm = nullptr);

/// As parse_infer_request, taking the body: binary sparse_indices that lie aligned in it (INT64
/// 8-byte, INT32 4-byte, on a little-endian host) are then not copied; the request keeps the body
/// (`wire`) and view() reads the ids there. Decoding a 5 MB request copied 5 MB of ids into fresh
/// memory. The ids are checked against their tables either way.
Result<InferRequest> parse_infer_request_in_place(std::string body,
                                                  std::optional<size_t> header_length,
                                                  const engine::ModelSpec& spec,
                                                  const InferLimits& limits,
                                                  const SharedMemoryReader* shm = nullptr);

/// An HTTP response body with the headers it needs.
struct EncodedResponse {
  std::string body;
  std::optional<size_t> header_length;  ///< set for a binary response: its JSON's length
  std::string content_type;             ///< "application/json" or "application/octet-stream"
};

/// The response for scores [n, k] (row-major): {"model_name", "model_version": "1", "id" (if
/// non-empty), "outputs": [{"name": "scores", "datatype": "FP32", "shape": [n, k], ...}]}
/// with "data" (flat; a non-finite score is written as null) or, when `binary`,
/// "parameters": {"binary_data_size": n*k*4} and the little-endian bytes after the JSON.
/// Requires scores.size() == n * k.
EncodedResponse encode_infer_response(std::string_view model, std::string_view id,
                                      std::span<const float> scores, uint32_t n, uint32_t k,
                                      bool binary);

/// GET /v2/models/{m}: {"name", "versions": ["1"], "platform": "recsched", "inputs",
/// "outputs"} with each tensor's name, datatype and shape (-1 for the batch dim). Inputs the
/// model does not need (dense when D = 0, the sparse pair when T = 0) are left out.
nlohmann::json model_metadata(const engine::ModelSpec& spec);

}  // namespace recsched::daemon
