// Reader for the zip container of torch.save files (stored records only; ZIP64 supported).
//
// Layout read: End Of Central Directory (and the ZIP64 EOCD locator/record when present) at the
// end of the file -> central directory entries -> each entry's local header, whose name and extra
// lengths give where the record's bytes start. Spec: PKWARE APPNOTE.TXT sections 4.3 and 4.5.
// Every offset and size is checked against the file size; compressed or encrypted records are
// refused (torch never writes them) with a message naming the file and the record.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "ucp/base/status.h"
#include "ucp/format/mapped_file.h"

namespace ucp::format {

struct ZipRecord {
  std::string name;                  ///< Full name inside the archive, e.g. "archive/data/0".
  std::uint64_t local_header_offset; ///< Offset of the local file header.
  std::uint64_t data_offset;         ///< Offset of the first data byte in the file.
  std::uint64_t size;                ///< Stored (= uncompressed) size in bytes.
  std::uint32_t crc32;               ///< CRC from the central directory.
};

class ZipReader {
 public:
  /// Parses the central directory of `file` and every local header. DataLoss on any structural
  /// problem (including two records with one name); Unimplemented for compressed/encrypted records
  /// or multi-disk archives. Every record's data is checked to lie before the central directory.
  static base::Result<ZipReader> open(std::shared_ptr<const MappedFile> file);
  static base::Result<ZipReader> open_path(const std::string& path);

  const std::vector<ZipRecord>& records() const { return records_; }
  /// The record named exactly `name`, or nullptr.
  const ZipRecord* find(std::string_view name) const;

  /// Zero-copy view of `len` bytes at `offset` inside the record. DataLoss if out of range.
  base::Result<std::span<const std::byte>> view(const ZipRecord& record, std::uint64_t offset,
                                                std::uint64_t len) const;
  /// The whole record, zero-copy (empty for a record that does not fit this reader's file).
  std::span<const std::byte> view(const ZipRecord& record) const;

  /// Recomputes the record's CRC-32 and compares it with the directory's. DataLoss on mismatch.
  base::Status verify_crc(const ZipRecord& record) const;

  const std::string& path() const { return file_->path(); }
  const std::shared_ptr<const MappedFile>& file() const { return file_; }

 private:
  std::shared_ptr<const MappedFile> file_;
  std::vector<ZipRecord> records_;
  std::vector<std::uint32_t> by_name_;  ///< Indices into records_, sorted by name: find() is a binary search.
};

}  // namespace ucp::format
