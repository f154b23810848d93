#include "ucp/format/crc32.h"

#include <zlib.h>

#include <algorithm>
#include <limits>

namespace ucp::format {

std::uint32_t crc32_update(std::uint32_t crc, std::span<const std::byte> data) {
  // crc32_z takes a z_size_t length, but feed bounded chunks anyway so a build where z_size_t is
  // narrower than size_t can never truncate a length.
  constexpr std::size_t kChunk = std::size_t{1} << 30;
  uLong value = crc;
  const auto* p = reinterpret_cast<const Bytef*>(data.data());
  std::size_t left = data.size();
  while (left > 0) {
    const std::size_t n = std::min(left, kChunk);
    value = ::crc32_z(value, p, static_cast<z_size_t>(n));
    p += n;
    left -= n;
  }
  return static_cast<std::uint32_t>(value);
}

std::uint32_t crc32_combine(std::uint32_t crc_a, std::uint32_t crc_b, std::uint64_t len_b) {
  // zlib takes a signed length. No file holds 2^63 bytes; the clamp only keeps the cast defined.
  constexpr auto kMax = static_cast<std::uint64_t>(std::numeric_limits<z_off64_t>::max());
  len_b = std::min(len_b, kMax);
  return static_cast<std::uint32_t>(::crc32_combine64(crc_a, crc_b, static_cast<z_off64_t>(len_b)));
}

}  // namespace ucp::format
