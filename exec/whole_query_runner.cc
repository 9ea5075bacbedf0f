#include "exec/whole_query_runner.h"

#include <algorithm>
#include <chrono>

namespace recsched::exec {

WholeQueryRunner::WholeQueryRunner(int threads, std::function<void()> bind, std::string name)
    : name_(std::move(name)) {
  for (int i = 0; i < std::max(1, threads); ++i) {
    threads_.emplace_back([this, bind] {
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
    queue_.push_back(std::move(request));
    ++in_flight_;
  }
  cv_.notify_one();
  return Status::ok();
}

void WholeQueryRunner::main() {
  engine::Workspace ws;
  std::unique_lock<std::mutex> lock(mu_);
  while (true) {
    cv_.wait(lock, [&] { return !queue_.empty() || stopping_; });
    if (queue_.empty()) return;  // stopping, and everything was handed out
    Request job = std::move(queue_.front());
    queue_.pop_front();
    ++busy_;
    lock.unlock();
    const auto t0 = Clock::now();
    if (job.started != nullptr) *job.started = t0;
    // A throwing worker would end the process: the query fails instead (see CpuRunner).
    Status st = engine::guarded_forward(*job.model, job.batch, ws, job.scores, name_);
    const double busy = std::chrono::duration<double>(Clock::now() - t0).count();
    // Counted out before it is answered, as the CPU runner does: whoever the answer wakes
    // sees a load without it (found by the runner's test: done() ran first, and a load()
    // read right after it still counted the query).
    lock.lock();
    --busy_;
    --in_flight_;
    busy_seconds_ += busy;
    lock.unlock();
    job.done(std::move(st));
    lock.lock();
  }
}

Load WholeQueryRunner::load() const {
  std::lock_guard<std::mutex> lock(mu_);
  return {in_flight_, busy_, 0};
}

double WholeQueryRunner::busy_seconds() const {
  std::lock_guard<std::mutex> lock(mu_);
  return busy_seconds_;
}

}  // namespace recsched::exec
