// The pure parts of the HF-DCP reader: global shapes from chunk boxes, coverage of what the
// files hold, and the shard file names that tell a missing file.
#include "ucp/format/hf_dcp.h"

#include <gtest/gtest.h>

#include "testutil/status_matchers.h"

namespace ucp::format {
namespace {
using base::StatusCode;
using testutil::StatusIs;
using Dims = std::vector<std::int64_t>;

// A chunk of `sizes` at `offsets`, its fp32 bytes in file `file` at `at`.
HfDcpChunk chunk(Dims offsets, Dims sizes, std::uint32_t file, std::uint64_t at) {
  std::uint64_t numel = 1;
  for (auto s : sizes) numel *= static_cast<std::uint64_t>(s);
  return {std::move(offsets), std::move(sizes), {file, at, numel, base::DType::kF32}};
}

TEST(HfDcp, GlobalShapeIsTheLargestBoxEndAndPiecesCoverIt) {
  // A 5x4 tensor cut in rows 3 + 2 and columns 2 + 2 across four files, in no particular order.
  HfDcpTensorChunks t{"w", base::DType::kF32,
                      {chunk({3, 2}, {2, 2}, 3, 0), chunk({0, 0}, {3, 2}, 0, 8), chunk({0, 2}, {3, 2}, 1, 8),
                       chunk({3, 0}, {2, 2}, 2, 0)}};
  auto layout = layout_hf_dcp_chunks({t});
  ASSERT_TRUE(layout.ok()) << layout.status().message();
  const LogicalTensor& lt = layout->tensors.at(0);
  EXPECT_EQ(lt.shape, (Dims{5, 4}));
  EXPECT_EQ(lt.role, TensorRole::kStored);
  std::vector<int> hits(20, 0);
  ASSERT_TRUE(for_each_run(lt, [&](const TensorLocation& src, std::uint64_t dst) {
                for (std::uint64_t k = 0; k < src.numel; ++k) ++hits.at(dst + k);
                return base::Status();
              }).ok());
  for (int h : hits) EXPECT_EQ(h, 1);
}

TEST(HfDcp, EmptyChunksAndZeroDimTensorsAreFine) {
  HfDcpTensorChunks rows{"r", base::DType::kF32, {chunk({0}, {2}, 0, 0), chunk({2}, {1}, 1, 0), chunk({3}, {0}, 2, 0)}};
  HfDcpTensorChunks scalar{"s", base::DType::kF32, {chunk({}, {}, 0, 64)}};
  auto layout = layout_hf_dcp_chunks({rows, scalar});
  ASSERT_TRUE(layout.ok()) << layout.status().message();
  EXPECT_EQ(layout->tensors[0].shape, (Dims{3}));
  EXPECT_EQ(layout->tensors[1].shape, (Dims{}));
  EXPECT_EQ(layout->tensors[1].numel(), 1u);
}

TEST(HfDcp, AHoleLeftByAMissingFileIsRefusedByName) {
  HfDcpTensorChunks t{"embed.weight", base::DType::kF32, {chunk({0, 0}, {4, 6}, 0, 0), chunk({8, 0}, {2, 6}, 1, 0)}};
  auto layout = layout_hf_dcp_chunks({t});
  EXPECT_THAT(layout.status(), StatusIs(StatusCode::kDataLoss, ::testing::_));
  EXPECT_NE(layout.status().message().find("embed.weight"), std::string::npos) << layout.status().message();
}

TEST(HfDcp, OverlapsAndMixedDtypesAreRefused) {
  HfDcpTensorChunks overlap{"o", base::DType::kF32, {chunk({0}, {3}, 0, 0), chunk({2}, {2}, 1, 0)}};
  EXPECT_THAT(layout_hf_dcp_chunks({overlap}).status(), StatusIs(StatusCode::kDataLoss, ::testing::_));
  HfDcpTensorChunks mixed{"m", base::DType::kF32, {chunk({0}, {2}, 0, 0), chunk({2}, {2}, 1, 0)}};
  mixed.chunks[1].src.dtype = base::DType::kBF16;
  EXPECT_THAT(layout_hf_dcp_chunks({mixed}).status(), StatusIs(StatusCode::kDataLoss, ::testing::_));
  HfDcpTensorChunks ranks{"k", base::DType::kF32, {chunk({0}, {2}, 0, 0), chunk({0, 0}, {1, 2}, 1, 0)}};
  EXPECT_THAT(layout_hf_dcp_chunks({ranks}).status(), StatusIs(StatusCode::kDataLoss, ::testing::_));
}

TEST(HfDcp, FileNamesMustLeaveNoModelIndexOrRankOut) {
  EXPECT_TRUE(check_hf_dcp_file_names({"d/model-00001-of-00002.safetensors", "d/model-00002-of-00002.safetensors"}).ok());
  EXPECT_TRUE(check_hf_dcp_file_names({"d/shard-00001-model-00001-of-00001.safetensors",
                                       "d/shard-00002-model-00001-of-00001.safetensors"})
                  .ok());
  EXPECT_TRUE(check_hf_dcp_file_names({"d/whatever.safetensors"}).ok());  // names we cannot check
  auto missing = check_hf_dcp_file_names({"d/model-00002-of-00002.safetensors"});
  EXPECT_THAT(missing, StatusIs(StatusCode::kDataLoss, ::testing::_));
  EXPECT_NE(missing.message().find("model-00001-of-00002"), std::string::npos) << missing.message();
  auto gap = check_hf_dcp_file_names({"d/shard-00001-model-00001-of-00001.safetensors",
                                      "d/shard-00003-model-00001-of-00001.safetensors"});
  EXPECT_THAT(gap, StatusIs(StatusCode::kDataLoss, ::testing::_));
  EXPECT_NE(gap.message().find("shard-00002"), std::string::npos) << gap.message();
  EXPECT_THAT(check_hf_dcp_file_names({"d/model-00001-of-00002.safetensors", "d/model-00001-of-00003.safetensors"}),
              StatusIs(StatusCode::kDataLoss, ::testing::_));
}

}  // namespace
}  // namespace ucp::format
