#include "exec/runner.h"

#include <algorithm>
#include <vector>

#include <future>

namespace recsched::exec {

Status Runner::run(Request request) {
  std::promise<Status> result;
  request.done = [&](Status st) { result.set_value(std::move(st)); };
  RECSCHED_RETURN_IF_ERROR(submit(std::move(request)));
  return result.get_future().get();
}

Status Runner::warm_up(const engine::Model& model, const BatchView& batch) {
  std::vector<float> scores(size_t(batch.batch_size) * model.spec().num_outputs());
  return run(Request{.model = &model,
                     .batch = batch,
                     .scores = scores,
                     .sub_batch = std::max<uint32_t>(1, batch.batch_size),
                     .workers = 1});
}

Status check_request(const Request& request) {
  if (request.model == nullptr) return invalid_argument("request has no model");
  if (request.scores.size() !=
      size_t(request.batch.batch_size) * request.model->spec().num_outputs()) {
    return invalid_argument("scores buffer has the wrong size");
  }
  return Status::ok();
}

}  // namespace recsched::exec
