// The KServe v2 harnesses' shared body: parse one infer request against both fixed specs
// and check what a successful parse promises, then encode a response for it.
#pragma once

#include <algorithm>
#include <array>
#include <cstring>
#include <span>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "daemon/kserve.h"
#include "engine/inputs.h"
#include "tests/fuzz/fuzz_common.h"

namespace recsched::fuzz {

// One shared-memory region, "r": 4 KiB of a fixed pattern (zeros, then small integers), as
// recschedd's registry would serve it; any other name or range is refused.
class FixedRegion final : public daemon::SharedMemoryReader {
 public:
  FixedRegion() {
    for (size_t i = 0; i < bytes_.size(); ++i) bytes_[i] = i < 1024 ? 0 : char(i % 4 == 0 ? i % 7 : 0);
  }
  Status read(std::string_view region, uint64_t offset, std::span<std::byte> into) const override {
    if (region != "r") return invalid_argument("no shared-memory region");
    if (offset > bytes_.size() || into.size() > bytes_.size() - offset) {
      return invalid_argument("past the region's end");
    }
    std::memcpy(into.data(), bytes_.data() + offset, into.size());
    return Status::ok();
  }

 private:
  std::array<char, 4096> bytes_{};
};

inline void parse_and_check(std::string_view body, std::optional<size_t> header_length) {
  const daemon::InferLimits limits;  // the daemon's defaults
  static const FixedRegion region;
  for (const engine::ModelSpec* spec : {&dlrm_spec(), &ncf_spec()}) {
    // With a region to read from: refused with a message, or a batch that validates.
    auto shared = daemon::parse_infer_request(body, header_length, *spec, limits, &region);
    if (!shared) {
      FUZZ_CHECK(shared.status().code() == StatusCode::kInvalidArgument);
      FUZZ_CHECK(!shared.status().message().empty());
    } else {
      FUZZ_CHECK(engine::validate_batch(*spec, shared->view()).is_ok());
    }
    auto req = daemon::parse_infer_request(body, header_length, *spec, limits);
    if (!req) {
      FUZZ_CHECK(req.status().code() == StatusCode::kInvalidArgument);
      FUZZ_CHECK(!req.status().message().empty());
      // The daemon sends the message back as {"error": message}: dump() throws (a crash
      // here) on text that is not UTF-8.
      (void)nlohmann::json{{"error", req.status().message()}}.dump();
      continue;
    }
    const Batch& b = req->batch;
    FUZZ_CHECK(b.batch_size >= 1 && b.batch_size <= limits.max_items);
    FUZZ_CHECK(engine::validate_batch(*spec, b).is_ok());
    // parse_infer_request_in_place (ids read where they lie when aligned) decodes the same batch.
    auto owned =
        daemon::parse_infer_request_in_place(std::string(body), header_length, *spec, limits);
    FUZZ_CHECK(owned.has_value());
    const BatchView v = owned->view();
    FUZZ_CHECK(engine::validate_batch(*spec, v).is_ok());
    FUZZ_CHECK(std::equal(v.indices.begin(), v.indices.end(), b.sparse.indices.begin(),
                          b.sparse.indices.end()));
    FUZZ_CHECK(std::equal(v.offsets.begin(), v.offsets.end(), b.sparse.offsets.begin(),
                          b.sparse.offsets.end()));
    FUZZ_CHECK(!req->sla_ms || *req->sla_ms > 0);
    // The response echoes the caller's id: it must come out as valid JSON.
    const uint32_t k = static_cast<uint32_t>(spec->num_outputs());
    std::vector<float> scores(size_t{b.batch_size} * k, 0.5f);
    auto res = daemon::encode_infer_response(spec->name, req->id, scores, b.batch_size, k,
                                             req->binary_output);
    const std::string_view json_part =
        res.header_length ? std::string_view(res.body).substr(0, *res.header_length) : res.body;
    auto j = nlohmann::json::parse(json_part, nullptr, false);
    FUZZ_CHECK(!j.is_discarded());
    FUZZ_CHECK(j.value("id", std::string()) == req->id);
  }
}

}  // namespace recsched::fuzz
