// Large, page-aligned host memory for embedding tables and weights. Big buffers are
// mmap'ed and advised to use transparent huge pages, which cuts the TLB misses of
// random row gathers. Standard library and POSIX only.
#pragma once

#include <cstddef>
#include <span>

#include "core/status.h"

namespace recsched::engine {

/// Owns `count` floats, 64-byte aligned, zero-initialised. Move-only.
class HostBuffer {
 public:
  /// Buffers of at least this many bytes are mmap'ed with MADV_HUGEPAGE.
  static constexpr size_t kHugePageThreshold = size_t{4} << 20;

  HostBuffer() = default;
  /// kUnavailable if the memory cannot be had (the message gives the size).
  static Result<HostBuffer> allocate(size_t count);

  HostBuffer(HostBuffer&& other) noexcept;
  HostBuffer& operator=(HostBuffer&& other) noexcept;
  HostBuffer(const HostBuffer&) = delete;
  HostBuffer& operator=(const HostBuffer&) = delete;
  ~HostBuffer();

  float* data() { return data_; }
  const float* data() const { return data_; }
  size_t size() const { return count_; }
  std::span<float> span() { return {data_, count_}; }
  std::span<const float> span() const { return {data_, count_}; }
  /// True if the buffer was advised to use huge pages.
  bool huge_pages() const { return huge_; }

 private:
  void release();
  float* data_ = nullptr;
  size_t count_ = 0;
  size_t bytes_ = 0;
  bool mapped_ = false;
  bool huge_ = false;
};

}  // namespace recsched::engine
