// Writer for torch-compatible zip containers: stored records whose data starts on an aligned
// offset (64 bytes, like torch's writer, via padding in a local-header extra field with id "FB"),
// ZIP64 fields whenever a size or offset needs them.
//
// The layout is planned up front from names and sizes alone, so several ranks can pwrite the
// record bytes of one file in parallel and the headers are filled in once the CRCs are known.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "ucp/base/status.h"

namespace ucp::format {

struct ZipEntrySpec {
  std::string name;    ///< Full name inside the archive.
  std::uint64_t size;  ///< Exact byte count of the record.
};

struct ZipLayout {
  struct Entry {
    std::string name;
    std::uint64_t size;
    std::uint64_t header_offset;  ///< Where the local header starts.
    std::uint64_t data_offset;    ///< Where the record bytes start (multiple of the alignment).
  };
  std::vector<Entry> entries;
  std::uint64_t central_directory_offset = 0;
  std::uint64_t total_size = 0;  ///< Size of the finished file, central directory included.
};

/// Largest supported alignment: the padding lives in a local-header extra field of at most 64 KiB.
inline constexpr std::uint64_t kMaxZipAlignment = 32768;

/// InvalidArgument unless plan_zip_layout's preconditions hold: `alignment` is a power of two no
/// larger than kMaxZipAlignment, every name fits a zip header (at most 65535 bytes) and the
/// finished file stays below 2^63 bytes. Callers that plan from user input check this first.
base::Status check_zip_entries(std::span<const ZipEntrySpec> entries, std::uint64_t alignment = 64);

/// Deterministic layout for `entries` in the given order. `alignment` must be a power of two
/// (see check_zip_entries; other inputs give a layout that is well defined but not what was asked).
ZipLayout plan_zip_layout(std::span<const ZipEntrySpec> entries, std::uint64_t alignment = 64);

/// Bytes of entry `i`'s local header (to write at header_offset; exactly data_offset-header_offset bytes).
std::vector<std::byte> zip_local_header(const ZipLayout& layout, std::size_t i, std::uint32_t crc);

/// Central directory, ZIP64 end records when needed, and the end-of-central-directory record;
/// written at central_directory_offset, ends exactly at total_size. `crcs[i]` is entry i's CRC-32
/// (one per entry; missing ones are written as 0).
std::vector<std::byte> zip_central_directory(const ZipLayout& layout, std::span<const std::uint32_t> crcs);

/// The CRC-32 of `len` bytes of a record's data starting at file offset `offset`, computed where
/// those bytes were written (by any rank, in any order).
struct ZipCrcPiece {
  std::uint64_t offset = 0;
  std::uint64_t len = 0;
  std::uint32_t crc = 0;
};

/// Every record's CRC-32, combined (crc32_combine) in offset order from `pieces[i]` (record i's
/// written runs) and from the `fixed` bytes that fall inside the record (pickle, version, padding
/// known at plan time). Together they must cover each record's data exactly once. Offsets of
/// pieces and fixed bytes are file offsets; the zip starts at `base` of the file (a DCP item).
std::vector<std::uint32_t> combine_record_crcs(const ZipLayout& layout, std::vector<std::vector<ZipCrcPiece>> pieces,
                                               std::span<const std::pair<std::uint64_t, std::vector<std::byte>>> fixed,
                                               std::uint64_t base = 0);

/// What finishing a zip laid out by plan_zip_layout writes once every record's CRC is known: each
/// local header at its offset, then the central directory and end records, as (offset, bytes).
std::vector<std::pair<std::uint64_t, std::vector<std::byte>>> zip_finish_writes(const ZipLayout& layout,
                                                                               std::span<const std::uint32_t> crcs);

struct ZipBlob {
  std::string name;
  std::span<const std::byte> data;
};

/// Writes a whole zip file from in-memory blobs (plan, pwrite, CRC, directory). Writes to `path`
/// directly; callers that need atomic visibility write to a temporary name and rename.
base::Status write_zip_file(const std::string& path, std::span<const ZipBlob> blobs,
                            std::uint64_t alignment = 64);
/// The bytes write_zip_file would write, in memory (small files embedded in another container).
base::Result<std::vector<std::byte>> zip_file_bytes(std::span<const ZipBlob> blobs, std::uint64_t alignment = 64);

}  // namespace ucp::format
