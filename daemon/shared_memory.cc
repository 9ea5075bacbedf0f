#include "daemon/shared_memory.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <mutex>
#include <nlohmann/json.hpp>

namespace recsched::daemon {

namespace {

// The SIGBUS guard (see shared_memory.h). A fixed table, so that the handler reads it with
// neither a lock nor an allocation: each mapped region's range and its shrunk flag.
constexpr size_t kGuardSlots = 4096;
struct GuardSlot {
  std::atomic<uintptr_t> begin{0};  // 0: free
  std::atomic<size_t> size{0};
  std::atomic<std::atomic<bool>*> shrank{nullptr};
};
GuardSlot g_slots[kGuardSlots];
std::mutex g_slots_mu;  // taking and freeing slots (never in the handler)
struct sigaction g_previous {};  // SIGBUS's action before the guard's
std::once_flag g_install_once;
bool g_installed = false;

void on_sigbus(int sig, siginfo_t* info, void* context) {
  const auto addr = reinterpret_cast<uintptr_t>(info->si_addr);
  for (GuardSlot& slot : g_slots) {
    const uintptr_t begin = slot.begin.load(std::memory_order_acquire);
    if (begin == 0) continue;
    const size_t size = slot.size.load(std::memory_order_relaxed);
    if (addr < begin || addr - begin >= size) continue;
    // Zero pages over the whole region (mmap is a plain system call, safe here in
    // practice though POSIX does not list it), then the faulting read is retried on them.
    void* p = ::mmap(reinterpret_cast<void*>(begin), size, PROT_READ,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
    if (p == MAP_FAILED) break;
    if (std::atomic<bool>* f = slot.shrank.load(std::memory_order_relaxed)) {
      f->store(true, std::memory_order_release);
    }
    return;
  }
  // Not a region's (or no zero pages): whatever handled SIGBUS before (a sanitizer's,
  // say); with none, the default action, by restoring it and letting the fault recur.
  if ((g_previous.sa_flags & SA_SIGINFO) != 0 && g_previous.sa_sigaction != nullptr) {
    return g_previous.sa_sigaction(sig, info, context);
  }
  if ((g_previous.sa_flags & SA_SIGINFO) == 0 && g_previous.sa_handler != SIG_DFL &&
      g_previous.sa_handler != SIG_IGN) {
    return g_previous.sa_handler(sig);
  }
  ::signal(SIGBUS, SIG_DFL);
}

bool install_guard() {
  std::call_once(g_install_once, [] {
    struct sigaction sa {};
    sa.sa_sigaction = on_sigbus;
    sa.sa_flags = SA_SIGINFO;
    sigemptyset(&sa.sa_mask);
    g_installed = ::sigaction(SIGBUS, &sa, &g_previous) == 0;
  });
  return g_installed;
}

// A free slot for [begin, begin + size), or -1 when all are taken.
int take_slot(const void* begin, size_t size, std::atomic<bool>* shrank) {
  std::lock_guard<std::mutex> lock(g_slots_mu);
  for (size_t i = 0; i < kGuardSlots; ++i) {
    GuardSlot& slot = g_slots[i];
    if (slot.begin.load(std::memory_order_relaxed) != 0) continue;
    slot.size.store(size, std::memory_order_relaxed);
    slot.shrank.store(shrank, std::memory_order_relaxed);
    slot.begin.store(reinterpret_cast<uintptr_t>(begin), std::memory_order_release);
    return static_cast<int>(i);
  }
  return -1;
}

void free_slot(int i) {
  std::lock_guard<std::mutex> lock(g_slots_mu);
  g_slots[i].begin.store(0, std::memory_order_release);
  g_slots[i].shrank.store(nullptr, std::memory_order_relaxed);
}

}  // namespace

SystemSharedMemory::Region::~Region() {
  // No request holds the region any more (they hold it through SharedBytes), so no read of
  // the mapping is under way: out of the guard's table first, then unmapped.
  if (guard_slot >= 0) free_slot(guard_slot);
  if (mapping != nullptr) ::munmap(mapping, mapping_size);
  if (fd >= 0) ::close(fd);
}

namespace {

// A quarter of the soft limit on open files (or 1024 when it cannot be read).
uint64_t quarter_of_open_files() {
  rlimit r{};
  if (::getrlimit(RLIMIT_NOFILE, &r) != 0 || r.rlim_cur == RLIM_INFINITY) return 1024;
  return std::max<uint64_t>(1, static_cast<uint64_t>(r.rlim_cur) / 4);
}

}  // namespace

SystemSharedMemory::SystemSharedMemory(uint32_t max_regions, uint64_t max_total)
    : max_regions_(max_regions), max_total_(max_total > 0 ? max_total : quarter_of_open_files()) {}

SystemSharedMemory::~SystemSharedMemory() = default;

namespace {

std::string errno_text() { return std::strerror(errno); }


}  // namespace

Status SystemSharedMemory::room_for(const std::string& name, uint32_t uid) const {
  if (regions_.count(name) != 0) {
    return invalid_argument("shared-memory region '" + printable_excerpt(name) + "' is already registered");
  }
  // Each user's regions are counted apart: one local user filling the table must not
  // refuse every other user's registrations (each region also holds one of our fds).
  const auto mine = std::count_if(regions_.begin(), regions_.end(),
                                  [&](const auto& r) { return r.second->uid == uid; });
  if (static_cast<uint64_t>(mine) >= max_regions_) {
    return invalid_argument("too many shared-memory regions for uid " + std::to_string(uid) +
                            " (limit " + std::to_string(max_regions_) + " per user)");
  }
  if (regions_.size() >= max_total_) {
    return invalid_argument("the daemon holds " + std::to_string(regions_.size()) +
                            " shared-memory regions of all users, its limit (a quarter of its "
                            "open-file limit): unregister some");
  }
  return Status::ok();
}

Status SystemSharedMemory::register_region(const std::string& name, const std::string& key,
                                           uint64_t offset, uint64_t byte_size,
                                           uint32_t peer_uid) {
  if (!enabled()) return invalid_argument("system shared memory is off (limits.max_shm_regions 0)");
  if (name.empty()) return invalid_argument("a shared-memory region needs a name");
  // POSIX names one object "/name": a leading slash and no other.
  if (key.size() < 2 || key.size() > 255 || key[0] != '/' ||
      key.find('/', 1) != std::string::npos || key.find('\0') != std::string::npos) {
    return invalid_argument("shared-memory key '" + printable_excerpt(key) +
                            "' is not a POSIX object name ('/name', no other slash)");
  }
  if (byte_size == 0) return invalid_argument("region '" + printable_excerpt(name) + "': byte_size is 0");
  uint64_t end;
  if (__builtin_add_overflow(offset, byte_size, &end)) {
    return invalid_argument("region '" + printable_excerpt(name) + "': offset + byte_size overflows");
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    RECSCHED_RETURN_IF_ERROR(room_for(name, peer_uid));
  }
  auto region = std::make_shared<Region>();
  region->key = key;
  region->offset = offset;
  region->byte_size = byte_size;
  region->uid = peer_uid;
  region->fd = ::shm_open(key.c_str(), O_RDONLY | O_CLOEXEC, 0);
  if (region->fd < 0) {
    return invalid_argument("cannot open shared-memory object '" + printable_excerpt(key) +
                            "': " + errno_text());
  }
  struct stat st {};
  if (::fstat(region->fd, &st) != 0) {
    return invalid_argument("cannot stat shared-memory object '" + printable_excerpt(key) +
                            "': " + errno_text());
  }
  if (peer_uid != 0 && st.st_uid != peer_uid) {
    return invalid_argument("shared-memory object '" + printable_excerpt(key) + "' belongs to uid " +
                            std::to_string(st.st_uid) + ", not the registering process's " +
                            std::to_string(peer_uid));
  }
  if (static_cast<uint64_t>(st.st_size) < end) {
    return invalid_argument("shared-memory object '" + printable_excerpt(key) + "' holds " +
                            std::to_string(st.st_size) + " bytes; the region needs " +
                            std::to_string(end));
  }
  // Mapped for the ids (map()); without a mapping they are copied as everything else is.
  const auto page = static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
  const uint64_t start = offset - offset % page;
  const size_t length = static_cast<size_t>(offset - start + byte_size);
  void* m = ::mmap(nullptr, length, PROT_READ, MAP_SHARED, region->fd, static_cast<off_t>(start));
  if (m != MAP_FAILED) {
    const int slot = install_guard() ? take_slot(m, length, &region->shrank) : -1;
    if (slot >= 0) {
      region->mapping = m;
      region->mapping_size = length;
      region->data = static_cast<const std::byte*>(m) + (offset - start);
      region->guard_slot = slot;
    } else {
      ::munmap(m, length);
    }
  }
  std::lock_guard<std::mutex> lock(mu_);
  // Checked again: another registration may have come in while the object was opened.
  RECSCHED_RETURN_IF_ERROR(room_for(name, peer_uid));
  regions_.emplace(name, std::move(region));
  return Status::ok();
}

namespace {

// A region is another client's unless this uid registered it (root sees every region).
bool visible_to(uint32_t region_uid, uint32_t uid) { return uid == 0 || region_uid == uid; }

}  // namespace

Status SystemSharedMemory::unregister(const std::string& name, uint32_t uid) {
  std::lock_guard<std::mutex> lock(mu_);
  const auto it = regions_.find(name);
  if (it == regions_.end() || !visible_to(it->second->uid, uid)) {
    return invalid_argument("no shared-memory region '" + printable_excerpt(name) +
                            "' registered by this client");
  }
  regions_.erase(it);
  return Status::ok();
}

void SystemSharedMemory::unregister_all(uint32_t uid) {
  std::lock_guard<std::mutex> lock(mu_);
  std::erase_if(regions_, [&](const auto& r) { return visible_to(r.second->uid, uid); });
}

Result<nlohmann::json> SystemSharedMemory::status(const std::string& name, uint32_t uid) const {
  auto entry = [](const std::string& n, const Region& r) {
    return nlohmann::json{{"name", n}, {"key", r.key}, {"offset", r.offset},
                          {"byte_size", r.byte_size}};
  };
  std::lock_guard<std::mutex> lock(mu_);
  nlohmann::json out = nlohmann::json::array();
  for (const auto& [n, r] : regions_) {
    if ((name.empty() || n == name) && visible_to(r->uid, uid)) out.push_back(entry(n, *r));
  }
  if (!name.empty() && out.empty()) {
    return invalid_argument("no shared-memory region '" + printable_excerpt(name) +
                            "' registered by this client");
  }
  return out;
}

Result<std::shared_ptr<const SystemSharedMemory::Region>> SystemSharedMemory::find(
    std::string_view name, uint32_t uid) const {
  std::shared_ptr<const Region> r;  // held: an unregister meanwhile closes nothing under us
  {
    std::lock_guard<std::mutex> lock(mu_);
    const auto it = regions_.find(name);
    if (it != regions_.end() && visible_to(it->second->uid, uid)) r = it->second;
  }
  if (r == nullptr) {
    return invalid_argument("no shared-memory region '" + printable_excerpt(name) +
                            "' registered by this client");
  }
  return r;
}

namespace {

// [offset, offset + size) within a region of byte_size bytes, or the error naming it.
Status within(std::string_view region, uint64_t byte_size, uint64_t offset, uint64_t size) {
  if (offset > byte_size || size > byte_size - offset) {
    return invalid_argument("shared-memory region '" + printable_excerpt(region) + "' holds " +
                            std::to_string(byte_size) + " bytes; " + std::to_string(size) +
                            " at offset " + std::to_string(offset) + " lie past its end");
  }
  return Status::ok();
}

std::string shrank_since_registered(std::string_view region) {
  return "shared-memory region '" + printable_excerpt(region) +
         "': its object shrank since it was registered";
}

}  // namespace

Result<SharedBytes> SystemSharedMemory::map(std::string_view region, uint64_t offset,
                                            uint64_t size, uint32_t uid) const {
  RECSCHED_ASSIGN_OR_RETURN(std::shared_ptr<const Region> r, find(region, uid));
  RECSCHED_RETURN_IF_ERROR(within(region, r->byte_size, offset, size));
  if (r->shrank.load(std::memory_order_acquire)) {
    return invalid_argument("shared-memory region '" + printable_excerpt(region) +
                            "': its object shrank while a query read it; register it again");
  }
  if (r->data == nullptr) {
    return unavailable("shared-memory region '" + printable_excerpt(region) + "' is not mapped");
  }
  // An object already shrunk is refused here, as read() refuses it, rather than read.
  struct stat st {};
  if (::fstat(r->fd, &st) != 0 || static_cast<uint64_t>(st.st_size) < r->offset + offset + size) {
    return invalid_argument(shrank_since_registered(region));
  }
  const std::atomic<bool>* shrank = &r->shrank;
  return SharedBytes{{r->data + offset, static_cast<size_t>(size)},
                     std::shared_ptr<const std::atomic<bool>>(std::move(r), shrank)};
}

Status SystemSharedMemory::read(std::string_view region, uint64_t offset,
                                std::span<std::byte> into, uint32_t uid) const {
  RECSCHED_ASSIGN_OR_RETURN(std::shared_ptr<const Region> r, find(region, uid));
  RECSCHED_RETURN_IF_ERROR(within(region, r->byte_size, offset, into.size()));
  size_t done = 0;
  while (done < into.size()) {
    const ssize_t got = ::pread(r->fd, into.data() + done, into.size() - done,
                                static_cast<off_t>(r->offset + offset + done));
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) {
      return invalid_argument(got == 0 ? shrank_since_registered(region)
                                       : "shared-memory region '" + printable_excerpt(region) +
                                             "': " + errno_text());
    }
    done += static_cast<size_t>(got);
  }
  return Status::ok();
}

}  // namespace recsched::daemon
