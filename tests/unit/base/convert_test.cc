// dtype conversion against an independent oracle: half and bfloat16 values decoded from their bit
// fields with std::ldexp, and round-to-nearest-even found by searching the sorted table of every
// representable value and comparing exact distances in double. Exhaustive over all 65536 bf16 and
// f16 patterns; every tie and its neighbours; random f32 and f64 inputs. tests/oracle/
// test_convert_torch.py checks the same conversions against torch and numpy.
#include "ucp/base/convert.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

namespace ucp::base {
namespace {

// ---------------------------------------------------------------- independent oracle

/// Value of a 16-bit float with `mant_bits` mantissa bits and exponent bias `bias`, from its fields.
double decode16(std::uint16_t bits, int mant_bits, int exp_bits) {
  const int bias = (1 << (exp_bits - 1)) - 1;
  const bool neg = (bits & 0x8000) != 0;
  const int exp = (bits >> mant_bits) & ((1 << exp_bits) - 1);
  const int mant = bits & ((1 << mant_bits) - 1);
  double v;
  if (exp == (1 << exp_bits) - 1) {
    v = mant == 0 ? std::numeric_limits<double>::infinity() : std::numeric_limits<double>::quiet_NaN();
  } else if (exp == 0) {
    v = std::ldexp(static_cast<double>(mant), 1 - bias - mant_bits);
  } else {
    v = std::ldexp(static_cast<double>(mant + (1 << mant_bits)), exp - bias - mant_bits);
  }
  return neg ? -v : v;
}
double decode_bf16(std::uint16_t b) { return decode16(b, 7, 8); }
double decode_f16(std::uint16_t h) { return decode16(h, 10, 5); }

/// Sorted magnitudes of every non-negative finite pattern 0 .. max, plus the infinity pattern
/// standing for 2^(emax+1): IEEE rounds to infinity exactly when round-to-nearest-even with an
/// unbounded exponent would reach 2^(emax+1), and the infinity pattern has an even mantissa.
struct RoundingTable {
  std::vector<double> values;  // index == bit pattern
  double inf_stand_in;
};

RoundingTable make_table(std::uint16_t inf_bits, double (*decode)(std::uint16_t), double inf_value) {
  RoundingTable t;
  for (std::uint32_t b = 0; b < inf_bits; ++b) t.values.push_back(decode(static_cast<std::uint16_t>(b)));
  t.values.push_back(inf_value);
  t.inf_stand_in = inf_value;
  return t;
}

const RoundingTable& bf16_table() {
  static const RoundingTable t = make_table(0x7F80, decode_bf16, std::ldexp(1.0, 128));
  return t;
}
const RoundingTable& f16_table() {
  static const RoundingTable t = make_table(0x7C00, decode_f16, 65536.0);
  return t;
}

/// Round-to-nearest-even of `x` (any double, not NaN) into the table's format.
std::uint16_t oracle_round(double x, const RoundingTable& t) {
  const std::uint16_t sign = std::signbit(x) ? 0x8000 : 0;
  const double a = std::fabs(x);
  const auto last = static_cast<std::uint16_t>(t.values.size() - 1);  // the infinity pattern
  if (a >= t.inf_stand_in) return sign | last;
  // First value > a; the answer is it or its predecessor.
  const auto it = std::upper_bound(t.values.begin(), t.values.end(), a);
  const auto hi = static_cast<std::uint16_t>(it - t.values.begin());
  const auto lo = static_cast<std::uint16_t>(hi - 1);
  if (t.values[lo] == a) return sign | lo;
  // Both distances are exact in double: a and its two neighbours lie on one grid spanning < 53 bits.
  const double below = a - t.values[lo];
  const double above = t.values[hi] - a;
  std::uint16_t r;
  if (below < above) r = lo;
  else if (above < below) r = hi;
  else r = (lo % 2 == 0) ? lo : hi;
  return sign | r;
}

std::uint32_t bits_of(float f) { return std::bit_cast<std::uint32_t>(f); }
float float_of(std::uint32_t u) { return std::bit_cast<float>(u); }

bool bf16_is_nan(std::uint16_t b) { return (b & 0x7FFF) > 0x7F80; }
bool f16_is_nan(std::uint16_t h) { return (h & 0x7FFF) > 0x7C00; }

// ---------------------------------------------------------------- scalar helpers

TEST(ConvertTest, Bf16ToF32DecodesEveryPatternExactly) {
  for (std::uint32_t b = 0; b < 0x10000; ++b) {
    const auto bits = static_cast<std::uint16_t>(b);
    const float f = bf16_to_f32(bits);
    // Widening bf16 is placing the 16 bits on top of an f32, NaN payloads included.
    ASSERT_EQ(bits_of(f), b << 16) << std::hex << b;
    if (!bf16_is_nan(bits)) ASSERT_EQ(static_cast<double>(f), decode_bf16(bits)) << std::hex << b;
  }
}

TEST(ConvertTest, F16ToF32DecodesEveryPatternExactly) {
  for (std::uint32_t h = 0; h < 0x10000; ++h) {
    const auto bits = static_cast<std::uint16_t>(h);
    const float f = f16_to_f32(bits);
    if (f16_is_nan(bits)) {
      ASSERT_TRUE(std::isnan(f)) << std::hex << h;
      // Quiet NaN, sign and payload kept (what vcvtph2ps and torch produce).
      const std::uint32_t expect = ((h & 0x8000u) << 16) | 0x7FC00000u | ((h & 0x3FFu) << 13);
      ASSERT_EQ(bits_of(f), expect) << std::hex << h;
    } else {
      ASSERT_EQ(static_cast<double>(f), decode_f16(bits)) << std::hex << h;
      ASSERT_EQ(std::signbit(f), (h & 0x8000) != 0) << std::hex << h;  // -0.0 stays -0.0
    }
  }
}

TEST(ConvertTest, EveryBf16AndF16PatternRoundTripsThroughF32) {
  for (std::uint32_t b = 0; b < 0x10000; ++b) {
    const auto bits = static_cast<std::uint16_t>(b);
    if (!bf16_is_nan(bits)) {
      ASSERT_EQ(f32_to_bf16(bf16_to_f32(bits)), bits) << std::hex << b;
    } else {
      ASSERT_TRUE(bf16_is_nan(f32_to_bf16(bf16_to_f32(bits)))) << std::hex << b;
    }
    if (!f16_is_nan(bits)) {
      ASSERT_EQ(f32_to_f16(f16_to_f32(bits)), bits) << std::hex << b;
    } else {
      ASSERT_TRUE(f16_is_nan(f32_to_f16(f16_to_f32(bits)))) << std::hex << b;
    }
  }
}

/// Every f32 that sits on, or one f32-ulp either side of, a value or a midpoint of the 16-bit
/// format, of both signs: all ties, all near-ties, subnormal and overflow boundaries included.
std::vector<float> tie_neighbourhood(const RoundingTable& t) {
  std::vector<float> out;
  for (std::size_t i = 0; i + 1 < t.values.size(); ++i) {
    const double lo = t.values[i];
    const double hi = t.values[i + 1];  // the last one is the infinity stand-in
    for (double centre : {lo, (lo + hi) / 2}) {
      const auto c = static_cast<float>(centre);
      EXPECT_EQ(static_cast<double>(c), centre);  // midpoints of these formats are exact in f32
      for (float v : {std::nextafter(c, 0.0f), c, std::nextafter(c, std::numeric_limits<float>::infinity())}) {
        out.push_back(v);
        out.push_back(-v);
      }
    }
  }
  return out;
}

TEST(ConvertTest, F32ToBf16RoundsToNearestEvenAtEveryTie) {
  const RoundingTable& t = bf16_table();
  for (float v : tie_neighbourhood(t)) {
    ASSERT_EQ(f32_to_bf16(v), oracle_round(v, t)) << std::hexfloat << v;
  }
}

TEST(ConvertTest, F32ToF16RoundsToNearestEvenAtEveryTie) {
  const RoundingTable& t = f16_table();
  for (float v : tie_neighbourhood(t)) {
    ASSERT_EQ(f32_to_f16(v), oracle_round(v, t)) << std::hexfloat << v;
  }
}

TEST(ConvertTest, RandomF32BitPatternsMatchOracle) {
  std::mt19937 rng(20240601);
  for (int i = 0; i < 400000; ++i) {
    const float v = float_of(static_cast<std::uint32_t>(rng()));
    if (std::isnan(v)) continue;
    ASSERT_EQ(f32_to_bf16(v), oracle_round(v, bf16_table())) << std::hexfloat << v;
    ASSERT_EQ(f32_to_f16(v), oracle_round(v, f16_table())) << std::hexfloat << v;
  }
}

TEST(ConvertTest, KnownValues) {
  EXPECT_EQ(f32_to_bf16(1.0f), 0x3F80);
  EXPECT_EQ(f32_to_bf16(-2.0f), 0xC000);
  EXPECT_EQ(f32_to_bf16(-0.0f), 0x8000);
  EXPECT_EQ(f32_to_bf16(float_of(0x3F808000)), 0x3F80);  // tie, even below
  EXPECT_EQ(f32_to_bf16(float_of(0x3F818000)), 0x3F82);  // tie, even above
  EXPECT_EQ(f32_to_bf16(float_of(0x3F808001)), 0x3F81);
  EXPECT_EQ(f32_to_bf16(std::numeric_limits<float>::max()), 0x7F80);  // overflows to inf
  EXPECT_EQ(f32_to_bf16(float_of(0x7F7F7FFF)), 0x7F7F);               // largest finite bf16
  EXPECT_EQ(f32_to_bf16(float_of(0x00000001)), 0x0000);               // tiny subnormal -> 0
  EXPECT_EQ(f32_to_bf16(float_of(0x00008001)), 0x0001);               // smallest bf16 subnormal
  EXPECT_EQ(f32_to_bf16(float_of(0x007FFFFF)), 0x0080);               // rounds up to min normal
  EXPECT_EQ(f32_to_f16(1.0f), 0x3C00);
  EXPECT_EQ(f32_to_f16(65504.0f), 0x7BFF);
  EXPECT_EQ(f32_to_f16(65519.996f), 0x7BFF);
  EXPECT_EQ(f32_to_f16(65520.0f), 0x7C00);  // tie between 65504 (odd) and 2^16 -> inf
  EXPECT_EQ(f32_to_f16(-1e10f), 0xFC00);
  EXPECT_EQ(f32_to_f16(std::ldexp(1.0f, -24)), 0x0001);  // smallest subnormal
  EXPECT_EQ(f32_to_f16(std::ldexp(1.0f, -25)), 0x0000);  // tie with 0 -> even (0)
  EXPECT_EQ(f32_to_f16(std::ldexp(1.5f, -25)), 0x0001);
  EXPECT_EQ(f32_to_f16(std::ldexp(3.0f, -25)), 0x0002);  // 1.5 * 2^-24: tie -> even (2)
  EXPECT_EQ(f32_to_f16(-std::ldexp(1.0f, -26)), 0x8000);  // -0 keeps its sign
  EXPECT_EQ(f32_to_f16(std::ldexp(1023.5f, -24)), 0x0400);  // top subnormal rounds to min normal
  EXPECT_EQ(f32_to_bf16(std::numeric_limits<float>::infinity()), 0x7F80);
  EXPECT_EQ(f32_to_f16(-std::numeric_limits<float>::infinity()), 0xFC00);
}

TEST(ConvertTest, NanStaysQuietNanWithSign) {
  for (std::uint32_t payload : {0x1u, 0x400000u, 0x7FFFFFu, 0x12345u, 0x10000u}) {
    for (std::uint32_t sign : {0u, 0x80000000u}) {
      const float nan = float_of(sign | 0x7F800000u | payload);
      ASSERT_TRUE(std::isnan(nan));
      EXPECT_EQ(f32_to_bf16(nan), (sign >> 16) | 0x7FC0u) << std::hex << payload;
      EXPECT_EQ(f32_to_f16(nan), (sign >> 16) | 0x7E00u) << std::hex << payload;
    }
  }
}

// ---------------------------------------------------------------- convert_elements

template <typename T>
std::vector<std::byte> as_bytes_vec(const std::vector<T>& v) {
  std::vector<std::byte> out(v.size() * sizeof(T));
  if (!out.empty()) std::memcpy(out.data(), v.data(), out.size());
  return out;
}

template <typename T>
std::vector<T> convert_all(DType from, const std::vector<std::byte>& src, DType to) {
  const std::size_t n = src.size() / dtype_size(from);
  std::vector<T> out(n);
  EXPECT_EQ(sizeof(T), dtype_size(to));
  convert_elements(from, src.data(), to, reinterpret_cast<std::byte*>(out.data()), n);
  return out;
}

TEST(ConvertTest, CanConvert) {
  const DType floats[] = {DType::kF64, DType::kF32, DType::kF16, DType::kBF16};
  for (DType a : floats)
    for (DType b : floats) EXPECT_TRUE(can_convert(a, b));
  for (DType t : kAllDTypes) EXPECT_TRUE(can_convert(t, t));
  EXPECT_FALSE(can_convert(DType::kI32, DType::kF32));
  EXPECT_FALSE(can_convert(DType::kF32, DType::kI64));
  EXPECT_FALSE(can_convert(DType::kC64, DType::kF32));
  EXPECT_FALSE(can_convert(DType::kF8E4M3, DType::kF16));
  EXPECT_FALSE(can_convert(DType::kBool, DType::kU8));
}

// Counts around the internal block size exercise the vector body, the tail and both together.
const std::size_t kCounts[] = {0, 1, 7, 255, 256, 257, 511, 512, 1000, 70000};

TEST(ConvertTest, ElementsMatchScalarHelpersForEveryCount) {
  std::mt19937 rng(7);
  for (std::size_t n : kCounts) {
    std::vector<std::uint32_t> f32(n);
    std::vector<std::uint16_t> h16(n);
    for (std::size_t i = 0; i < n; ++i) {
      f32[i] = static_cast<std::uint32_t>(rng());
      h16[i] = static_cast<std::uint16_t>(rng());
    }
    const auto src32 = as_bytes_vec(f32);
    const auto src16 = as_bytes_vec(h16);
    const auto bf = convert_all<std::uint16_t>(DType::kF32, src32, DType::kBF16);
    const auto hf = convert_all<std::uint16_t>(DType::kF32, src32, DType::kF16);
    const auto from_bf = convert_all<std::uint32_t>(DType::kBF16, src16, DType::kF32);
    const auto from_hf = convert_all<std::uint32_t>(DType::kF16, src16, DType::kF32);
    const auto bf_to_hf = convert_all<std::uint16_t>(DType::kBF16, src16, DType::kF16);
    const auto hf_to_bf = convert_all<std::uint16_t>(DType::kF16, src16, DType::kBF16);
    const auto bf_to_64 = convert_all<double>(DType::kBF16, src16, DType::kF64);
    const auto hf_to_64 = convert_all<double>(DType::kF16, src16, DType::kF64);
    for (std::size_t i = 0; i < n; ++i) {
      const float v = float_of(f32[i]);
      ASSERT_EQ(bf[i], f32_to_bf16(v)) << n << " " << i;
      ASSERT_EQ(hf[i], f32_to_f16(v)) << n << " " << i;
      ASSERT_EQ(from_bf[i], bits_of(bf16_to_f32(h16[i]))) << n << " " << i;
      ASSERT_EQ(from_hf[i], bits_of(f16_to_f32(h16[i]))) << n << " " << i;
      // f16 <-> bf16 goes through f32, which holds both exactly.
      ASSERT_EQ(bf_to_hf[i], f32_to_f16(bf16_to_f32(h16[i]))) << n << " " << i;
      ASSERT_EQ(hf_to_bf[i], f32_to_bf16(f16_to_f32(h16[i]))) << n << " " << i;
      if (!bf16_is_nan(h16[i])) ASSERT_EQ(bf_to_64[i], decode_bf16(h16[i]));
      else ASSERT_TRUE(std::isnan(bf_to_64[i]));
      if (!f16_is_nan(h16[i])) ASSERT_EQ(hf_to_64[i], decode_f16(h16[i]));
      else ASSERT_TRUE(std::isnan(hf_to_64[i]));
    }
  }
}

TEST(ConvertTest, F32AndF64ConvertLikeTheLanguage) {
  std::mt19937_64 rng(11);
  for (std::size_t n : kCounts) {
    std::vector<double> d(n);
    std::vector<float> f(n);
    for (std::size_t i = 0; i < n; ++i) {
      d[i] = std::bit_cast<double>(static_cast<std::uint64_t>(rng()));
      f[i] = float_of(static_cast<std::uint32_t>(rng()));
    }
    const auto to32 = convert_all<float>(DType::kF64, as_bytes_vec(d), DType::kF32);
    const auto to64 = convert_all<double>(DType::kF32, as_bytes_vec(f), DType::kF64);
    for (std::size_t i = 0; i < n; ++i) {
      const float e32 = static_cast<float>(d[i]);
      const double e64 = static_cast<double>(f[i]);
      ASSERT_EQ(bits_of(to32[i]), bits_of(e32)) << std::hexfloat << d[i];
      ASSERT_EQ(std::bit_cast<std::uint64_t>(to64[i]), std::bit_cast<std::uint64_t>(e64));
    }
  }
}

TEST(ConvertTest, F64ToHalfAndBf16RoundOnceFromTheDouble) {
  // Rounding the double to f32 first would land on a tie and then round to even, the wrong way.
  const double bf_case = 1.0 + std::ldexp(1.0, -8) + std::ldexp(1.0, -40);
  const double hf_case = 1.0 + std::ldexp(1.0, -11) + std::ldexp(1.0, -40);
  std::vector<double> in = {bf_case, -bf_case, hf_case, -hf_case};
  const auto bf = convert_all<std::uint16_t>(DType::kF64, as_bytes_vec(in), DType::kBF16);
  const auto hf = convert_all<std::uint16_t>(DType::kF64, as_bytes_vec(in), DType::kF16);
  EXPECT_EQ(bf[0], 0x3F81);
  EXPECT_EQ(bf[1], 0xBF81);
  EXPECT_EQ(hf[2], 0x3C01);
  EXPECT_EQ(hf[3], 0xBC01);
  // And the double-rounding trap from the other side: just below a tie stays below.
  std::vector<double> below = {1.0 + std::ldexp(1.0, -8) - std::ldexp(1.0, -40),
                               1.0 + 3 * std::ldexp(1.0, -8) - std::ldexp(1.0, -40)};
  const auto bf_below = convert_all<std::uint16_t>(DType::kF64, as_bytes_vec(below), DType::kBF16);
  EXPECT_EQ(bf_below[0], 0x3F80);
  EXPECT_EQ(bf_below[1], 0x3F81);
}

TEST(ConvertTest, F64ToHalfAndBf16MatchOracle) {
  // Random doubles spread over every exponent the 16-bit formats (and their overflow and
  // underflow) can see, plus doubles a tiny step off each tie, where double rounding would bite.
  std::mt19937_64 rng(99);
  std::vector<double> in;
  for (int i = 0; i < 200000; ++i) {
    const double m = 1.0 + std::ldexp(static_cast<double>(rng() >> 12), -52);
    const int e = static_cast<int>(rng() % 300) - 160;
    in.push_back((rng() & 1 ? -1 : 1) * std::ldexp(m, e));
  }
  for (const RoundingTable* t : {&bf16_table(), &f16_table()}) {
    for (std::size_t i = 0; i + 2 < t->values.size(); i += 7) {
      const double mid = (t->values[i] + t->values[i + 1]) / 2;
      for (double v : {mid, std::nextafter(mid, 0.0), std::nextafter(mid, 1e300)}) {
        in.push_back(v);
        in.push_back(-v);
      }
    }
  }
  in.push_back(std::ldexp(1.0, -1000));
  in.push_back(-std::ldexp(1.0, -1000));
  in.push_back(1e300);
  in.push_back(std::numeric_limits<double>::infinity());
  in.push_back(std::numeric_limits<double>::denorm_min());
  const auto bytes = as_bytes_vec(in);
  const auto bf = convert_all<std::uint16_t>(DType::kF64, bytes, DType::kBF16);
  const auto hf = convert_all<std::uint16_t>(DType::kF64, bytes, DType::kF16);
  for (std::size_t i = 0; i < in.size(); ++i) {
    ASSERT_EQ(bf[i], oracle_round(in[i], bf16_table())) << std::hexfloat << in[i];
    ASSERT_EQ(hf[i], oracle_round(in[i], f16_table())) << std::hexfloat << in[i];
  }
  std::vector<double> nans = {std::numeric_limits<double>::quiet_NaN(), -std::numeric_limits<double>::quiet_NaN(),
                              std::bit_cast<double>(0x7FF0000000000001ull)};
  const auto bf_nan = convert_all<std::uint16_t>(DType::kF64, as_bytes_vec(nans), DType::kBF16);
  const auto hf_nan = convert_all<std::uint16_t>(DType::kF64, as_bytes_vec(nans), DType::kF16);
  EXPECT_EQ(bf_nan, (std::vector<std::uint16_t>{0x7FC0, 0xFFC0, 0x7FC0}));
  EXPECT_EQ(hf_nan, (std::vector<std::uint16_t>{0x7E00, 0xFE00, 0x7E00}));
}

TEST(ConvertTest, SameTypeIsACopyEvenInPlace) {
  std::vector<std::uint32_t> v = {1, 2, 3, 4, 5, 0x7F800001u};
  std::vector<std::uint32_t> out(v.size());
  convert_elements(DType::kF32, reinterpret_cast<const std::byte*>(v.data()), DType::kF32,
                   reinterpret_cast<std::byte*>(out.data()), v.size());
  EXPECT_EQ(out, v);  // signalling NaN payload untouched
  // Overlapping same-type ranges are allowed.
  convert_elements(DType::kI32, reinterpret_cast<const std::byte*>(v.data()), DType::kI32,
                   reinterpret_cast<std::byte*>(v.data() + 1), 4);
  EXPECT_EQ(v, (std::vector<std::uint32_t>{1, 1, 2, 3, 4, 0x7F800001u}));
}

}  // namespace
}  // namespace ucp::base
