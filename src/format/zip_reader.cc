#include "ucp/format/zip_reader.h"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <limits>
#include <optional>
#include <utility>

#include "ucp/base/checked_math.h"
#include "ucp/format/crc32.h"
#include "zip_format.h"

namespace ucp::format {
namespace {

using namespace zip;  // NOLINT: the format constants

using base::checked_add;
using base::Status;

// Bit 0: encrypted; bit 6: strong encryption; bit 13: encrypted central directory.
constexpr std::uint16_t kEncryptionFlags = 0x0001 | 0x0040 | 0x2000;

std::string hex32(std::uint32_t v) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "0x%08x", v);
  return buf;
}

std::string hex16(std::uint16_t v) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "0x%04x", v);
  return buf;
}

std::string method_name(std::uint16_t method) {
  switch (method) {
    case 8: return "8 (deflate)";
    case 9: return "9 (deflate64)";
    case 12: return "12 (bzip2)";
    case 14: return "14 (lzma)";
    case 93: return "93 (zstd)";
    case 95: return "95 (xz)";
    default: return std::to_string(method);
  }
}

// Little-endian reads that cannot leave the buffer: every caller checks the range first, and a
// missed check yields zeros (and then a structural error) rather than an out-of-bounds read.
class Bytes {
 public:
  explicit Bytes(std::span<const std::byte> b) : b_(b) {}
  std::uint64_t size() const { return b_.size(); }
  bool has(std::uint64_t offset, std::uint64_t len) const {
    auto end = checked_add(offset, len);
    return end && *end <= b_.size();
  }
  std::uint16_t u16(std::uint64_t off) const { return static_cast<std::uint16_t>(le(off, 2)); }
  std::uint32_t u32(std::uint64_t off) const { return static_cast<std::uint32_t>(le(off, 4)); }
  std::uint64_t u64(std::uint64_t off) const { return le(off, 8); }
  std::string_view str(std::uint64_t off, std::uint64_t len) const {
    if (!has(off, len)) return {};
    return {reinterpret_cast<const char*>(b_.data()) + off, static_cast<std::size_t>(len)};
  }

 private:
  std::uint64_t le(std::uint64_t off, unsigned n) const {
    if (!has(off, n)) return 0;
    std::uint64_t v = 0;
    for (unsigned i = 0; i < n; ++i) v |= static_cast<std::uint64_t>(b_[off + i]) << (8 * i);
    return v;
  }
  std::span<const std::byte> b_;
};

// Names can hold anything; keep messages printable and short.
std::string printable(std::string_view name) {
  std::string out;
  for (char c : name.substr(0, 200)) {
    const auto u = static_cast<unsigned char>(c);
    if (u < 0x20 || u == 0x7f) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", u);
      out += buf;
    } else {
      out += c;
    }
  }
  if (name.size() > 200) out += "...";
  return out;
}

// The end of the archive, as the (ZIP64) end records describe it.
struct Directory {
  std::uint64_t entries = 0;
  std::uint64_t size = 0;
  std::uint64_t offset = 0;
  std::uint64_t limit = 0;  ///< The directory must end by here: the first end record.
  std::string limit_what;   ///< Which record sits at `limit`, for messages.
};

// A central directory entry, before its local header is read.
struct CentralEntry {
  std::string name;
  std::uint64_t entry_offset = 0;
  std::uint64_t local_header_offset = 0;
  std::uint64_t size = 0;
  std::uint32_t crc32 = 0;
};

class Parser {
 public:
  Parser(const MappedFile& file) : path_(file.path()), b_(file.bytes()) {}

  base::Result<Directory> read_end_records();
  base::Result<std::vector<CentralEntry>> read_central_directory(const Directory& dir);
  base::Result<ZipRecord> read_local_header(const CentralEntry& entry, const Directory& dir);

 private:
  Status loss(std::string what, std::uint64_t offset, std::string expected, std::string found) const {
    return base::data_loss("'" + path_ + "': " + what + " at offset " + std::to_string(offset) +
                           ": expected " + expected + ", found " + found);
  }
  Status unsupported(std::string message) const {
    return base::unimplemented("'" + path_ + "': " + message);
  }
  std::string entry_what(std::string_view name) const {
    return "central directory entry '" + printable(name) + "'";
  }

  const std::string& path_;
  Bytes b_;
};

base::Result<Directory> Parser::read_end_records() {
  const std::uint64_t size = b_.size();
  if (size < kEocdSize) {
    return loss("end of central directory record", 0, "at least " + std::to_string(kEocdSize) + " bytes",
                "a file of " + std::to_string(size) + " bytes");
  }
  // Scan back from the last place the record fits; the comment (at most 64 KiB) must reach exactly
  // to the end of the file, which rules out signatures that merely occur inside data.
  const std::uint64_t last = size - kEocdSize;
  const std::uint64_t first = last > kMaxCommentSize ? last - kMaxCommentSize : 0;
  std::optional<std::uint64_t> eocd;
  std::optional<std::uint64_t> bad_comment;  // Highest signature whose comment length is wrong.
  for (std::uint64_t pos = last + 1; pos-- > first;) {
    if (b_.u32(pos) != kEocdSignature) continue;
    if (pos + kEocdSize + b_.u16(pos + 20) == size) {
      eocd = pos;
      break;
    }
    if (!bad_comment) bad_comment = pos;
  }
  if (!eocd) {
    if (bad_comment) {
      const std::uint64_t pos = *bad_comment;
      return loss("end of central directory record", pos,
                  "a comment length of " + std::to_string(size - pos - kEocdSize) + " (to the end of the file)",
                  std::to_string(b_.u16(pos + 20)));
    }
    return loss("end of central directory record", first,
                "signature " + hex32(kEocdSignature) + " in the last " + std::to_string(size - first) + " bytes",
                "none (not a zip file, or truncated)");
  }
  const std::uint64_t pos = *eocd;
  const std::uint16_t disk = b_.u16(pos + 4);
  const std::uint16_t cd_disk = b_.u16(pos + 6);
  const std::uint16_t entries_disk = b_.u16(pos + 8);
  const std::uint16_t entries_total = b_.u16(pos + 10);
  const std::uint32_t cd_size = b_.u32(pos + 12);
  const std::uint32_t cd_offset = b_.u32(pos + 16);

  Directory dir;
  const bool has_locator = pos >= kZip64LocatorSize && b_.u32(pos - kZip64LocatorSize) == kZip64LocatorSignature;
  if (!has_locator) {
    if (cd_size == kMax32 || cd_offset == kMax32) {
      return loss("end of central directory record", pos,
                  "a ZIP64 end of central directory locator before it (the record holds ZIP64 placeholders)",
                  "none");
    }
    if (disk != 0 || cd_disk != 0) {
      return unsupported("multi-disk archive (end of central directory record at offset " + std::to_string(pos) +
                         " names disk " + std::to_string(disk) + ", directory on disk " + std::to_string(cd_disk) +
                         "); only single-file archives are supported");
    }
    if (entries_disk != entries_total) {
      return loss("end of central directory record", pos,
                  "as many entries on this disk as in total (" + std::to_string(entries_total) + ")",
                  std::to_string(entries_disk));
    }
    dir.entries = entries_total;
    dir.size = cd_size;
    dir.offset = cd_offset;
    dir.limit = pos;
    dir.limit_what = "the end of central directory record";
    return dir;
  }

  const std::uint64_t loc = pos - kZip64LocatorSize;
  const std::uint32_t z64_disk = b_.u32(loc + 4);
  const std::uint64_t z64 = b_.u64(loc + 8);
  const std::uint32_t total_disks = b_.u32(loc + 16);
  if (z64_disk != 0 || total_disks > 1) {
    return unsupported("multi-disk archive (ZIP64 locator at offset " + std::to_string(loc) + " names " +
                       std::to_string(total_disks) + " disks); only single-file archives are supported");
  }
  auto z64_min_end = checked_add(z64, kZip64EocdSize);
  if (!z64_min_end || *z64_min_end > loc) {
    return loss("ZIP64 end of central directory locator", loc,
                "a ZIP64 end of central directory record of at least " + std::to_string(kZip64EocdSize) +
                    " bytes before offset " + std::to_string(loc),
                "one pointed to at offset " + std::to_string(z64));
  }
  if (b_.u32(z64) != kZip64EocdSignature) {
    return loss("ZIP64 end of central directory record", z64, "signature " + hex32(kZip64EocdSignature),
                hex32(b_.u32(z64)));
  }
  const std::uint64_t record_size = b_.u64(z64 + 4);
  auto record_end = checked_add(z64 + 12, record_size);
  if (record_size < kZip64EocdSize - 12 || !record_end || *record_end > loc) {
    return loss("ZIP64 end of central directory record", z64,
                "a record size of " + std::to_string(kZip64EocdSize - 12) + " to " +
                    std::to_string(loc - z64 - 12) + " bytes",
                std::to_string(record_size));
  }
  const std::uint32_t disk64 = b_.u32(z64 + 16);
  const std::uint32_t cd_disk64 = b_.u32(z64 + 20);
  const std::uint64_t entries_disk64 = b_.u64(z64 + 24);
  const std::uint64_t entries_total64 = b_.u64(z64 + 32);
  const std::uint64_t cd_size64 = b_.u64(z64 + 40);
  const std::uint64_t cd_offset64 = b_.u64(z64 + 48);
  if (disk64 != 0 || cd_disk64 != 0) {
    return unsupported("multi-disk archive (ZIP64 end of central directory record at offset " + std::to_string(z64) +
                       " names disk " + std::to_string(disk64) + ", directory on disk " + std::to_string(cd_disk64) +
                       "); only single-file archives are supported");
  }
  if (entries_disk64 != entries_total64) {
    return loss("ZIP64 end of central directory record", z64,
                "as many entries on this disk as in total (" + std::to_string(entries_total64) + ")",
                std::to_string(entries_disk64));
  }
  // Where the 32-bit record holds a real value rather than a placeholder, both records must agree.
  auto agree = [&](const char* field, std::uint64_t v32, std::uint64_t placeholder, std::uint64_t v64) -> Status {
    if (v32 == placeholder || v32 == v64) return Status();
    return loss("end of central directory record", pos,
                std::string(field) + " " + std::to_string(v64) + " (as in the ZIP64 record)", std::to_string(v32));
  };
  UCP_RETURN_IF_ERROR(agree("disk number", disk, kMax16, 0));
  UCP_RETURN_IF_ERROR(agree("directory disk number", cd_disk, kMax16, 0));
  UCP_RETURN_IF_ERROR(agree("entry count", entries_total, kMax16, entries_total64));
  UCP_RETURN_IF_ERROR(agree("entry count on this disk", entries_disk, kMax16, entries_disk64));
  UCP_RETURN_IF_ERROR(agree("central directory size", cd_size, kMax32, cd_size64));
  UCP_RETURN_IF_ERROR(agree("central directory offset", cd_offset, kMax32, cd_offset64));
  dir.entries = entries_total64;
  dir.size = cd_size64;
  dir.offset = cd_offset64;
  dir.limit = z64;
  dir.limit_what = "the ZIP64 end of central directory record";
  return dir;
}

base::Result<std::vector<CentralEntry>> Parser::read_central_directory(const Directory& dir) {
  auto cd_end = checked_add(dir.offset, dir.size);
  if (!cd_end || *cd_end > dir.limit) {
    return loss("central directory", dir.offset,
                std::to_string(dir.size) + " bytes ending by offset " + std::to_string(dir.limit) + " (" +
                    dir.limit_what + ")",
                cd_end ? "its end at offset " + std::to_string(*cd_end) : std::string("an offset past 2^64"));
  }
  // Every entry takes at least 46 bytes, which caps the count before anything is allocated.
  const std::uint64_t room = dir.size / kCentralHeaderSize;
  if (dir.entries > room) {
    return loss("central directory", dir.offset,
                "at most " + std::to_string(room) + " entries in its " + std::to_string(dir.size) + " bytes",
                "an entry count of " + std::to_string(dir.entries));
  }
  if (dir.entries > std::numeric_limits<std::uint32_t>::max()) {
    return unsupported("archive with " + std::to_string(dir.entries) + " entries (at most 2^32-1 supported)");
  }
  std::vector<CentralEntry> entries;
  entries.reserve(static_cast<std::size_t>(dir.entries));
  std::uint64_t pos = dir.offset;
  for (std::uint64_t i = 0; i < dir.entries; ++i) {
    if (*cd_end - pos < kCentralHeaderSize) {
      return loss("central directory entry " + std::to_string(i), pos,
                  std::to_string(kCentralHeaderSize) + " bytes before the directory's end at offset " +
                      std::to_string(*cd_end),
                  std::to_string(*cd_end - pos));
    }
    if (b_.u32(pos) != kCentralHeaderSignature) {
      return loss("central directory entry " + std::to_string(i), pos, "signature " + hex32(kCentralHeaderSignature),
                  hex32(b_.u32(pos)));
    }
    const std::uint16_t flags = b_.u16(pos + 8);
    const std::uint16_t method = b_.u16(pos + 10);
    const std::uint32_t crc = b_.u32(pos + 16);
    const std::uint32_t compressed32 = b_.u32(pos + 20);
    const std::uint32_t size32 = b_.u32(pos + 24);
    const std::uint64_t name_len = b_.u16(pos + 28);
    const std::uint64_t extra_len = b_.u16(pos + 30);
    const std::uint64_t comment_len = b_.u16(pos + 32);
    const std::uint16_t disk16 = b_.u16(pos + 34);
    const std::uint32_t offset32 = b_.u32(pos + 42);
    const std::uint64_t variable = name_len + extra_len + comment_len;
    if (*cd_end - pos - kCentralHeaderSize < variable) {
      return loss("central directory entry " + std::to_string(i), pos,
                  std::to_string(kCentralHeaderSize + variable) + " bytes (name, extra field and comment) before the "
                      "directory's end at offset " + std::to_string(*cd_end),
                  std::to_string(*cd_end - pos));
    }
    CentralEntry e;
    e.entry_offset = pos;
    e.name = std::string(b_.str(pos + kCentralHeaderSize, name_len));
    e.crc32 = crc;

    // ZIP64 extra field: 8-byte values only for the 32-bit fields that hold placeholders, in this order.
    std::uint64_t size = size32;
    std::uint64_t compressed = compressed32;
    std::uint64_t local_offset = offset32;
    std::uint64_t disk = disk16;
    const bool need_size = size32 == kMax32;
    const bool need_compressed = compressed32 == kMax32;
    const bool need_offset = offset32 == kMax32;
    const bool need_disk = disk16 == kMax16;
    if (need_size || need_compressed || need_offset || need_disk) {
      const std::uint64_t needed = 8 * (need_size + need_compressed + need_offset) + 4 * need_disk;
      std::uint64_t x = pos + kCentralHeaderSize + name_len;
      const std::uint64_t x_end = x + extra_len;
      std::optional<std::uint64_t> field;
      std::uint64_t field_len = 0;
      while (x_end - x >= 4) {
        const std::uint16_t id = b_.u16(x);
        const std::uint64_t len = b_.u16(x + 2);
        if (x_end - x - 4 < len) break;  // A malformed trailing field: stop, as other readers do.
        if (id == kZip64ExtraId) {
          field = x + 4;
          field_len = len;
          break;
        }
        x += 4 + len;
      }
      if (!field || field_len < needed) {
        return loss(entry_what(e.name), pos,
                    "a ZIP64 extra field of at least " + std::to_string(needed) +
                        " bytes (the entry holds ZIP64 placeholders)",
                    field ? "one of " + std::to_string(field_len) + " bytes" : std::string("none"));
      }
      std::uint64_t f = *field;
      if (need_size) size = b_.u64(f), f += 8;
      if (need_compressed) compressed = b_.u64(f), f += 8;
      if (need_offset) local_offset = b_.u64(f), f += 8;
      if (need_disk) disk = b_.u32(f);
    }
    if (flags & kEncryptionFlags) {
      return unsupported("record '" + printable(e.name) + "' (central directory entry at offset " +
                         std::to_string(pos) + ") is encrypted (flags " + hex16(flags) + ")");
    }
    if (method != 0) {
      return unsupported("record '" + printable(e.name) + "' (central directory entry at offset " +
                         std::to_string(pos) + ") uses compression method " + method_name(method) +
                         "; only stored (method 0) records are supported");
    }
    if (disk != 0) {
      return unsupported("multi-disk archive (record '" + printable(e.name) + "' starts on disk " +
                         std::to_string(disk) + "); only single-file archives are supported");
    }
    if (compressed != size) {
      return loss(entry_what(e.name), pos,
                  "equal compressed and uncompressed sizes for a stored record",
                  std::to_string(compressed) + " and " + std::to_string(size));
    }
    e.size = size;
    e.local_header_offset = local_offset;
    entries.push_back(std::move(e));
    pos += kCentralHeaderSize + variable;
  }
  if (pos != *cd_end) {
    return loss("central directory", dir.offset,
                std::to_string(dir.entries) + " entries filling its " + std::to_string(dir.size) + " bytes",
                std::to_string(*cd_end - pos) + " bytes left over");
  }
  return entries;
}

base::Result<ZipRecord> Parser::read_local_header(const CentralEntry& e, const Directory& dir) {
  // Records live before the central directory; nothing of a record may reach into it.
  const std::uint64_t limit = dir.offset;
  const std::uint64_t lho = e.local_header_offset;
  const std::string what = "local header of '" + printable(e.name) + "'";
  auto fixed_end = checked_add(lho, kLocalHeaderSize);
  if (!fixed_end || *fixed_end > limit) {
    return loss(what, lho,
                std::to_string(kLocalHeaderSize) + " bytes before the central directory at offset " +
                    std::to_string(limit),
                "a header running past it");
  }
  if (b_.u32(lho) != kLocalHeaderSignature) {
    return loss(what, lho, "signature " + hex32(kLocalHeaderSignature), hex32(b_.u32(lho)));
  }
  const std::uint16_t flags = b_.u16(lho + 6);
  const std::uint16_t method = b_.u16(lho + 8);
  const std::uint64_t name_len = b_.u16(lho + 26);
  const std::uint64_t extra_len = b_.u16(lho + 28);
  if (flags & kEncryptionFlags) {
    return unsupported("record '" + printable(e.name) + "' (local header at offset " + std::to_string(lho) +
                       ") is encrypted (flags " + hex16(flags) + ")");
  }
  if (method != 0) {
    return loss(what, lho, "compression method 0 (stored, as in the central directory)", method_name(method));
  }
  const std::uint64_t data_offset = *fixed_end + name_len + extra_len;  // < 2^64: lho + 30 <= limit.
  if (data_offset > limit) {
    return loss(what, lho,
                "name and extra field (" + std::to_string(name_len + extra_len) +
                    " bytes) before the central directory at offset " + std::to_string(limit),
                "them running to offset " + std::to_string(data_offset));
  }
  const std::string_view local_name = b_.str(*fixed_end, name_len);
  if (local_name != e.name) {
    return loss(what, lho, "name '" + printable(e.name) + "' (as in the central directory)",
                "'" + printable(local_name) + "'");
  }
  auto data_end = checked_add(data_offset, e.size);
  if (!data_end || *data_end > limit) {
    return loss("data of record '" + printable(e.name) + "'", data_offset,
                std::to_string(e.size) + " bytes ending by offset " + std::to_string(limit) +
                    " (the central directory; file size " + std::to_string(b_.size()) + ")",
                data_end ? "them running to offset " + std::to_string(*data_end)
                         : std::string("them running past offset 2^64"));
  }
  return ZipRecord{e.name, lho, data_offset, e.size, e.crc32};
}

}  // namespace

base::Result<ZipReader> ZipReader::open(std::shared_ptr<const MappedFile> file) {
  if (!file) return base::invalid_argument("ZipReader::open: no file given");
  Parser parser(*file);
  UCP_ASSIGN_OR_RETURN(Directory dir, parser.read_end_records());
  UCP_ASSIGN_OR_RETURN(std::vector<CentralEntry> entries, parser.read_central_directory(dir));

  ZipReader reader;
  reader.records_.reserve(entries.size());
  for (const CentralEntry& e : entries) {
    UCP_ASSIGN_OR_RETURN(ZipRecord record, parser.read_local_header(e, dir));
    reader.records_.push_back(std::move(record));
  }
  reader.by_name_.resize(reader.records_.size());
  for (std::size_t i = 0; i < reader.by_name_.size(); ++i) reader.by_name_[i] = static_cast<std::uint32_t>(i);
  const auto& records = reader.records_;
  std::stable_sort(reader.by_name_.begin(), reader.by_name_.end(),
                   [&](std::uint32_t a, std::uint32_t b) { return records[a].name < records[b].name; });
  // Two records with one name make every lookup ambiguous.
  for (std::size_t i = 1; i < reader.by_name_.size(); ++i) {
    const ZipRecord& a = records[reader.by_name_[i - 1]];
    const ZipRecord& b = records[reader.by_name_[i]];
    if (a.name == b.name) {
      return base::data_loss("'" + file->path() + "': record '" + printable(b.name) + "' at offset " +
                             std::to_string(b.local_header_offset) + ": expected a unique name, found it also at offset " +
                             std::to_string(a.local_header_offset));
    }
  }
  reader.file_ = std::move(file);
  return reader;
}

base::Result<ZipReader> ZipReader::open_path(const std::string& path) {
  UCP_ASSIGN_OR_RETURN(std::shared_ptr<const MappedFile> file, MappedFile::open(path));
  return open(std::move(file));
}

const ZipRecord* ZipReader::find(std::string_view name) const {
  auto it = std::lower_bound(by_name_.begin(), by_name_.end(), name,
                             [&](std::uint32_t i, std::string_view n) { return records_[i].name < n; });
  if (it == by_name_.end() || records_[*it].name != name) return nullptr;
  return &records_[*it];
}

base::Result<std::span<const std::byte>> ZipReader::view(const ZipRecord& record, std::uint64_t offset,
                                                         std::uint64_t len) const {
  auto end = checked_add(offset, len);
  if (!end || *end > record.size) {
    return base::data_loss("'" + path() + "': record '" + printable(record.name) + "' at offset " +
                           std::to_string(record.data_offset) + ": expected a range within its " +
                           std::to_string(record.size) + " bytes, found " + std::to_string(len) +
                           " bytes at offset " + std::to_string(offset));
  }
  const auto bytes = file_->bytes();
  auto start = checked_add(record.data_offset, offset);
  auto stop = start ? checked_add(*start, len) : std::nullopt;
  if (!stop || *stop > bytes.size()) {
    // Only a record from another reader can get here: ours were checked against the file.
    return base::data_loss("'" + path() + "': record '" + printable(record.name) + "' at offset " +
                           std::to_string(record.data_offset) + ": expected it inside the file of " +
                           std::to_string(bytes.size()) + " bytes, found it running past the end");
  }
  return bytes.subspan(static_cast<std::size_t>(*start), static_cast<std::size_t>(len));
}

std::span<const std::byte> ZipReader::view(const ZipRecord& record) const {
  auto v = view(record, 0, record.size);
  return v.ok() ? *v : std::span<const std::byte>();
}

base::Status ZipReader::verify_crc(const ZipRecord& record) const {
  UCP_ASSIGN_OR_RETURN(std::span<const std::byte> data, view(record, 0, record.size));
  const std::uint32_t crc = crc32_update(0, data);
  if (crc != record.crc32) {
    return base::data_loss("'" + path() + "': record '" + printable(record.name) + "' at offset " +
                           std::to_string(record.data_offset) + ": expected CRC-32 " + hex32(record.crc32) +
                           " (from the central directory), found " + hex32(crc));
  }
  return Status();
}

}  // namespace ucp::format
