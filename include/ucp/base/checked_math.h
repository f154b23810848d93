// Overflow-checked arithmetic for sizes derived from untrusted metadata.
#pragma once

#include <cstdint>
#include <optional>
#include <span>

namespace ucp::base {

inline std::optional<std::uint64_t> checked_add(std::uint64_t a, std::uint64_t b) {
  std::uint64_t r;
  if (__builtin_add_overflow(a, b, &r)) return std::nullopt;
  return r;
}

inline std::optional<std::uint64_t> checked_mul(std::uint64_t a, std::uint64_t b) {
  std::uint64_t r;
  if (__builtin_mul_overflow(a, b, &r)) return std::nullopt;
  return r;
}

/// Product of non-negative dims; nullopt on overflow or a negative dim.
inline std::optional<std::uint64_t> checked_numel(std::span<const std::int64_t> shape) {
  std::uint64_t n = 1;
  for (std::int64_t d : shape) {
    if (d < 0) return std::nullopt;
    auto m = checked_mul(n, static_cast<std::uint64_t>(d));
    if (!m) return std::nullopt;
    n = *m;
  }
  return n;
}

inline constexpr std::uint64_t ceil_div(std::uint64_t a, std::uint64_t b) { return (a + b - 1) / b; }
inline constexpr std::uint64_t align_up(std::uint64_t x, std::uint64_t a) { return ceil_div(x, a) * a; }

}  // namespace ucp::base
