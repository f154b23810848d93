// The partition math of fp32 consolidation, on the worked examples of the DeepSpeed format spec
// (section 3) built as metadata by hand, then on every real fixture (coverage must hold).
#include "ucp/plan/source_layout.h"

#include <gtest/gtest.h>

#include <set>

#include "testutil/golden.h"
#include "testutil/status_matchers.h"
#include "testutil/zero_examples.h"

namespace ucp::plan {
namespace {
using base::DType;
using base::StatusCode;
using format::TensorLocation;
using testutil::StatusIs;
using ::testing::HasSubstr;


TEST(SourceLayout, Zero12WorkedExample) {
  for (bool bf16 : {false, true}) {
    auto layout = layout_model_tensors(testutil::zero12_worked_example(bf16), false);
    ASSERT_TRUE(layout.ok()) << layout.status().to_string();
    ASSERT_EQ(layout->tensors.size(), 3u);
    const auto& a = layout->tensors[0];
    ASSERT_EQ(a.pieces.size(), 2u);  // r0 [0,6) a[0:6]; r1 [6,12) a[6:10]
    EXPECT_EQ(a.pieces[0].src.file, 1u);
    EXPECT_EQ(a.pieces[0].src.numel, 6u);
    EXPECT_EQ(a.pieces[1].src.file, 2u);
    EXPECT_EQ(a.pieces[1].src.offset, 2000u);
    EXPECT_EQ(a.pieces[1].src.numel, 4u);
    EXPECT_EQ(a.pieces[1].dst_offset, 6u);
    const auto& b = layout->tensors[1];  // r1 b[0:2] at element 4; r2 b[2:7] at 0
    ASSERT_EQ(b.pieces.size(), 2u);
    EXPECT_EQ(b.pieces[0].src.offset, 2000u + 4 * 4);
    EXPECT_EQ(b.pieces[0].src.numel, 2u);
    EXPECT_EQ(b.pieces[1].src.file, 3u);
    EXPECT_EQ(b.pieces[1].src.numel, 5u);
    const auto& c = layout->tensors[2];  // r2 c[0:1] at element 5; r3 c[1:3] at 0
    ASSERT_EQ(c.pieces.size(), 2u);
    EXPECT_EQ(c.pieces[0].src.offset, 3000u + 5 * 4);
    EXPECT_EQ(c.pieces[1].src.file, 4u);
    EXPECT_EQ(c.pieces[1].src.numel, 2u);
    EXPECT_EQ(c.pieces[1].dst_offset, 1u);
  }
}

TEST(SourceLayout, Zero12PartitionsThatDisagreeWithShapesFail) {
  auto ck = testutil::zero12_worked_example(false);
  ck.optims[3].fp32[0].numel = 1;  // one element short
  EXPECT_THAT(layout_model_tensors(ck, false), StatusIs(StatusCode::kDataLoss, HasSubstr("'c'")));
  ck = testutil::zero12_worked_example(false);
  ck.models[0].param_shapes[0].push_back({"d", {9}});  // more than padding beyond the partitions
  EXPECT_THAT(layout_model_tensors(ck, false), StatusIs(StatusCode::kDataLoss, HasSubstr("'d'")));
}

// Same params at ZeRO-3, dp=4: slices of ceil(n/4) = 3, 2, 1; every rank holds 6 elements.
TEST(SourceLayout, Zero3WorkedExample) {
  format::ZeroCheckpoint ck;
  ck.kind = format::DeepSpeedOptimizerKind::kZero3;
  ck.zero_stage = 3;
  ck.dp = 4;
  for (int r = 0; r < 4; ++r) {
    format::ModelFileMeta m;
    m.param_shapes = {{{"a", {10}}, {"b", {7}}}, {{"c", {3}}}};  // two sub-groups
    ck.models.push_back(m);
  }
  for (std::uint32_t r = 0; r < 4; ++r) {
    format::OptimFileMeta o;
    o.zero_stage = 3;
    o.fp32.push_back({r, 0, 5, DType::kF32});    // a_r(3) | b_r(2)
    o.fp32.push_back({r, 400, 1, DType::kF32});  // c_r(1)
    ck.optims.push_back(o);
  }
  auto layout = layout_model_tensors(ck, false);
  ASSERT_TRUE(layout.ok()) << layout.status().to_string();
  const auto& a = layout->tensors[0];
  ASSERT_EQ(a.pieces.size(), 4u);  // 3 + 3 + 3 + 1
  EXPECT_EQ(a.pieces[3].src.numel, 1u);
  EXPECT_EQ(a.pieces[3].dst_offset, 9u);
  const auto& b = layout->tensors[1];
  ASSERT_EQ(b.pieces.size(), 4u);  // 2 + 2 + 2 + 1
  EXPECT_EQ(b.pieces[0].src.offset, 12u);
  const auto& c = layout->tensors[2];
  ASSERT_EQ(c.pieces.size(), 3u);  // rank 3 holds only padding for c
  EXPECT_EQ(c.pieces[2].src.file, 2u);
  EXPECT_EQ(c.pieces[2].src.offset, 400u);

  ck.optims[2].fp32[1].numel = 2;  // rank 2 holds more than the shapes explain
  EXPECT_THAT(layout_model_tensors(ck, false), StatusIs(StatusCode::kDataLoss, HasSubstr("rank 2")));
}

TEST(SourceLayout, EveryFixtureIsFullyCovered) {
  for (const auto& name : testutil::deepspeed_fixture_names()) {
    SCOPED_TRACE(name);
    auto ck = format::read_zero_checkpoint(testutil::deepspeed_fixture(name) + "/checkpoint");
    ASSERT_TRUE(ck.ok()) << ck.status().to_string();
    auto layout = layout_model_tensors(*ck, false);
    ASSERT_TRUE(layout.ok()) << layout.status().to_string();
    // Every tensor has the right element count (coverage is checked inside), every name once.
    std::set<std::string> names;
    for (const auto& t : layout->tensors) EXPECT_TRUE(names.insert(t.name).second) << t.name;
    const bool mlp = name.rfind("mlp", 0) == 0;
    EXPECT_EQ(names.count(mlp ? "frozen.weight" : "wte.weight"), 1u);
    EXPECT_EQ(names.count(mlp ? "head.weight" : "lm_head.weight"), 1u);
    auto excluded = layout_model_tensors(*ck, true);
    ASSERT_TRUE(excluded.ok());
    for (const auto& t : excluded->tensors) EXPECT_NE(t.role, TensorRole::kFrozen) << t.name;
  }
}

}  // namespace
}  // namespace ucp::plan
