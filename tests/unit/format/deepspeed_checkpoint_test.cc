// Discovery and recognition of real DeepSpeed checkpoints (tests/golden/deepspeed, written by
// DeepSpeed 0.14.5): every fixture's name encodes its stage, precision, optimizer and world size,
// which is the independent truth we check against.
#include "ucp/format/deepspeed_checkpoint.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <regex>

#include "testutil/golden.h"
#include "testutil/status_matchers.h"
#include "testutil/temp_dir.h"

namespace ucp::format {
namespace {
namespace fs = std::filesystem;
using base::StatusCode;
using testutil::StatusIs;
using ::testing::HasSubstr;

struct FixtureName {
  std::string model;
  int stage;
  std::string precision;
  bool bf16opt;
  int world_size;
};

FixtureName parse_name(const std::string& name) {
  static const std::regex re(R"((\w+?)_z(\d)_(fp32|fp16|bf16)(_bf16opt)?_ws(\d+))");
  std::smatch m;
  EXPECT_TRUE(std::regex_match(name, m, re)) << name;
  return {m[1], std::stoi(m[2]), m[3], m[4].matched, std::stoi(m[5])};
}

base::DType precision_dtype(const std::string& p) {
  return p == "bf16" ? base::DType::kBF16 : p == "fp16" ? base::DType::kF16 : base::DType::kF32;
}

TEST(DeepSpeedCheckpoint, EveryFixtureIsRecognised) {
  const auto names = testutil::deepspeed_fixture_names();
  ASSERT_GE(names.size(), 60u);
  for (const auto& name : names) {
    SCOPED_TRACE(name);
    const FixtureName expect = parse_name(name);
    auto files = discover_deepspeed_checkpoint(testutil::deepspeed_fixture(name) + "/checkpoint");
    ASSERT_TRUE(files.ok()) << files.status().to_string();
    EXPECT_EQ(files->tag, "global_step3");
    EXPECT_EQ(files->dp_size, expect.world_size);
    EXPECT_EQ(files->mp_size, 1);
    EXPECT_EQ(files->bf16_prefix, expect.precision == "bf16");
    EXPECT_EQ(files->zero3_model_files, expect.stage == 3);
    EXPECT_EQ(files->optim_files.size(), static_cast<std::size_t>(expect.world_size));
    EXPECT_EQ(files->model_state_files.size(), expect.stage == 3 ? static_cast<std::size_t>(expect.world_size) : 1u);

    auto summary = summarize_deepspeed_checkpoint(*files);
    ASSERT_TRUE(summary.ok()) << summary.status().to_string();
    EXPECT_EQ(summary->kind, expect.bf16opt ? DeepSpeedOptimizerKind::kBf16
                             : expect.stage == 3 ? DeepSpeedOptimizerKind::kZero3
                                                 : DeepSpeedOptimizerKind::kZero12);
    EXPECT_EQ(summary->zero_stage, expect.stage);
    EXPECT_EQ(summary->model_dtype, precision_dtype(expect.precision));
    EXPECT_EQ(summary->saved_dp_world_size, expect.world_size);
    EXPECT_EQ(summary->global_steps, 3);
    EXPECT_EQ(summary->optimizer_family, "Adam");
    EXPECT_EQ(summary->ds_version.rfind("0.14.5", 0), 0u) << summary->ds_version;
    // mlp: 1 tied pair (head.weight = fc1.weight); gpt: lm_head.weight = wte.weight.
    EXPECT_EQ(summary->num_shared, 1u);
    if (expect.model == "mlp") {
      // Trainable params of the mlp fixture: scale 1x1, gain 17, fc1 7x13+7, fc2 17x7+17, out 13x17+13.
      EXPECT_EQ(summary->trainable_params, 1u + 17 + 91 + 7 + 119 + 17 + 221 + 13);
    }
  }
}

TEST(DeepSpeedCheckpoint, TagFolderAndTagOverride) {
  const std::string root = testutil::deepspeed_fixture("mlp_z2_fp16_ws2") + "/checkpoint";
  auto by_tag_dir = discover_deepspeed_checkpoint(root + "/global_step3");
  ASSERT_TRUE(by_tag_dir.ok()) << by_tag_dir.status().to_string();
  EXPECT_EQ(by_tag_dir->tag, "global_step3");
  EXPECT_EQ(by_tag_dir->dp_size, 2);

  auto by_override = discover_deepspeed_checkpoint(root, "global_step3");
  ASSERT_TRUE(by_override.ok());
  EXPECT_EQ(by_override->optim_files, by_tag_dir->optim_files);

  EXPECT_THAT(discover_deepspeed_checkpoint(root, "global_step9"),
              StatusIs(StatusCode::kNotFound, HasSubstr("global_step9")));
}

class BrokenCheckpoint : public ::testing::Test {
 protected:
  void SetUp() override {
    fs::copy(testutil::deepspeed_fixture("mlp_z2_fp16_ws4") + "/checkpoint", dir_.path() / "ckpt",
             fs::copy_options::recursive);
    for (const auto& e : fs::recursive_directory_iterator(dir_.path()))
      fs::permissions(e.path(), fs::perms::owner_write, fs::perm_options::add);
  }
  std::string ckpt() const { return (dir_.path() / "ckpt").string(); }
  std::string tag_dir() const { return ckpt() + "/global_step3"; }
  testutil::TempDir dir_;
};

TEST_F(BrokenCheckpoint, MissingRankFileIsNamed) {
  fs::remove(tag_dir() + "/zero_pp_rank_2_mp_rank_00_optim_states.pt");
  EXPECT_THAT(discover_deepspeed_checkpoint(ckpt()),
              StatusIs(StatusCode::kNotFound, AllOf(HasSubstr("zero_pp_rank_2_mp_rank_00_optim_states.pt"),
                                                    HasSubstr("found 0,1,3"))));
}

TEST_F(BrokenCheckpoint, MissingModelFile) {
  fs::remove(tag_dir() + "/mp_rank_00_model_states.pt");
  EXPECT_THAT(discover_deepspeed_checkpoint(ckpt()),
              StatusIs(StatusCode::kNotFound, HasSubstr("mp_rank_00_model_states.pt")));
}

TEST_F(BrokenCheckpoint, FilesFromTwoWorldSizes) {
  // A 5th rank file from another run: the model file still says dp_world_size=4.
  fs::copy_file(tag_dir() + "/zero_pp_rank_3_mp_rank_00_optim_states.pt",
                tag_dir() + "/zero_pp_rank_4_mp_rank_00_optim_states.pt");
  auto files = discover_deepspeed_checkpoint(ckpt());
  ASSERT_TRUE(files.ok());
  EXPECT_THAT(summarize_deepspeed_checkpoint(*files),
              StatusIs(StatusCode::kFailedPrecondition, AllOf(HasSubstr("dp_world_size=4"), HasSubstr("5 ranks"))));
}

TEST_F(BrokenCheckpoint, MixedPrefixes) {
  fs::copy_file(tag_dir() + "/zero_pp_rank_0_mp_rank_00_optim_states.pt",
                tag_dir() + "/bf16_zero_pp_rank_0_mp_rank_00_optim_states.pt");
  EXPECT_THAT(discover_deepspeed_checkpoint(ckpt()), StatusIs(StatusCode::kFailedPrecondition, HasSubstr("mixes")));
}

TEST_F(BrokenCheckpoint, LatestNamesMissingTag) {
  std::ofstream(ckpt() + "/latest") << "global_step7";
  EXPECT_THAT(discover_deepspeed_checkpoint(ckpt()),
              StatusIs(StatusCode::kNotFound, AllOf(HasSubstr("global_step7"), HasSubstr("latest"))));
}

TEST_F(BrokenCheckpoint, TruncatedModelFile) {
  fs::resize_file(tag_dir() + "/mp_rank_00_model_states.pt", 100);
  auto files = discover_deepspeed_checkpoint(ckpt());
  ASSERT_TRUE(files.ok());
  EXPECT_THAT(summarize_deepspeed_checkpoint(*files),
              StatusIs(StatusCode::kDataLoss, HasSubstr("mp_rank_00_model_states.pt")));
}

TEST(DeepSpeedCheckpointErrors, NotACheckpoint) {
  testutil::TempDir dir;
  EXPECT_THAT(discover_deepspeed_checkpoint(dir.path().string()), StatusIs(StatusCode::kNotFound, HasSubstr("not a DeepSpeed checkpoint")));
  EXPECT_THAT(discover_deepspeed_checkpoint((dir.path() / "nope").string()), StatusIs(StatusCode::kNotFound, HasSubstr("does not exist")));
}

}  // namespace
}  // namespace ucp::format
