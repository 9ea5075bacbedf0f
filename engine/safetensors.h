// Reading and writing .safetensors files (an 8-byte little-endian header length, a JSON
// header naming each tensor's dtype, shape and byte range, then raw data), so models
// trained in PyTorch can be served. F32 only. Depends on core.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/status.h"

namespace recsched::engine {

struct TensorInfo {
  std::string name;
  std::string dtype;
  std::vector<int64_t> shape;
  uint64_t begin = 0;  ///< byte offset in the file
  uint64_t bytes = 0;
  uint64_t elements() const;
};

/// An open safetensors file whose header has been parsed and checked: every tensor's
/// byte range lies inside the file and matches its dtype and shape. Move-only.
class SafetensorsFile {
 public:
  /// Headers larger than this are refused (the format's own limit is 100 MB).
  static constexpr uint64_t kMaxHeaderBytes = 100u << 20;

  /// kNotFound if the file cannot be opened; kInvalidArgument, naming the tensor or
  /// field, if the header is malformed.
  static Result<SafetensorsFile> open(const std::string& path);

  SafetensorsFile(SafetensorsFile&& other) noexcept;
  SafetensorsFile& operator=(SafetensorsFile&& other) noexcept;
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;
  ~SafetensorsFile();

  const std::string& path() const { return path_; }
  const std::vector<TensorInfo>& tensors() const { return tensors_; }
  /// nullptr if there is no tensor of that name.
  const TensorInfo* find(std::string_view name) const;
  /// Copies an F32 tensor into `dst` (dst.size() == elements). kInvalidArgument if the
  /// dtype is not F32 or the sizes differ; kInternal on a read error.
  Status read_f32(const TensorInfo& tensor, std::span<float> dst) const;

 private:
  SafetensorsFile() = default;
  std::string path_;
  int fd_ = -1;
  std::vector<TensorInfo> tensors_;
};

/// Parses and checks a safetensors header: `header` is its JSON text (the file's bytes from
/// 8 to 8 + header length) and `data_size` the number of bytes after it. Every tensor's
/// byte range must lie inside the data and match its dtype and shape; TensorInfo::begin
/// is the offset in the file (8 + header length + the tensor's data offset).
/// kInvalidArgument naming the tensor or field. SafetensorsFile::open() calls this; the
/// fuzzer (tests/fuzz/fuzz_safetensors.cc) calls it directly.
Result<std::vector<TensorInfo>> parse_safetensors_header(std::string_view header,
                                                         uint64_t data_size);

/// A named F32 tensor to write.
struct TensorToWrite {
  std::string name;
  std::vector<int64_t> shape;
  std::span<const float> data;
};

/// Writes `tensors` as a safetensors file (header padded to 8 bytes). Writes to a
/// temporary file and renames it, so a failed write leaves no partial file.
Status write_safetensors(const std::string& path, std::span<const TensorToWrite> tensors);

}  // namespace recsched::engine
