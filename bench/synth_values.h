// Deterministic pseudo-random tensor values for the benchmark generator: element i of stream s of
// tensor t is a pure function of (seed, t's name, s, i), so any slice of any partition can be
// produced on its own, in any order, and the expected consolidated values are known exactly.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace ucp::bench {

/// Which state a value belongs to. The numbers are part of the generated data (changing them
/// changes every value).
enum class Stream : std::uint64_t {
  kMaster = 1,    ///< fp32 master weights (model weights are these, rounded to the model dtype).
  kExpAvg = 2,    ///< Adam first moment.
  kExpAvgSq = 3,  ///< Adam second moment (non-negative).
};

/// A uniform distribution [lo, lo + span) and the stream key it is drawn with.
struct ValueStream {
  std::uint64_t key = 0;
  float lo = 0;
  float span = 1;
};

inline std::uint64_t mix64(std::uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

inline std::uint64_t fnv1a64(std::string_view s) {
  std::uint64_t h = 0xcbf29ce484222325ULL;
  for (char c : s) {
    h ^= static_cast<unsigned char>(c);
    h *= 0x100000001b3ULL;
  }
  return h;
}

/// The key of stream `s` of tensor `name` under `seed`.
inline std::uint64_t stream_key(std::uint64_t seed, std::string_view name, Stream s) {
  return mix64(mix64(seed ^ fnv1a64(name)) + static_cast<std::uint64_t>(s) * 0x9e3779b97f4a7c15ULL);
}

/// Element `index` of a stream (splitmix64 at position index + 1, top 24 bits as a uniform).
inline float synth_value(const ValueStream& v, std::uint64_t index) {
  const std::uint64_t z = mix64(v.key + (index + 1) * 0x9e3779b97f4a7c15ULL);
  const float u = static_cast<float>(z >> 40) * 0x1p-24f;
  return v.lo + v.span * u;
}

/// out[j] = synth_value(v, first + j) for j < n.
inline void synth_fill(const ValueStream& v, std::uint64_t first, float* out, std::size_t n) {
  for (std::size_t j = 0; j < n; ++j) out[j] = synth_value(v, first + j);
}

}  // namespace ucp::bench
