// --config FILE: JSON parsing, key spelling, "did you mean" hints, and merging with the command line
// on the real to-fp32 / to-universal option sets (the values each ToFp32Options field must end up
// with are written out by hand for each case).
#include "ucp/cli/config_file.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "testutil/status_matchers.h"
#include "testutil/temp_dir.h"
#include "ucp/cli/to_fp32.h"
#include "ucp/cli/to_universal.h"

namespace ucp::cli {
namespace {

using base::StatusCode;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using testutil::IsOk;
using testutil::StatusIs;

// ---------------------------------------------------------------------------- parse_config_text

TEST(ParseConfigText, RendersValuesAsTheCommandLineWouldSpellThem) {
  auto r = parse_config_text(R"({"format": "torch", "max_shard_size": "2GB", "overwrite": true,
                                 "dry-run": false, "max_memory": 1073741824})", "p.json");
  ASSERT_THAT(r.status(), IsOk());
  ASSERT_EQ(r->size(), 5u);
  EXPECT_EQ((*r)[0].key, "format");
  EXPECT_EQ((*r)[0].value, "torch");
  EXPECT_FALSE((*r)[0].is_bool);
  EXPECT_EQ((*r)[2].value, "true");
  EXPECT_TRUE((*r)[2].is_bool);
  EXPECT_EQ((*r)[3].key, "dry-run");
  EXPECT_EQ((*r)[3].value, "false");
  EXPECT_EQ((*r)[4].value, "1073741824");
  EXPECT_FALSE((*r)[4].is_bool);
}

TEST(ParseConfigText, EmptyObjectIsValid) {
  auto r = parse_config_text("{}", "e.json");
  ASSERT_THAT(r.status(), IsOk());
  EXPECT_TRUE(r->empty());
}

TEST(ParseConfigText, RejectsWhatIsNotAFlatObject) {
  EXPECT_THAT(parse_config_text(R"(["format", "torch"])", "a.json").status(),
              StatusIs(StatusCode::kInvalidArgument, HasSubstr("'a.json': expected a JSON object")));
  EXPECT_THAT(parse_config_text(R"({"format": ["torch"]})", "n.json").status(),
              StatusIs(StatusCode::kInvalidArgument, HasSubstr("key 'format': expected a string, number or boolean, got array")));
  EXPECT_THAT(parse_config_text(R"({"tag": null})", "n.json").status(),
              StatusIs(StatusCode::kInvalidArgument, HasSubstr("got null")));
  // 15 bytes in, the second key has no value.
  EXPECT_THAT(parse_config_text(R"({"dtype": "bf16", "x"})", "bad.json").status(),
              StatusIs(StatusCode::kInvalidArgument, HasSubstr("'bad.json': not valid JSON at byte")));
}

TEST(ParseConfigText, RejectsAKeyGivenTwiceInEitherSpelling) {
  // nlohmann would keep the last value silently; a preset with two values for one flag is a mistake.
  EXPECT_THAT(parse_config_text(R"({"dtype": "bf16", "dtype": "fp16"})", "d.json").status(),
              StatusIs(StatusCode::kInvalidArgument, HasSubstr("key 'dtype' is given more than once")));
  EXPECT_THAT(parse_config_text(R"({"max_shard_size": "1GB", "max-shard-size": "2GB"})", "d.json").status(),
              StatusIs(StatusCode::kInvalidArgument, HasSubstr("key 'max-shard-size' is given more than once")));
}

// ------------------------------------------------------------------------------------ hints

TEST(ClosestConfigKey, SuggestsNearKeysOnly) {
  std::vector<std::string> keys = {"dtype", "format", "max_memory", "max_shard_size", "tag"};
  EXPECT_EQ(closest_config_key("max_shrd_size", keys), "max_shard_size");  // one deletion
  EXPECT_EQ(closest_config_key("max-shard-sise", keys), "max_shard_size");  // dashes + one substitution
  EXPECT_EQ(closest_config_key("fromat", keys), "format");                  // transposition = 2 edits
  EXPECT_EQ(closest_config_key("DTYPE", keys), "dtype");                    // case
  EXPECT_EQ(closest_config_key("max_mem", keys), "max_memory");             // 3 edits, but the only key it starts
  EXPECT_EQ(closest_config_key("max_", keys), "");                          // starts two keys
  EXPECT_EQ(closest_config_key("max_memroy_limit", keys), "");              // 8 edits from max_memory
  EXPECT_EQ(closest_config_key("world_size", keys), "");                    // nothing near
  EXPECT_EQ(closest_config_key("x", {}), "");
}

TEST(CanonicalConfigKey, DashesBecomeUnderscores) {
  EXPECT_EQ(canonical_config_key("max-shard-size"), "max_shard_size");
  EXPECT_EQ(canonical_config_key("max_shard_size"), "max_shard_size");
}

// ------------------------------------------------------------------------- merge with CLI11

class ConfigMerge : public ::testing::Test {
 protected:
  std::string write(const std::string& name, const std::string& text) {
    std::string path = (dir_ / name).string();
    std::ofstream(path) << text;
    return path;
  }

  // Parses `args` (after the program name) the way run_main does: CLI11 first, then the config.
  base::Status parse(std::vector<std::string> args) {
    app_ = std::make_unique<CLI::App>("test");
    opts_ = ToFp32Options{};
    cmd_ = add_to_fp32_command(*app_, opts_);
    uni_ = add_to_universal_command(*app_, uni_opts_);
    std::reverse(args.begin(), args.end());  // CLI11's vector form takes the arguments reversed
    app_->parse(args);
    for (CLI::App* sub : app_->get_subcommands()) UCP_RETURN_IF_ERROR(apply_config_file(*sub));
    return {};
  }

  testutil::TempDir dir_;
  std::unique_ptr<CLI::App> app_;
  CLI::App* cmd_ = nullptr;
  CLI::App* uni_ = nullptr;
  ToFp32Options opts_;
  ToUniversalOptions uni_opts_;
};

TEST_F(ConfigMerge, KeysAreTheLongFlagNamesOfTheCommand) {
  app_ = std::make_unique<CLI::App>("test");
  cmd_ = add_to_fp32_command(*app_, opts_);
  uni_ = add_to_universal_command(*app_, uni_opts_);
  EXPECT_THAT(config_keys(*cmd_),
              ElementsAre("dry_run", "dtype", "exclude_frozen", "format", "hf_config", "key_map", "max_memory", "max_shard_size",
                          "model_config", "no_progress", "no_sync", "overwrite", "progress", "restart", "select", "shared_output", "tag",
                          "timings", "transport", "with_optimizer"));
  EXPECT_THAT(config_keys(*uni_), ElementsAre("dry_run", "max_memory", "no_progress", "no_sync", "overwrite", "progress", "restart",
                                              "shared_output",
                                              "tag", "timings", "transport"));
}

TEST_F(ConfigMerge, PresetFillsUnsetOptions) {
  std::string cfg = write("p.json", R"({"format": "torch", "max_shard_size": "2GB", "dtype": "bf16",
                                        "exclude-frozen": true, "max_memory": "64MiB", "timings": true})");
  ASSERT_THAT(parse({"to-fp32", "ck", "out", "--config", cfg}), IsOk());
  EXPECT_EQ(opts_.checkpoint, "ck");
  EXPECT_EQ(opts_.out, "out");
  EXPECT_EQ(opts_.format, "torch");
  EXPECT_EQ(opts_.max_shard_size, "2GB");
  EXPECT_EQ(opts_.dtype, "bf16");
  EXPECT_TRUE(opts_.exclude_frozen);
  EXPECT_EQ(opts_.max_memory, "64MiB");
  EXPECT_TRUE(opts_.timings);
  EXPECT_FALSE(opts_.overwrite);
  EXPECT_EQ(opts_.tag, "");
}

TEST_F(ConfigMerge, CommandLineFlagsWinWhereverTheyAppear) {
  std::string cfg = write("p.json", R"({"format": "torch", "dtype": "bf16", "max_shard_size": "2GB"})");
  // Flags before and after --config both override the file; keys not on the command line still apply.
  ASSERT_THAT(parse({"to-fp32", "ck", "out", "--dtype", "fp16", "--config=" + cfg, "--format", "safetensors"}), IsOk());
  EXPECT_EQ(opts_.dtype, "fp16");
  EXPECT_EQ(opts_.format, "safetensors");
  EXPECT_EQ(opts_.max_shard_size, "2GB");
}

TEST_F(ConfigMerge, SwitchesAndTheirNegations) {
  std::string on = write("on.json", R"({"progress": true})");
  ASSERT_THAT(parse({"to-fp32", "ck", "out", "--config", on}), IsOk());
  EXPECT_TRUE(opts_.progress);
  std::string negated = write("neg.json", R"({"no_progress": true})");
  ASSERT_THAT(parse({"to-fp32", "ck", "out", "--config", negated, "--progress"}), IsOk());
  EXPECT_TRUE(opts_.progress);  // the command line wins over the file's no_progress
  ASSERT_THAT(parse({"to-fp32", "ck", "out", "--config", negated}), IsOk());
  EXPECT_FALSE(opts_.progress);
  std::string off = write("off.json", R"({"overwrite": false})");
  ASSERT_THAT(parse({"to-fp32", "ck", "out", "--config", off, "--overwrite"}), IsOk());
  EXPECT_TRUE(opts_.overwrite);
  std::string both = write("both.json", R"({"progress": true, "no-progress": true})");
  EXPECT_THAT(parse({"to-fp32", "ck", "out", "--config", both}),
              StatusIs(StatusCode::kInvalidArgument, HasSubstr("keys 'progress' and 'no-progress' set the same option")));
}

TEST_F(ConfigMerge, UnknownKeyIsAUsageErrorWithAHintAndTheValidKeys) {
  std::string cfg = write("typo.json", R"({"format": "torch", "max_shrd_size": "2GB"})");
  base::Status s = parse({"to-fp32", "ck", "out", "--config", cfg});
  EXPECT_THAT(s, StatusIs(StatusCode::kInvalidArgument,
                          HasSubstr("unknown key 'max_shrd_size' for 'to-fp32'; did you mean 'max_shard_size'? Valid "
                                    "keys: dry_run, dtype, exclude_frozen, format, hf_config, key_map, max_memory, max_shard_size")));
  EXPECT_EQ(s.exit_code(), 2);
  EXPECT_EQ(s.message().find('\n'), std::string::npos) << "one line";
  EXPECT_EQ(opts_.format, "safetensors") << "a bad file changes nothing";
  // A to-fp32 key is unknown to to-universal.
  std::string fp32_only = write("f.json", R"({"dtype": "bf16"})");
  EXPECT_THAT(parse({"to-universal", "ck", "out", "--config", fp32_only}),
              StatusIs(StatusCode::kInvalidArgument, HasSubstr("unknown key 'dtype' for 'to-universal'")));
  // Positional arguments and --config itself are not keys.
  std::string positional = write("pos.json", R"({"checkpoint": "x"})");
  EXPECT_THAT(parse({"to-fp32", "ck", "out", "--config", positional}),
              StatusIs(StatusCode::kInvalidArgument, HasSubstr("unknown key 'checkpoint'")));
}

TEST_F(ConfigMerge, ValuesGoThroughTheOptionsOwnChecks) {
  std::string cfg = write("v.json", R"({"format": "xml"})");
  EXPECT_THAT(parse({"to-fp32", "ck", "out", "--config", cfg}),
              StatusIs(StatusCode::kInvalidArgument, HasSubstr("key 'format': --format: xml not in {safetensors,torch,hdf5,lightning}")));
  std::string sw = write("s.json", R"({"overwrite": "yes"})");
  EXPECT_THAT(parse({"to-fp32", "ck", "out", "--config", sw}),
              StatusIs(StatusCode::kInvalidArgument, HasSubstr("key 'overwrite' is a switch: expected true or false")));
  std::string val = write("b.json", R"({"dtype": true})");
  EXPECT_THAT(parse({"to-fp32", "ck", "out", "--config", val}),
              StatusIs(StatusCode::kInvalidArgument, HasSubstr("key 'dtype' takes a value")));
}

TEST_F(ConfigMerge, MissingFileIsNotFound) {
  EXPECT_THAT(parse({"to-fp32", "ck", "out", "--config", (dir_ / "nope.json").string()}),
              StatusIs(StatusCode::kNotFound, HasSubstr("nope.json': cannot open config file")));
}

TEST_F(ConfigMerge, ShippedPresetsParseForTheirCommand) {
  // configs/*.json are to-fp32 presets; each must be accepted as is.
  for (const char* name : {"hf-safetensors.json", "hf-bin-2gb.json", "bf16-export.json"}) {
    std::string path = std::string(UCP_GOLDEN_DIR) + "/../../configs/" + name;
    EXPECT_THAT(parse({"to-fp32", "ck", "out", "--config", path}), IsOk()) << name;
  }
  ASSERT_THAT(parse({"to-fp32", "ck", "out", "--config", std::string(UCP_GOLDEN_DIR) + "/../../configs/hf-bin-2gb.json"}), IsOk());
  EXPECT_EQ(opts_.format, "torch");
  EXPECT_EQ(opts_.max_shard_size, "2GB");
}

}  // namespace
}  // namespace ucp::cli
