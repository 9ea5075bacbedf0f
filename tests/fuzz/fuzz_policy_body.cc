// libFuzzer harness: the body of PUT /v1/policy, {"name": ..., "params": {...}}. The text
// is parsed as JSON; the policy it names (or, with no usable name, every registered one)
// is built with policies::create_policy(name, params), and one that builds is re-tuned
// with configure(params) and with its own params(), as a later PUT would. Every message
// must be sendable as a JSON error body.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "policies/registry.h"
#include "tests/fuzz/fuzz_common.h"

namespace {

void try_policy(const std::string& name, const nlohmann::json& params) {
  using namespace recsched;
  auto policy = policies::create_policy(name, params);
  if (!policy) {
    // kNotFound for a name the registry does not have (recschedd then tries its plugins),
    // kInvalidArgument for bad params.
    const auto names = policies::policy_names();
    const bool known = std::find(names.begin(), names.end(), name) != names.end();
    FUZZ_CHECK(policy.status().code() ==
               (known || !params.is_object() ? StatusCode::kInvalidArgument
                                             : StatusCode::kNotFound));
    (void)nlohmann::json{{"error", policy.status().message()}}.dump();
    return;
  }
  FUZZ_CHECK(*policy != nullptr);
  // (Its own params() are not always accepted back: deeprecsched reports its per-model
  // state under "models" with read-only keys ("settled", "given", ...), which configure()'s
  // "models" (sub_batch and threshold only) refuses.)
  const nlohmann::json own = (*policy)->params();
  (void)own.dump();
  const Status st = (*policy)->configure(params);
  if (!st.is_ok()) {
    FUZZ_CHECK(st.code() == StatusCode::kInvalidArgument);
    FUZZ_CHECK((*policy)->params() == own);  // a refused configure changes nothing
    (void)nlohmann::json{{"error", st.message()}}.dump();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using nlohmann::json;
  const json body = json::parse(recsched::fuzz::as_text(data, size), nullptr, false);
  if (body.is_discarded() || !body.is_object()) return 0;
  const auto name = body.find("name");
  const auto params_it = body.find("params");
  const json params = params_it == body.end() ? json::object() : *params_it;
  if (name != body.end() && name->is_string()) {
    try_policy(name->get<std::string>(), params);
  } else {
    for (const std::string& n : recsched::policies::policy_names()) try_policy(n, params);
  }
  return 0;
}
