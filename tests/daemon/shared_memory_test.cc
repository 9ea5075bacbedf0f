// Triton's system shared-memory extension: the registry (daemon/shared_memory.h) on real
// POSIX shared-memory objects, and the daemon's routes and infer path over its sockets.
#include "daemon/shared_memory.h"

#include <doctest/doctest.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstring>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "tests/daemon/harness.h"
#include "tests/skip.h"

namespace recsched::daemon {
namespace {

using namespace testing;  // NOLINT: the shared harness

// A POSIX shared-memory object of this test, mapped read-write, unlinked at the end.
struct ShmObject {
  std::string key;
  char* data = nullptr;
  size_t size = 0;
  ShmObject(const std::string& name, size_t bytes)
      : key("/recsched-test-" + name + "-" + std::to_string(::getpid())), size(bytes) {
    const int fd = ::shm_open(key.c_str(), O_RDWR | O_CREAT | O_TRUNC, 0600);
    REQUIRE(fd >= 0);
    REQUIRE(::ftruncate(fd, static_cast<off_t>(bytes)) == 0);
    void* p = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    ::close(fd);
    REQUIRE(p != MAP_FAILED);
    data = static_cast<char*>(p);
    for (size_t i = 0; i < bytes; ++i) data[i] = static_cast<char>(i);
  }
  void shrink(size_t bytes) {
    const int fd = ::shm_open(key.c_str(), O_RDWR, 0);
    REQUIRE(fd >= 0);
    REQUIRE(::ftruncate(fd, static_cast<off_t>(bytes)) == 0);
    ::close(fd);
  }
  ~ShmObject() {
    ::munmap(data, size);
    ::shm_unlink(key.c_str());
  }
};

const uint32_t kMe = static_cast<uint32_t>(::getuid());

std::vector<char> read_bytes(const SystemSharedMemory& shm, const std::string& region,
                             uint64_t offset, size_t n, uint32_t uid, Status* st) {
  std::vector<char> out(n);
  *st = shm.read(region, offset, std::as_writable_bytes(std::span<char>(out)), uid);
  return out;
}

TEST_CASE("a registered region reads the object's bytes at its offset, and nothing past it") {
  ShmObject obj("reads", 4096);
  SystemSharedMemory shm(4);
  REQUIRE(shm.register_region("r", obj.key, 100, 200, kMe).is_ok());
  Status st;
  std::vector<char> got = read_bytes(shm, "r", 10, 16, kMe, &st);
  REQUIRE_MESSAGE(st.is_ok(), st.to_string());
  for (size_t i = 0; i < got.size(); ++i) CHECK(got[i] == static_cast<char>(110 + i));
  // What the client writes later is what the next read sees (a copy per read, not a cache).
  obj.data[110] = 'x';
  got = read_bytes(shm, "r", 10, 1, kMe, &st);
  CHECK(got[0] == 'x');
  // Exactly to the region's end, and one byte past it.
  read_bytes(shm, "r", 0, 200, kMe, &st);
  CHECK(st.is_ok());
  read_bytes(shm, "r", 1, 200, kMe, &st);
  CHECK(st.message() == "shared-memory region 'r' holds 200 bytes; 200 at offset 1 lie past its end");
  read_bytes(shm, "r", uint64_t(-1), 2, kMe, &st);
  CHECK_FALSE(st.is_ok());
  // Another uid's requests do not see it; root's do.
  read_bytes(shm, "r", 0, 4, kMe + 1, &st);
  CHECK(st.message() == "no shared-memory region 'r' registered by this client");
  read_bytes(shm, "r", 0, 4, 0, &st);
  CHECK(st.is_ok());
  read_bytes(shm, "nope", 0, 4, kMe, &st);
  CHECK(st.message() == "no shared-memory region 'nope' registered by this client");

  const auto status = shm.status("", kMe);
  REQUIRE(status.has_value());
  CHECK(*status == nlohmann::json::parse(R"([{"name": "r", "key": ")" + obj.key +
                                         R"(", "offset": 100, "byte_size": 200}])"));
  CHECK(*shm.status("r", kMe) == *status);
  // Another uid neither sees nor removes it.
  const uint32_t other = kMe == 12345 ? 12346 : 12345;
  CHECK(shm.status("", other)->empty());
  CHECK(shm.status("r", other).status().message() ==
        "no shared-memory region 'r' registered by this client");
  CHECK(shm.unregister("r", other).message() ==
        "no shared-memory region 'r' registered by this client");
  shm.unregister_all(other);
  CHECK(shm.status("", kMe)->size() == 1);
  CHECK(shm.unregister("r", kMe).is_ok());
  read_bytes(shm, "r", 0, 4, kMe, &st);
  CHECK_FALSE(st.is_ok());
  CHECK(shm.unregister("r", kMe).message() ==
        "no shared-memory region 'r' registered by this client");
}

TEST_CASE("an object shrunk after its registration gives an error, not a crash") {
  ShmObject obj("shrinks", 8192);
  SystemSharedMemory shm(4);
  REQUIRE(shm.register_region("r", obj.key, 0, 8192, kMe).is_ok());
  obj.shrink(100);
  Status st;
  read_bytes(shm, "r", 4096, 64, kMe, &st);
  CHECK(st.message() == "shared-memory region 'r': its object shrank since it was registered");
  read_bytes(shm, "r", 0, 64, kMe, &st);  // what is left still reads
  CHECK(st.is_ok());
}

TEST_CASE("registration refuses what it cannot serve, by name") {
  ShmObject obj("refuses", 1024);
  SystemSharedMemory shm(2);
  auto why = [&](const std::string& name, const std::string& key, uint64_t offset, uint64_t size,
                 uint32_t uid = kMe) {
    return shm.register_region(name, key, offset, size, uid).message();
  };
  CHECK(why("", obj.key, 0, 8) == "a shared-memory region needs a name");
  CHECK(why("r", "no-slash", 0, 8).find("is not a POSIX object name") != std::string::npos);
  CHECK(why("r", "/a/b", 0, 8).find("is not a POSIX object name") != std::string::npos);
  CHECK(why("r", obj.key, 0, 0) == "region 'r': byte_size is 0");
  CHECK(why("r", obj.key, uint64_t(-1), 8) == "region 'r': offset + byte_size overflows");
  CHECK(why("r", obj.key, 1000, 25) == "shared-memory object '" + obj.key +
                                           "' holds 1024 bytes; the region needs 1025");
  CHECK(why("r", "/recsched-test-missing", 0, 8).rfind("cannot open shared-memory object", 0) == 0);
  // Another user's process may not register this user's object (root may: uid 0 above,
  // when the tests run as root).
  const uint32_t other = kMe == 12345 ? 12346 : 12345;
  CHECK(why("r", obj.key, 0, 8, other) == "shared-memory object '" + obj.key + "' belongs to uid " +
                                             std::to_string(kMe) + ", not the registering process's " +
                                             std::to_string(other));
  CHECK(shm.register_region("r", obj.key, 0, 8, kMe).is_ok());
  CHECK(why("r", obj.key, 0, 8) == "shared-memory region 'r' is already registered");
  CHECK(shm.register_region("s", obj.key, 8, 8, kMe).is_ok());
  CHECK(why("t", obj.key, 0, 8) == "too many shared-memory regions for uid " +
                                        std::to_string(kMe) + " (limit 2 per user)");
  shm.unregister_all(kMe);
  CHECK(shm.status("", kMe)->empty());
  // The table for all users together, below one user's limit here.
  SystemSharedMemory two(8, 2);
  REQUIRE(two.register_region("r", obj.key, 0, 8, kMe).is_ok());
  REQUIRE(two.register_region("s", obj.key, 8, 8, kMe).is_ok());
  CHECK(two.register_region("t", obj.key, 16, 8, kMe).message() ==
        "the daemon holds 2 shared-memory regions of all users, its limit (a quarter of its "
        "open-file limit): unregister some");
  CHECK(SystemSharedMemory(0).register_region("r", obj.key, 0, 8, kMe).message() ==
        "system shared memory is off (limits.max_shm_regions 0)");
}

TEST_CASE("each user's regions count against the limit apart: one user's full table refuses "
          "no other's") {
  // The two users' objects are this test's, given to their uids with fchown.
  if (::geteuid() != 0) RECSCHED_SKIP("needs root, to give shared-memory objects to two other uids");
  const uint32_t alice = 12345, bob = 12346;
  ShmObject a("alice", 64), b("bob", 64);
  for (auto [obj, uid] : {std::pair{&a, alice}, std::pair{&b, bob}}) {
    const int fd = ::shm_open(obj->key.c_str(), O_RDWR, 0);
    REQUIRE(fd >= 0);
    REQUIRE(::fchown(fd, uid, uid) == 0);
    ::close(fd);
  }
  SystemSharedMemory shm(2);
  REQUIRE(shm.register_region("a1", a.key, 0, 8, alice).is_ok());
  REQUIRE(shm.register_region("a2", a.key, 8, 8, alice).is_ok());
  CHECK(shm.register_region("a3", a.key, 16, 8, alice).message() ==
        "too many shared-memory regions for uid 12345 (limit 2 per user)");
  // Bob still has his two; a name Alice holds is taken for him too (one namespace).
  CHECK(shm.register_region("a1", b.key, 0, 8, bob).message() ==
        "shared-memory region 'a1' is already registered");
  CHECK(shm.register_region("b1", b.key, 0, 8, bob).is_ok());
  CHECK(shm.register_region("b2", b.key, 8, 8, bob).is_ok());
  CHECK(shm.register_region("b3", b.key, 16, 8, bob).message() ==
        "too many shared-memory regions for uid 12346 (limit 2 per user)");
  // Alice's unregistering frees her room, not Bob's.
  REQUIRE(shm.unregister("a1", alice).is_ok());
  CHECK(shm.register_region("a3", a.key, 16, 8, alice).is_ok());
  CHECK(shm.register_region("b3", b.key, 16, 8, bob).message() ==
        "too many shared-memory regions for uid 12346 (limit 2 per user)");
  CHECK(shm.status("", alice)->size() == 2);
  CHECK(shm.status("", bob)->size() == 2);

  // All users together hold at most max_total (each region is an open file).
  SystemSharedMemory small(2, 3);
  REQUIRE(small.register_region("a1", a.key, 0, 8, alice).is_ok());
  REQUIRE(small.register_region("a2", a.key, 8, 8, alice).is_ok());
  REQUIRE(small.register_region("b1", b.key, 0, 8, bob).is_ok());
  CHECK(small.register_region("b2", b.key, 8, 8, bob).message() ==
        "the daemon holds 3 shared-memory regions of all users, its limit (a quarter of its "
        "open-file limit): unregister some");
  small.unregister_all(alice);
  CHECK(small.register_region("b2", b.key, 8, 8, bob).is_ok());
}

// infer_body("dot") with every input's data written into `obj` at 8-byte aligned offsets.
json shared_body(ShmObject& obj, const std::string& region) {
  json body = infer_body("dot");
  size_t at = 0;
  for (json& in : body["inputs"]) {
    const std::string dtype = in["datatype"];
    at = (at + 7) & ~size_t{7};
    const size_t start = at;
    for (const json& v : in["data"]) {
      if (dtype == "FP32") {
        const float x = v.get<float>();
        std::memcpy(obj.data + at, &x, 4);
        at += 4;
      } else if (dtype == "INT32") {
        const int32_t x = v.get<int32_t>();
        std::memcpy(obj.data + at, &x, 4);
        at += 4;
      } else {
        const int64_t x = v.get<int64_t>();
        std::memcpy(obj.data + at, &x, 8);
        at += 8;
      }
    }
    in.erase("data");
    in["parameters"] = {{"shared_memory_region", region},
                        {"shared_memory_byte_size", at - start},
                        {"shared_memory_offset", start}};
  }
  REQUIRE(at <= obj.size);
  return body;
}

TEST_CASE("over the unix socket a client registers a region and infers from it: the golden scores") {
  Daemon d;
  const std::string unix_socket = "unix:" + d.socket;
  ShmObject obj("infer", 1 << 16);
  const json v2 = request(d.port, http::verb::get, "/v2").json_body();
  CHECK(std::find(v2["extensions"].begin(), v2["extensions"].end(), "system_shared_memory") !=
        v2["extensions"].end());

  const std::string reg = json{{"key", obj.key}, {"byte_size", obj.size}}.dump();
  // Not over TCP, even with the bearer token: the daemon cannot tell whose object it is.
  Reply r = request(d.port, http::verb::post, "/v2/systemsharedmemory/region/in/register", reg,
                    {{"Authorization", "Bearer secret"}});
  CHECK(r.status == 403);
  r = request(unix_socket, http::verb::post, "/v2/systemsharedmemory/region/in/register", reg);
  REQUIRE_MESSAGE(r.status == 200, r.body);
  r = request(unix_socket, http::verb::post, "/v2/systemsharedmemory/region/in/register", reg);
  CHECK(r.status == 400);  // the name is taken
  r = request(unix_socket, http::verb::post, "/v2/systemsharedmemory/region/x/register", "{\"key\": 3}");
  CHECK(r.status == 400);
  r = request(unix_socket, http::verb::post, "/v2/systemsharedmemory/region/x/register", "{key");
  CHECK(r.status == 400);
  CHECK(r.json_body()["error"] == "register: the body is not valid JSON");
  r = request(unix_socket, http::verb::post, "/v2/systemsharedmemory/region/x/frobnicate");
  CHECK(r.status == 405);
  r = request(unix_socket, http::verb::get, "/v2/systemsharedmemory/region/in/status");
  REQUIRE(r.status == 200);
  CHECK(r.json_body()[0]["key"] == obj.key);
  CHECK(request(unix_socket, http::verb::get, "/v2/systemsharedmemory/status").json_body().size() == 1);

  const std::string body = shared_body(obj, "in").dump();
  r = request(unix_socket, http::verb::post, "/v2/models/golden_dot/infer", body);
  REQUIRE_MESSAGE(r.status == 200, r.body);
  const auto got = r.json_body()["outputs"][0]["data"].get<std::vector<float>>();
  const std::vector<float> want = expected_scores("dot");
  REQUIRE(got.size() == want.size());
  for (size_t i = 0; i < got.size(); ++i) CHECK(got[i] == doctest::Approx(want[i]).epsilon(1e-4));

  // Over TCP the same request is refused: shared memory is read for unix-socket clients only.
  r = request(d.port, http::verb::post, "/v2/models/golden_dot/infer", body);
  CHECK(r.status == 400);
  CHECK(r.json_body()["error"].get<std::string>().find("shared memory is not available here") !=
        std::string::npos);

  // Unregistered: a 400 that names the region, and the daemon serves on.
  r = request(unix_socket, http::verb::post, "/v2/systemsharedmemory/region/in/unregister");
  CHECK(r.status == 200);
  r = request(unix_socket, http::verb::post, "/v2/models/golden_dot/infer", body);
  CHECK(r.status == 400);
  CHECK(r.json_body()["error"] == "no shared-memory region 'in' registered by this client");
  r = request(unix_socket, http::verb::post, "/v2/models/golden_dot/infer", infer_body("dot").dump());
  CHECK(r.status == 200);
  CHECK(request(unix_socket, http::verb::get, "/v2/systemsharedmemory/region/in/status").status == 400);
  CHECK(request(unix_socket, http::verb::get, "/v2/systemsharedmemory/region/in/register").status == 405);
  CHECK(request(unix_socket, http::verb::post, "/v2/systemsharedmemory/unregister").status == 200);
}

TEST_CASE("with limits.max_shm_regions 0 the extension is off and not advertised") {
  Daemon d("secret", 1 << 20, {{"limits", {{"max_shm_regions", 0}}}});
  ShmObject obj("off", 4096);
  const json v2 = request(d.port, http::verb::get, "/v2").json_body();
  CHECK(std::find(v2["extensions"].begin(), v2["extensions"].end(), "system_shared_memory") ==
        v2["extensions"].end());
  const Reply r = request("unix:" + d.socket, http::verb::post,
                          "/v2/systemsharedmemory/region/in/register",
                          json{{"key", obj.key}, {"byte_size", 64}}.dump());
  CHECK(r.status == 400);
  CHECK(r.json_body()["error"] == "system shared memory is off (limits.max_shm_regions is 0)");
  const Reply i = request("unix:" + d.socket, http::verb::post, "/v2/models/golden_dot/infer",
                          shared_body(obj, "in").dump());
  CHECK(i.status == 400);
}

}  // namespace
}  // namespace recsched::daemon
