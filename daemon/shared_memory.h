// Triton's system shared-memory extension (/v2/systemsharedmemory/...): a client on this
// host registers a POSIX shared-memory object as a named region, then sends infer requests
// whose inputs say where in the region their bytes lie instead of carrying them. A 1 MB
// body of ids then no longer crosses the socket (on a VM: about 0.4 ms for RMC1's 929 KB,
// most of its overhead over the engine).
//
// Safety, since the bytes belong to another process that may change or shrink them at any
// time: the daemon opens the object read-only. Dense features and bag lengths are copied
// with pread() into the daemon's own memory, where they are validated and used. The ids
// (0.4-1 MB for a 164-item query) are used where they lie, in a read-only mapping of the
// region made at registration (map()), because copying them was most of what decoding a
// large query cost: the codec checks them, and every kernel checks each id again as it
// reads it, so a client that rewrites its region mid-request changes its own query's
// result, never what the daemon reads. A client that shrinks its object under a mapping
// would raise SIGBUS on the next read of the lost pages: the daemon's SIGBUS handler
// (installed with the first mapping; signals in other addresses go to the handler that
// was there before) maps zero pages over the whole region and marks it shrunk, so the
// read goes on, reading zeros, and the query is refused when it finishes
// (InferRequest::shared_ids_intact), as libwayland-server treats a client's shrunk
// wl_shm pool; the region then refuses every later request until it is registered again.
// Regions are registered and used over the unix socket only, and only by a process whose
// uid owns the object (or root), and a region is read only for requests from the uid that
// registered it: another user cannot have the daemon read an object it cannot read itself.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json_fwd.hpp>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "core/status.h"
#include "daemon/kserve.h"

namespace recsched::daemon {

class SystemSharedMemory {
 public:
  /// At most `max_regions` at once per registering uid (0: the extension is off, every
  /// call says so), and `max_total` for all users together: each region holds one open
  /// file, and by default (0) the regions may hold at most a quarter of this process's
  /// file descriptors (RLIMIT_NOFILE's soft limit), so that connections still open
  /// however many users register. Names are one namespace for all users, as in Triton.
  explicit SystemSharedMemory(uint32_t max_regions, uint64_t max_total = 0);
  ~SystemSharedMemory();

  bool enabled() const { return max_regions_ > 0; }

  /// Registers `name` as bytes [offset, offset + byte_size) of the POSIX shared-memory object
  /// `key` ("/name", as shm_open takes it). kInvalidArgument: the name is empty or taken,
  /// the key malformed or not openable, the object too small or not owned by `peer_uid`
  /// (unless 0, root), `peer_uid` already holding max_regions regions, or all users'
  /// regions together at max_total.
  Status register_region(const std::string& name, const std::string& key, uint64_t offset,
                         uint64_t byte_size, uint32_t peer_uid);
  /// Unregisters `name` if `uid` registered it (root: any); kInvalidArgument if there is no
  /// such region of that uid. A read under way finishes.
  Status unregister(const std::string& name, uint32_t uid);
  /// Unregisters every region `uid` registered (root: every region).
  void unregister_all(uint32_t uid);

  /// [{"name", "key", "offset", "byte_size"}] for `name`, or for every region when empty:
  /// those `uid` registered (root: all); another uid's regions are not there for it.
  Result<nlohmann::json> status(const std::string& name, uint32_t uid) const;

  /// Copies into.size() bytes at `offset` within `region` for a request from `uid`.
  /// kInvalidArgument: no such region (or registered by another uid), the bytes past its
  /// end, the object shrunk since its registration.
  Status read(std::string_view region, uint64_t offset, std::span<std::byte> into,
              uint32_t uid) const;
  /// `size` bytes at `offset` within `region` where they lie, for a request from `uid`:
  /// kInvalidArgument as read() (and once the object shrank under the mapping);
  /// kUnavailable where the region could not be mapped at registration.
  Result<SharedBytes> map(std::string_view region, uint64_t offset, uint64_t size,
                          uint32_t uid) const;

  /// What the infer codec reads a request's shared-memory inputs through: this registry,
  /// as seen by the client `uid`.
  class Reader final : public SharedMemoryReader {
   public:
    Reader(const SystemSharedMemory& shm, uint32_t uid) : shm_(shm), uid_(uid) {}
    Status read(std::string_view region, uint64_t offset,
                std::span<std::byte> into) const override {
      return shm_.read(region, offset, into, uid_);
    }
    Result<SharedBytes> map(std::string_view region, uint64_t offset,
                            uint64_t size) const override {
      return shm_.map(region, offset, size, uid_);
    }

   private:
    const SystemSharedMemory& shm_;
    uint32_t uid_;
  };

 private:
  struct Region {
    std::string key;
    uint64_t offset = 0;
    uint64_t byte_size = 0;
    uint32_t uid = 0;  // who registered it
    int fd = -1;
    // The read-only mapping of [offset, offset + byte_size), from the page that holds
    // `offset` (data: the region's first byte); none if mmap failed or no guard slot was
    // free (then map() says kUnavailable and the codec copies).
    void* mapping = nullptr;
    size_t mapping_size = 0;
    const std::byte* data = nullptr;
    int guard_slot = -1;  // its entry in the SIGBUS guard's table (shared_memory.cc)
    std::atomic<bool> shrank{false};  // set by the guard; requests hold it (SharedBytes)
    ~Region();
  };

  /// OK if `name` is free and `uid` may register another region; mu_ held.
  Status room_for(const std::string& name, uint32_t uid) const;
  /// The region `name` as `uid` sees it, or the error naming it; mu_ not held.
  Result<std::shared_ptr<const Region>> find(std::string_view name, uint32_t uid) const;

  const uint32_t max_regions_;
  const uint64_t max_total_;
  mutable std::mutex mu_;
  std::map<std::string, std::shared_ptr<const Region>, std::less<>> regions_;
};

}  // namespace recsched::daemon
