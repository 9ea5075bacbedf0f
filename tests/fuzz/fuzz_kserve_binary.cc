// libFuzzer harness: KServe v2 infer requests with the binary tensor data extension. An
// input is a 4-byte little-endian Inference-Header-Content-Length (0xffffffff: the header
// is absent) followed by the body: the JSON header, then the tensors' raw bytes. Parsed by
// daemon::parse_infer_request against two fixed small specs (tests/fuzz/fuzz_common.h).
#include <cstddef>
#include <cstdint>
#include <optional>

#include "tests/fuzz/fuzz_kserve.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 4) return 0;
  const uint32_t h = uint32_t{data[0]} | uint32_t{data[1]} << 8 | uint32_t{data[2]} << 16 |
                     uint32_t{data[3]} << 24;
  std::optional<size_t> header_length;
  if (h != 0xffffffffu) header_length = h;
  recsched::fuzz::parse_and_check(recsched::fuzz::as_text(data + 4, size - 4), header_length);
  return 0;
}
