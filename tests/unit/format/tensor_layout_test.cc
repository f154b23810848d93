// box_pieces (an N-d chunk of a row-major tensor as strided pieces) against a brute-force walk
// of the box, and check_coverage on strided pieces.
#include "ucp/format/tensor_layout.h"

#include <gtest/gtest.h>

#include <random>

#include "testutil/status_matchers.h"

namespace ucp::format {
namespace {
using base::StatusCode;
using testutil::StatusIs;
using Dims = std::vector<std::int64_t>;

// Tensor element index of every chunk element, chunk elements in row-major order.
std::vector<std::uint64_t> brute_force(const Dims& shape, const Dims& offsets, const Dims& sizes) {
  std::vector<std::uint64_t> out;
  std::uint64_t numel = 1;
  for (auto s : sizes) numel *= static_cast<std::uint64_t>(s);
  Dims index(sizes.size(), 0);
  for (std::uint64_t k = 0; k < numel; ++k) {
    std::uint64_t flat = 0;
    for (std::size_t d = 0; d < shape.size(); ++d) flat = flat * static_cast<std::uint64_t>(shape[d]) + static_cast<std::uint64_t>(offsets[d] + index[d]);
    out.push_back(flat);
    for (std::size_t d = sizes.size(); d-- > 0;) {
      if (++index[d] < sizes[d]) break;
      index[d] = 0;
    }
  }
  return out;
}

// The same mapping read off the pieces (source elements are the chunk's, in order).
std::vector<std::uint64_t> from_pieces(const std::vector<Piece>& pieces, std::uint64_t src_offset_bytes) {
  std::vector<std::uint64_t> out;
  std::uint64_t expect_src = src_offset_bytes;
  for (const Piece& p : pieces) {
    EXPECT_EQ(p.src.offset, expect_src);  // source runs follow each other
    expect_src += p.src.nbytes();
    for (std::uint64_t r = 0; r < p.rows; ++r)
      for (std::uint64_t e = 0; e < p.row_numel(); ++e) out.push_back(p.dst_offset + r * p.dst_row_stride + e);
  }
  return out;
}

TEST(BoxPieces, MatchesBruteForceOnRandomBoxes) {
  std::mt19937 rng(7);
  for (int trial = 0; trial < 3000; ++trial) {
    const std::size_t n = rng() % 5;
    Dims shape(n), offsets(n), sizes(n);
    std::uint64_t numel = 1;
    for (std::size_t d = 0; d < n; ++d) {
      shape[d] = static_cast<std::int64_t>(rng() % 6);
      offsets[d] = shape[d] == 0 ? 0 : static_cast<std::int64_t>(rng() % static_cast<unsigned>(shape[d] + 1));
      sizes[d] = static_cast<std::int64_t>(rng() % static_cast<unsigned>(shape[d] - offsets[d] + 1));
      if (rng() % 3 == 0) {  // whole dimensions are common (FSDP cuts one dimension)
        offsets[d] = 0;
        sizes[d] = shape[d];
      }
      numel *= static_cast<std::uint64_t>(sizes[d]);
    }
    const TensorLocation src{3, 128, numel, base::DType::kF32};
    auto pieces = box_pieces(shape, offsets, sizes, src);
    ASSERT_TRUE(pieces.ok()) << pieces.status().to_string();
    EXPECT_EQ(from_pieces(*pieces, 128), brute_force(shape, offsets, sizes)) << "trial " << trial;
    for (const Piece& p : *pieces) EXPECT_EQ(p.src.file, 3u);
  }
}

TEST(BoxPieces, OneStridedPiecePerChunkForTheCommonCuts) {
  const TensorLocation src{0, 0, 3 * 5, base::DType::kBF16};
  auto dim1 = box_pieces({6, 10}, {3, 5}, {3, 5}, src);  // a 2x2 mesh box of a matrix
  ASSERT_TRUE(dim1.ok());
  ASSERT_EQ(dim1->size(), 1u);
  EXPECT_EQ((*dim1)[0].rows, 3u);
  EXPECT_EQ((*dim1)[0].dst_row_stride, 10u);
  EXPECT_EQ((*dim1)[0].dst_offset, 35u);
  auto dim0 = box_pieces({6, 5}, {3, 0}, {3, 5}, src);  // Shard(0): one contiguous run
  ASSERT_TRUE(dim0.ok());
  ASSERT_EQ(dim0->size(), 1u);
  EXPECT_EQ((*dim0)[0].rows, 1u);
  EXPECT_EQ((*dim0)[0].dst_offset, 15u);
  // Cut along the last dimension of a 3-D tensor whose middle dimension is whole: still one piece.
  auto last = box_pieces({2, 3, 8}, {0, 0, 4}, {2, 3, 4}, TensorLocation{0, 0, 24, base::DType::kF32});
  ASSERT_TRUE(last.ok());
  ASSERT_EQ(last->size(), 1u);
  EXPECT_EQ((*last)[0].rows, 6u);
}

TEST(BoxPieces, RefusesBoxesOutsideTheTensorAndWrongSources) {
  EXPECT_THAT(box_pieces({4, 4}, {2, 0}, {3, 4}, TensorLocation{0, 0, 12, base::DType::kF32}).status(),
              StatusIs(StatusCode::kInvalidArgument, ::testing::_));
  EXPECT_THAT(box_pieces({4, 4}, {0, 0}, {2, 4}, TensorLocation{0, 0, 7, base::DType::kF32}).status(),
              StatusIs(StatusCode::kInvalidArgument, ::testing::_));
  EXPECT_THAT(box_pieces({4, 4}, {0}, {2}, TensorLocation{0, 0, 2, base::DType::kF32}).status(),
              StatusIs(StatusCode::kInvalidArgument, ::testing::_));
}

LogicalTensor tensor_of(const Dims& shape, const std::vector<std::pair<Dims, Dims>>& boxes) {
  LogicalTensor t;
  t.name = "w";
  t.shape = shape;
  std::uint64_t at = 0;
  for (const auto& [offsets, sizes] : boxes) {
    std::uint64_t numel = 1;
    for (auto s : sizes) numel *= static_cast<std::uint64_t>(s);
    auto pieces = box_pieces(shape, offsets, sizes, TensorLocation{0, at, numel, base::DType::kF32});
    EXPECT_TRUE(pieces.ok());
    t.pieces.insert(t.pieces.end(), pieces->begin(), pieces->end());
    at += numel * 4;
  }
  return t;
}

TEST(CheckCoverage, StridedBoxesThatTileTheTensor) {
  EXPECT_TRUE(check_coverage(tensor_of({4, 6}, {{{0, 0}, {2, 3}}, {{0, 3}, {2, 3}}, {{2, 0}, {2, 3}}, {{2, 3}, {2, 3}}})).ok());
}

TEST(CheckCoverage, NamesHolesAndOverlapsOfStridedBoxes) {
  EXPECT_THAT(check_coverage(tensor_of({4, 6}, {{{0, 0}, {4, 3}}, {{1, 3}, {3, 3}}})),
              StatusIs(StatusCode::kDataLoss, ::testing::HasSubstr("elements [3, 6) are not covered by any source")));
  EXPECT_THAT(check_coverage(tensor_of({4, 6}, {{{0, 0}, {4, 4}}, {{0, 3}, {4, 3}}})),
              StatusIs(StatusCode::kDataLoss, ::testing::HasSubstr("covered twice")));
}

TEST(SelectPrefix, KeepsTheTensorsUnderAPrefixAndTheValuesOfAliases) {
  SourceLayout layout;
  auto named = [](std::string name, std::uint64_t offset) {
    LogicalTensor t{std::move(name), {2}, base::DType::kF32, TensorRole::kStored, -1, {}};
    t.pieces.push_back({TensorLocation{0, offset, 2, base::DType::kF32}, 0});
    return t;
  };
  layout.tensors = {named("optim.w", 0), named("model.w", 8), named("model.tied", 0), named("model.tied2", 0)};
  layout.tensors[2] = LogicalTensor{"model.tied", {2}, base::DType::kF32, TensorRole::kAlias, 0, {}};   // of optim.w
  layout.tensors[3] = LogicalTensor{"model.tied2", {2}, base::DType::kF32, TensorRole::kAlias, 1, {}};  // of model.w
  auto model = select_prefix(layout, "model");
  ASSERT_TRUE(model.ok()) << model.status().to_string();
  ASSERT_EQ(model->tensors.size(), 3u);
  EXPECT_EQ(model->tensors[0].name, "w");
  EXPECT_EQ(model->tensors[1].name, "tied");
  EXPECT_EQ(model->tensors[1].role, TensorRole::kStored);  // its source was left out: a copy
  ASSERT_EQ(model->tensors[1].pieces.size(), 1u);
  EXPECT_EQ(model->tensors[1].pieces[0].src.offset, 0u);
  EXPECT_EQ(model->tensors[2].role, TensorRole::kAlias);
  EXPECT_EQ(model->tensors[2].alias_of, 0);
  EXPECT_THAT(select_prefix(layout, "mod").status(),
              StatusIs(StatusCode::kInvalidArgument, ::testing::HasSubstr("the top-level names are: model, optim")));
}

}  // namespace
}  // namespace ucp::format
