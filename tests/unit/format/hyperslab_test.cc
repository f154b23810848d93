// flat_run_blocks against brute force: for every run of several shapes, the blocks enumerated in
// row-major order give exactly the run's flat indices, and there are at most 2 * rank - 1 of them.
#include "ucp/format/hyperslab.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <vector>

namespace ucp::format {
namespace {

// Flat indices of a block's elements, row-major within the block.
void enumerate(const std::vector<std::int64_t>& shape, const Hyperslab& h, std::vector<std::uint64_t>& out) {
  const std::size_t rank = shape.size();
  ASSERT_EQ(h.start.size(), rank);
  ASSERT_EQ(h.count.size(), rank);
  std::uint64_t total = 1;
  for (auto c : h.count) total *= c;
  for (std::uint64_t k = 0; k < total; ++k) {
    std::uint64_t rem = k, flat = 0, stride = 1;
    std::vector<std::uint64_t> coord(rank);
    for (std::size_t d = rank; d-- > 0;) {
      coord[d] = h.start[d] + rem % h.count[d];
      rem /= h.count[d];
    }
    for (std::size_t d = rank; d-- > 0;) {
      ASSERT_LT(coord[d], static_cast<std::uint64_t>(shape[d]));
      flat += coord[d] * stride;
      stride *= static_cast<std::uint64_t>(shape[d]);
    }
    out.push_back(flat);
  }
}

TEST(FlatRunBlocks, EveryRunOfSeveralShapesMatchesBruteForce) {
  const std::vector<std::vector<std::int64_t>> shapes = {{7}, {3, 4}, {1, 5}, {4, 1}, {2, 3, 4}, {3, 1, 2, 5}, {2, 2, 2, 2, 3}};
  for (const auto& shape : shapes) {
    std::uint64_t numel = 1;
    for (auto d : shape) numel *= static_cast<std::uint64_t>(d);
    for (std::uint64_t b = 0; b <= numel; ++b) {
      for (std::uint64_t n = 0; b + n <= numel; ++n) {
        const auto blocks = flat_run_blocks(shape, b, n);
        EXPECT_LE(blocks.size(), n == 0 ? 0 : 2 * shape.size() - 1);
        std::vector<std::uint64_t> got;
        for (const auto& h : blocks) enumerate(shape, h, got);
        std::vector<std::uint64_t> want;
        for (std::uint64_t i = b; i < b + n; ++i) want.push_back(i);
        ASSERT_EQ(got, want) << "shape rank " << shape.size() << " run [" << b << ", " << b + n << ")";
      }
    }
  }
}

TEST(FlatRunBlocks, WholeTensorIsOneBlockAndScalarIsOneEmptyBlock) {
  const std::vector<std::int64_t> shape = {4, 5, 6};
  const auto all = flat_run_blocks(shape, 0, 120);
  ASSERT_EQ(all.size(), 1u);
  EXPECT_EQ(all[0], (Hyperslab{{0, 0, 0}, {4, 5, 6}}));
  const auto scalar = flat_run_blocks({}, 0, 1);
  ASSERT_EQ(scalar.size(), 1u);
  EXPECT_TRUE(scalar[0].start.empty());
  EXPECT_TRUE(flat_run_blocks({}, 0, 0).empty());
  // A run crossing two row boundaries of a matrix: tail of row 0, row 1 whole, head of row 2.
  const std::vector<std::int64_t> m = {3, 4};
  EXPECT_EQ(flat_run_blocks(m, 2, 8),
            (std::vector<Hyperslab>{{{0, 2}, {1, 2}}, {{1, 0}, {1, 4}}, {{2, 0}, {1, 2}}}));
}

}  // namespace
}  // namespace ucp::format
