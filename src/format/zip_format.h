// Private to the zip reader and writer: the record signatures and fixed sizes of the zip format
// (PKWARE APPNOTE.TXT 4.3.7, 4.3.12, 4.3.14 - 4.3.16), defined once for both directions.
#pragma once

#include <cstdint>

namespace ucp::format::zip {

inline constexpr std::uint32_t kLocalHeaderSignature = 0x04034b50;
inline constexpr std::uint32_t kCentralHeaderSignature = 0x02014b50;
inline constexpr std::uint32_t kEocdSignature = 0x06054b50;
inline constexpr std::uint32_t kZip64EocdSignature = 0x06064b50;
inline constexpr std::uint32_t kZip64LocatorSignature = 0x07064b50;
inline constexpr std::uint64_t kLocalHeaderSize = 30;
inline constexpr std::uint64_t kCentralHeaderSize = 46;
inline constexpr std::uint64_t kEocdSize = 22;
inline constexpr std::uint64_t kZip64EocdSize = 56;  ///< Without the extensible data sector.
inline constexpr std::uint64_t kZip64LocatorSize = 20;
inline constexpr std::uint64_t kMaxCommentSize = 0xFFFF;
inline constexpr std::uint16_t kZip64ExtraId = 0x0001;
/// A 16/32-bit field holding this value means "see the ZIP64 field".
inline constexpr std::uint16_t kMax16 = 0xFFFF;
inline constexpr std::uint32_t kMax32 = 0xFFFFFFFF;

}  // namespace ucp::format::zip
