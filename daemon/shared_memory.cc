#include "daemon/shared_memory.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <nlohmann/json.hpp>

namespace recsched::daemon {

SystemSharedMemory::Region::~Region() {
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

Status SystemSharedMemory::read(std::string_view region, uint64_t offset,
                                std::span<std::byte> into, uint32_t uid) const {
  std::shared_ptr<const Region> r;  // held: an unregister meanwhile closes nothing under us
  {
    std::lock_guard<std::mutex> lock(mu_);
    const auto it = regions_.find(region);
    if (it != regions_.end() && visible_to(it->second->uid, uid)) r = it->second;
  }
  if (r == nullptr) {
    return invalid_argument("no shared-memory region '" + printable_excerpt(region) +
                            "' registered by this client");
  }
  if (offset > r->byte_size || into.size() > r->byte_size - offset) {
    return invalid_argument("shared-memory region '" + printable_excerpt(region) + "' holds " +
                            std::to_string(r->byte_size) + " bytes; " +
                            std::to_string(into.size()) + " at offset " + std::to_string(offset) +
                            " lie past its end");
  }
  size_t done = 0;
  while (done < into.size()) {
    const ssize_t got = ::pread(r->fd, into.data() + done, into.size() - done,
                                static_cast<off_t>(r->offset + offset + done));
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) {
      return invalid_argument("shared-memory region '" + printable_excerpt(region) + "': " +
                              (got == 0 ? std::string("its object shrank since it was registered")
                                        : errno_text()));
    }
    done += static_cast<size_t>(got);
  }
  return Status::ok();
}

}  // namespace recsched::daemon
