#include "engine/safetensors.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <nlohmann/json.hpp>

namespace recsched::engine {
namespace {

static_assert(std::endian::native == std::endian::little, "safetensors is little-endian");

Status read_exact(int fd, void* dst, uint64_t bytes, uint64_t offset) {
  char* p = static_cast<char*>(dst);
  while (bytes > 0) {
    const size_t chunk = static_cast<size_t>(std::min<uint64_t>(bytes, 1u << 30));
    const ssize_t n = pread(fd, p, chunk, static_cast<off_t>(offset));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return internal_error(n == 0 ? "unexpected end of file" : std::strerror(errno));
    p += n;
    offset += static_cast<uint64_t>(n);
    bytes -= static_cast<uint64_t>(n);
  }
  return Status::ok();
}

uint64_t dtype_size(const std::string& dtype) {
  if (dtype == "F64" || dtype == "I64" || dtype == "U64") return 8;
  if (dtype == "F32" || dtype == "I32" || dtype == "U32") return 4;
  if (dtype == "F16" || dtype == "BF16" || dtype == "I16" || dtype == "U16") return 2;
  if (dtype == "I8" || dtype == "U8" || dtype == "BOOL" || dtype == "F8_E4M3" ||
      dtype == "F8_E5M2") {
    return 1;
  }
  return 0;
}

}  // namespace

uint64_t TensorInfo::elements() const {
  uint64_t n = 1;
  for (int64_t d : shape) n *= static_cast<uint64_t>(d);
  return n;
}

Result<std::vector<TensorInfo>> parse_safetensors_header(std::string_view header,
                                                         uint64_t data_size) {
  const uint64_t data_start = 8 + header.size();
  auto bad = [](const std::string& why) { return invalid_argument(why); };
  std::vector<TensorInfo> tensors;
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(header);
  } catch (const nlohmann::json::exception& e) {
    return bad(std::string("header is not valid JSON: ") + e.what());
  }
  if (!j.is_object()) return bad("header is not a JSON object");
  for (const auto& [name, entry] : j.items()) {
    if (name == "__metadata__") continue;
    auto tbad = [&](const std::string& why) { return bad("tensor '" + name + "': " + why); };
    if (!entry.is_object() || !entry.contains("dtype") || !entry.contains("shape") ||
        !entry.contains("data_offsets")) {
      return tbad("needs dtype, shape and data_offsets");
    }
    TensorInfo t;
    t.name = name;
    if (!entry["dtype"].is_string()) return tbad("dtype is not a string");
    t.dtype = entry["dtype"].get<std::string>();
    const uint64_t esize = dtype_size(t.dtype);
    if (esize == 0) return tbad("unknown dtype '" + t.dtype + "'");
    if (!entry["shape"].is_array()) return tbad("shape is not an array");
    uint64_t elements = 1;
    for (const auto& d : entry["shape"]) {
      if (!d.is_number_integer() || d.get<int64_t>() < 0) return tbad("bad dimension in shape");
      const uint64_t dim = d.get<uint64_t>();
      // At most 2^60 elements, so elements x 8 bytes (the widest dtype) cannot wrap.
      if (dim != 0 && elements > (uint64_t{1} << 60) / dim) return tbad("shape is too large");
      elements *= dim;
      t.shape.push_back(static_cast<int64_t>(dim));
    }
    const auto& offs = entry["data_offsets"];
    if (!offs.is_array() || offs.size() != 2 || !offs[0].is_number_unsigned() ||
        !offs[1].is_number_unsigned()) {
      return tbad("data_offsets must be two non-negative integers");
    }
    const uint64_t b = offs[0].get<uint64_t>(), e = offs[1].get<uint64_t>();
    if (b > e || e > data_size) return tbad("data_offsets lie outside the file's data");
    if (e - b != elements * esize) {
      return tbad("data_offsets cover " + std::to_string(e - b) +
                  " bytes but dtype and shape need " + std::to_string(elements * esize));
    }
    t.begin = data_start + b;
    t.bytes = e - b;
    tensors.push_back(std::move(t));
  }
  return tensors;
}

Result<SafetensorsFile> SafetensorsFile::open(const std::string& path) {
  SafetensorsFile file;
  file.path_ = path;
  file.fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (file.fd_ < 0) return not_found("weights " + path + ": " + std::strerror(errno));
  struct stat st {};
  if (fstat(file.fd_, &st) != 0) return internal_error("weights " + path + ": cannot stat");
  const uint64_t file_size = static_cast<uint64_t>(st.st_size);
  auto bad = [&](const std::string& why) {
    return invalid_argument("weights " + path + ": " + why);
  };

  if (file_size < 8) return bad("too short to be a safetensors file");
  uint64_t header_len = 0;
  RECSCHED_RETURN_IF_ERROR(read_exact(file.fd_, &header_len, 8, 0));
  if (header_len > kMaxHeaderBytes) {
    return bad("header length " + std::to_string(header_len) + " exceeds the 100 MB limit");
  }
  if (header_len > file_size - 8) return bad("header length runs past the end of the file");
  std::string header(header_len, '\0');
  RECSCHED_RETURN_IF_ERROR(read_exact(file.fd_, header.data(), header_len, 8));
  auto tensors = parse_safetensors_header(header, file_size - 8 - header_len);
  if (!tensors) return bad(tensors.status().message());
  file.tensors_ = std::move(*tensors);
  return file;
}

SafetensorsFile::SafetensorsFile(SafetensorsFile&& other) noexcept { *this = std::move(other); }

SafetensorsFile& SafetensorsFile::operator=(SafetensorsFile&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) ::close(fd_);
    path_ = std::move(other.path_);
    tensors_ = std::move(other.tensors_);
    fd_ = std::exchange(other.fd_, -1);
  }
  return *this;
}

SafetensorsFile::~SafetensorsFile() {
  if (fd_ >= 0) ::close(fd_);
}

const TensorInfo* SafetensorsFile::find(std::string_view name) const {
  for (const TensorInfo& t : tensors_) {
    if (t.name == name) return &t;
  }
  return nullptr;
}

Status SafetensorsFile::read_f32(const TensorInfo& tensor, std::span<float> dst) const {
  if (tensor.dtype != "F32") {
    return invalid_argument("weights " + path_ + ": tensor '" + tensor.name + "' has dtype " +
                            tensor.dtype + ", only F32 is supported");
  }
  if (tensor.elements() != dst.size()) {
    return invalid_argument("weights " + path_ + ": tensor '" + tensor.name + "' has " +
                            std::to_string(tensor.elements()) + " elements, expected " +
                            std::to_string(dst.size()));
  }
  Status st = read_exact(fd_, dst.data(), tensor.bytes, tensor.begin);
  if (!st.is_ok()) {
    return internal_error("weights " + path_ + ": reading '" + tensor.name + "': " + st.message());
  }
  return Status::ok();
}

Status write_safetensors(const std::string& path, std::span<const TensorToWrite> tensors) {
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  uint64_t offset = 0;
  for (const TensorToWrite& t : tensors) {
    uint64_t elements = 1;
    for (int64_t d : t.shape) elements *= static_cast<uint64_t>(d);
    if (elements != t.data.size()) {
      return invalid_argument("tensor '" + t.name + "': shape does not match its data");
    }
    const uint64_t bytes = elements * sizeof(float);
    header[t.name] = {
        {"dtype", "F32"}, {"shape", t.shape}, {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
  }
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');
  const uint64_t header_len = text.size();

  const std::string tmp = path + ".tmp";
  FILE* f = std::fopen(tmp.c_str(), "wb");
  if (f == nullptr) return invalid_argument("cannot write " + tmp + ": " + std::strerror(errno));
  bool ok = std::fwrite(&header_len, 8, 1, f) == 1 &&
            std::fwrite(text.data(), 1, text.size(), f) == text.size();
  for (const TensorToWrite& t : tensors) {
    if (!ok) break;
    ok = std::fwrite(t.data.data(), sizeof(float), t.data.size(), f) == t.data.size();
  }
  ok = (std::fclose(f) == 0) && ok;
  if (!ok || std::rename(tmp.c_str(), path.c_str()) != 0) {
    const std::string why = std::strerror(errno);
    std::remove(tmp.c_str());
    return internal_error("cannot write " + path + ": " + why);
  }
  return Status::ok();
}

}  // namespace recsched::engine
