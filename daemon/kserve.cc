#include "daemon/kserve.h"

#include <algorithm>
#include <atomic>
#include <array>
#include <bit>
#include <cassert>
#include <charconv>
#include <cmath>
#include <cstring>
#include <limits>
#include <nlohmann/json.hpp>
#include <type_traits>
#include <utility>
#include <vector>

#include "engine/inputs.h"

namespace recsched::daemon {
namespace {

using nlohmann::json;

// The three inputs, in the order of this table (also the order of their checks).
enum InputSlot : size_t { kDense = 0, kLengths = 1, kIndices = 2, kNumSlots = 3 };

struct SlotInfo {
  std::string_view name;
  std::string_view datatype;
  size_t element_size;
};

constexpr std::array<SlotInfo, kNumSlots> kSlots = {{
    {kDenseInput, "FP32", sizeof(float)},
    {kLengthsInput, "INT32", sizeof(int32_t)},
    {kIndicesInput, "INT64", sizeof(int64_t)},
}};

/// One input as read from the JSON header, before its data is decoded.
struct InputDesc {
  const json* j = nullptr;              // the input's object inside the request
  std::vector<uint64_t> shape;          // validated non-negative
  uint64_t elements = 0;                // product of shape, saturated at UINT64_MAX
  std::optional<uint64_t> binary_size;  // parameters.binary_data_size
  std::string_view binary;              // its bytes, once the layout is checked
  std::optional<std::string> shm_region;  // parameters.shared_memory_region
  uint64_t shm_offset = 0;                // parameters.shared_memory_offset
  uint64_t shm_size = 0;                  // parameters.shared_memory_byte_size
  std::string_view datatype;            // as sent (one of the slot's accepted types)
  size_t element_size = 0;              // bytes per element of that datatype
};

// sparse_indices may come as INT32 as well as INT64: half the bytes on the wire for every
// table of up to 2^31 rows (all of the zoo's); they are widened once, as they are decoded.
constexpr std::string_view kIndicesNarrow = "INT32";

using Inputs = std::array<std::optional<InputDesc>, kNumSlots>;

Status input_error(InputSlot slot, std::string_view what) {
  std::string msg = "input '";
  msg += kSlots[slot].name;
  msg += "': ";
  msg += what;
  return invalid_argument(std::move(msg));
}

std::string shape_string(std::span<const uint64_t> shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i > 0) s += ", ";
    s += std::to_string(shape[i]);
  }
  return s + "]";
}


std::string echo_value(const json& v) {
  if (v.is_string()) return "\"" + printable_excerpt(v.get_ref<const std::string&>()) + "\"";
  if (v.is_array()) return "an array";
  if (v.is_object()) return "an object";
  return v.dump();  // a number, true, false or null: short and ASCII
}

uint64_t saturating_add(uint64_t a, uint64_t b) {
  uint64_t r;
  return __builtin_add_overflow(a, b, &r) ? std::numeric_limits<uint64_t>::max() : r;
}

uint64_t saturating_product(std::span<const uint64_t> shape) {
  // A zero dimension wins over an overflow elsewhere: [0, 2^40, 2^40] holds nothing.
  if (std::find(shape.begin(), shape.end(), 0) != shape.end()) return 0;
  uint64_t r = 1;
  for (uint64_t d : shape) {
    if (__builtin_mul_overflow(r, d, &r)) return std::numeric_limits<uint64_t>::max();
  }
  return r;
}

// Parses the JSON header. The depth limit is enforced by the parser callback: a container
// that would nest too deep is discarded as soon as it opens, so the tree never holds it,
// and the flag turns the result into an error once parsing ends.
Result<json> parse_header(std::string_view text, int max_depth) {
  bool too_deep = false;
  json::parser_callback_t limit_depth = [&](int depth, json::parse_event_t event, json&) {
    if (event != json::parse_event_t::object_start && event != json::parse_event_t::array_start) {
      return true;
    }
    // `depth` counts the containers already open: the top-level object opens at 0.
    if (depth >= max_depth) {
      too_deep = true;
      return false;
    }
    return true;
  };
  json j;
  try {
    j = json::parse(text.begin(), text.end(), limit_depth);
  } catch (const json::exception& e) {
    // what() is "[json.exception.parse_error.101] parse error at line 1, column 2: ...".
    std::string_view what = e.what();
    if (const size_t cut = what.find("] "); cut != std::string_view::npos) {
      what.remove_prefix(cut + 2);
    }
    return invalid_argument("request is not valid JSON: " + printable_excerpt(what, 200));
  }
  if (too_deep) {
    return invalid_argument("request JSON nests deeper than " + std::to_string(max_depth) +
                            " levels");
  }
  if (!j.is_object()) return invalid_argument("request must be a JSON object");
  return j;
}

Status read_parameters(const json& req, InferRequest& out) {
  const auto it = req.find("parameters");
  if (it == req.end()) return Status::ok();
  if (!it->is_object()) return invalid_argument("'parameters' must be an object");
  const json& p = *it;
  if (const auto sla = p.find("sla_ms"); sla != p.end()) {
    if (!sla->is_number() || !(sla->get<double>() > 0)) {
      return invalid_argument("parameters.sla_ms must be a positive number of milliseconds, got " +
                              echo_value(*sla));
    }
    out.sla_ms = sla->get<double>();
  }
  if (const auto pri = p.find("priority"); pri != p.end()) {
    constexpr int64_t kMin = std::numeric_limits<int>::min();
    constexpr int64_t kMax = std::numeric_limits<int>::max();
    const bool fits =
        pri->is_number_integer() &&
        (pri->is_number_unsigned() ? pri->get<uint64_t>() <= uint64_t(kMax)
                                   : pri->get<int64_t>() >= kMin && pri->get<int64_t>() <= kMax);
    if (!fits) {
      return invalid_argument("parameters.priority must be an integer in [" + std::to_string(kMin) +
                              ", " + std::to_string(kMax) + "], got " + echo_value(*pri));
    }
    out.priority = static_cast<int>(pri->get<int64_t>());
  }
  if (const auto bin = p.find("binary_data_output"); bin != p.end()) {
    if (!bin->is_boolean()) {
      return invalid_argument("parameters.binary_data_output must be true or false");
    }
    out.binary_output = bin->get<bool>();
  }
  return Status::ok();
}

// Requested outputs. Only "scores" exists; its binary_data overrides the request-level
// binary_data_output, as in Triton.
Status read_outputs(const json& req, const engine::ModelSpec& spec, InferRequest& out) {
  const auto it = req.find("outputs");
  if (it == req.end()) return Status::ok();
  if (!it->is_array()) return invalid_argument("'outputs' must be an array");
  for (size_t i = 0; i < it->size(); ++i) {
    const json& o = (*it)[i];
    if (!o.is_object() || !o.contains("name") || !o["name"].is_string()) {
      return invalid_argument("outputs[" + std::to_string(i) + "] must be an object with a name");
    }
    const std::string& name = o["name"].get_ref<const std::string&>();
    if (name != kScoresOutput) {
      return invalid_argument("unknown output '" + printable_excerpt(name) + "' (model '" + spec.name +
                              "' has '" + std::string(kScoresOutput) + "')");
    }
    const auto params = o.find("parameters");
    if (params == o.end()) continue;
    if (!params->is_object()) {
      return invalid_argument("output 'scores': 'parameters' must be an object");
    }
    for (const char* unsupported : {"shared_memory_region", "classification"}) {
      if (params->contains(unsupported)) {
        return invalid_argument(std::string("output 'scores': ") + unsupported +
                                " is not supported");
      }
    }
    if (const auto bin = params->find("binary_data"); bin != params->end()) {
      if (!bin->is_boolean()) {
        return invalid_argument("output 'scores': binary_data must be true or false");
      }
      out.binary_output = bin->get<bool>();
    }
  }
  return Status::ok();
}

// The shared-memory parameters of one input (Triton's: region and byte size together,
// offset optional).
Status read_shm_parameters(InputSlot slot, const json& params, InputDesc& d) {
  const auto region = params.find("shared_memory_region");
  const auto size = params.find("shared_memory_byte_size");
  const auto offset = params.find("shared_memory_offset");
  if (region == params.end() && size == params.end() && offset == params.end()) {
    return Status::ok();
  }
  if (region == params.end() || size == params.end()) {
    return input_error(slot, "shared_memory_region and shared_memory_byte_size go together");
  }
  if (!region->is_string()) return input_error(slot, "shared_memory_region must be a string");
  if (!size->is_number_unsigned()) {
    return input_error(slot, "shared_memory_byte_size must be a non-negative integer");
  }
  if (offset != params.end() && !offset->is_number_unsigned()) {
    return input_error(slot, "shared_memory_offset must be a non-negative integer");
  }
  d.shm_region = region->get<std::string>();
  d.shm_size = size->get<uint64_t>();
  d.shm_offset = offset == params.end() ? 0 : offset->get<uint64_t>();
  return Status::ok();
}

// Reads "inputs" into one descriptor per known name; checks everything that needs one input
// alone: object, name, duplicates, datatype, shape syntax, data vs binary_data_size.
// `order` receives the slots in the order they appear (the binary sections' order).
Result<Inputs> read_inputs(const json& req, std::vector<InputSlot>& order) {
  const auto it = req.find("inputs");
  if (it == req.end()) return invalid_argument("request has no 'inputs'");
  if (!it->is_array()) return invalid_argument("'inputs' must be an array");
  Inputs inputs;
  for (size_t i = 0; i < it->size(); ++i) {
    const json& in = (*it)[i];
    if (!in.is_object() || !in.contains("name") || !in["name"].is_string()) {
      return invalid_argument("inputs[" + std::to_string(i) + "] must be an object with a name");
    }
    const std::string& name = in["name"].get_ref<const std::string&>();
    const auto known = std::find_if(kSlots.begin(), kSlots.end(),
                                    [&](const SlotInfo& s) { return s.name == name; });
    if (known == kSlots.end()) {
      return invalid_argument("unknown input '" + printable_excerpt(name) + "' (expected " +
                              std::string(kDenseInput) + ", " + std::string(kLengthsInput) +
                              " or " + std::string(kIndicesInput) + ")");
    }
    const auto slot = static_cast<InputSlot>(known - kSlots.begin());
    if (inputs[slot]) return input_error(slot, "appears twice");

    InputDesc d;
    d.j = &in;
    const auto dtype = in.find("datatype");
    if (dtype == in.end() || !dtype->is_string()) {
      return input_error(slot, "'datatype' must be a string");
    }
    const std::string& datatype = dtype->get_ref<const std::string&>();
    d.datatype = kSlots[slot].datatype;
    d.element_size = kSlots[slot].element_size;
    if (slot == kIndices && datatype == kIndicesNarrow) {
      d.datatype = kIndicesNarrow;
      d.element_size = sizeof(int32_t);
    } else if (datatype != kSlots[slot].datatype) {
      return input_error(slot, "datatype " + printable_excerpt(datatype) + ", expected " +
                                   std::string(kSlots[slot].datatype) +
                                   (slot == kIndices ? " or " + std::string(kIndicesNarrow) : ""));
    }
    const auto shape = in.find("shape");
    if (shape == in.end() || !shape->is_array() ||
        !std::all_of(shape->begin(), shape->end(),
                     [](const json& v) { return v.is_number_unsigned(); })) {
      return input_error(slot, "'shape' must be an array of non-negative integers");
    }
    for (const json& v : *shape) d.shape.push_back(v.get<uint64_t>());
    d.elements = saturating_product(d.shape);

    if (const auto params = in.find("parameters"); params != in.end()) {
      if (!params->is_object()) return input_error(slot, "'parameters' must be an object");
      RECSCHED_RETURN_IF_ERROR(read_shm_parameters(slot, *params, d));
      if (const auto size = params->find("binary_data_size"); size != params->end()) {
        if (!size->is_number_unsigned()) {
          return input_error(slot, "binary_data_size must be a non-negative integer");
        }
        d.binary_size = size->get<uint64_t>();
      }
    }
    const auto data = in.find("data");
    if (d.shm_region && (d.binary_size || data != in.end())) {
      return input_error(slot, std::string("has shared_memory_region and ") +
                                   (d.binary_size ? "binary_data_size" : "'data'"));
    }
    if (d.binary_size && data != in.end()) {
      return input_error(slot, "has both 'data' and binary_data_size");
    }
    if (!d.binary_size && !d.shm_region) {
      if (data == in.end()) return input_error(slot, "has neither 'data' nor binary_data_size");
      if (!data->is_array()) return input_error(slot, "'data' must be an array");
    }
    inputs[slot] = std::move(d);
    order.push_back(slot);
  }
  return inputs;
}

// Checks presence and shapes against the spec and each other; returns N. Every count that
// sizes an allocation later (N, elements) is bounded here.
Result<uint64_t> check_shapes(const Inputs& in, const engine::ModelSpec& spec,
                              const InferLimits& limits) {
  const uint64_t dim = static_cast<uint64_t>(spec.dense_features);
  const uint64_t tables = static_cast<uint64_t>(spec.num_tables());
  const std::string model = "model '" + spec.name + "'";
  if (dim > 0 && !in[kDense]) {
    return invalid_argument("missing input 'dense' (" + model + " has " + std::to_string(dim) +
                            " dense features)");
  }
  for (InputSlot slot : {kLengths, kIndices}) {
    if (in[slot]) continue;
    if (tables > 0) {
      return invalid_argument("missing input '" + std::string(kSlots[slot].name) + "' (" + model +
                              " has " + std::to_string(tables) + " tables)");
    }
    const InputSlot other = slot == kLengths ? kIndices : kLengths;
    if (in[other]) {
      return invalid_argument("missing input '" + std::string(kSlots[slot].name) +
                              "' (it goes with '" + std::string(kSlots[other].name) + "')");
    }
  }
  if (!in[kDense] && !in[kLengths]) {
    return invalid_argument("missing input 'dense' (no input gives the batch size)");
  }

  std::optional<uint64_t> n;
  auto check_n = [&](InputSlot slot, uint64_t value) -> Status {
    if (value == 0) return input_error(slot, "N = 0; a request needs at least one item");
    if (value > limits.max_items) {
      return input_error(slot, "N = " + std::to_string(value) + " exceeds the limit of " +
                                   std::to_string(limits.max_items) + " items");
    }
    n = value;
    return Status::ok();
  };
  if (in[kDense]) {
    const auto& s = in[kDense]->shape;
    if (s.size() != 2 || s[1] != dim) {
      return input_error(kDense, "shape " + shape_string(s) +
                                     " does not match [N, D=" + std::to_string(dim) + "]");
    }
    RECSCHED_RETURN_IF_ERROR(check_n(kDense, s[0]));
  }
  if (in[kLengths]) {
    const auto& s = in[kLengths]->shape;
    if (s.size() != 2 || s[0] != tables || (n && s[1] != *n)) {
      return input_error(kLengths, "shape " + shape_string(s) +
                                       " does not match [T=" + std::to_string(tables) + ", N" +
                                       (n ? "=" + std::to_string(*n) : std::string()) + "]");
    }
    if (!n) RECSCHED_RETURN_IF_ERROR(check_n(kLengths, s[1]));
  }
  if (in[kIndices] && in[kIndices]->shape.size() != 1) {
    return input_error(kIndices,
                       "shape " + shape_string(in[kIndices]->shape) + " does not match [L]");
  }
  uint64_t total = 0;
  for (size_t slot = 0; slot < kNumSlots; ++slot) {
    if (!in[slot]) continue;
    total = saturating_add(total, in[slot]->elements);
    if (total > limits.max_elements) {
      return input_error(static_cast<InputSlot>(slot), "shape " + shape_string(in[slot]->shape) +
                                                           " takes the request over the limit of " +
                                                           std::to_string(limits.max_elements) +
                                                           " elements");
    }
  }
  return *n;
}

// Checks each binary_data_size against its shape and that the sections exactly fill the
// bytes after the JSON header; points each input at its bytes.
Status lay_out_binary(Inputs& in, std::span<const InputSlot> order, std::string_view rest,
                      bool has_header_length) {
  uint64_t offset = 0;
  for (InputSlot slot : order) {
    InputDesc& d = *in[slot];
    if (!d.binary_size) continue;
    if (!has_header_length) {
      return input_error(slot, "binary_data_size needs the Inference-Header-Content-Length header");
    }
    uint64_t expected;
    if (__builtin_mul_overflow(d.elements, d.element_size, &expected)) {
      expected = std::numeric_limits<uint64_t>::max();  // then no binary_data_size matches
    }
    if (*d.binary_size != expected) {
      return input_error(slot, "binary_data_size " + std::to_string(*d.binary_size) +
                                   " does not match shape " + shape_string(d.shape) + " of " +
                                   std::string(d.datatype) + " (" +
                                   std::to_string(expected) + " bytes)");
    }
    if (expected > rest.size() - offset) {
      return input_error(slot, "binary data truncated: needs " + std::to_string(expected) +
                                   " bytes at offset " + std::to_string(offset) + ", only " +
                                   std::to_string(rest.size() - offset) +
                                   " remain after the JSON header");
    }
    d.binary = rest.substr(offset, expected);
    offset += expected;
  }
  if (offset < rest.size()) {
    return invalid_argument("body has " + std::to_string(rest.size() - offset) +
                            " trailing bytes after the JSON header and binary data");
  }
  return Status::ok();
}

// Checks each shared-memory input's byte size against its shape, and that shared memory
// is there to read from.
Status check_shared_memory(const Inputs& in, const SharedMemoryReader* shm) {
  for (size_t i = 0; i < kNumSlots; ++i) {
    const auto slot = static_cast<InputSlot>(i);
    if (!in[slot] || !in[slot]->shm_region) continue;
    const InputDesc& d = *in[slot];
    if (shm == nullptr) {
      return input_error(slot, "shared memory is not available here (it is served on the unix "
                               "socket, with limits.max_shm_regions above 0)");
    }
    uint64_t expected;
    if (__builtin_mul_overflow(d.elements, d.element_size, &expected)) {
      expected = std::numeric_limits<uint64_t>::max();
    }
    if (d.shm_size != expected) {
      return input_error(slot, "shared_memory_byte_size " + std::to_string(d.shm_size) +
                                   " does not match shape " + shape_string(d.shape) + " of " +
                                   std::string(d.datatype) + " (" + std::to_string(expected) +
                                   " bytes)");
    }
  }
  return Status::ok();
}

// Reads little-endian values of type Wire into `out`, converting each to T (INT32 ids into
// the batch's int64_t: widened as they are read); bytes.size() == out.size() * sizeof(Wire).
template <class Wire, class T>
void load_little_endian(std::string_view bytes, std::span<T> out) {
  if constexpr (std::is_same_v<Wire, T> && std::endian::native == std::endian::little) {
    if (!out.empty()) std::memcpy(out.data(), bytes.data(), bytes.size());
  } else {
    using U = std::conditional_t<sizeof(Wire) == 4, uint32_t, uint64_t>;
    for (size_t i = 0; i < out.size(); ++i) {
      U u = 0;
      if constexpr (std::endian::native == std::endian::little) {
        std::memcpy(&u, bytes.data() + i * sizeof(Wire), sizeof(Wire));
      } else {
        for (size_t b = 0; b < sizeof(Wire); ++b) {
          u |= U(static_cast<unsigned char>(bytes[i * sizeof(Wire) + b])) << (8 * b);
        }
      }
      out[i] = static_cast<T>(std::bit_cast<Wire>(u));
    }
  }
}

// Converts one JSON value to T, or names what is wrong with element `index`.
template <class T>
Status convert(InputSlot slot, const json& v, uint64_t index, T& out) {
  // The message is built only on failure: this runs once per element of the request.
  auto fail = [&](std::string_view what) {
    return input_error(slot, "element " + std::to_string(index) + std::string(what));
  };
  if constexpr (std::is_same_v<T, float>) {
    if (!v.is_number()) return fail(" is not a number: " + echo_value(v));
    out = static_cast<float>(v.get<double>());
    if (!std::isfinite(out)) return fail(" is outside the FP32 range");
  } else {
    if (!v.is_number_integer()) return fail(" is not an integer: " + echo_value(v));
    constexpr int64_t kMin = std::numeric_limits<T>::min();
    constexpr int64_t kMax = std::numeric_limits<T>::max();
    const bool fits = v.is_number_unsigned() ? v.get<uint64_t>() <= uint64_t(kMax)
                                             : v.get<int64_t>() >= kMin && v.get<int64_t>() <= kMax;
    if (!fits) {
      return fail(" = " + echo_value(v) + " is outside the " +
                  (std::is_same_v<T, int32_t> ? "INT32" : "INT64") + " range");
    }
    out = static_cast<T>(v.get<int64_t>());
  }
  return Status::ok();
}

// Walks nested data that must match shape[level..] exactly; writes row-major into `out`.
template <class T>
Status read_nested(InputSlot slot, const json& a, std::span<const uint64_t> shape, size_t level,
                   std::string path, std::span<T> out, uint64_t& next) {
  if (!a.is_array() || a.size() != shape[level]) {
    const std::string got =
        a.is_array() ? "has " + std::to_string(a.size()) + " entries" : "is not an array";
    return input_error(slot, path + " " + got + ", shape " + shape_string(shape) + " needs " +
                                 std::to_string(shape[level]));
  }
  for (size_t i = 0; i < a.size(); ++i) {
    if (level + 1 == shape.size()) {
      RECSCHED_RETURN_IF_ERROR(convert(slot, a[i], next, out[next]));
      ++next;
    } else {
      RECSCHED_RETURN_IF_ERROR(read_nested(slot, a[i], shape, level + 1,
                                           path + "[" + std::to_string(i) + "]", out, next));
    }
  }
  return Status::ok();
}

// Copies a shared-memory input's bytes into `out` (d.element_size == sizeof(T)): straight
// into it on a little-endian host, else through a buffer that is then converted.
template <class T>
Status read_shared(const InputDesc& d, const SharedMemoryReader& shm, std::span<T> out) {
  if constexpr (std::endian::native == std::endian::little) {
    return shm.read(*d.shm_region, d.shm_offset, std::as_writable_bytes(out));
  } else {
    std::string bytes(out.size_bytes(), '\0');
    RECSCHED_RETURN_IF_ERROR(shm.read(*d.shm_region, d.shm_offset,
                                      std::as_writable_bytes(std::span<char>(bytes))));
    load_little_endian<T>(bytes, out);
    return Status::ok();
  }
}

// Checks ids (the `first`-th of the batch's on) against their tables, table by table
// (table t's are [offsets[t n], offsets[(t + 1) n])); `t` is the table of the first and
// is left at the last's. `offsets` are the bags' (Batch::offsets_from_lengths), n the items.
template <class Id>
Status check_ids_by_table(const engine::ModelSpec& spec, std::span<const int64_t> offsets,
                          uint64_t n, uint64_t& t, uint64_t first, std::span<const Id> ids) {
  auto table_end = [&](uint64_t table) { return static_cast<uint64_t>(offsets[(table + 1) * n]); };
  for (uint64_t j = first; j < first + ids.size();) {
    while (table_end(t) <= j) ++t;
    const uint64_t to = std::min<uint64_t>(table_end(t), first + ids.size());
    RECSCHED_RETURN_IF_ERROR(engine::check_table_ids(spec, t, j, ids.subspan(j - first, to - j)));
    j = to;
  }
  return Status::ok();
}

// Reads a sparse_indices input from shared memory (INT64 or INT32; little-endian hosts
// only) or from a binary INT32 section into `out`, in the wire's width (Id), in chunks of
// kIdChunkBytes, and checks each chunk's ids against their tables while the chunk is still
// in the cache: one pass over the ids instead of a copy and then engine::validate_batch's
// own read of 0.2-1 MB. The ids are checked in the daemon's copy, never in the client's
// pages, so a client that rewrites its region meanwhile changes only what it asked for.
// `offsets` are the bags' (Batch::offsets_from_lengths), n the items.
constexpr size_t kIdChunkBytes = 32 << 10;

template <class Id>
Status read_ids_checked(const InputDesc& d, const SharedMemoryReader* shm,
                        const engine::ModelSpec& spec, std::span<const int64_t> offsets,
                        uint64_t n, std::span<Id> out) {
  static_assert(sizeof(Id) == sizeof(int32_t) || sizeof(Id) == sizeof(int64_t));
  const uint64_t step = kIdChunkBytes / sizeof(Id);
  if (d.shm_region && out.size() > step) {
    // The input's last bytes first: a region too short is refused for that (the reader's
    // reason), not for whatever ids lie at its start.
    RECSCHED_RETURN_IF_ERROR(shm->read(*d.shm_region, d.shm_offset + (out.size() - 1) * sizeof(Id),
                                       std::as_writable_bytes(out.last(1))));
  }
  uint64_t t = 0;  // the table of the next id to check
  for (uint64_t i = 0; i < out.size(); i += step) {
    const std::span<Id> chunk = out.subspan(i, std::min<uint64_t>(step, out.size() - i));
    if (d.shm_region) {
      RECSCHED_RETURN_IF_ERROR(
          shm->read(*d.shm_region, d.shm_offset + i * sizeof(Id), std::as_writable_bytes(chunk)));
    } else {
      load_little_endian<Id>(d.binary.substr(i * sizeof(Id), chunk.size_bytes()), chunk);
    }
    RECSCHED_RETURN_IF_ERROR(
        check_ids_by_table(spec, offsets, n, t, i, std::span<const Id>(chunk)));
  }
  return Status::ok();
}

// A shared-memory input's ids where they lie, if its region is mapped and they are
// aligned for their width there; else empty (they are copied instead), or the error the
// region gives (past its end, its object shrunk).
Result<SharedBytes> map_ids(const InputDesc& d, const SharedMemoryReader& shm) {
  Result<SharedBytes> m = shm.map(*d.shm_region, d.shm_offset, d.elements * d.element_size);
  if (!m) {
    if (m.status().code() == StatusCode::kUnavailable) return SharedBytes{};
    return m.status();
  }
  if (reinterpret_cast<uintptr_t>(m->bytes.data()) % d.element_size != 0) return SharedBytes{};
  return m;
}

// Decodes one input's values (JSON, binary, or shared memory through `shm`) into `out`,
// sized here to d.elements.
template <class T>
Status decode(InputSlot slot, const InputDesc& d, std::vector<T>& out,
              const SharedMemoryReader* shm) {
  out.resize(d.elements);
  if (d.binary_size || d.shm_region) {
    if (d.shm_region) {
      // check_shared_memory made shm non-null for such an input.
      RECSCHED_RETURN_IF_ERROR(read_shared(d, *shm, std::span<T>(out)));
    } else {
      load_little_endian<T>(d.binary, std::span<T>(out));
    }
    if constexpr (std::is_same_v<T, float>) {
      const auto bad =
          std::find_if(out.begin(), out.end(), [](float v) { return !std::isfinite(v); });
      if (bad != out.end()) {
        return input_error(
            slot, "element " + std::to_string(bad - out.begin()) + " is not a finite FP32 value");
      }
    }
    return Status::ok();
  }
  const json& data = (*d.j)["data"];
  const bool nested = d.shape.size() > 1 && !data.empty() && data[0].is_array();
  if (nested) {
    uint64_t next = 0;
    return read_nested(slot, data, d.shape, 0, "data", std::span<T>(out), next);
  }
  if (data.size() != d.elements) {
    return input_error(slot, "'data' holds " + std::to_string(data.size()) + " values, shape " +
                                 shape_string(d.shape) + " needs " + std::to_string(d.elements));
  }
  for (size_t i = 0; i < data.size(); ++i) {
    RECSCHED_RETURN_IF_ERROR(convert(slot, data[i], i, out[i]));
  }
  return Status::ok();
}

std::string quoted(std::string_view s) {
  // replace: a response must never throw on a name that is not valid UTF-8.
  return json(s).dump(-1, ' ', false, json::error_handler_t::replace);
}

// Binary ids read where they lie in the body (parse_infer_request_in_place): one of the two.
struct IdsInPlace {
  std::span<const int64_t> wide;
  std::span<const int32_t> narrow;
  bool empty() const { return wide.empty() && narrow.empty(); }
};

// Where a binary input's values lie in the body, if there as T's (a little-endian host, the
// section aligned for T): read them there rather than copy them.
template <class T>
std::span<const T> aligned_in_body(const InputDesc& d) {
  if (std::endian::native != std::endian::little ||
      reinterpret_cast<uintptr_t>(d.binary.data()) % alignof(T) != 0) {
    return {};
  }
  return {reinterpret_cast<const T*>(d.binary.data()), d.elements};
}

// Both parsers: with `in_place`, binary ids aligned in `body` are not copied; *in_place
// is then set to them (and batch.sparse.indices left empty).
Result<InferRequest> parse(std::string_view body, std::optional<size_t> header_length,
                           const engine::ModelSpec& spec, const InferLimits& limits,
                           const SharedMemoryReader* shm, IdsInPlace* in_place) {
  size_t json_size = body.size();
  if (header_length) {
    if (*header_length > body.size()) {
      return invalid_argument(std::string(kInferHeaderContentLength) + " " +
                              std::to_string(*header_length) + " exceeds the body's " +
                              std::to_string(body.size()) + " bytes");
    }
    json_size = *header_length;
  }
  RECSCHED_ASSIGN_OR_RETURN(const json req,
                            parse_header(body.substr(0, json_size), limits.max_json_depth));

  InferRequest out;
  if (const auto id = req.find("id"); id != req.end()) {
    if (!id->is_string()) return invalid_argument("'id' must be a string");
    out.id = id->get<std::string>();
  }
  RECSCHED_RETURN_IF_ERROR(read_parameters(req, out));
  RECSCHED_RETURN_IF_ERROR(read_outputs(req, spec, out));

  std::vector<InputSlot> order;
  RECSCHED_ASSIGN_OR_RETURN(Inputs in, read_inputs(req, order));
  RECSCHED_ASSIGN_OR_RETURN(const uint64_t n, check_shapes(in, spec, limits));
  RECSCHED_RETURN_IF_ERROR(
      lay_out_binary(in, order, body.substr(json_size), header_length.has_value()));
  RECSCHED_RETURN_IF_ERROR(check_shared_memory(in, shm));

  Batch& batch = out.batch;
  batch.batch_size = static_cast<uint32_t>(n);
  batch.num_dense = static_cast<uint32_t>(spec.dense_features);
  batch.num_tables = static_cast<uint32_t>(spec.num_tables());
  if (in[kDense]) RECSCHED_RETURN_IF_ERROR(decode(kDense, *in[kDense], batch.dense, shm));

  std::vector<int32_t> lengths;
  bool ids_checked = false;  // every id checked against its table as it was read
  if (in[kLengths]) {
    RECSCHED_RETURN_IF_ERROR(decode(kLengths, *in[kLengths], lengths, shm));
    uint64_t total = 0;
    for (size_t i = 0; i < lengths.size(); ++i) {
      if (lengths[i] < 0) {
        return input_error(kLengths, "element " + std::to_string(i) + " is " +
                                         std::to_string(lengths[i]) + ", a negative length");
      }
      total += static_cast<uint64_t>(lengths[i]);
    }
    // check_shapes made the pair present together.
    const uint64_t ids = in[kIndices]->elements;
    if (ids != total) {
      return input_error(kIndices, "shape " + shape_string(in[kIndices]->shape) + " holds " +
                                       std::to_string(ids) + " ids but sparse_lengths add up to " +
                                       std::to_string(total));
    }
    const InputDesc& desc = *in[kIndices];
    batch.sparse.offsets = Batch::offsets_from_lengths(lengths);
    const bool narrow = desc.element_size == sizeof(int32_t);
    const std::span<const int32_t> narrow_in_body =
        in_place != nullptr && desc.binary_size && narrow ? aligned_in_body<int32_t>(desc)
                                                          : std::span<const int32_t>();
    SharedBytes mapped;  // ids in the client's region, where they lie
    if (desc.shm_region && desc.elements > 0 && std::endian::native == std::endian::little) {
      RECSCHED_ASSIGN_OR_RETURN(mapped, map_ids(desc, *shm));
    }
    if (!narrow_in_body.empty()) {
      // INT32 ids where they lie: not copied and never widened (the engine gathers with
      // 32-bit ids: BatchView::narrow_indices); validate_batch checks them below.
      in_place->narrow = narrow_in_body;
    } else if (mapped.shrank) {
      // Ids in the client's region, used there: no copy of 0.4-1 MB into fresh memory. They
      // are checked here (a bad id is refused before the query queues, by the same message
      // as elsewhere), and the kernels check each again as they read it, since the client
      // can rewrite its region at any time; a device that reads them otherwise gets its
      // own copy first (InferRequest::own_shared_ids).
      auto use_mapped = [&]<class Id>(std::span<const Id>& view) -> Status {
        const std::span<const Id> ids(reinterpret_cast<const Id*>(mapped.bytes.data()),
                                      desc.elements);
        uint64_t t = 0;
        RECSCHED_RETURN_IF_ERROR(check_ids_by_table(spec, batch.sparse.offsets, n, t, 0, ids));
        view = ids;
        return Status::ok();
      };
      RECSCHED_RETURN_IF_ERROR(narrow ? use_mapped(out.narrow_ids) : use_mapped(out.ids_in_place));
      out.shared_ids = std::move(mapped.shrank);
      ids_checked = true;
    } else if ((desc.shm_region && std::endian::native == std::endian::little) ||
               (desc.binary_size && narrow)) {
      // Into memory of their own, not zeroed first (a vector's resize would write the 1 MB
      // once more before the read does), in the wire's width, checked as they are read.
      auto read_own = [&]<class Id>(std::unique_ptr<Id[]>& own, std::span<const Id>& view) {
        own = std::make_unique_for_overwrite<Id[]>(desc.elements);
        const std::span<Id> ids(own.get(), desc.elements);
        view = ids;
        return read_ids_checked(desc, shm, spec, batch.sparse.offsets, n, ids);
      };
      RECSCHED_RETURN_IF_ERROR(narrow ? read_own(out.own_narrow_ids, out.narrow_ids)
                                      : read_own(out.own_ids, out.ids_in_place));
      ids_checked = true;
    } else if (narrow) {  // JSON INT32 ids, or shared memory on a big-endian host
      std::vector<int32_t> narrow_ids;
      RECSCHED_RETURN_IF_ERROR(decode(kIndices, desc, narrow_ids, shm));
      batch.sparse.indices.assign(narrow_ids.begin(), narrow_ids.end());
    } else if (const auto wide = in_place != nullptr && desc.binary_size
                                     ? aligned_in_body<int64_t>(desc)
                                     : std::span<const int64_t>();
               !wide.empty()) {
      in_place->wide = wide;
    } else {
      RECSCHED_RETURN_IF_ERROR(decode(kIndices, desc, batch.sparse.indices, shm));
    }
  } else {
    batch.sparse.offsets = Batch::offsets_from_lengths(lengths);  // no tables: {0}
  }
  BatchView view = view_of(batch);
  if (!out.ids_in_place.empty()) view.indices = out.ids_in_place;
  if (!out.narrow_ids.empty()) view.narrow_indices = out.narrow_ids;
  if (in_place != nullptr && !in_place->wide.empty()) view.indices = in_place->wide;
  if (in_place != nullptr && !in_place->narrow.empty()) view.narrow_indices = in_place->narrow;
  RECSCHED_RETURN_IF_ERROR(ids_checked ? engine::validate_layout(spec, view)
                                       : engine::validate_batch(spec, view));
  return out;
}

}  // namespace

std::string printable_excerpt(std::string_view s, size_t max_chars) {
  std::string out;
  for (char c : s.substr(0, max_chars)) out += (c >= 0x20 && c < 0x7f) ? c : '?';
  if (s.size() > max_chars) out += "...";
  return out;
}

Result<InferRequest> parse_infer_request(std::string_view body, std::optional<size_t> header_length,
                                         const engine::ModelSpec& spec, const InferLimits& limits,
                                         const SharedMemoryReader* shm) {
  return parse(body, header_length, spec, limits, shm, nullptr);
}

Result<InferRequest> parse_infer_request_in_place(std::string body,
                                                  std::optional<size_t> header_length,
                                                  const engine::ModelSpec& spec,
                                                  const InferLimits& limits,
                                                  const SharedMemoryReader* shm) {
  // On the heap before parsing: the ids' address stays fixed however the request moves.
  auto wire = std::make_unique<const std::string>(std::move(body));
  IdsInPlace ids;
  RECSCHED_ASSIGN_OR_RETURN(InferRequest out, parse(*wire, header_length, spec, limits, shm, &ids));
  if (!ids.empty()) {
    out.ids_in_place = ids.wide;
    out.narrow_ids = ids.narrow;
    out.wire = std::move(wire);
  }
  return out;
}

Status InferRequest::own_shared_ids(const engine::ModelSpec& spec) {
  if (!shared_ids) return Status::ok();
  if (!narrow_ids.empty()) {
    own_narrow_ids = std::make_unique_for_overwrite<int32_t[]>(narrow_ids.size());
    std::copy(narrow_ids.begin(), narrow_ids.end(), own_narrow_ids.get());
    narrow_ids = {own_narrow_ids.get(), narrow_ids.size()};
  } else {
    own_ids = std::make_unique_for_overwrite<int64_t[]>(ids_in_place.size());
    std::copy(ids_in_place.begin(), ids_in_place.end(), own_ids.get());
    ids_in_place = {own_ids.get(), ids_in_place.size()};
  }
  const bool intact = shared_ids_intact();  // after the copy: a shrink during it counts
  shared_ids.reset();
  if (!intact) return invalid_argument(std::string(kSharedIdsShrank));
  return engine::validate_batch(spec, view());  // what the client may have changed since
}

EncodedResponse encode_infer_response(std::string_view model, std::string_view id,
                                      std::span<const float> scores, uint32_t n, uint32_t k,
                                      bool binary) {
  assert(scores.size() == size_t(n) * k);
  // Written by hand rather than through json::dump: a float goes out in its shortest
  // round-trip form (to_chars), not widened to double ("0.1", not "0.10000000149011612").
  std::string head = "{\"model_name\":" + quoted(model) + ",\"model_version\":\"1\"";
  if (!id.empty()) head += ",\"id\":" + quoted(id);
  head += ",\"outputs\":[{\"name\":\"" + std::string(kScoresOutput) +
          "\",\"datatype\":\"FP32\",\"shape\":[" + std::to_string(n) + "," + std::to_string(k) +
          "]";
  EncodedResponse r;
  if (binary) {
    const size_t bytes = scores.size() * sizeof(float);
    head += ",\"parameters\":{\"binary_data_size\":" + std::to_string(bytes) + "}}]}";
    r.header_length = head.size();
    r.content_type = "application/octet-stream";
    r.body = std::move(head);
    r.body.reserve(r.body.size() + bytes);
    if constexpr (std::endian::native == std::endian::little) {
      r.body.append(reinterpret_cast<const char*>(scores.data()), bytes);
    } else {
      for (float v : scores) {
        const uint32_t u = std::bit_cast<uint32_t>(v);
        for (int b = 0; b < 4; ++b) r.body.push_back(static_cast<char>((u >> (8 * b)) & 0xff));
      }
    }
    return r;
  }
  r.content_type = "application/json";
  r.body = std::move(head);
  r.body.reserve(r.body.size() + 16 + scores.size() * 16);
  r.body += ",\"data\":[";
  char buf[32];
  for (size_t i = 0; i < scores.size(); ++i) {
    if (i > 0) r.body.push_back(',');
    if (!std::isfinite(scores[i])) {
      r.body += "null";  // JSON has no NaN or infinity; nlohmann writes null as well
      continue;
    }
    const auto res = std::to_chars(buf, buf + sizeof(buf), scores[i]);
    r.body.append(buf, res.ptr);
  }
  r.body += "]}]}";
  return r;
}

nlohmann::json model_metadata(const engine::ModelSpec& spec) {
  auto tensor = [](std::string_view name, std::string_view datatype, json shape) {
    return json{{"name", name}, {"datatype", datatype}, {"shape", std::move(shape)}};
  };
  json inputs = json::array();
  if (spec.dense_features > 0) {
    inputs.push_back(tensor(kDenseInput, "FP32", json::array({-1, spec.dense_features})));
  }
  if (spec.num_tables() > 0) {
    inputs.push_back(tensor(kLengthsInput, "INT32", json::array({spec.num_tables(), -1})));
    inputs.push_back(tensor(kIndicesInput, "INT64", json::array({-1})));
  }
  return json{
      {"name", spec.name},
      {"versions", json::array({"1"})},
      {"platform", "recsched"},
      {"inputs", std::move(inputs)},
      {"outputs",
       json::array({tensor(kScoresOutput, "FP32", json::array({-1, spec.num_outputs()}))})}};
}

}  // namespace recsched::daemon
