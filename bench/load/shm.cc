#include "bench/load/shm.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <nlohmann/json.hpp>
#include <stdexcept>

namespace recsched::load {

using nlohmann::json;

SharedRegion::SharedRegion(const Endpoint& ep, std::string name, size_t bytes)
    : ep_(ep), name_(std::move(name)), size_(bytes) {
  key_ = "/recsched-" + name_ + "-" + std::to_string(::getpid());  // unique on this host
  const int fd = ::shm_open(key_.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) throw std::runtime_error("shm_open " + key_ + ": " + std::strerror(errno));
  // The object's pages are taken as they are written; a write past what /dev/shm (tmpfs)
  // has left would kill this process with SIGBUS. So the whole region must fit now.
  struct statvfs fs {};
  if (::fstatvfs(fd, &fs) == 0 && uint64_t(fs.f_bavail) * fs.f_frsize < bytes) {
    ::close(fd);
    ::shm_unlink(key_.c_str());
    throw std::runtime_error("shared memory: the region needs " + std::to_string(bytes >> 20) +
                             " MiB and /dev/shm has " +
                             std::to_string((uint64_t(fs.f_bavail) * fs.f_frsize) >> 20) +
                             " MiB free (a slot of the largest query per connection: lower "
                             "--max-connections or the sizes' cap)");
  }
  if (::ftruncate(fd, static_cast<off_t>(bytes)) != 0) {
    const std::string why = std::strerror(errno);
    ::close(fd);
    ::shm_unlink(key_.c_str());
    throw std::runtime_error("ftruncate " + key_ + ": " + why);
  }
  void* p = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  ::close(fd);
  if (p == MAP_FAILED) {
    const std::string why = std::strerror(errno);
    ::shm_unlink(key_.c_str());
    throw std::runtime_error("mmap " + key_ + ": " + why);
  }
  data_ = static_cast<char*>(p);
  const json body = {{"key", key_}, {"offset", 0}, {"byte_size", bytes}};
  HttpReply r;
  try {
    r = http_call(ep_, "POST", "/v2/systemsharedmemory/region/" + name_ + "/register", body.dump());
  } catch (...) {
    ::munmap(data_, size_);
    ::shm_unlink(key_.c_str());
    throw;
  }
  if (r.status != 200) {
    ::munmap(data_, size_);
    ::shm_unlink(key_.c_str());
    throw std::runtime_error("registering shared-memory region " + name_ + ": " +
                             std::to_string(r.status) + " " + r.body);
  }
  registered_ = true;
}

SharedRegion::~SharedRegion() {
  if (registered_) {
    try {
      http_call(ep_, "POST", "/v2/systemsharedmemory/region/" + name_ + "/unregister");
    } catch (const std::exception&) {
      // The daemon is gone: nothing to unregister.
    }
  }
  ::munmap(data_, size_);
  ::shm_unlink(key_.c_str());
}

namespace {

size_t align8(size_t v) { return (v + 7) & ~size_t{7}; }

}  // namespace

size_t shared_memory_bytes(const EncodedQuery& q) {
  size_t bytes = 0;
  for (std::string_view s : q.sections) bytes += s.size();
  return bytes + 8 * 3;  // each input's start aligned to 8: at most 7 bytes each, 3 inputs
}

std::string shared_memory_body(const EncodedQuery& q, const std::string& region, char* base,
                               size_t offset, size_t capacity) {
  if (q.header_length == 0) throw std::invalid_argument("shared memory needs a binary query");
  json j = json::parse(q.json.substr(0, q.header_length));
  size_t section = 0, at = offset;
  for (json& in : j["inputs"]) {
    json& params = in["parameters"];
    const auto size = params["binary_data_size"].get<uint64_t>();
    at = align8(at);
    if (at > capacity || size > capacity - at) {
      throw std::length_error("a query's inputs need more than the region's " +
                              std::to_string(capacity) + " bytes");
    }
    // An input's bytes may be several sections (sparse_indices: one per table).
    const size_t start = at;
    while (at - start < size) {
      const std::string_view s = q.sections.at(section++);
      if (s.size() > size - (at - start)) {
        throw std::invalid_argument("a query's binary sections do not match its inputs' sizes");
      }
      std::memcpy(base + at, s.data(), s.size());
      at += s.size();
    }
    params.erase("binary_data_size");
    params["shared_memory_region"] = region;
    params["shared_memory_byte_size"] = size;
    params["shared_memory_offset"] = start;
  }
  return j.dump();
}

}  // namespace recsched::load
