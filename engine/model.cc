#include "engine/model.h"

#include <exception>

#include "core/failpoint.h"

#include "engine/dlrm.h"
#include "engine/zoo.h"

namespace recsched::engine {

Result<float*> Workspace::floats(size_t slot, size_t count) {
  if (slots_.size() <= slot) slots_.resize(slot + 1);
  if (slots_[slot].size() < count) {
    // Grow by at least 1.5x so a slowly rising batch size does not reallocate each time.
    RECSCHED_ASSIGN_OR_RETURN(slots_[slot],
                              HostBuffer::allocate(std::max(count, slots_[slot].size() * 3 / 2)));
  }
  return slots_[slot].data();
}

Result<std::unique_ptr<Model>> load_model(const ModelSpec& spec, const LoadOptions& options) {
  switch (spec.type) {
    case ModelType::kDlrm:
      return load_dlrm(spec, options);
    case ModelType::kNcf:
      return load_ncf(spec, options);
    case ModelType::kWnd:
    case ModelType::kMtwnd:
      return load_wnd(spec, options);
    case ModelType::kDin:
      return load_din(spec, options);
    case ModelType::kDien:
      return load_dien(spec, options);
  }
  return internal_error("unhandled model type");
}

Status guarded_forward(const Model& model, const BatchView& batch, Workspace& ws,
                       std::span<float> scores, const std::string& device, bool fail_points) {
  try {
    if (fail_points && failpoint::any()) {
      RECSCHED_RETURN_IF_ERROR(failpoint::hit("forward." + device));
    }
    return model.forward(batch, ws, scores);
  } catch (const std::exception& e) {
    return internal_error("device " + device + ": forward() threw: " + e.what());
  } catch (...) {
    return internal_error("device " + device + ": forward() threw a non-exception");
  }
}

}  // namespace recsched::engine
