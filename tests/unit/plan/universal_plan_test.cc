// Optimizer-state layouts (fp32 / exp_avg / exp_avg_sq) and the to-universal plan, on the worked
// examples of the DeepSpeed format spec (section 3) built as metadata by hand — the ZeRO-1/2
// moments keep the alignment padding the fp32 partitions drop — then on every real fixture.
#include "ucp/plan/universal_plan.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <set>

#include "testutil/golden.h"
#include "testutil/status_matchers.h"
#include "testutil/zero_examples.h"

namespace ucp::plan {
namespace {
using base::DType;
using base::StatusCode;
using testutil::StatusIs;
using ::testing::HasSubstr;


TEST(OptimizerStateLayout, Zero12MomentsKeepPaddingAndUseTheSameOffsets) {
  for (bool bf16 : {false, true}) {
    SCOPED_TRACE(bf16 ? "bf16 optimizer" : "zero-2");
    const auto ck = testutil::zero12_worked_example(bf16);
    auto m = layout_optimizer_state(ck, OptimizerState::kExpAvg);
    ASSERT_TRUE(m.ok()) << m.status().to_string();
    ASSERT_EQ(m->size(), 3u);
    EXPECT_EQ((*m)[0].name, "a");
    EXPECT_EQ((*m)[0].shape, (std::vector<std::int64_t>{2, 5}));
    const auto& c = (*m)[2];  // r2 element 5 -> c[0]; r3 elements 0,1 -> c[1:3]; r3 [2,6) padding
    ASSERT_EQ(c.pieces.size(), 2u);
    EXPECT_EQ(c.pieces[0].src.file, 3u);
    EXPECT_EQ(c.pieces[0].src.offset, 30000u + 5 * 4);
    EXPECT_EQ(c.pieces[0].src.numel, 1u);
    EXPECT_EQ(c.pieces[1].src.file, 4u);
    EXPECT_EQ(c.pieces[1].src.offset, 40000u);
    EXPECT_EQ(c.pieces[1].src.numel, 2u);
    EXPECT_EQ(c.pieces[1].dst_offset, 1u);
    auto sq = layout_optimizer_state(ck, OptimizerState::kExpAvgSq);
    ASSERT_TRUE(sq.ok());
    EXPECT_EQ((*sq)[1].pieces[0].src.offset, 20000u * 2 + 4 * 4);  // b starts at r1 element 4
    auto fp32 = layout_optimizer_state(ck, OptimizerState::kFp32);
    ASSERT_TRUE(fp32.ok());
    EXPECT_EQ((*fp32)[2].pieces[1].src.offset, 4000u);
  }
}

TEST(OptimizerStateLayout, MissingOrShortMomentsFail) {
  auto ck = testutil::zero12_worked_example(false);
  ck.optims[2].partition_states[0].erase(ck.optims[2].partition_states[0].begin());  // e.g. fp16 run where every step overflowed: no exp_avg
  EXPECT_THAT(layout_optimizer_state(ck, OptimizerState::kExpAvg),
              StatusIs(StatusCode::kFailedPrecondition, HasSubstr("'exp_avg'")));
  ck = testutil::zero12_worked_example(false);
  ck.optims[3].partition_states[0][1].second.numel = 1;  // exp_avg_sq: c runs past what the moments hold
  EXPECT_THAT(layout_optimizer_state(ck, OptimizerState::kExpAvgSq), StatusIs(StatusCode::kDataLoss, HasSubstr("'c'")));
}

// ZeRO-3, dp=4: a(10), b(7) in sub-group 0, c(3) in sub-group 1; slices of 3, 2, 1.
format::ZeroCheckpoint zero3_example() {
  format::ZeroCheckpoint ck;
  ck.kind = format::DeepSpeedOptimizerKind::kZero3;
  ck.zero_stage = 3;
  ck.dp = 4;
  for (int r = 0; r < 4; ++r) {
    format::ModelFileMeta m;
    m.param_shapes = {{{"a", {10}}, {"b", {7}}}, {{"c", {3}}}};
    ck.models.push_back(m);
  }
  for (std::uint32_t r = 0; r < 4; ++r) {
    format::OptimFileMeta o;
    o.zero_stage = 3;
    o.fp32 = {{r + 4, 0, 5, DType::kF32}, {r + 4, 400, 1, DType::kF32}};
    o.partition_states = {{{"exp_avg", {r + 4, 1000, 5, DType::kF32}}, {"exp_avg_sq", {r + 4, 2000, 5, DType::kF32}}},
                          {{"exp_avg", {r + 4, 1400, 1, DType::kF32}}, {"exp_avg_sq", {r + 4, 2400, 1, DType::kF32}}}};
    ck.optims.push_back(o);
  }
  ck.paths = {"m0", "m1", "m2", "m3", "o0", "o1", "o2", "o3"};
  return ck;
}

TEST(OptimizerStateLayout, Zero3MomentsMirrorTheFlatGroups) {
  auto m = layout_optimizer_state(zero3_example(), OptimizerState::kExpAvgSq);
  ASSERT_TRUE(m.ok()) << m.status().to_string();
  const auto& c = (*m)[2];
  ASSERT_EQ(c.pieces.size(), 3u);  // rank 3 holds only padding of c: no piece from it
  EXPECT_EQ(c.pieces[2].src.file, 6u);
  EXPECT_EQ(c.pieces[2].src.offset, 2400u);
  const auto& b = (*m)[1];
  ASSERT_EQ(b.pieces.size(), 4u);  // 2 + 2 + 2 + 1
  EXPECT_EQ(b.pieces[3].src.offset, 2000u + 3 * 4);
  EXPECT_EQ(b.pieces[3].src.numel, 1u);
}

TEST(UniversalPlan, OneTorchFilePerParamAndState) {
  PlanOptions opt;
  opt.format = OutputFormat::kTorch;
  opt.world_size = 3;
  for (bool zero3 : {false, true}) {
    SCOPED_TRACE(zero3 ? "zero-3" : "zero-2");
    auto plan = plan_universal(zero3 ? zero3_example() : testutil::zero12_worked_example(false), opt);
    ASSERT_TRUE(plan.ok()) << plan.status().to_string();
    ASSERT_EQ(plan->params.size(), 3u);
    EXPECT_EQ(plan->params[2].group, zero3 ? 1 : 0);
    std::set<std::string> names;
    for (const auto& f : plan->plan.files) names.insert(f.name);
    EXPECT_EQ(names, (std::set<std::string>{"zero/a/fp32.pt", "zero/a/exp_avg.pt", "zero/a/exp_avg_sq.pt", "zero/b/fp32.pt",
                                             "zero/b/exp_avg.pt", "zero/b/exp_avg_sq.pt", "zero/c/fp32.pt",
                                             "zero/c/exp_avg.pt", "zero/c/exp_avg_sq.pt"}));
    for (const auto& t : plan->plan.tensors) {
      EXPECT_EQ(t.requires_grad, t.name.ends_with("/fp32")) << t.name;
      // ZeRO-3 files hold the bare flat tensor; ZeRO-1/2 the full shape.
      if (t.name.rfind("a/", 0) == 0)
        EXPECT_EQ(t.shape, (zero3 ? std::vector<std::int64_t>{10} : std::vector<std::int64_t>{2, 5}));
    }
    // Every output element comes from one source run; the archive folder is the file stem.
    std::uint64_t bytes = 0;
    for (const auto& round : plan->plan.rounds)
      for (const auto& x : round) bytes += x.out_bytes();
    EXPECT_EQ(bytes, 3u * 20 * 4);
    EXPECT_EQ(plan->plan.files[0].zips.at(0).layout.entries[0].name, "fp32/data.pkl");
  }
}

// optimizer_state.pt / step.pt join the plan as tree files: a storage the locator finds in a
// source file is copied from there by a transfer; one built in memory (a step counter) is
// written with the file's fixed bytes, in its record.
TEST(UniversalPlan, TreeFilesCopyLocatedStoragesAndInlineTheRest) {
  auto f32_tensor = [](std::vector<float> values) {
    std::vector<std::byte> bytes(values.size() * 4);
    std::memcpy(bytes.data(), values.data(), bytes.size());
    return format::Tensor::from_bytes(DType::kF32, {static_cast<std::int64_t>(values.size())}, std::move(bytes));
  };
  format::Tensor partition = f32_tensor({1, 2, 3, 4, 5, 6});
  format::Tensor step = f32_tensor({7});
  const format::Storage* in_source = partition.storage.get();
  auto root = format::Value::dict({{format::Value::string("state"), format::Value::tensor_value(partition)},
                                   {format::Value::string("step"), format::Value::tensor_value(step)}});
  const StorageLocator locate = [&](const format::Storage& s) -> base::Result<format::TensorLocation> {
    if (&s != in_source) return base::not_found("in memory");
    return format::TensorLocation{5, 100, 6, DType::kF32};
  };
  UniversalCarried carried;
  carried.trees = {{"zero/optimizer_state.pt", root}};
  carried.locate = locate;
  PlanOptions opt;
  opt.format = OutputFormat::kTorch;
  opt.world_size = 2;
  auto plan = plan_universal(zero3_example(), opt, carried);
  ASSERT_TRUE(plan.ok()) << plan.status().to_string();  // includes the coverage proof

  const auto& files = plan->plan.files;
  ASSERT_EQ(files.back().name, "zero/optimizer_state.pt");
  const int file = static_cast<int>(files.size()) - 1;
  const auto& zip = files.back().zips.at(0).layout;
  ASSERT_EQ(zip.entries.size(), 5u);  // data.pkl, data/0, data/1, version, byteorder
  EXPECT_EQ(zip.entries[0].name, "optimizer_state/data.pkl");
  // Record 0 (the partition): one plan tensor, read from o1 (paths[5]) at offset 100.
  std::uint64_t moved = 0;
  for (const auto& round : plan->plan.rounds)
    for (const auto& x : round)
      if (x.file == file) {
        EXPECT_EQ(x.src.file, 5u);
        EXPECT_EQ(x.file_offset, zip.entries[1].data_offset);
        moved += x.out_bytes();
      }
  EXPECT_EQ(moved, 24u);
  // Record 1 (the step): its 4 bytes among the fixed bytes, at its record.
  bool inlined = false;
  for (const auto& [offset, bytes] : files.back().fixed)
    if (offset == zip.entries[2].data_offset) {
      ASSERT_EQ(bytes.size(), 4u);
      float value = 0;
      std::memcpy(&value, bytes.data(), 4);
      EXPECT_EQ(value, 7.0f);
      inlined = true;
    }
  EXPECT_TRUE(inlined);

  // A locator failure other than NotFound fails the plan; tree files need a locator.
  const StorageLocator broken = [](const format::Storage&) -> base::Result<format::TensorLocation> {
    return base::data_loss("truncated");
  };
  carried.locate = broken;
  EXPECT_THAT(plan_universal(zero3_example(), opt, carried), StatusIs(StatusCode::kDataLoss, HasSubstr("truncated")));
  carried.locate = nullptr;
  EXPECT_THAT(plan_universal(zero3_example(), opt, carried), StatusIs(StatusCode::kInternal, HasSubstr("locator")));
}

// The model-state files are planned as raw copies: no zip, every byte read from the source file.
TEST(UniversalPlan, ModelStateFilesAreCopiedByteForByte) {
  UniversalCarried carried;
  carried.copies = {{"mp_rank_00_model_states.pt", 0, 5000}, {"empty.pt", 1, 0}};
  PlanOptions opt;
  opt.format = OutputFormat::kTorch;
  opt.world_size = 3;
  opt.max_transfer_bytes = 1024;  // the copy is cut into several transfers
  auto plan = plan_universal(testutil::zero12_worked_example(false), opt, carried);
  ASSERT_TRUE(plan.ok()) << plan.status().to_string();
  const auto& files = plan->plan.files;
  ASSERT_EQ(files.size(), 9u + 2u);
  const auto& copy = files[9];
  EXPECT_EQ(copy.name, "mp_rank_00_model_states.pt");
  EXPECT_EQ(copy.size, 5000u);
  EXPECT_TRUE(copy.zips.empty());
  EXPECT_TRUE(copy.fixed.empty());
  std::uint64_t next = 0;
  int transfers = 0;
  for (const auto& round : plan->plan.rounds)
    for (const auto& x : round)
      if (x.file == 9) {
        EXPECT_EQ(x.src.file, 0u);
        EXPECT_EQ(x.src.offset, x.file_offset);  // byte i of the copy is byte i of the source
        next = std::max(next, x.file_offset + x.out_bytes());
        ++transfers;
      }
  EXPECT_EQ(next, 5000u);
  EXPECT_GT(transfers, 1);
  EXPECT_EQ(files[10].size, 0u);
}

TEST(UniversalPlan, ParameterNamesMustBeFolderNames) {
  auto ck = testutil::zero12_worked_example(false);
  ck.models[0].param_shapes[0][1].name = "../b";
  PlanOptions opt;
  EXPECT_THAT(plan_universal(ck, opt), StatusIs(StatusCode::kFailedPrecondition, HasSubstr("'../b'")));
}

TEST(UniversalPlan, EveryFixturePlans) {
  PlanOptions opt;
  opt.format = OutputFormat::kTorch;
  opt.world_size = 2;
  const auto names = testutil::deepspeed_fixture_names();
  ASSERT_GT(names.size(), 40u);
  for (const auto& name : names) {
    SCOPED_TRACE(name);
    auto ck = format::read_zero_checkpoint(testutil::deepspeed_fixture(name) + "/checkpoint");
    ASSERT_TRUE(ck.ok()) << ck.status().to_string();
    auto plan = plan_universal(*ck, opt);
    ASSERT_TRUE(plan.ok()) << plan.status().to_string();
    EXPECT_EQ(plan->plan.files.size(), 3 * plan->params.size());
  }
}

}  // namespace
}  // namespace ucp::plan
