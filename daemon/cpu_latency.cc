#include "daemon/cpu_latency.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>

namespace recsched::daemon {

Result<CpuLatencyRequest> CpuLatencyRequest::hold(uint32_t us, const std::string& device) {
  const int fd = ::open(device.c_str(), O_RDWR | O_CLOEXEC);
  if (fd < 0) {
    const int e = errno;
    return unavailable("cannot open " + device + ": " + std::strerror(e) +
                       (e == EACCES ? " (writable by root only unless "
                                      "60-recsched-cpu-latency.rules is installed)"
                                    : ""));
  }
  // The kernel takes the value as a binary s32 (or as a hex string); nothing else.
  const int32_t value = static_cast<int32_t>(us);
  ssize_t k;
  do {
    k = ::write(fd, &value, sizeof value);
  } while (k < 0 && errno == EINTR);
  if (k != static_cast<ssize_t>(sizeof value)) {
    const std::string why = k < 0 ? std::strerror(errno) : "a short write";
    ::close(fd);
    return unavailable("cannot write " + device + ": " + why);
  }
  return CpuLatencyRequest(fd, us, device);
}

CpuLatencyRequest::CpuLatencyRequest(CpuLatencyRequest&& other) noexcept
    : fd_(std::exchange(other.fd_, -1)), us_(other.us_), device_(std::move(other.device_)) {}

CpuLatencyRequest& CpuLatencyRequest::operator=(CpuLatencyRequest&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = std::exchange(other.fd_, -1);
    us_ = other.us_;
    device_ = std::move(other.device_);
  }
  return *this;
}

CpuLatencyRequest::~CpuLatencyRequest() {
  if (fd_ >= 0) ::close(fd_);
}

Result<int64_t> CpuLatencyRequest::effective_us() const {
  int32_t value = 0;
  const ssize_t k = ::pread(fd_, &value, sizeof value, 0);
  if (k != static_cast<ssize_t>(sizeof value)) {
    return unavailable("cannot read " + device_ + ": " +
                       (k < 0 ? std::strerror(errno) : "a short read"));
  }
  return int64_t{value};
}

CpuLatencyHold CpuLatencyHold::take(std::optional<uint32_t> us, const std::string& device) {
  CpuLatencyHold h;
  h.asked_ = us;
  if (!us) return h;
  Result<CpuLatencyRequest> held = CpuLatencyRequest::hold(*us, device);
  if (held) {
    h.held_ = std::move(held).value();
  } else {
    h.error_ = held.status().message();
  }
  return h;
}

std::string CpuLatencyHold::in_effect() const {
  if (!held_) return "not held";
  const Result<int64_t> now = held_->effective_us();
  return now ? std::to_string(*now) + " us" : now.status().message();
}

nlohmann::json CpuLatencyHold::report() const {
  if (!asked_) return nullptr;
  nlohmann::json j = {{"requested_us", *asked_}, {"held", held()}};
  if (held_) {
    const Result<int64_t> now = held_->effective_us();
    j["effective_us"] = now ? nlohmann::json(*now) : nlohmann::json(nullptr);
  } else {
    j["error"] = error_;
  }
  return j;
}

}  // namespace recsched::daemon
