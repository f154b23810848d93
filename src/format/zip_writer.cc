#include "ucp/format/zip_writer.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstring>
#include <optional>
#include <string>

#include "ucp/base/checked_math.h"
#include "ucp/format/crc32.h"
#include "zip_format.h"

namespace ucp::format {
namespace {

using namespace zip;  // NOLINT: the format constants

constexpr std::uint64_t kExtraHeaderSize = 4;
constexpr std::uint64_t kLocalZip64ExtraSize = kExtraHeaderSize + 16;  // Both sizes, always.
constexpr std::uint16_t kPaddingExtraId = 0x4246;  // "FB" on disk, as torch's writer.
constexpr std::uint16_t kVersionPlain = 20;  // 2.0: stored records, directories.
constexpr std::uint16_t kVersionZip64 = 45;  // 4.5: ZIP64 extensions.
constexpr std::uint16_t kFlagUtf8Names = 0x0800;  // Names are UTF-8 (APPNOTE appendix D).

// A value at or above the 32-bit placeholder needs its ZIP64 field.
bool needs_zip64(std::uint64_t v) { return v >= kMax32; }

std::uint64_t sane_alignment(std::uint64_t alignment) {
  return std::bit_ceil(std::clamp<std::uint64_t>(alignment, 1, kMaxZipAlignment));
}

std::uint64_t central_zip64_extra_size(const ZipLayout::Entry& e) {
  const std::uint64_t fields = (needs_zip64(e.size) ? 16 : 0) + (needs_zip64(e.header_offset) ? 8 : 0);
  return fields == 0 ? 0 : kExtraHeaderSize + fields;
}

std::uint64_t central_entry_size(const ZipLayout::Entry& e) {
  return kCentralHeaderSize + e.name.size() + central_zip64_extra_size(e);
}

class ByteWriter {
 public:
  explicit ByteWriter(std::size_t reserve) { out_.reserve(reserve); }
  void u16(std::uint64_t v) { le(v, 2); }
  void u32(std::uint64_t v) { le(v, 4); }
  void u64(std::uint64_t v) { le(v, 8); }
  void bytes(std::string_view s) {
    for (char c : s) out_.push_back(static_cast<std::byte>(c));
  }
  void fill(std::size_t n, char c) { out_.insert(out_.end(), n, static_cast<std::byte>(c)); }
  std::vector<std::byte> take() && { return std::move(out_); }

 private:
  void le(std::uint64_t v, int n) {
    for (int i = 0; i < n; ++i) out_.push_back(static_cast<std::byte>((v >> (8 * i)) & 0xFF));
  }
  std::vector<std::byte> out_;
};

base::Status io_error(const std::string& what, const std::string& path, int err) {
  if (err == ENOSPC || err == EDQUOT) {
    return base::resource_exhausted("no space left on device while writing '" + path + "' (" + std::strerror(err) + ")");
  }
  std::string message = what + " '" + path + "': " + std::strerror(err);
  switch (err) {
    case ENOENT:
    case ENOTDIR:
      return base::not_found(std::move(message));
    case EFBIG:
      return base::resource_exhausted(std::move(message));
    case EACCES:
    case EPERM:
    case EROFS:
    case EISDIR:
    case ETXTBSY:
      return base::failed_precondition(std::move(message));
    default:
      // EIO, ESTALE and friends: the storage (often a network file system) failed under us.
      return base::unavailable(std::move(message));
  }
}

base::Status pwrite_all(int fd, const std::string& path, std::span<const std::byte> data, std::uint64_t offset) {
  while (!data.empty()) {
    // Linux moves at most ~2 GiB per call; ask for no more so the loop makes steady progress.
    const std::size_t chunk = std::min<std::size_t>(data.size(), std::size_t{1} << 30);
    const ssize_t n = ::pwrite(fd, data.data(), chunk, static_cast<off_t>(offset));
    if (n < 0) {
      if (errno == EINTR) continue;
      return io_error("cannot write", path, errno);
    }
    if (n == 0) return io_error("cannot write", path, EIO);
    data = data.subspan(static_cast<std::size_t>(n));
    offset += static_cast<std::uint64_t>(n);
  }
  return base::Status();
}

}  // namespace

base::Status check_zip_entries(std::span<const ZipEntrySpec> entries, std::uint64_t alignment) {
  if (alignment == 0 || !std::has_single_bit(alignment) || alignment > kMaxZipAlignment) {
    return base::invalid_argument("zip alignment " + std::to_string(alignment) +
                                  ": expected a power of two no larger than " + std::to_string(kMaxZipAlignment));
  }
  // Upper bound of the file size: every header at its largest, every padding at its largest.
  std::optional<std::uint64_t> total = kZip64EocdSize + kZip64LocatorSize + kEocdSize;
  for (const ZipEntrySpec& e : entries) {
    if (e.name.size() > kMax16) {
      return base::invalid_argument("zip record name of " + std::to_string(e.name.size()) + " bytes ('" +
                                    e.name.substr(0, 64) + "...'): expected at most 65535 bytes");
    }
    const std::uint64_t overhead = kLocalHeaderSize + kLocalZip64ExtraSize + alignment + 3 +
                                   kCentralHeaderSize + kExtraHeaderSize + 24 + 2 * e.name.size();
    if (total) total = base::checked_add(*total, overhead);
    if (total) total = base::checked_add(*total, e.size);
    if (!total || *total >= (std::uint64_t{1} << 63)) {
      return base::invalid_argument("zip record '" + e.name + "' of " + std::to_string(e.size) +
                                    " bytes: expected the archive to stay below 2^63 bytes");
    }
  }
  return base::Status();
}

ZipLayout plan_zip_layout(std::span<const ZipEntrySpec> entries, std::uint64_t alignment) {
  alignment = sane_alignment(alignment);
  ZipLayout layout;
  layout.entries.reserve(entries.size());
  std::uint64_t offset = 0;
  for (const ZipEntrySpec& spec : entries) {
    ZipLayout::Entry e{spec.name, spec.size, offset, 0};
    const std::uint64_t data_start = offset + kLocalHeaderSize + spec.name.size() +
                                     (needs_zip64(spec.size) ? kLocalZip64ExtraSize : 0);
    // Smallest padding that aligns the data and can hold the extra field's own 4-byte header.
    std::uint64_t pad = (alignment - data_start % alignment) % alignment;
    if (pad != 0) {
      while (pad < kExtraHeaderSize) pad += alignment;
    }
    e.data_offset = data_start + pad;
    offset = e.data_offset + spec.size;
    layout.entries.push_back(std::move(e));
  }
  layout.central_directory_offset = offset;
  std::uint64_t cd_size = 0;
  for (const ZipLayout::Entry& e : layout.entries) cd_size += central_entry_size(e);
  const bool zip64_end = layout.entries.size() >= kMax16 || needs_zip64(offset) || needs_zip64(cd_size);
  layout.total_size = offset + cd_size + (zip64_end ? kZip64EocdSize + kZip64LocatorSize : 0) + kEocdSize;
  return layout;
}

std::vector<std::byte> zip_local_header(const ZipLayout& layout, std::size_t i, std::uint32_t crc) {
  if (i >= layout.entries.size()) return {};
  const ZipLayout::Entry& e = layout.entries[i];
  const bool zip64 = needs_zip64(e.size);
  const std::uint64_t header_size = e.data_offset - e.header_offset;
  const std::uint64_t fixed = kLocalHeaderSize + e.name.size() + (zip64 ? kLocalZip64ExtraSize : 0);
  const std::uint64_t pad = header_size > fixed ? header_size - fixed : 0;
  ByteWriter w(static_cast<std::size_t>(fixed + pad));
  w.u32(kLocalHeaderSignature);
  w.u16(zip64 ? kVersionZip64 : kVersionPlain);
  w.u16(kFlagUtf8Names);
  w.u16(0);  // Stored.
  w.u16(0);  // Time and date 0, as torch writes: reproducible bytes.
  w.u16(0);
  w.u32(crc);
  w.u32(zip64 ? kMax32 : e.size);  // Compressed size.
  w.u32(zip64 ? kMax32 : e.size);  // Uncompressed size.
  w.u16(e.name.size());
  w.u16(fixed - kLocalHeaderSize - e.name.size() + pad);
  w.bytes(e.name);
  if (zip64) {
    w.u16(kZip64ExtraId);
    w.u16(16);
    w.u64(e.size);  // Uncompressed, then compressed.
    w.u64(e.size);
  }
  if (pad != 0) {
    w.u16(kPaddingExtraId);
    w.u16(pad - kExtraHeaderSize);
    w.fill(static_cast<std::size_t>(pad - kExtraHeaderSize), 'Z');
  }
  return std::move(w).take();
}

std::vector<std::byte> zip_central_directory(const ZipLayout& layout, std::span<const std::uint32_t> crcs) {
  const std::uint64_t cd_offset = layout.central_directory_offset;
  std::uint64_t cd_size = 0;
  for (const ZipLayout::Entry& e : layout.entries) cd_size += central_entry_size(e);
  const std::uint64_t count = layout.entries.size();
  const bool zip64_end = count >= kMax16 || needs_zip64(cd_offset) || needs_zip64(cd_size);
  ByteWriter w(static_cast<std::size_t>(cd_size + kZip64EocdSize + kZip64LocatorSize + kEocdSize));

  for (std::size_t i = 0; i < layout.entries.size(); ++i) {
    const ZipLayout::Entry& e = layout.entries[i];
    const bool big_size = needs_zip64(e.size);
    const bool big_offset = needs_zip64(e.header_offset);
    const std::uint64_t extra = central_zip64_extra_size(e);
    const std::uint16_t version = extra != 0 ? kVersionZip64 : kVersionPlain;
    w.u32(kCentralHeaderSignature);
    w.u16(version);  // Made by (upper byte 0: MS-DOS attributes, all zero, as torch writes).
    w.u16(version);  // Needed to extract.
    w.u16(kFlagUtf8Names);
    w.u16(0);  // Stored.
    w.u16(0);  // Time.
    w.u16(0);  // Date.
    w.u32(i < crcs.size() ? crcs[i] : 0);
    w.u32(big_size ? kMax32 : e.size);
    w.u32(big_size ? kMax32 : e.size);
    w.u16(e.name.size());
    w.u16(extra);
    w.u16(0);  // Comment length.
    w.u16(0);  // Disk number start.
    w.u16(0);  // Internal attributes.
    w.u32(0);  // External attributes.
    w.u32(big_offset ? kMax32 : e.header_offset);
    w.bytes(e.name);
    if (extra != 0) {
      // Only the fields whose 32-bit slot holds the placeholder, in APPNOTE order.
      w.u16(kZip64ExtraId);
      w.u16(extra - kExtraHeaderSize);
      if (big_size) {
        w.u64(e.size);
        w.u64(e.size);
      }
      if (big_offset) w.u64(e.header_offset);
    }
  }

  if (zip64_end) {
    const std::uint64_t record_offset = cd_offset + cd_size;
    w.u32(kZip64EocdSignature);
    w.u64(kZip64EocdSize - 12);  // Size of the rest of the record.
    w.u16(kVersionZip64);
    w.u16(kVersionZip64);
    w.u32(0);  // This disk.
    w.u32(0);  // Disk with the directory.
    w.u64(count);
    w.u64(count);
    w.u64(cd_size);
    w.u64(cd_offset);
    w.u32(kZip64LocatorSignature);
    w.u32(0);  // Disk with the ZIP64 record.
    w.u64(record_offset);
    w.u32(1);  // Total disks.
  }
  w.u32(kEocdSignature);
  w.u16(0);  // This disk.
  w.u16(0);  // Disk with the directory.
  w.u16(std::min<std::uint64_t>(count, kMax16));
  w.u16(std::min<std::uint64_t>(count, kMax16));
  w.u32(std::min<std::uint64_t>(cd_size, kMax32));
  w.u32(std::min<std::uint64_t>(cd_offset, kMax32));
  w.u16(0);  // Comment length.
  return std::move(w).take();
}

namespace {

// The layout of a zip holding `blobs` (checked: names, sizes); `what` prefixes the error.
base::Result<ZipLayout> lay_out_blobs(std::span<const ZipBlob> blobs, std::uint64_t alignment, const std::string& what) {
  std::vector<ZipEntrySpec> specs;
  specs.reserve(blobs.size());
  for (const ZipBlob& b : blobs) specs.push_back({b.name, b.data.size()});
  UCP_RETURN_IF_ERROR(check_zip_entries(specs, alignment).annotate(what));
  return plan_zip_layout(specs, alignment);
}

// Every byte of the zip, handed to `put(bytes, offset)`: headers and data entry by entry, then
// the central directory. Stops at put's first error.
template <typename Put>
base::Status emit_blobs(const ZipLayout& layout, std::span<const ZipBlob> blobs, Put put) {
  std::vector<std::uint32_t> crcs;
  crcs.reserve(blobs.size());
  for (std::size_t i = 0; i < blobs.size(); ++i) {
    const ZipLayout::Entry& e = layout.entries[i];
    crcs.push_back(crc32_update(0, blobs[i].data));
    UCP_RETURN_IF_ERROR(put(zip_local_header(layout, i, crcs.back()), e.header_offset));
    UCP_RETURN_IF_ERROR(put(blobs[i].data, e.data_offset));
  }
  return put(zip_central_directory(layout, crcs), layout.central_directory_offset);
}

}  // namespace

base::Status write_zip_file(const std::string& path, std::span<const ZipBlob> blobs, std::uint64_t alignment) {
  UCP_ASSIGN_OR_RETURN(const ZipLayout layout, lay_out_blobs(blobs, alignment, "cannot write '" + path + "'"));
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return io_error("cannot create", path, errno);
  base::Status status = emit_blobs(layout, blobs, [&](std::span<const std::byte> bytes, std::uint64_t at) {
    return pwrite_all(fd, path, bytes, at);
  });
  // close() reports deferred write errors (NFS, quota), so its result counts.
  if (::close(fd) != 0 && status.ok()) status = io_error("cannot close", path, errno);
  return status;
}

base::Result<std::vector<std::byte>> zip_file_bytes(std::span<const ZipBlob> blobs, std::uint64_t alignment) {
  UCP_ASSIGN_OR_RETURN(const ZipLayout layout, lay_out_blobs(blobs, alignment, "cannot build a zip file in memory"));
  if (layout.total_size > (std::uint64_t{1} << 40))
    return base::resource_exhausted("an in-memory zip file of " + std::to_string(layout.total_size) + " bytes is too large");
  std::vector<std::byte> out(static_cast<std::size_t>(layout.total_size));
  UCP_RETURN_IF_ERROR(emit_blobs(layout, blobs, [&out](std::span<const std::byte> bytes, std::uint64_t at) {
    std::copy(bytes.begin(), bytes.end(), out.begin() + static_cast<std::ptrdiff_t>(at));
    return base::Status();
  }));
  return out;
}

std::vector<std::uint32_t> combine_record_crcs(const ZipLayout& layout, std::vector<std::vector<ZipCrcPiece>> pieces,
                                               std::span<const std::pair<std::uint64_t, std::vector<std::byte>>> fixed,
                                               std::uint64_t base) {
  std::vector<std::uint32_t> crcs(layout.entries.size(), 0);
  pieces.resize(layout.entries.size());
  for (std::size_t e = 0; e < layout.entries.size(); ++e) {
    std::vector<ZipCrcPiece>& record = pieces[e];
    const std::uint64_t begin = base + layout.entries[e].data_offset, end = begin + layout.entries[e].size;
    for (const auto& [offset, bytes] : fixed)
      if (offset >= begin && offset + bytes.size() <= end && !bytes.empty())
        record.push_back({offset, bytes.size(), crc32_update(0, bytes)});
    std::sort(record.begin(), record.end(), [](const ZipCrcPiece& a, const ZipCrcPiece& b) { return a.offset < b.offset; });
    std::uint32_t crc = 0;
    for (const ZipCrcPiece& p : record) crc = crc32_combine(crc, p.crc, p.len);
    crcs[e] = crc;
  }
  return crcs;
}

std::vector<std::pair<std::uint64_t, std::vector<std::byte>>> zip_finish_writes(const ZipLayout& layout,
                                                                               std::span<const std::uint32_t> crcs) {
  std::vector<std::pair<std::uint64_t, std::vector<std::byte>>> writes;
  for (std::size_t e = 0; e < layout.entries.size(); ++e)
    writes.emplace_back(layout.entries[e].header_offset, zip_local_header(layout, e, crcs[e]));
  writes.emplace_back(layout.central_directory_offset, zip_central_directory(layout, crcs));
  return writes;
}

}  // namespace ucp::format
