// libFuzzer harness: recschedd's config file. An input is the file's text, parsed by
// daemon::parse_config with relative paths taken against tests/fuzz/config_base/ (two tiny
// model specs, tiny.json and ncf4.json). A config that parses has its policy built as the
// daemon would (policies::create_policy) and its TCP address split. The text alone also
// goes through split_host_port, the --tcp parser.
#include <cstddef>
#include <cstdint>
#include <string>

#include "daemon/config.h"
#include "policies/registry.h"
#include "tests/fuzz/fuzz_common.h"

#ifndef RECSCHED_FUZZ_CONFIG_BASE
#error "RECSCHED_FUZZ_CONFIG_BASE must name tests/fuzz/config_base"
#endif

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace recsched;
  const auto text = fuzz::as_text(data, size);
  (void)daemon::split_host_port(std::string(text));

  auto config = daemon::parse_config(text, RECSCHED_FUZZ_CONFIG_BASE, "fuzz.json");
  if (!config) {
    const Status st = config.status();
    FUZZ_CHECK(st.code() == StatusCode::kInvalidArgument);
    const std::string& m = st.message();
    FUZZ_CHECK(m.rfind("config fuzz.json: ", 0) == 0 && m.find('\n') == std::string::npos);
    return 0;
  }
  FUZZ_CHECK(!config->models.empty());
  FUZZ_CHECK(config->policy.params.is_object());
  FUZZ_CHECK(!config->listen.socket.empty() || !config->listen.tcp.empty());
  if (!config->listen.tcp.empty())
    FUZZ_CHECK(daemon::split_host_port(config->listen.tcp).has_value());
  (void)policies::create_policy(config->policy.name, config->policy.params);
  return 0;
}
