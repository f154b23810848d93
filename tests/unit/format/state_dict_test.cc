// format::StateDict against independent expectations: the names, dtypes, shapes and byte CRCs of the
// DeepSpeed fixtures' state dicts as torch.load sees them (values below printed by Python with
// torch 1.13 and zlib.crc32), then the same tensors rewritten as safetensors files, sharded
// directories and torch files in every layout open() accepts, each of which must read back equal.
#include "ucp/format/state_dict.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "testutil/golden.h"
#include "testutil/status_matchers.h"
#include "testutil/temp_dir.h"
#include "ucp/format/crc32.h"
#include "ucp/format/safetensors.h"
#include "ucp/format/torch_file.h"
#include "ucp/format/value.h"

namespace ucp::format {
namespace {

using base::DType;
using base::StatusCode;
using ::testing::AllOf;
using ::testing::HasSubstr;
using testutil::IsOk;
using testutil::StatusIs;
namespace fs = std::filesystem;

struct Expected {
  const char* name;
  DType dtype;
  std::vector<std::int64_t> shape;
  std::uint32_t crc;
};

// torch.load('mlp_z2_fp32_ws1/fp32_reference.pt'), in dict order.
const std::vector<Expected> kFp32Reference = {
    {"running_mean", DType::kF32, {5}, 0xcab5a99a},     {"calls", DType::kF32, {}, 0xa7e1d189},
    {"frozen.weight", DType::kF32, {17, 13}, 0xa3d08a9b}, {"frozen.bias", DType::kF32, {17}, 0x35231d95},
    {"scale", DType::kF32, {1, 1}, 0x2ab74fd6},         {"gain", DType::kF32, {17}, 0x1e07d3e9},
    {"fc1.weight", DType::kF32, {7, 13}, 0x23748795},   {"fc1.bias", DType::kF32, {7}, 0x329d404e},
    {"fc2.weight", DType::kF32, {17, 7}, 0x582651eb},   {"fc2.bias", DType::kF32, {17}, 0xbcc6b14a},
    {"out.weight", DType::kF32, {13, 17}, 0x33417c93},  {"out.bias", DType::kF32, {13}, 0x5765026d},
    {"head.weight", DType::kF32, {7, 13}, 0x23748795},
};

// torch.load('mlp_z2_bf16_ws1/checkpoint/global_step3/mp_rank_00_model_states.pt')['module'].
const std::vector<Expected> kBf16Module = {
    {"scale", DType::kBF16, {1, 1}, 0x5cdd64e1},        {"gain", DType::kBF16, {17}, 0x204be6fd},
    {"running_mean", DType::kBF16, {5}, 0xe6bd46a9},    {"calls", DType::kI64, {}, 0xebadd88a},
    {"fc1.weight", DType::kBF16, {7, 13}, 0x6342ee20},  {"fc1.bias", DType::kBF16, {7}, 0x74ba2694},
    {"fc2.weight", DType::kBF16, {17, 7}, 0x4c095eab},  {"fc2.bias", DType::kBF16, {17}, 0x557b292a},
    {"frozen.weight", DType::kBF16, {17, 13}, 0x3c53de36}, {"frozen.bias", DType::kBF16, {17}, 0x3289a5f5},
    {"out.weight", DType::kBF16, {13, 17}, 0x73f28bfb}, {"out.bias", DType::kBF16, {13}, 0x7a888a8f},
    {"head.weight", DType::kBF16, {7, 13}, 0x6342ee20},
};

std::string fp32_reference(const std::string& config) {
  return testutil::deepspeed_fixture(config) + "/fp32_reference.pt";
}

void expect_matches(const StateDict& sd, const std::vector<Expected>& expected) {
  ASSERT_EQ(sd.size(), expected.size());
  for (std::size_t i = 0; i < expected.size(); ++i) {
    const StateDictTensor& t = sd.tensors()[i];
    SCOPED_TRACE(expected[i].name);
    EXPECT_EQ(t.name, expected[i].name);
    EXPECT_EQ(t.dtype, expected[i].dtype);
    EXPECT_EQ(t.shape, expected[i].shape);
    EXPECT_EQ(crc32_update(0, t.bytes), expected[i].crc);
    EXPECT_EQ(sd.find(expected[i].name), &t);
  }
}

/// Same names (any order), dtypes, shapes and bytes.
void expect_same_tensors(const StateDict& got, const StateDict& want) {
  ASSERT_EQ(got.size(), want.size());
  for (const StateDictTensor& w : want.tensors()) {
    const StateDictTensor* g = got.find(w.name);
    ASSERT_NE(g, nullptr) << w.name;
    EXPECT_EQ(g->dtype, w.dtype) << w.name;
    EXPECT_EQ(g->shape, w.shape) << w.name;
    ASSERT_EQ(g->bytes.size(), w.bytes.size()) << w.name;
    EXPECT_EQ(std::memcmp(g->bytes.data(), w.bytes.data(), w.bytes.size()), 0) << w.name;
  }
}

std::vector<SafetensorsBlob> blobs_of(const StateDict& sd, const std::vector<std::string>& names) {
  std::vector<SafetensorsBlob> out;
  for (const std::string& n : names) {
    const StateDictTensor* t = sd.find(n);
    EXPECT_NE(t, nullptr) << n;
    if (t) out.push_back({{t->name, t->dtype, t->shape}, t->bytes});
  }
  return out;
}

std::vector<std::string> names_of(const StateDict& sd) {
  std::vector<std::string> out;
  for (const StateDictTensor& t : sd.tensors()) out.push_back(t.name);
  return out;
}

void write_text(const fs::path& p, const std::string& text) {
  std::ofstream f(p, std::ios::binary);
  f << text;
}

/// A torch tensor value holding a copy of `t`.
ValuePtr tensor_value_of(const StateDictTensor& t) {
  std::vector<std::byte> data(t.bytes.begin(), t.bytes.end());
  return Value::tensor_value(Tensor::from_bytes(t.dtype, t.shape, std::move(data)));
}

ValuePtr torch_dict_of(const StateDict& sd, const std::vector<std::string>& names) {
  auto d = Value::dict({}, /*ordered=*/true);
  for (const std::string& n : names) d->set(n, tensor_value_of(*sd.find(n)));
  return d;
}

class StateDictTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto r = StateDict::open(fp32_reference("mlp_z2_fp32_ws1"));
    ASSERT_THAT(r, IsOk());
    reference_ = std::make_unique<StateDict>(std::move(r).value());
  }
  const StateDict& reference() const { return *reference_; }

  testutil::TempDir tmp_;
  std::unique_ptr<StateDict> reference_;
};

TEST_F(StateDictTest, ReadsZeroToFp32OutputLikeTorchLoad) {
  expect_matches(reference(), kFp32Reference);
  EXPECT_EQ(reference().format(), "torch");
  EXPECT_EQ(reference().skipped_non_tensors(), 0u);
  EXPECT_TRUE(reference().notes().empty());
  EXPECT_EQ(reference().files(), std::vector<std::string>{fp32_reference("mlp_z2_fp32_ws1")});
  EXPECT_EQ(reference().tensors()[0].source_file, fp32_reference("mlp_z2_fp32_ws1"));
  EXPECT_EQ(reference().find("no.such.tensor"), nullptr);
}

TEST_F(StateDictTest, OpensEveryFixtureReference) {
  int opened = 0;
  for (const std::string& config : testutil::deepspeed_fixture_names()) {
    const std::string path = fp32_reference(config);
    if (!fs::exists(path)) continue;  // zero_to_fp32 fails on BF16_Optimizer checkpoints
    auto sd = StateDict::open(path);
    ASSERT_THAT(sd, IsOk()) << path;
    EXPECT_GT(sd->size(), 0u) << path;
    for (const StateDictTensor& t : sd->tensors()) {
      std::uint64_t numel = 1;
      for (std::int64_t d : t.shape) numel *= static_cast<std::uint64_t>(d);
      EXPECT_EQ(t.bytes.size(), numel * base::dtype_size(t.dtype)) << path << " " << t.name;
    }
    ++opened;
  }
  EXPECT_GE(opened, 40);
}

TEST_F(StateDictTest, UsesTheModuleEntryOfADeepSpeedModelStatesFile) {
  const std::string path =
      testutil::deepspeed_fixture("mlp_z2_bf16_ws1") + "/checkpoint/global_step3/mp_rank_00_model_states.pt";
  auto sd = StateDict::open(path);
  ASSERT_THAT(sd, IsOk());
  expect_matches(*sd, kBf16Module);
  ASSERT_EQ(sd->notes().size(), 1u);
  EXPECT_THAT(sd->notes()[0], HasSubstr("'module'"));
}

TEST_F(StateDictTest, SafetensorsFileAndDirectoryAgreeWithTorch) {
  const fs::path file = tmp_ / "weights.safetensors";
  ASSERT_THAT(write_safetensors_file(file.string(), blobs_of(reference(), names_of(reference()))), IsOk());
  auto sd = StateDict::open(file.string());
  ASSERT_THAT(sd, IsOk());
  expect_same_tensors(*sd, reference());
  EXPECT_EQ(sd->format(), "safetensors");
  EXPECT_EQ(sd->tensors()[0].source_file, file.string());

  fs::create_directory(tmp_ / "model");
  fs::copy_file(file, tmp_ / "model" / "model.safetensors");
  auto dir = StateDict::open((tmp_ / "model").string());
  ASSERT_THAT(dir, IsOk());
  expect_same_tensors(*dir, reference());
  // Same order as the file (the writer's order, not torch's).
  EXPECT_EQ(names_of(*dir), names_of(*sd));
}

// Two shards; the index lists names in its own order, which open() keeps.
void write_sharded(const StateDict& ref, const fs::path& dir, const std::string& ext, bool torch) {
  fs::create_directories(dir);
  std::vector<std::string> names = names_of(ref);
  std::vector<std::string> first(names.begin(), names.begin() + 5), second(names.begin() + 5, names.end());
  const std::string s1 = "model-00001-of-00002" + ext, s2 = "model-00002-of-00002" + ext;
  if (torch) {
    ASSERT_THAT(write_torch_file((dir / s1).string(), torch_dict_of(ref, first)), IsOk());
    ASSERT_THAT(write_torch_file((dir / s2).string(), torch_dict_of(ref, second)), IsOk());
  } else {
    ASSERT_THAT(write_safetensors_file((dir / s1).string(), blobs_of(ref, first)), IsOk());
    ASSERT_THAT(write_safetensors_file((dir / s2).string(), blobs_of(ref, second)), IsOk());
  }
  // Reverse order in the weight map, to see that it is the map's order that counts.
  std::string map;
  for (std::size_t i = names.size(); i-- > 0;) {
    map += std::string(map.empty() ? "" : ",") + "\"" + names[i] + "\": \"" + (i < 5 ? s1 : s2) + "\"";
  }
  const std::string index = torch ? "pytorch_model.bin.index.json" : "model.safetensors.index.json";
  write_text(dir / index, "{\"metadata\": {\"total_size\": 1}, \"weight_map\": {" + map + "}}");
}

TEST_F(StateDictTest, ShardedSafetensorsDirectory) {
  const fs::path dir = tmp_ / "sharded";
  write_sharded(reference(), dir, ".safetensors", false);
  auto sd = StateDict::open(dir.string());
  ASSERT_THAT(sd, IsOk());
  expect_same_tensors(*sd, reference());
  EXPECT_EQ(sd->format(), "safetensors index (2 shards)");
  std::vector<std::string> reversed = names_of(reference());
  std::reverse(reversed.begin(), reversed.end());
  EXPECT_EQ(names_of(*sd), reversed);
  // The first name of the map lives in shard 2, so shard 2 is opened first; each shard once.
  EXPECT_EQ(sd->files(), (std::vector<std::string>{(dir / "model-00002-of-00002.safetensors").string(),
                                                   (dir / "model-00001-of-00002.safetensors").string()}));
  EXPECT_EQ(sd->find("running_mean")->source_file, (dir / "model-00001-of-00002.safetensors").string());
  // The index file itself is accepted too.
  auto via_index = StateDict::open((dir / "model.safetensors.index.json").string());
  ASSERT_THAT(via_index, IsOk());
  EXPECT_EQ(names_of(*via_index), reversed);
}

TEST_F(StateDictTest, ShardedTorchDirectoryAndSingleBin) {
  const fs::path dir = tmp_ / "bin_sharded";
  write_sharded(reference(), dir, ".bin", true);
  auto sd = StateDict::open(dir.string());
  ASSERT_THAT(sd, IsOk());
  expect_same_tensors(*sd, reference());
  EXPECT_EQ(sd->format(), "torch index (2 shards)");

  const fs::path single = tmp_ / "bin_single";
  fs::create_directory(single);
  fs::copy_file(fp32_reference("mlp_z2_fp32_ws1"), single / "pytorch_model.bin");
  auto one = StateDict::open(single.string());
  ASSERT_THAT(one, IsOk());
  expect_matches(*one, kFp32Reference);
}

TEST_F(StateDictTest, IndexNamingATensorItsShardLacksIsDataLossNamingTheShard) {
  const fs::path dir = tmp_ / "corrupt";
  write_sharded(reference(), dir, ".safetensors", false);
  // Move one name to the wrong shard.
  write_text(dir / "model.safetensors.index.json",
             "{\"weight_map\": {\"running_mean\": \"model-00001-of-00002.safetensors\", "
             "\"fc1.weight\": \"model-00001-of-00002.safetensors\"}}");
  EXPECT_THAT(StateDict::open(dir.string()),
              StatusIs(StatusCode::kDataLoss, AllOf(HasSubstr("model-00001-of-00002.safetensors"),
                                                    HasSubstr("'fc1.weight'"))));
}

TEST_F(StateDictTest, IndexEntriesAreValidated) {
  const fs::path dir = tmp_ / "bad_index";
  write_sharded(reference(), dir, ".safetensors", false);
  const fs::path index = dir / "model.safetensors.index.json";
  write_text(index, "{\"weight_map\": {\"running_mean\": \"../model-00001-of-00002.safetensors\"}}");
  EXPECT_THAT(StateDict::open(dir.string()), StatusIs(StatusCode::kDataLoss, HasSubstr("../model-00001")));
  write_text(index, "{\"weight_map\": {\"running_mean\": \"/etc/passwd\"}}");
  EXPECT_THAT(StateDict::open(dir.string()), StatusIs(StatusCode::kDataLoss, HasSubstr("/etc/passwd")));
  write_text(index, "{\"weight_map\": {\"running_mean\": 3}}");
  EXPECT_THAT(StateDict::open(dir.string()), StatusIs(StatusCode::kDataLoss, HasSubstr("running_mean")));
  write_text(index, "{\"weight_map\": ");
  EXPECT_THAT(StateDict::open(dir.string()), StatusIs(StatusCode::kDataLoss, HasSubstr("not valid JSON")));
  write_text(index, "{\"metadata\": {}}");
  EXPECT_THAT(StateDict::open(dir.string()), StatusIs(StatusCode::kDataLoss, HasSubstr("weight_map")));
  write_text(index, "{\"weight_map\": {\"running_mean\": \"missing.safetensors\"}}");
  EXPECT_THAT(StateDict::open(dir.string()), StatusIs(StatusCode::kNotFound, HasSubstr("missing.safetensors")));
  // Tensors in a shard that the map does not list are left out, and said so.
  write_text(index, "{\"weight_map\": {\"running_mean\": \"model-00001-of-00002.safetensors\"}}");
  auto sd = StateDict::open(dir.string());
  ASSERT_THAT(sd, IsOk());
  EXPECT_EQ(names_of(*sd), std::vector<std::string>{"running_mean"});
  ASSERT_EQ(sd->notes().size(), 1u);
  EXPECT_THAT(sd->notes()[0], HasSubstr("ignored 4 tensors"));
}

TEST_F(StateDictTest, NestedStateDictAndNonTensorValues) {
  const fs::path nested = tmp_ / "trainer.pt";
  auto root = Value::dict();
  root->set("epoch", Value::integer(3));
  root->set("state_dict", torch_dict_of(reference(), {"fc1.weight", "fc1.bias"}));
  root->set("optimizer", Value::dict());
  ASSERT_THAT(write_torch_file(nested.string(), root), IsOk());
  auto sd = StateDict::open(nested.string());
  ASSERT_THAT(sd, IsOk());
  EXPECT_EQ(names_of(*sd), (std::vector<std::string>{"fc1.weight", "fc1.bias"}));
  ASSERT_EQ(sd->notes().size(), 1u);
  EXPECT_THAT(sd->notes()[0], AllOf(HasSubstr("'state_dict'"), HasSubstr("2 other top-level entries")));

  // Tensors at the top level win: the nested dict is then just another non-tensor value.
  const fs::path mixed = tmp_ / "mixed.pt";
  auto top = torch_dict_of(reference(), {"scale"});
  top->set("step", Value::integer(7));
  top->set("config", Value::string("x"));
  top->set("state_dict", torch_dict_of(reference(), {"gain"}));
  ASSERT_THAT(write_torch_file(mixed.string(), top), IsOk());
  auto m = StateDict::open(mixed.string());
  ASSERT_THAT(m, IsOk());
  EXPECT_EQ(names_of(*m), std::vector<std::string>{"scale"});
  EXPECT_EQ(m->skipped_non_tensors(), 3u);
  ASSERT_EQ(m->notes().size(), 1u);
  EXPECT_THAT(m->notes()[0], HasSubstr("skipped 3 non-tensor values"));
}

// file_offset names where a tensor's bytes lie in its file: the bytes at that offset of the file
// read on its own are the tensor's.
void expect_file_offsets_point_at_the_bytes(const StateDict& sd) {
  for (const StateDictTensor& t : sd.tensors()) {
    ASSERT_TRUE(t.file_offset.has_value()) << t.name;
    std::ifstream f(t.source_file, std::ios::binary);
    f.seekg(static_cast<std::streamoff>(*t.file_offset));
    std::vector<char> buf(t.bytes.size());
    f.read(buf.data(), static_cast<std::streamsize>(buf.size()));
    ASSERT_TRUE(f) << t.name;
    EXPECT_EQ(std::memcmp(buf.data(), t.bytes.data(), buf.size()), 0) << t.name;
  }
}

TEST_F(StateDictTest, FileOffsetsOfSafetensorsAndTorchTensors) {
  const auto names = names_of(reference());
  const fs::path st = tmp_ / "m.safetensors", pt = tmp_ / "m.pt";
  ASSERT_THAT(write_safetensors_file(st.string(), blobs_of(reference(), names)), IsOk());
  ASSERT_THAT(write_torch_file(pt.string(), torch_dict_of(reference(), names)), IsOk());
  for (const fs::path& p : {st, pt}) {
    auto sd = StateDict::open(p.string());
    ASSERT_THAT(sd, IsOk());
    expect_file_offsets_point_at_the_bytes(*sd);
  }
}

TEST_F(StateDictTest, FlattenNestedNamesTensorsAsDcpDoes) {
  const fs::path path = tmp_ / "consolidated.pth";
  auto inner = Value::dict();
  inner->entries.emplace_back(Value::integer(0),  // optimizer states are keyed by parameter index
                              Value::dict({{Value::string("exp_avg"), tensor_value_of(*reference().find("gain"))}}));
  auto optim = Value::dict();
  optim->set("state", inner);
  optim->set("param_groups", Value::list({Value::dict({{Value::string("lr"), Value::floating(0.1)}})}));
  auto root = Value::dict();
  root->set("model", torch_dict_of(reference(), {"fc1.weight", "scale"}));
  root->set("optim", optim);
  root->set("pair", Value::tuple({tensor_value_of(*reference().find("scale"))}));  // a leaf, as for DCP
  root->set("list", Value::list({tensor_value_of(*reference().find("scale"))}));
  ASSERT_THAT(write_torch_file(path.string(), root), IsOk());
  StateDictOptions options;
  options.flatten_nested = true;
  auto sd = StateDict::open(path.string(), options);
  ASSERT_THAT(sd, IsOk());
  EXPECT_EQ(names_of(*sd), (std::vector<std::string>{"model.fc1.weight", "model.scale", "optim.state.0.exp_avg", "list.0"}));
  EXPECT_EQ(sd->skipped_non_tensors(), 2u);  // lr, the tuple
  expect_file_offsets_point_at_the_bytes(*sd);
  // Without the option (diff), a nested state with no tensor at its top level is flattened the
  // same way (dcp_to_torch_save's output compares with the DCP it came from).
  auto plain = StateDict::open(path.string());
  ASSERT_THAT(plain, IsOk());
  EXPECT_EQ(names_of(*plain), names_of(*sd));
}

TEST_F(StateDictTest, NonContiguousTorchViewsAreMaterialisedRowMajor) {
  // Storage [0 1 2 3 4 5] viewed as the transpose of a 2x3 matrix: shape [3, 2], stride [1, 3].
  std::vector<float> storage = {0, 1, 2, 3, 4, 5};
  std::vector<std::byte> bytes(sizeof(float) * storage.size());
  std::memcpy(bytes.data(), storage.data(), bytes.size());
  Tensor t;
  t.storage = Storage::owning(DType::kF32, std::move(bytes));
  t.shape = {3, 2};
  t.stride = {1, 3};
  auto root = Value::dict();
  root->set("t", Value::tensor_value(t));
  const fs::path path = tmp_ / "strided.pt";
  ASSERT_THAT(write_torch_file(path.string(), root), IsOk());
  auto sd = StateDict::open(path.string());
  ASSERT_THAT(sd, IsOk());
  ASSERT_EQ(sd->size(), 1u);
  const StateDictTensor& got = sd->tensors()[0];
  EXPECT_EQ(got.shape, (std::vector<std::int64_t>{3, 2}));
  ASSERT_EQ(got.bytes.size(), 6 * sizeof(float));
  std::vector<float> values(6);
  std::memcpy(values.data(), got.bytes.data(), got.bytes.size());
  EXPECT_EQ(values, (std::vector<float>{0, 3, 1, 4, 2, 5}));
  EXPECT_FALSE(got.file_offset.has_value());  // a copy: no run of the file holds it
}

TEST_F(StateDictTest, HugeBroadcastViewIsRefused) {
  std::vector<std::byte> bytes(sizeof(float));
  Tensor t;
  t.storage = Storage::owning(DType::kF32, std::move(bytes));
  t.shape = {std::int64_t{1} << 28};
  t.stride = {0};
  auto root = Value::dict();
  root->set("expanded", Value::tensor_value(t));
  const fs::path path = tmp_ / "expanded.pt";
  ASSERT_THAT(write_torch_file(path.string(), root), IsOk());
  EXPECT_THAT(StateDict::open(path.string()),
              StatusIs(StatusCode::kResourceExhausted, AllOf(HasSubstr("'expanded'"), HasSubstr("broadcast"))));
}

TEST_F(StateDictTest, Errors) {
  EXPECT_THAT(StateDict::open((tmp_ / "nope.safetensors").string()), StatusIs(StatusCode::kNotFound, HasSubstr("nope")));
  fs::create_directory(tmp_ / "empty");
  EXPECT_THAT(StateDict::open((tmp_ / "empty").string()),
              StatusIs(StatusCode::kNotFound, HasSubstr("model.safetensors")));
  write_text(tmp_ / "weights.h5", "\x89HDF\r\n\x1a\n");
  EXPECT_THAT(StateDict::open((tmp_ / "weights.h5").string()), StatusIs(StatusCode::kUnimplemented, HasSubstr("HDF5")));
  // HDF5 recognised by its signature whatever the name.
  write_text(tmp_ / "weights.data", std::string("\x89HDF\r\n\x1a\n", 8) + "rest");
  EXPECT_THAT(StateDict::open((tmp_ / "weights.data").string()), StatusIs(StatusCode::kUnimplemented, HasSubstr("HDF5")));
  // A torch file whose top level is not a dict.
  ASSERT_THAT(write_torch_file((tmp_ / "list.pt").string(), Value::list({Value::integer(1)})), IsOk());
  EXPECT_THAT(StateDict::open((tmp_ / "list.pt").string()),
              StatusIs(StatusCode::kDataLoss, AllOf(HasSubstr("list.pt"), HasSubstr("expected a dict"))));
  // A zip that is not a torch file, under a neutral name, is read as torch (by its signature) and fails as such.
  write_text(tmp_ / "garbage.bin", "not a zip at all");
  EXPECT_THAT(StateDict::open((tmp_ / "garbage.bin").string()), StatusIs(StatusCode::kDataLoss, HasSubstr("garbage.bin")));
}

}  // namespace
}  // namespace ucp::format
