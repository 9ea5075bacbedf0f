// libFuzzer harness: safetensors headers (weights files). An input is the header's JSON
// text; the data after it is taken to be 16 MiB long. engine::parse_safetensors_header
// is what SafetensorsFile::open runs on a file's header before reading any tensor data.
#include <cstddef>
#include <cstdint>

#include "engine/safetensors.h"
#include "tests/fuzz/fuzz_common.h"

namespace {

constexpr uint64_t kDataSize = 1u << 24;

uint64_t dtype_size(const std::string& dtype) {
  if (dtype == "F64" || dtype == "I64" || dtype == "U64") return 8;
  if (dtype == "F32" || dtype == "I32" || dtype == "U32") return 4;
  if (dtype == "F16" || dtype == "BF16" || dtype == "I16" || dtype == "U16") return 2;
  return 1;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using recsched::engine::TensorInfo;
  const auto header = recsched::fuzz::as_text(data, size);
  auto tensors = recsched::engine::parse_safetensors_header(header, kDataSize);
  if (!tensors) {
    FUZZ_CHECK(tensors.status().code() == recsched::StatusCode::kInvalidArgument);
    return 0;
  }
  // What a successful parse promises: every tensor's bytes lie inside the data section and
  // are exactly its element count times its dtype's size (no overflow on the way).
  const uint64_t data_start = 8 + header.size();
  for (const TensorInfo& t : *tensors) {
    FUZZ_CHECK(t.begin >= data_start && t.bytes <= kDataSize &&
               t.begin - data_start <= kDataSize - t.bytes);
    uint64_t elements = 1;
    for (int64_t d : t.shape) {
      FUZZ_CHECK(d >= 0);
      FUZZ_CHECK(!__builtin_mul_overflow(elements, static_cast<uint64_t>(d), &elements));
    }
    uint64_t bytes = 0;
    FUZZ_CHECK(!__builtin_mul_overflow(elements, dtype_size(t.dtype), &bytes));
    FUZZ_CHECK(bytes == t.bytes && elements == t.elements());
  }
  return 0;
}
