#include "engine/host_buffer.h"

#include <sys/mman.h>

#include <cstdlib>
#include <cstring>
#include <string>
#include <utility>

namespace recsched::engine {

Result<HostBuffer> HostBuffer::allocate(size_t count) {
  HostBuffer buf;
  if (count == 0) return buf;
  if (count > (SIZE_MAX / sizeof(float))) {
    return unavailable("cannot allocate " + std::to_string(count) + " floats");
  }
  const size_t bytes = count * sizeof(float);
  if (bytes >= kHugePageThreshold) {
    // Round up to a 2 MiB multiple so the tail can be a huge page too.
    const size_t huge = size_t{2} << 20;
    const size_t mapped = (bytes + huge - 1) / huge * huge;
    void* p = mmap(nullptr, mapped, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
      return unavailable("cannot map " + std::to_string(bytes >> 20) +
                         " MiB for a table: " + std::strerror(errno));
    }
    // Advisory: where THP is off the buffer still works, with 4 KiB pages.
    buf.huge_ = madvise(p, mapped, MADV_HUGEPAGE) == 0;
    buf.data_ = static_cast<float*>(p);
    buf.bytes_ = mapped;
    buf.mapped_ = true;
  } else {
    const size_t rounded = (bytes + 63) / 64 * 64;
    void* p = std::aligned_alloc(64, rounded);
    if (p == nullptr) return unavailable("cannot allocate " + std::to_string(bytes) + " bytes");
    std::memset(p, 0, rounded);
    buf.data_ = static_cast<float*>(p);
    buf.bytes_ = rounded;
  }
  buf.count_ = count;
  return buf;
}

HostBuffer::HostBuffer(HostBuffer&& other) noexcept { *this = std::move(other); }

HostBuffer& HostBuffer::operator=(HostBuffer&& other) noexcept {
  if (this != &other) {
    release();
    data_ = std::exchange(other.data_, nullptr);
    count_ = std::exchange(other.count_, 0);
    bytes_ = std::exchange(other.bytes_, 0);
    mapped_ = std::exchange(other.mapped_, false);
    huge_ = std::exchange(other.huge_, false);
  }
  return *this;
}

HostBuffer::~HostBuffer() { release(); }

void HostBuffer::release() {
  if (data_ == nullptr) return;
  if (mapped_) {
    munmap(data_, bytes_);
  } else {
    std::free(data_);
  }
  data_ = nullptr;
}

}  // namespace recsched::engine
