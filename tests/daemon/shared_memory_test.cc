// Triton's system shared-memory extension: the registry (daemon/shared_memory.h) on real
// POSIX shared-memory objects, and the daemon's routes and infer path over its sockets.
#include "daemon/shared_memory.h"

#include <doctest/doctest.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <future>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "engine/model_spec.h"
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

// Where shared_body put the ids in its object.
size_t ids_offset(const json& body) {
  for (const json& in : body["inputs"]) {
    if (in["name"] == "sparse_indices") return in["parameters"]["shared_memory_offset"].get<size_t>();
  }
  FAIL("no sparse_indices in the body");
  return 0;
}

TEST_CASE("a mapped region gives the object's bytes where they lie, at any offset") {
  ShmObject obj("mapped", 3 * 4096);
  SystemSharedMemory shm(4);
  // An offset inside a page: the mapping starts at its page, the bytes at the offset.
  REQUIRE(shm.register_region("r", obj.key, 100, 8000, kMe).is_ok());
  Result<SharedBytes> m = shm.map("r", 16, 64, kMe);
  REQUIRE_MESSAGE(m.has_value(), m.status().to_string());
  REQUIRE(m->bytes.size() == 64);
  CHECK(std::memcmp(m->bytes.data(), obj.data + 116, 64) == 0);
  CHECK(m->intact());
  // Where they lie, not a copy: the client's rewrite shows through.
  obj.data[116] = static_cast<char>(obj.data[116] + 1);
  CHECK(static_cast<char>(m->bytes[0]) == obj.data[116]);
  // The same bounds as read(), the same words.
  CHECK(shm.map("r", 7990, 11, kMe).status().message() ==
        "shared-memory region 'r' holds 8000 bytes; 11 at offset 7990 lie past its end");
  CHECK(shm.map("r", 0, 8, kMe + 1).status().message() ==
        "no shared-memory region 'r' registered by this client");
  // Unregistered while a request holds the bytes: they stay readable until it lets go.
  CHECK(shm.unregister("r", kMe).is_ok());
  CHECK(static_cast<char>(m->bytes[0]) == obj.data[116]);
  CHECK_FALSE(shm.map("r", 0, 8, kMe).has_value());
}

TEST_CASE("an object shrunk under a mapping reads as zeros and marks its region, not a crash") {
  ShmObject obj("shrinks-mapped", 3 * 4096);
  ShmObject other("stays-mapped", 4096);
  SystemSharedMemory shm(4);
  REQUIRE(shm.register_region("r", obj.key, 0, obj.size, kMe).is_ok());
  REQUIRE(shm.register_region("o", other.key, 0, other.size, kMe).is_ok());
  Result<SharedBytes> m = shm.map("r", 2 * 4096, 64, kMe);
  Result<SharedBytes> o = shm.map("o", 0, 64, kMe);
  REQUIRE(m.has_value());
  REQUIRE(o.has_value());
  CHECK(static_cast<char>(m->bytes[1]) == obj.data[2 * 4096 + 1]);
  obj.shrink(100);  // the test's own mapping of the object must not be read past 100 now
  // The lost page is read: SIGBUS, caught by the guard, which maps zeros over the region.
  const volatile std::byte* lost = m->bytes.data() + 1;
  CHECK(*lost == std::byte{0});
  CHECK_FALSE(m->intact());
  // The region refuses every later request, the reader says why; another region is whole.
  CHECK(shm.map("r", 0, 8, kMe).status().message() ==
        "shared-memory region 'r': its object shrank while a query read it; register it again");
  CHECK(o->intact());
  CHECK(std::memcmp(o->bytes.data(), other.data, 64) == 0);
  // An object found shrunk before it is read is refused as read() refuses it.
  ShmObject early("shrinks-early", 2 * 4096);
  REQUIRE(shm.register_region("e", early.key, 0, early.size, kMe).is_ok());
  early.shrink(10);
  CHECK(shm.map("e", 4096, 8, kMe).status().message() ==
        "shared-memory region 'e': its object shrank since it was registered");
}

TEST_CASE("a SIGBUS outside every region still ends the process: the guard swallows only its own") {
  ShmObject obj("guard-installed", 4096);
  SystemSharedMemory shm(4);
  REQUIRE(shm.register_region("r", obj.key, 0, obj.size, kMe).is_ok());  // the guard is in
  // A child maps an object of its own (no region), shrinks it and reads the lost page.
  const std::string key = "/recsched-test-foreign-" + std::to_string(::getpid());
  const pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    const int fd = ::shm_open(key.c_str(), O_RDWR | O_CREAT | O_TRUNC, 0600);
    if (fd < 0 || ::ftruncate(fd, 8192) != 0) _exit(90);
    void* p = ::mmap(nullptr, 8192, PROT_READ, MAP_SHARED, fd, 0);
    ::shm_unlink(key.c_str());
    if (p == MAP_FAILED || ::ftruncate(fd, 0) != 0) _exit(91);
    const volatile char* lost = static_cast<const char*>(p) + 4096;
    const char c = *lost;  // SIGBUS: not a region's
    _exit(c == 0 ? 0 : 92);  // reached only if the guard swallowed it
  }
  int status = 0;
  REQUIRE(::waitpid(pid, &status, 0) == pid);
  // Killed by SIGBUS (the default action), or, under a sanitizer whose handler was there
  // first, ended by its report: never a clean exit.
  const bool by_sigbus = WIFSIGNALED(status) && WTERMSIG(status) == SIGBUS;
  const bool by_report = WIFEXITED(status) && WEXITSTATUS(status) != 0 &&
                         WEXITSTATUS(status) < 90;
  CHECK_MESSAGE((by_sigbus || by_report), "child status " << status);
}

TEST_CASE("the codec reads a region's ids where they lie, and own_shared_ids takes a copy the client cannot change") {
  ShmObject obj("codec-ids", 1 << 16);
  SystemSharedMemory shm(4);
  REQUIRE(shm.register_region("in", obj.key, 0, obj.size, kMe).is_ok());
  const json body = shared_body(obj, "in");
  const size_t at = ids_offset(body);
  const Result<engine::ModelSpec> spec = engine::load_model_spec(golden("dot", ".model.json"));
  REQUIRE(spec.has_value());
  const SystemSharedMemory::Reader reader(shm, kMe);
  auto id0 = [&] {
    int64_t v;
    std::memcpy(&v, obj.data + at, 8);
    return v;
  };
  auto set_id0 = [&](int64_t v) { std::memcpy(obj.data + at, &v, 8); };
  const int64_t first = id0();

  Result<InferRequest> req = parse_infer_request(body.dump(), std::nullopt, *spec, {}, &reader);
  REQUIRE_MESSAGE(req.has_value(), req.status().to_string());
  CHECK(req->shared_ids != nullptr);
  CHECK(req->own_ids == nullptr);
  CHECK(req->shared_ids_intact());
  REQUIRE(req->view().indices.size() == req->view().num_indices());
  CHECK(req->view().indices[0] == first);
  set_id0((first + 1) % 23);  // table 0 has 23 rows: still a valid id
  CHECK(req->view().indices[0] == (first + 1) % 23);  // read where it lies
  REQUIRE(req->own_shared_ids(*spec).is_ok());
  CHECK(req->shared_ids == nullptr);
  CHECK(req->own_ids != nullptr);
  set_id0(first);
  CHECK(req->view().indices[0] == (first + 1) % 23);  // the copy, which the client cannot change

  // A bad id written after the decode's check is found by the copy's.
  Result<InferRequest> again = parse_infer_request(body.dump(), std::nullopt, *spec, {}, &reader);
  REQUIRE(again.has_value());
  set_id0(int64_t{1} << 40);
  const Status st = again->own_shared_ids(*spec);
  CHECK(st.code() == StatusCode::kInvalidArgument);
  CHECK_MESSAGE(st.message().find("outside table 0") != std::string::npos, st.message());
  // And at decode, as for ids sent any other way, in the same words.
  const Result<InferRequest> bad = parse_infer_request(body.dump(), std::nullopt, *spec, {}, &reader);
  REQUIRE_FALSE(bad.has_value());
  CHECK(bad.status().message() == st.message());
  set_id0(first);
}

TEST_CASE("ids used in a client's region: a bad id written or the object shrunk mid-query is a 400, and the device stays healthy") {
  FailpointGuard guard;
  Daemon d;
  const std::string sock = "unix:" + d.socket;
  const std::string infer = "/v2/models/golden_dot/infer";
  ShmObject obj("mid-query", 1 << 16);
  const std::string reg = json{{"key", obj.key}, {"byte_size", obj.size}}.dump();
  REQUIRE(request(sock, http::verb::post, "/v2/systemsharedmemory/region/in/register", reg).status == 200);
  const json shared = shared_body(obj, "in");
  const std::string body = shared.dump();
  const size_t at = ids_offset(shared);
  REQUIRE(request(sock, http::verb::post, infer, body).status == 200);
  auto health = [&] {
    const json devices = request(d.port, http::verb::get, "/v1/devices").json_body();
    for (const json& dev : devices["devices"]) {
      if (dev["id"] == "cpu0") return dev.value("health", std::string());
    }
    return std::string("no cpu0");
  };
  // Held inside forward(): after the decode checked the ids, before the kernels read them.
  auto held_query = [&](const std::function<void()>& meanwhile) {
    REQUIRE(failpoint::set("forward.cpu0", "pause").is_ok());
    std::future<Reply> reply =
        std::async(std::launch::async, [&] { return request(sock, http::verb::post, infer, body); });
    REQUIRE(failpoint::wait_paused("forward.cpu0", 1, 30000));
    meanwhile();
    REQUIRE(failpoint::set("forward.cpu0", "off").is_ok());
    return reply.get();
  };

  int64_t first;
  std::memcpy(&first, obj.data + at, 8);
  const Reply rewritten = held_query([&] {
    const int64_t bad = int64_t{1} << 40;
    std::memcpy(obj.data + at, &bad, 8);
  });
  CHECK(rewritten.status == 400);
  CHECK_MESSAGE(rewritten.body.find("an id is outside") != std::string::npos, rewritten.body);
  CHECK(health() == "ok");
  std::memcpy(obj.data + at, &first, 8);
  CHECK(request(sock, http::verb::post, infer, body).status == 200);

  const Reply shrunk = held_query([&] { obj.shrink(0); });  // obj.data is not read after this
  CHECK(shrunk.status == 400);
  CHECK(shrunk.json_body()["error"] == kSharedIdsShrank);
  CHECK(health() == "ok");
  const Reply later = request(sock, http::verb::post, infer, body);
  CHECK(later.status == 400);
  // Refused from now on (by the first input read, dense features copied or ids mapped).
  CHECK_MESSAGE(later.body.find("shared-memory region 'in': its object shrank") != std::string::npos,
                later.body);
  CHECK(request(sock, http::verb::post, infer, infer_body("dot").dump()).status == 200);
}

}  // namespace
}  // namespace recsched::daemon
