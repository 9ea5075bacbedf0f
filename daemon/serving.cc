// The serving path of one inference request, start to answer. In order:
//   1. infer(): snapshot the model's target and the limits; if no device could even start
//      the query within its target, answer 503 before decoding (Dispatcher::hopeless);
//   2. decode and validate the KServe body (kserve.h) into an InFlight;
//   3. dispatch(): the dispatcher asks the active policy for a placement and admits it
//      against the SLA (policies/dispatcher.h); a Status says rejected (503) or failed (500);
//   4. submit(): the device's runner queues it (exec/runner.h), earliest deadline first
//      (static's deadline is the arrival: first come, first served); or a tiny query with
//      a CPU worker idle runs
//      here, on the I/O thread, in that worker's place (run_here, limits.inline_max_ms, or
//      inline_idle_max_ms with no other query in flight);
//   5. finish(): on every path (scores, rejection, failure, shutdown) the one place that
//      settles the dispatcher's backlog, counts the outcome, logs the placement and answers.
// routes.cc maps a request to infer(); main.cc owns the HTTP server that calls it.
#include <algorithm>
#include <chrono>
#include <memory>
#include <optional>

#include "daemon/http_util.h"
#include "daemon/kserve.h"
#include "daemon/service.h"

namespace recsched::daemon {

// One query from the moment it reaches the service to its answer.
struct Service::InFlight {
  ModelState* model = nullptr;
  Responder respond;
  Clock::time_point arrival;
  double sla_ms = 0;             // the model's target, or the request's own
  bool decoded = false;          // the body was valid: later failures are not "invalid"
  InferRequest request;          // once decoded
  policies::Decision decision;   // once dispatched; admitted() means complete() is owed
  bool dispatched = false;       // a placement was decided: it goes to the placement log
  ServingDevice* device = nullptr;  // once admitted
  bool ran = false;              // the runner ran it (its latency means something)
  Clock::time_point dispatched_at;  // when the dispatcher decided (decoding done)
  Clock::time_point started;     // its first piece's start (the runner writes it)
  Clock::time_point done_at;     // the runner finished it
  double suspended_ms = 0;       // of that, suspended for more urgent queries (the runner writes it)
  uint32_t pass_items = 0;       // a GPU's merged pass: all its items (the runner writes it)
  bool counted_in_flight = false;
  std::vector<float> scores;
  PlacementRecord record;
};

std::vector<policies::DeviceLoad> Service::device_loads(uint32_t degraded_ms) const {
  std::vector<policies::DeviceLoad> loads;
  loads.reserve(devices_.size());
  for (const auto& d : devices_) {
    const exec::Load l = d->runner().load();
    loads.push_back({l.busy_workers, l.queries, l.active_workers, d->health(degraded_ms).degraded});
  }
  return loads;
}

void Service::infer(const std::string& name, HttpRequest req, Responder respond) {
  auto q = std::make_shared<InFlight>();
  q->model = find(name);
  q->respond = std::move(respond);
  q->arrival = Clock::now();
  InferLimits limits;
  size_t max_queue;
  uint32_t degraded_ms;
  LimitsConfig inline_limits;  // inline_bound_ms's two fields
  double arrivals_per_s;
  {
    std::lock_guard<std::mutex> lock(mu_);
    arrivals_.add(seconds(q->arrival));
    arrivals_per_s = arrivals_.rate(seconds(q->arrival));
    inline_limits.inline_max_ms = config_.limits.inline_max_ms;
    inline_limits.inline_idle_max_ms = config_.limits.inline_idle_max_ms;
    limits.max_items = config_.limits.max_items;
    limits.max_elements = config_.limits.max_elements;
    limits.max_json_depth = static_cast<int>(config_.limits.max_json_depth);
    degraded_ms = config_.limits.degraded_ms;
    max_queue = config_.limits.max_queue;
    q->sla_ms = q->model->cfg.sla_ms;
    ++q->model->requests;
    q->model->offered.add(seconds(q->arrival));
  }
  std::optional<size_t> header_length;
  if (auto it = req.headers.find("inference-header-content-length"); it != req.headers.end()) {
    try {
      size_t used = 0;
      header_length = std::stoull(it->second, &used);
      if (used != it->second.size()) throw std::invalid_argument("trailing characters");
    } catch (const std::exception&) {
      return finish(q, invalid_argument("Inference-Header-Content-Length is not a number"));
    }
  }
  const std::vector<policies::DeviceLoad> loads = device_loads(degraded_ms);

  // 1. Deep overload: answered before decoding (for a large request the decode is most of
  // what it costs). A request that may carry its own sla_ms is decoded first: its target
  // is in the body.
  const std::string_view body(req.body);
  if (body.substr(0, header_length.value_or(body.size())).find("sla_ms") == std::string_view::npos) {
    Status st;
    {
      std::lock_guard<std::mutex> lock(dispatch_mu_);
      st = dispatcher_->hopeless(name, q->sla_ms, loads);
    }
    if (!st.is_ok()) return finish(q, st);
  }

  // 2. Decode.
  // Shared-memory inputs are read for clients on the unix socket only, from regions their
  // own uid registered (daemon/shared_memory.h).
  std::optional<SystemSharedMemory::Reader> shm;
  if (req.via_unix_socket && req.peer_uid && shm_->enabled()) shm.emplace(*shm_, *req.peer_uid);
  Result<InferRequest> parsed = parse_infer_request_in_place(
      std::move(req.body), header_length, q->model->cfg.spec, limits, shm ? &*shm : nullptr);
  if (!parsed) return finish(q, parsed.status());
  q->request = std::move(parsed).value();
  q->decoded = true;
  if (q->request.sla_ms) q->sla_ms = *q->request.sla_ms;
  const uint32_t n = q->request.batch.batch_size;

  // 3. Placement and admission.
  policies::ModelView view;
  double overhead_ms;  // learnt time outside the runner: decoding, encoding
  {
    std::lock_guard<std::mutex> lock(mu_);
    view = {name, q->sla_ms, q->model->window.percentile(95), q->model->cfg.sla_percentile};
    overhead_ms = correction_.overhead_ms(name, n).value;
  }
  const std::shared_ptr<const ProfileTable> table = profiles();
  const uint64_t query_id = next_query_++;
  {
    std::lock_guard<std::mutex> lock(dispatch_mu_);
    q->decision = dispatcher_->dispatch({query_id, &view, n, q->sla_ms}, loads, *table,
                                        Clock::now(), q->request.priority,
                                        q->request.sla_ms.has_value(), overhead_ms);
  }
  q->dispatched_at = Clock::now();
  q->dispatched = true;
  q->record = {.query_id = query_id,
               .request_id = q->request.id,
               .model = name,
               .items = n,
               .policy = q->decision.policy,
               .placement = q->decision.placement,
               .outcome = {}};
  if (!q->decision.admitted()) return finish(q, q->decision.status);
  q->device = devices_[q->decision.device_index].get();
  const engine::Model* model = q->model->on[q->decision.device_index].get();
  if (model == nullptr) {
    // The policy chose a device without the model (it had no profile there): a policy bug.
    return finish(q, internal_error(q->decision.policy + " placed " + name + " on " +
                                    q->device->id() + ", which does not hold it"));
  }
  // Ids in the client's region are read there by the CPU kernels, which check each id as
  // they read it. A GPU copies them to the device and may merge them with other queries'
  // into one pass, where a bad id would fail the others too: it gets a copy the client can
  // no longer change, checked again.
  if (q->request.shared_ids && q->device->kind() != policies::DeviceKind::kCpu) {
    Status own = q->request.own_shared_ids(q->model->cfg.spec);
    if (!own.is_ok()) return finish(q, std::move(own));
  }
  const policies::Placement& pl = q->decision.placement;
  if (pl.active_workers > 0) q->device->runner().set_active_workers(pl.active_workers);

  // 4. Submit. Its place in the device's queue: due at arrival + target, or at arrival
  // (FIFO). A request's own target is unbounded: past 10^9 ms (11 days) it makes no
  // difference.
  q->scores.resize(size_t(n) * q->model->cfg.spec.num_outputs());
  const auto deadline =
      q->arrival + (pl.order == policies::QueueOrder::kDeadline
                        ? std::chrono::duration_cast<Clock::duration>(
                              std::chrono::duration<double, std::milli>(std::min(q->sla_ms, 1e9)))
                        : Clock::duration::zero());
  const uint64_t others_in_flight = in_flight_++;
  q->counted_in_flight = true;
  exec::Request run{.model = model,
                    .batch = q->request.view(),
                    .scores = q->scores,
                    .sub_batch = pl.sub_batch,
                    .workers = pl.workers,
                    .short_items = q->decision.short_items,
                    .reserve = q->decision.reserve,
                    .urgent_at = q->decision.urgent_at,
                    .deadline = deadline,
                    .done =
                        [this, q](Status st) {
                          q->done_at = Clock::now();
                          q->ran = true;
                          if (q->request.shared_ids) {
                            // Ids read in the client's region: a bad id there is one the
                            // client wrote after they were checked, and a shrunk object
                            // read as zeros. The client's doing, not the device's.
                            if (!q->request.shared_ids_intact()) {
                              st = invalid_argument(std::string(kSharedIdsShrank));
                            }
                            if (st.code() == StatusCode::kInvalidArgument) {
                              return finish(q, std::move(st));
                            }
                          }
                          q->device->record_outcome(st);
                          if (!st.is_ok()) {
                            st = Status(st.code(), "query failed on " + q->device->id() +
                                                       " (now degraded): " + st.message());
                          }
                          finish(q, std::move(st));
                        },
                    .started = &q->started,
                    .suspended_ms = &q->suspended_ms,
                    .pass_items = &q->pass_items};
  // A tiny query with a worker idle and none waiting runs here, on the thread that read
  // it: the same start, without waking a worker (exec::Runner::run_here). With nothing
  // else in flight and few requests arriving, a larger bound (limits.inline_idle_max_ms):
  // a worker woken from an idle core is then most of the hand-off, and hardly any
  // request comes while the pass holds this thread (LimitsConfig::inline_bound_ms).
  // (A bound of 0 turns it off, whatever the prediction: a policy may leave it 0.)
  const double inline_bound = inline_limits.inline_bound_ms(others_in_flight, arrivals_per_s);
  if (inline_bound > 0 && q->decision.service_ms <= inline_bound &&
      q->device->runner().run_here(run, max_queue)) {
    return;
  }
  Status st = q->device->runner().submit(std::move(run), max_queue);
  if (!st.is_ok()) finish(q, std::move(st));
}

void Service::finish(const std::shared_ptr<InFlight>& q, Status st) {
  const Clock::time_point finished = Clock::now();
  const double ms = std::chrono::duration<double, std::milli>(finished - q->arrival).count();
  const uint32_t n = q->request.batch.batch_size;
  // 5a. The dispatcher: the device's backlog, and the policy's feedback.
  if (q->decision.admitted()) {
    std::lock_guard<std::mutex> lock(dispatch_mu_);
    dispatcher_->complete(q->decision, {q->record.query_id, q->record.model, n,
                                        q->decision.placement, q->ran ? ms : 0, st.is_ok()});
  }
  // 5b. Counts and the placement log, under one lock.
  {
    std::lock_guard<std::mutex> lock(mu_);
    ModelState& m = *q->model;
    if (q->ran) ++m.per_device[q->decision.device_index];
    if (q->decoded && n > 0) {
      // The capacity model's query size: the recent mean (about the last 20 queries).
      m.mean_items = m.sized ? 0.95 * m.mean_items + 0.05 * n : n;
      m.sized = true;
    }
    if (st.is_ok()) {
      m.served.add(seconds(finished));
      ++m.ok;
      m.items += n;
      m.window.add(ms);
      if (ms > q->sla_ms) ++m.sla_violations;
      m.latency_sum_s += ms / 1e3;
      const auto& b = latency_buckets();
      for (size_t i = 0; i < b.size(); ++i) {
        if (ms / 1e3 <= b[i]) ++m.buckets[i];
      }
      ++answered_;
    } else if (st.code() == StatusCode::kUnavailable) {
      ++m.rejected;  // before decoding (deep overload), at admission, or a full queue
      m.errors.add(seconds(finished));
    } else if (!q->decoded) {
      ++m.invalid;
    } else {
      ++m.failed;
      m.errors.add(seconds(finished));
    }
    if (q->dispatched) {
      using Ms = std::chrono::duration<double, std::milli>;
      q->record.actual_ms = q->ran ? ms : 0;
      q->record.decode_ms = Ms(q->dispatched_at - q->arrival).count();
      if (q->ran) {
        q->record.wait_ms = Ms(q->started - q->dispatched_at).count();
        q->record.service_ms = Ms(q->done_at - q->started).count();
        q->record.suspended_ms = q->suspended_ms;
      }
      q->record.outcome = st.is_ok() ? "ok" : st.message();
      placements_.push_back(std::move(q->record));
      while (placements_.size() > config_.limits.placement_log) placements_.pop_front();
    }
  }
  // 5c. The answer. No longer in flight once it is handed over: an I/O thread that wakes for
  // the write's completion may poll for the next request (HttpServer::set_poll_gate).
  if (q->counted_in_flight) --in_flight_;
  if (st.is_ok()) {
    EncodedResponse enc =
        encode_infer_response(q->model->cfg.spec.name, q->request.id, q->scores, n,
                              q->model->cfg.spec.num_outputs(), q->request.binary_output);
    HttpResponse r;
    r.content_type = enc.content_type;
    r.body = std::move(enc.body);
    if (enc.header_length) {
      r.headers.emplace_back("Inference-Header-Content-Length", std::to_string(*enc.header_length));
    }
    if (config_.fleet.orca_load_report && !closing_) {
      r.headers.emplace_back("endpoint-load-metrics", orca_header());
    }
    q->respond(std::move(r));
  } else {
    q->respond(error_response(http_status(st.code()), st.message()));
  }
  // 5d. What serving measured against what the profile predicted (predictions that hold).
  if (st.is_ok() && q->ran) learn(*q, finished);
}

void Service::learn(const InFlight& q, Clock::time_point finished) {
  using Ms = std::chrono::duration<double, std::milli>;
  const uint32_t n = q.request.batch.batch_size;
  const policies::Placement& pl = q.decision.placement;
  // Its own service: the time it was suspended for more urgent queries is theirs, and
  // would otherwise teach every preempted model a slower profile.
  const double service_ms =
      std::max(0.0, Ms(q.done_at - q.started).count() - q.suspended_ms);
  // Outside the runner, as the placement log's actual_ms counts it (arrival to finish()):
  // decoding and dispatch before, the hand-back after.
  const double outside_ms =
      Ms(q.dispatched_at - q.arrival).count() + Ms(finished - q.done_at).count();
  const std::string& model = q.model->cfg.spec.name;  // (q.record went to the log)
  std::lock_guard<std::mutex> lock(mu_);
  // A query merged into a GPU pass with others took the pass's time: predicted at the
  // pass's size, or every merged query would teach the GPU a slower profile.
  const bool merged = q.pass_items > n;
  const std::optional<double> predicted =
      merged ? policies::predict_service_ms(*measured_profiles_, model, q.device->id(),
                                            q.pass_items, q.pass_items, 1)
             : policies::predict_service_ms(*measured_profiles_, model, q.device->id(), n,
                                            pl.sub_batch, pl.workers);
  if (predicted) {
    correction_.learn_service(q.device->id(), model, merged ? q.pass_items : n, service_ms,
                              *predicted);
  }
  correction_.learn_overhead(model, n, outside_ms);
  if (++learnt_since_publish_ >= kPublishEvery) {
    learnt_since_publish_ = 0;
    profiles_ = std::make_shared<const ProfileTable>(correction_.apply(*measured_profiles_));
  }
}

}  // namespace recsched::daemon
