// plan_hdf5 on the ZeRO-1/2 worked example of the format spec (testutil/zero_examples.h): dataset
// paths, the virtual offsets, runs written by their reader (no exchange), tied names as links,
// optimizer states, refused names, and a digest that covers the attributes.
#include "ucp/plan/hdf5_plan.h"

#include <gtest/gtest.h>

#include <map>

#include "testutil/status_matchers.h"
#include "testutil/zero_examples.h"

namespace ucp::plan {
namespace {
using base::DType;
using base::StatusCode;
using testutil::StatusIs;
using ::testing::HasSubstr;

PlanOptions options(int world) {
  PlanOptions o;
  o.world_size = world;
  return o;
}

TEST(Hdf5Plan, ModelDatasetsAreWrittenByTheirReaders) {
  const auto ck = testutil::zero12_worked_example(false);
  auto layout = layout_model_tensors(ck, false);
  ASSERT_TRUE(layout.ok()) << layout.status().to_string();
  for (int world : {1, 2, 3, 4}) {
    auto p = plan_hdf5(*layout, nullptr, ck.paths, options(world), {{"/", "tag", std::string("t")}});
    ASSERT_TRUE(p.ok()) << p.status().to_string();
    ASSERT_EQ(p->plan.files.size(), 1u);
    const OutputFile& f = p->plan.files[0];
    EXPECT_EQ(f.name, "model.h5");
    EXPECT_TRUE(f.every_rank_writes);
    EXPECT_EQ(f.owner, -1);
    // Virtual file: the tensors' bytes back to back, in order (a: 10, b: 7, c: 3 fp32 elements).
    ASSERT_EQ(p->plan.tensors.size(), 3u);
    EXPECT_EQ(p->paths, (std::vector<std::string>{"/model/a", "/model/b", "/model/c"}));
    EXPECT_EQ(p->plan.tensors[0].file_offset, 0u);
    EXPECT_EQ(p->plan.tensors[1].file_offset, 40u);
    EXPECT_EQ(p->plan.tensors[2].file_offset, 68u);
    EXPECT_EQ(f.size, 80u);
    EXPECT_EQ(p->groups, (std::vector<std::string>{"/model"}));
    std::uint64_t moved = 0;
    for (const auto& round : p->plan.rounds)
      for (const Transfer& x : round) {
        EXPECT_EQ(x.writer, x.reader);
        EXPECT_LT(x.reader, world);
        moved += x.out_bytes();
      }
    EXPECT_EQ(moved, 80u);
    for (const auto& t : p->plan.totals) {
      EXPECT_EQ(t.bytes_sent, 0u);
      EXPECT_EQ(t.bytes_received, 0u);
    }
    ASSERT_EQ(p->attributes.size(), 2u);
    EXPECT_EQ(p->attributes[0].object, "/model");
    EXPECT_EQ(p->attributes[0].name, "tied_aliases");
    EXPECT_EQ(std::get<std::string>(p->attributes[0].value), "{}");
    EXPECT_EQ(p->attributes[1].name, "tag");
  }
}

TEST(Hdf5Plan, TiedNameIsALinkWithoutBytesAndBf16AppliesToFloatsOnly) {
  SourceLayout layout;
  LogicalTensor w{"w.weight", {2, 3}, DType::kF32, TensorRole::kTrainable, -1, {{{0, 0, 6, DType::kF32}, 0}}};
  LogicalTensor n{"n", {}, DType::kI64, TensorRole::kBuffer, -1, {{{0, 64, 1, DType::kI64}, 0}}};
  LogicalTensor tied{"head.weight", {2, 3}, DType::kF32, TensorRole::kAlias, 0, {}};
  layout.tensors = {w, n, tied};
  PlanOptions o = options(2);
  o.float_dtype = DType::kBF16;
  auto p = plan_hdf5(layout, nullptr, {"src"}, o, {});
  ASSERT_TRUE(p.ok()) << p.status().to_string();
  EXPECT_EQ(p->plan.tensors[0].dtype, DType::kBF16);
  EXPECT_EQ(p->plan.tensors[1].dtype, DType::kI64);
  EXPECT_EQ(p->plan.tensors[2].shares_storage_with, 0);
  EXPECT_EQ(p->plan.files[0].size, 6u * 2 + 8);
  EXPECT_EQ(std::get<std::string>(p->attributes[0].value), R"({"head.weight":"w.weight"})");
  for (const auto& round : p->plan.rounds)
    for (const Transfer& x : round) EXPECT_LT(x.file_offset, 20u);  // nothing for the alias
}

TEST(Hdf5Plan, OptimizerStatesGetTheirOwnGroups) {
  const auto ck = testutil::zero12_worked_example(false);
  auto layout = layout_model_tensors(ck, false);
  ASSERT_TRUE(layout.ok());
  Hdf5OptimizerStates states;
  auto fp32 = layout_optimizer_state(ck, OptimizerState::kFp32);
  auto m = layout_optimizer_state(ck, OptimizerState::kExpAvg);
  auto v = layout_optimizer_state(ck, OptimizerState::kExpAvgSq);
  ASSERT_TRUE(fp32.ok() && m.ok() && v.ok()) << fp32.status().to_string() << m.status().to_string();
  states.fp32 = *fp32;
  states.exp_avg = *m;
  states.exp_avg_sq = *v;
  auto p = plan_hdf5(*layout, &states, ck.paths, options(3), {});
  ASSERT_TRUE(p.ok()) << p.status().to_string();
  EXPECT_EQ(p->groups, (std::vector<std::string>{"/model", "/optimizer", "/optimizer/a", "/optimizer/b", "/optimizer/c"}));
  ASSERT_EQ(p->paths.size(), 3u + 9u);
  EXPECT_EQ(p->paths[3], "/optimizer/a/fp32");
  EXPECT_EQ(p->paths[4], "/optimizer/a/exp_avg");
  EXPECT_EQ(p->paths[11], "/optimizer/c/exp_avg_sq");
  EXPECT_EQ(p->plan.files[0].size, 4u * 20 * 4);  // model + three states, 20 fp32 elements each
  EXPECT_EQ(p->plan.tensors[4].shape, p->plan.tensors[0].shape);
}

TEST(Hdf5Plan, NamesThatAreNotOneLinkAreRefused) {
  for (const char* bad : {"a/b", ".", ".."}) {
    SourceLayout layout;
    layout.tensors.push_back({bad, {1}, DType::kF32, TensorRole::kBuffer, -1, {{{0, 0, 1, DType::kF32}, 0}}});
    EXPECT_THAT(plan_hdf5(layout, nullptr, {"src"}, options(1), {}),
                StatusIs(StatusCode::kFailedPrecondition, HasSubstr("'" + std::string(bad) + "'")));
  }
}

TEST(Hdf5Plan, DigestCoversAttributes) {
  const auto ck = testutil::zero12_worked_example(false);
  auto layout = layout_model_tensors(ck, false);
  ASSERT_TRUE(layout.ok());
  auto a = plan_hdf5(*layout, nullptr, ck.paths, options(2), {{"/", "tag", std::string("x")}});
  auto b = plan_hdf5(*layout, nullptr, ck.paths, options(2), {{"/", "tag", std::string("y")}});
  auto c = plan_hdf5(*layout, nullptr, ck.paths, options(2), {{"/", "tag", std::int64_t{1}}});
  ASSERT_TRUE(a.ok() && b.ok() && c.ok());
  EXPECT_NE(a->digest(), b->digest());
  EXPECT_NE(a->digest(), c->digest());
  EXPECT_EQ(a->digest(), plan_hdf5(*layout, nullptr, ck.paths, options(2), {{"/", "tag", std::string("x")}})->digest());
}

}  // namespace
}  // namespace ucp::plan
