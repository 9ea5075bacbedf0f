#include "exec/whole_query_runner.h"

#include <pthread.h>

#include <algorithm>
#include <chrono>
#include <cstring>

#include "core/merge.h"
#include "core/pieces.h"

namespace recsched::exec {

WholeQueryRunner::WholeQueryRunner(int threads, std::function<void()> bind, std::string name)
    : name_(std::move(name)), thread_count_(std::max(1, threads)), streams_(thread_count_) {
  for (int i = 0; i < thread_count_; ++i) {
    threads_.emplace_back([this, bind, i] {
      pthread_setname_np(pthread_self(), (name_ + "-s" + std::to_string(i)).substr(0, 15).c_str());
      if (bind) bind();
      main();
    });
  }
}

WholeQueryRunner::~WholeQueryRunner() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  for (std::thread& t : threads_) t.join();
}

Status WholeQueryRunner::submit(Request request, size_t max_queued) {
  RECSCHED_RETURN_IF_ERROR(check_request(request));
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_) return unavailable("device " + name_ + " is shutting down");
    if (in_flight_ >= max_queued) {
      return unavailable("device " + name_ + " has " + std::to_string(in_flight_) +
                         " queries queued (limit " + std::to_string(max_queued) + ")");
    }
    const Clock::time_point due = request.deadline.value_or(Clock::now());
    queue_.emplace(Key{due, submitted_++}, std::move(request));
    ++in_flight_;
  }
  cv_.notify_one();
  return Status::ok();
}

void WholeQueryRunner::set_merging(Merging merging) {
  std::lock_guard<std::mutex> lock(mu_);
  merging_ = std::move(merging);
}

WholeQueryRunner::Passes WholeQueryRunner::passes() const {
  std::lock_guard<std::mutex> lock(mu_);
  return passes_;
}

std::vector<Request> WholeQueryRunner::take_pass_locked(Clock::time_point now) {
  std::vector<Request> pass;
  const Key head_key = queue_.begin()->first;
  pass.push_back(std::move(queue_.begin()->second));
  queue_.erase(queue_.begin());
  // By value: pass grows below.
  const engine::Model* model = pass.front().model;
  const uint32_t head_items = pass.front().batch.batch_size;
  if (!merging_.on || !merging_.service_ms) return pass;
  auto slack = [&](const Key& k) {
    return std::chrono::duration<double, std::milli>(k.first - now).count();
  };
  // The queries of the head's model among the first kMaxQueriesLooked waiting, in order.
  std::vector<Queue::iterator> same;
  std::vector<MergeQuery> waiting;
  size_t looked = 0;
  for (auto it = queue_.begin(); it != queue_.end() && looked < kMaxQueriesLooked;
       ++it, ++looked) {
    if (it->second.model != model) continue;
    same.push_back(it);
    waiting.push_back({it->second.batch.batch_size, slack(it->first)});
  }
  if (same.empty()) return pass;
  const auto predict = [&](uint32_t items) { return merging_.service_ms(*model, items); };
  for (size_t i : merge_into({head_items, slack(head_key)}, waiting, merging_.max_items,
                             predict)) {
    pass.push_back(std::move(same[i]->second));
    queue_.erase(same[i]);
  }
  return pass;
}

namespace {

// One forward pass over the pass's queries: a single query as it is; several merged into
// one batch, its scores copied back to each query's rows.
Status run_pass(std::vector<Request>& pass, engine::Workspace& ws, const std::string& device) {
  const engine::Model& model = *pass.front().model;
  if (pass.size() == 1) {
    return engine::guarded_forward(model, pass.front().batch, ws, pass.front().scores, device);
  }
  std::vector<BatchView> parts;
  parts.reserve(pass.size());
  for (const Request& r : pass) parts.push_back(r.batch);
  const Batch merged = concat(parts);
  std::vector<float> scores(size_t(merged.batch_size) * model.spec().num_outputs());
  RECSCHED_RETURN_IF_ERROR(engine::guarded_forward(model, view_of(merged), ws, scores, device));
  size_t at = 0;
  for (Request& r : pass) {
    std::memcpy(r.scores.data(), scores.data() + at, r.scores.size() * sizeof(float));
    at += r.scores.size();
  }
  return Status::ok();
}

}  // namespace

void WholeQueryRunner::main() {
  engine::Workspace ws;
  std::unique_lock<std::mutex> lock(mu_);
  while (true) {
    cv_.wait(lock, [&] { return (!queue_.empty() && busy_ < streams_) || stopping_; });
    if (queue_.empty()) return;  // stopping, and everything was handed out
    const auto t0 = Clock::now();
    std::vector<Request> pass = take_pass_locked(t0);
    ++busy_;
    lock.unlock();
    uint32_t items = 0;
    for (const Request& r : pass) items += r.batch.batch_size;
    for (Request& r : pass) {
      if (r.started != nullptr) *r.started = t0;
      if (r.pass_items != nullptr) *r.pass_items = items;
    }
    // A throwing worker would end the process: the queries fail instead (see CpuRunner).
    Status st = run_pass(pass, ws, name_);
    const double busy = std::chrono::duration<double>(Clock::now() - t0).count();
    // Counted out before they are answered, as the CPU runner does: whoever an answer wakes
    // sees a load without them (found by the runner's test: done() ran first, and a load()
    // read right after it still counted the query).
    lock.lock();
    --busy_;
    in_flight_ -= pass.size();
    busy_seconds_ += busy;
    ++passes_.passes;
    passes_.queries += pass.size();
    if (pass.size() > 1) ++passes_.merged;
    const bool held_back = streams_ < thread_count_;
    lock.unlock();
    // A thread held back by set_streams may take the queue's next pass now.
    if (held_back) cv_.notify_one();
    for (Request& r : pass) r.done(st);
    lock.lock();
  }
}

Load WholeQueryRunner::load() const {
  std::lock_guard<std::mutex> lock(mu_);
  return {in_flight_, busy_, 0};
}

int WholeQueryRunner::workers() const {
  std::lock_guard<std::mutex> lock(mu_);
  return streams_;
}

void WholeQueryRunner::set_streams(int n) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    streams_ = std::clamp(n, 1, thread_count_);
  }
  cv_.notify_all();
}

double WholeQueryRunner::busy_seconds() const {
  std::lock_guard<std::mutex> lock(mu_);
  return busy_seconds_;
}

}  // namespace recsched::exec
