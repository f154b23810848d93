// safetensors files: u64 little-endian header length N, N bytes of JSON header, then the data
// buffer. Header: {"__metadata__": {str: str}, "<name>": {"dtype": "F32", "shape": [..],
// "data_offsets": [begin, end]}} with offsets relative to the buffer. Spec:
// huggingface/safetensors README "Format". We write the header padded with spaces so the buffer
// starts 8-byte aligned, with __metadata__ {"format": "pt"}, tensors ordered like the reference
// serializer (descending dtype alignment, then name).
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "ucp/base/dtype.h"
#include "ucp/base/status.h"
#include "ucp/format/mapped_file.h"

namespace ucp::format {

/// Largest JSON header we read or write (the reference implementation's MAX_HEADER_SIZE).
inline constexpr std::uint64_t kSafetensorsMaxHeaderSize = 100'000'000;

struct SafetensorsEntry {
  std::string name;
  base::DType dtype;
  std::vector<std::int64_t> shape;
  std::uint64_t begin = 0;  ///< Relative to the data buffer.
  std::uint64_t end = 0;
};

class SafetensorsFile {
 public:
  /// Validates the header (size cap 100 MB, JSON shape, known dtypes, offsets consistent with
  /// shapes, buffer fully covered without overlaps or holes). DataLoss with the file name on failure.
  static base::Result<SafetensorsFile> open(const std::string& path);
  /// Same validation on bytes already mapped or in memory (MappedFile::from_bytes): fuzzers, tests.
  static base::Result<SafetensorsFile> parse(std::shared_ptr<const MappedFile> file);

  /// Tensors in header order.
  const std::vector<SafetensorsEntry>& entries() const { return entries_; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  const SafetensorsEntry* find(std::string_view name) const;
  /// Zero-copy view of a tensor's bytes.
  std::span<const std::byte> view(const SafetensorsEntry& e) const;
  std::uint64_t data_start() const { return data_start_; }
  const std::string& path() const { return file_->path(); }
  const std::shared_ptr<const MappedFile>& file() const { return file_; }

 private:
  std::shared_ptr<const MappedFile> file_;
  std::vector<SafetensorsEntry> entries_;
  std::map<std::string, std::string> metadata_;
  std::map<std::string, std::size_t, std::less<>> index_;  ///< name -> position in entries_.
  std::uint64_t data_start_ = 0;
};

struct SafetensorsTensorSpec {
  std::string name;
  base::DType dtype;
  std::vector<std::int64_t> shape;
};

struct SafetensorsLayout {
  std::string header;  ///< 8-byte length prefix + padded JSON; write at offset 0.
  struct Placement {
    std::string name;
    std::uint64_t file_offset;  ///< Absolute offset of the tensor's bytes in the file.
    std::uint64_t size;
  };
  std::vector<Placement> placements;  ///< In the input order.
  std::uint64_t total_size = 0;
};

/// Plans a file for `tensors` (names must be unique). InvalidArgument on duplicates, negative dims,
/// overflow or a header over the reader's 100 MB cap; Unimplemented for a dtype safetensors lacks
/// (C128). An empty `metadata` omits "__metadata__".
base::Result<SafetensorsLayout> plan_safetensors(std::span<const SafetensorsTensorSpec> tensors,
                                                 const std::map<std::string, std::string>& metadata = {{"format", "pt"}});

struct SafetensorsBlob {
  SafetensorsTensorSpec spec;
  std::span<const std::byte> data;  ///< Exactly numel * dtype_size bytes, row-major.
};

/// Writes a whole safetensors file from in-memory tensors (create/truncate, then pwrite). InvalidArgument
/// if a blob's size is not numel * dtype_size; ResourceExhausted on a full disk. A partly written
/// file is removed on failure.
base::Status write_safetensors_file(const std::string& path, std::span<const SafetensorsBlob> tensors,
                                    const std::map<std::string, std::string>& metadata = {{"format", "pt"}});

}  // namespace ucp::format
