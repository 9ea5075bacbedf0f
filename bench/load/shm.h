// Triton's system shared-memory extension, the client's side: a POSIX shared-memory object
// this process creates and registers with recschedd as a named region, and a query's
// inputs written into it (the request body then carries only JSON naming where they lie).
// For clients on the daemon's own host, over its unix socket (daemon/shared_memory.h).
#pragma once

#include <cstddef>
#include <string>

#include "bench/load/client.h"
#include "bench/load/payload.h"

namespace recsched::load {

/// Created (shm_open, O_EXCL), sized, mapped and registered with the daemon at `ep` on
/// construction; unregistered, unmapped and unlinked on destruction. Throws
/// std::runtime_error with the reason (the OS's, the daemon's answer, or /dev/shm too full
/// for the whole region) when it cannot.
class SharedRegion {
 public:
  SharedRegion(const Endpoint& ep, std::string name, size_t bytes);
  ~SharedRegion();
  SharedRegion(const SharedRegion&) = delete;
  SharedRegion& operator=(const SharedRegion&) = delete;

  const std::string& name() const { return name_; }
  const std::string& key() const { return key_; }  ///< the object's POSIX name
  char* data() const { return data_; }
  size_t size() const { return size_; }

 private:
  Endpoint ep_;
  std::string name_, key_;
  char* data_ = nullptr;
  size_t size_ = 0;
  bool registered_ = false;
};

/// The body of `q` (a binary query: JSON header and sections) with its inputs sent through
/// shared memory instead: each input's bytes copied to base + offset onward (each input
/// 8-byte aligned), and its binary_data_size replaced by shared_memory_region `region`,
/// shared_memory_byte_size and shared_memory_offset. Throws std::length_error if they do
/// not fit below `capacity` bytes from base, std::invalid_argument if `q` is not binary.
std::string shared_memory_body(const EncodedQuery& q, const std::string& region, char* base,
                               size_t offset, size_t capacity);

/// The bytes shared_memory_body needs for `q` from its offset (the alignment included).
size_t shared_memory_bytes(const EncodedQuery& q);

}  // namespace recsched::load
