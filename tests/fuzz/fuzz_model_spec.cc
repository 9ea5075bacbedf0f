// libFuzzer harness: model spec files (models/*.json). An input is the file's text: JSON
// parsed as load_model_spec does, then engine::parse_model_spec. A spec that validates has
// its derived shapes computed and its KServe metadata built; a small one (tables and
// weights under 4 MiB) is also loaded with seeded weights and scores a 2-item batch.
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "daemon/kserve.h"
#include "engine/inputs.h"
#include "engine/model.h"
#include "tests/fuzz/fuzz_common.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace recsched;
  const auto j = nlohmann::json::parse(fuzz::as_text(data, size), nullptr, false);
  if (j.is_discarded()) return 0;
  auto spec = engine::parse_model_spec(j);
  if (!spec) {
    FUZZ_CHECK(spec.status().code() == StatusCode::kInvalidArgument);
    return 0;
  }
  FUZZ_CHECK(spec->embedding_dim > 0 && spec->num_outputs() > 0);
  FUZZ_CHECK(spec->table_rows.size() == spec->spec_rows.size());
  for (int64_t rows : spec->table_rows) FUZZ_CHECK(rows >= 1);
  const uint64_t table_bytes = spec->table_bytes();
  const uint64_t dense_bytes = spec->dense_bytes();
  (void)spec->dense_macs_per_item();
  if (spec->type == engine::ModelType::kDlrm) FUZZ_CHECK(spec->top_input_width() > 0);
  (void)daemon::model_metadata(*spec).dump();

  if (table_bytes + dense_bytes > (4u << 20) || spec->dense_macs_per_item() > (1u << 22) ||
      spec->lookups_per_table > 64) {
    return 0;
  }
  auto model = engine::load_model(*spec, {});
  FUZZ_CHECK(model.has_value());
  const Batch batch = engine::random_batch(*spec, 2, 1);
  FUZZ_CHECK(engine::validate_batch(*spec, batch).is_ok());
  engine::Workspace ws;
  std::vector<float> scores(2 * static_cast<size_t>(spec->num_outputs()));
  FUZZ_CHECK((*model)->forward(view_of(batch), ws, scores).is_ok());
  for (float s : scores) FUZZ_CHECK(std::isfinite(s));
  return 0;
}
