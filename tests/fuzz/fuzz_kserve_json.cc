// libFuzzer harness: KServe v2 infer request bodies in JSON form (POST
// /v2/models/{m}/infer without Inference-Header-Content-Length), parsed by
// daemon::parse_infer_request against two fixed small specs (tests/fuzz/fuzz_common.h).
#include <cstddef>
#include <cstdint>
#include <optional>

#include "tests/fuzz/fuzz_kserve.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  recsched::fuzz::parse_and_check(recsched::fuzz::as_text(data, size), std::nullopt);
  return 0;
}
