// CRC-32 (IEEE, as in zip): incremental and combinable, so ranks that write pieces of one record
// can each checksum their piece and the pieces are combined without re-reading.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

namespace ucp::format {

/// CRC-32 of `data`, continuing from `crc` (0 to start).
std::uint32_t crc32_update(std::uint32_t crc, std::span<const std::byte> data);
/// Whether crc32_update uses the CPU's carry-less multiply (x86 PCLMULQDQ) rather than zlib's tables.
bool crc32_is_accelerated();
/// CRC of A||B from crc(A), crc(B) and len(B).
std::uint32_t crc32_combine(std::uint32_t crc_a, std::uint32_t crc_b, std::uint64_t len_b);

}  // namespace ucp::format
