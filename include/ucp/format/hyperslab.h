// A run of a row-major (C order) tensor's flattened elements as the few rectangular blocks that
// HDF5 hyperslab selections are made of: planned runs are flat element ranges, datasets keep the
// tensor's N-d shape. Pure; used by the parallel HDF5 writer.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

namespace ucp::format {

/// One rectangular block: `count[d]` elements from `start[d]` along each dimension d.
struct Hyperslab {
  std::vector<std::uint64_t> start;
  std::vector<std::uint64_t> count;
  bool operator==(const Hyperslab&) const = default;
};

/// Elements [begin, begin + n) of the flattened tensor of `shape`, as disjoint blocks in row-major
/// order (concatenating them in that order gives the run). At most 2 * rank - 1 blocks (one for a
/// 0-d tensor, none when n == 0). The caller guarantees begin + n <= numel(shape).
std::vector<Hyperslab> flat_run_blocks(std::span<const std::int64_t> shape, std::uint64_t begin, std::uint64_t n);

}  // namespace ucp::format
