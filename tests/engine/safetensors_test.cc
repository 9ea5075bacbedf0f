#include "engine/safetensors.h"

#include <doctest/doctest.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

namespace recsched::engine {
namespace {

std::string temp_path(const std::string& name) {
  return "/tmp/recsched_st_" + std::to_string(getpid()) + "_" + name;
}

// Writes a raw safetensors file from a header text and a data section.
std::string write_raw(const std::string& name, const std::string& header, size_t data_bytes) {
  const std::string path = temp_path(name);
  std::ofstream f(path, std::ios::binary);
  const uint64_t len = header.size();
  f.write(reinterpret_cast<const char*>(&len), 8);
  f << header;
  f << std::string(data_bytes, '\0');
  return path;
}

TEST_CASE("write_safetensors then open and read_f32 round-trips names, shapes and values") {
  const std::vector<float> a = {1.5f, -2.0f, 3.25f, 0.0f, 5.0f, 6.0f};
  const std::vector<float> b = {42.0f};
  const std::vector<TensorToWrite> tensors = {{"emb_l.0.weight", {3, 2}, a},
                                              {"bot_l.0.bias", {1}, b}};
  const std::string path = temp_path("roundtrip.safetensors");
  REQUIRE(write_safetensors(path, tensors).is_ok());

  Result<SafetensorsFile> f = SafetensorsFile::open(path);
  REQUIRE_MESSAGE(f.has_value(), f.status().to_string());
  REQUIRE(f->tensors().size() == 2);
  const TensorInfo* t = f->find("emb_l.0.weight");
  REQUIRE(t != nullptr);
  CHECK(t->shape == std::vector<int64_t>{3, 2});
  std::vector<float> got(6);
  REQUIRE(f->read_f32(*t, got).is_ok());
  CHECK(got == a);
  CHECK(f->find("nope") == nullptr);
  std::vector<float> wrong_size(5);
  CHECK(f->read_f32(*t, wrong_size).code() == StatusCode::kInvalidArgument);
  std::remove(path.c_str());
}

TEST_CASE("open refuses malformed files with a message naming the problem") {
  struct Case {
    const char* name;
    std::string header;
    size_t data;
    const char* expect;
  };
  const Case cases[] = {
      {"not json", "{nope", 0, "not valid JSON"},
      {"not object", "[1, 2]", 0, "not a JSON object"},
      {"missing fields", R"({"t": {"dtype": "F32"}})", 0, "tensor 't'"},
      {"unknown dtype", R"({"t": {"dtype": "Q7", "shape": [1], "data_offsets": [0, 4]}})", 4,
       "unknown dtype"},
      {"past the end", R"({"t": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}})", 8,
       "outside the file"},
      {"size mismatch", R"({"t": {"dtype": "F32", "shape": [3], "data_offsets": [0, 16]}})", 16,
       "need 12"},
      {"reversed offsets", R"({"t": {"dtype": "F32", "shape": [0], "data_offsets": [8, 4]}})", 8,
       "outside the file"},
      {"negative dim", R"({"t": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}})", 4,
       "bad dimension"},
      // 2^62 elements x 8 bytes wraps to 0 in 64 bits: it must not pass as an empty range.
      {"bytes overflow",
       R"({"t": {"dtype": "F64", "shape": [4611686018427387904], "data_offsets": [0, 0]}})", 0,
       "too large"},
      {"bytes overflow in two dims",
       R"({"t": {"dtype": "I64", "shape": [2147483648, 2147483648], "data_offsets": [0, 0]}})", 0,
       "too large"},
  };
  for (const Case& c : cases) {
    CAPTURE(c.name);
    const std::string path = write_raw("bad.safetensors", c.header, c.data);
    Result<SafetensorsFile> f = SafetensorsFile::open(path);
    REQUIRE_FALSE(f.has_value());
    CHECK(f.status().code() == StatusCode::kInvalidArgument);
    CHECK_MESSAGE(f.status().message().find(c.expect) != std::string::npos, f.status().message());
    std::remove(path.c_str());
  }
}

TEST_CASE("open refuses a header length beyond the file or the 100 MB limit") {
  const std::string path = temp_path("short.safetensors");
  {
    std::ofstream f(path, std::ios::binary);
    const uint64_t len = 1000;
    f.write(reinterpret_cast<const char*>(&len), 8);
    f << "{}";
  }
  CHECK(SafetensorsFile::open(path).status().message().find("past the end") != std::string::npos);
  {
    std::ofstream f(path, std::ios::binary);
    const uint64_t len = uint64_t{1} << 40;
    f.write(reinterpret_cast<const char*>(&len), 8);
  }
  CHECK(SafetensorsFile::open(path).status().message().find("100 MB") != std::string::npos);
  {
    std::ofstream f(path, std::ios::binary);
    f << "abc";
  }
  CHECK(SafetensorsFile::open(path).status().message().find("too short") != std::string::npos);
  std::remove(path.c_str());
  CHECK(SafetensorsFile::open(path).status().code() == StatusCode::kNotFound);
}

TEST_CASE("read_f32 refuses another dtype by name") {
  const std::string path = write_raw(
      "f16.safetensors", R"({"half": {"dtype": "F16", "shape": [2], "data_offsets": [0, 4]}})", 4);
  Result<SafetensorsFile> f = SafetensorsFile::open(path);
  REQUIRE(f.has_value());
  std::vector<float> dst(2);
  Status st = f->read_f32(*f->find("half"), dst);
  CHECK(st.code() == StatusCode::kInvalidArgument);
  CHECK(st.message().find("'half' has dtype F16") != std::string::npos);
  std::remove(path.c_str());
}

}  // namespace
}  // namespace recsched::engine
