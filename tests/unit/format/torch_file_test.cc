// torch.save files: every fixture written by torch 1.13 / DeepSpeed 0.14.5 is read, re-encoded
// (byte-identical data.pkl at protocol 2, equal values at protocol 4) and, for the non-trivial
// ones, re-written as files and read back; DeepSpeed's objects look as torch.load shows them
// (values quoted below were printed by torch.load with stub DeepSpeed classes); broken files fail
// with messages naming the file.
#include "ucp/format/torch_file.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>

#include <unistd.h>

#include "testutil/golden.h"
#include "testutil/status_matchers.h"
#include "ucp/format/zip_writer.h"
#include "unit/format/pickle_test_vectors.h"

namespace ucp::format {
namespace {

namespace fs = std::filesystem;
using base::DType;
using base::StatusCode;
using testing::HasSubstr;
using testutil::IsOk;
using testutil::StatusIs;
using Kind = Value::Kind;

class TempDir {
 public:
  TempDir() {
    path_ = fs::temp_directory_path() / ("ucp_torch_file_test_" + std::to_string(::getpid()) + "_" +
                                         std::to_string(reinterpret_cast<std::uintptr_t>(this)));
    fs::create_directories(path_);
  }
  ~TempDir() { fs::remove_all(path_); }
  std::string file(const std::string& name) const { return (path_ / name).string(); }

 private:
  fs::path path_;
};

std::string as_string(std::span<const std::byte> b) { return std::string(reinterpret_cast<const char*>(b.data()), b.size()); }

// Pickles `root` the way write_torch_file does (keys "0", "1", ... in order) and remembers the
// storages, so the pickle can be decoded again without a file.
struct InMemory {
  std::vector<std::shared_ptr<Storage>> storages;
  base::Result<std::vector<std::byte>> write(const ValuePtr& root, int protocol) {
    PickleWriteOptions o;
    o.protocol = protocol;
    return write_pickle(root, [this](const std::shared_ptr<Storage>& s) {
      storages.push_back(s);
      return std::to_string(storages.size() - 1);
    }, o);
  }
  base::Result<ValuePtr> read(std::span<const std::byte> pickle) {
    std::map<std::string, ValuePtr> by_key;
    return read_pickle(pickle, [&](const ValuePtr& pid) -> base::Result<ValuePtr> {
      auto& v = by_key[pid->items[2]->str];
      if (!v) {
        v = std::make_shared<Value>();
        v->kind = Kind::kStorage;
        v->storage = storages.at(std::stoul(pid->items[2]->str));
      }
      return v;
    });
  }
};

TEST(TorchFile, EveryFixtureReadsAndReencodesExactly) {
  const auto files = testutil::all_golden_pt_files();
  ASSERT_GT(files.size(), 1000u);
  for (const std::string& path : files) {
    SCOPED_TRACE(path);
    auto f = TorchFile::open(path);
    ASSERT_THAT(f, IsOk());
    EXPECT_EQ(f->archive_name(), fs::path(path).stem().string());
    const ZipRecord* pkl = f->zip().find(f->archive_name() + "/data.pkl");
    ASSERT_NE(pkl, nullptr);
    // Protocol 2 as torch.save wrote it: the very same bytes.
    InMemory p2;
    auto bytes = p2.write(f->root(), 2);
    ASSERT_THAT(bytes, IsOk());
    ASSERT_EQ(as_string(*bytes), as_string(f->zip().view(*pkl)));
    // Protocol 4: the same value.
    InMemory p4;
    auto bytes4 = p4.write(f->root(), 4);
    ASSERT_THAT(bytes4, IsOk());
    auto back = p4.read(*bytes4);
    ASSERT_THAT(back, IsOk());
    ASSERT_EQ(first_difference(f->root(), *back), "");
  }
}

TEST(TorchFile, FixtureFilesRewriteAndReadBack) {
  TempDir tmp;
  int checked = 0;
  for (const std::string& path : testutil::all_golden_pt_files()) {
    // The ~3500 one-tensor files of universal/zero/<param>/ are all alike: take one in 40 of them.
    if (path.find("/universal/global_step3/zero/") != std::string::npos && path.find("optimizer_state") == std::string::npos &&
        std::hash<std::string>{}(path) % 40 != 0)
      continue;
    SCOPED_TRACE(path);
    auto f = TorchFile::open(path);
    ASSERT_THAT(f, IsOk());
    for (int protocol : {2, 4}) {
      const std::string out = tmp.file("p" + std::to_string(protocol) + ".pt");
      TorchWriteOptions o;
      o.protocol = protocol;
      ASSERT_THAT(write_torch_file(out, f->root(), o), IsOk());
      auto g = TorchFile::open(out);
      ASSERT_THAT(g, IsOk());
      EXPECT_EQ(g->archive_name(), "p" + std::to_string(protocol));
      ASSERT_EQ(first_difference(f->root(), g->root()), "");
      // Records in torch's order; storages byte-identical to the original's under the same keys
      // (torch numbers storages in pickling order too).
      const auto& records = g->zip().records();
      ASSERT_GE(records.size(), 3u);
      const std::string a = g->archive_name() + "/";
      EXPECT_EQ(records.front().name, a + "data.pkl");
      EXPECT_EQ(records[records.size() - 2].name, a + "version");
      EXPECT_EQ(records.back().name, a + "byteorder");
      EXPECT_EQ(as_string(g->zip().view(records[records.size() - 2])), "3\n");
      EXPECT_EQ(as_string(g->zip().view(records.back())), "little");
      for (std::size_t k = 1; k + 2 < records.size(); ++k) {
        EXPECT_EQ(records[k].name, a + "data/" + std::to_string(k - 1));
        const ZipRecord* orig = f->zip().find(f->archive_name() + "/data/" + std::to_string(k - 1));
        ASSERT_NE(orig, nullptr);
        EXPECT_EQ(as_string(g->zip().view(records[k])), as_string(f->zip().view(*orig)));
        EXPECT_EQ(records[k].data_offset % 64, 0u);
        EXPECT_THAT(g->zip().verify_crc(records[k]), IsOk());
      }
      if (protocol == 2) {
        EXPECT_EQ(as_string(g->zip().view(records.front())),
                  as_string(f->zip().view(*f->zip().find(f->archive_name() + "/data.pkl"))));
      }
    }
    ++checked;
  }
  EXPECT_GT(checked, 400);
}

const std::string kMlpZ2Fp16 = "/deepspeed/mlp_z2_fp16_ws2";

TEST(TorchFile, DeepSpeedOptimizerObjects) {
  auto f = TorchFile::open(testutil::golden_dir() + kMlpZ2Fp16 + "/checkpoint/global_step3/zero_pp_rank_0_mp_rank_00_optim_states.pt");
  ASSERT_THAT(f, IsOk());
  const ValuePtr osd = f->root()->get("optimizer_state_dict");
  ASSERT_TRUE(osd);

  // loss_scaler: DynamicLossScaler.__new__ (NEWOBJ) + BUILD with its __dict__.
  const ValuePtr scaler = osd->get("loss_scaler");
  ASSERT_EQ(scaler->kind, Kind::kObject);
  EXPECT_EQ(scaler->type_name(), "deepspeed.runtime.fp16.loss_scaler.DynamicLossScaler");
  EXPECT_EQ(scaler->object.kind, BuildKind::kNewObj);
  ASSERT_TRUE(scaler->object.state);
  EXPECT_EQ(scaler->object.state->get("cur_scale")->f, 512.0);
  EXPECT_EQ(scaler->object.state->get("last_overflow_iter")->i, -1);
  EXPECT_TRUE(values_equal(scaler->object.state->get("dtype"), Value::global_ref("torch", "float16")));

  // zero_stage: getattr(ZeroStageEnum, 'gradients') (REDUCE).
  const ValuePtr stage = osd->get("zero_stage");
  ASSERT_EQ(stage->kind, Kind::kObject);
  EXPECT_EQ(stage->object.kind, BuildKind::kReduce);
  EXPECT_TRUE(values_equal(stage->object.callable, Value::global_ref("builtins", "getattr")));
  EXPECT_TRUE(values_equal(stage->object.args, Value::tuple({Value::global_ref("deepspeed.runtime.zero.config", "ZeroStageEnum"),
                                                              Value::string("gradients")})));

  // param_slice_mappings: [OrderedDict(name -> fragment_address(numel, start))].
  const ValuePtr mappings = osd->get("param_slice_mappings");
  ASSERT_EQ(mappings->kind, Kind::kList);
  const ValuePtr od = mappings->items.at(0);
  EXPECT_TRUE(od->ordered_dict);
  const ValuePtr fc1 = od->get("fc1.weight");
  ASSERT_EQ(fc1->kind, Kind::kObject);
  EXPECT_EQ(fc1->type_name(), "deepspeed.utils.tensor_fragment.fragment_address");
  EXPECT_EQ(fc1->object.kind, BuildKind::kNewObj);
  EXPECT_TRUE(values_equal(fc1->object.state, Value::dict({{Value::string("numel"), Value::integer(91)},
                                                           {Value::string("start"), Value::integer(18)}})));

  // The fp32 partition: 244 floats, requires_grad=True; torch.load printed t[0] = 0x1.f1301p-2,
  // t[1] = 0x1.01d9cp+0, t[-1] = 0x1.4bc582p-2.
  const Tensor& t = osd->get("single_partition_of_fp32_groups")->items.at(0)->tensor;
  EXPECT_EQ(t.dtype(), DType::kF32);
  EXPECT_EQ(t.shape, (std::vector<std::int64_t>{244}));
  EXPECT_TRUE(t.requires_grad);
  const std::vector<std::byte> data = tensor_bytes(t);
  float first[2], last;
  std::memcpy(first, data.data(), 8);
  std::memcpy(&last, data.data() + 243 * 4, 4);
  EXPECT_EQ(first[0], 0x1.f1301p-2f);
  EXPECT_EQ(first[1], 0x1.01d9cp+0f);
  EXPECT_EQ(last, 0x1.4bc582p-2f);
  // Its bytes are a view of the mapped file, kept alive by the storage.
  EXPECT_EQ(t.storage->owner.get(), f->zip().file().get());
}

TEST(TorchFile, DeepSpeedModelStates) {
  auto f = TorchFile::open(testutil::golden_dir() + kMlpZ2Fp16 + "/checkpoint/global_step3/mp_rank_00_model_states.pt");
  ASSERT_THAT(f, IsOk());
  const ValuePtr module = f->root()->get("module");
  ASSERT_TRUE(module && module->ordered_dict);
  // state_dict()'s _metadata rides on the OrderedDict as BUILD state.
  ASSERT_TRUE(module->state);
  const ValuePtr meta = module->state->get("_metadata");
  ASSERT_TRUE(meta && meta->ordered_dict);
  EXPECT_TRUE(values_equal(meta->get("fc1"), Value::dict({{Value::string("version"), Value::integer(1)}})));
  // fc1.weight: f16 [7, 13] at offset 18 of a 488-element flat buffer; w[0, :3] as int16 bits
  // -19353, -21423, -20302 (torch.load). head.weight is tied: another tensor on the same storage.
  const Tensor& w = module->get("fc1.weight")->tensor;
  EXPECT_EQ(w.dtype(), DType::kF16);
  EXPECT_EQ(w.shape, (std::vector<std::int64_t>{7, 13}));
  EXPECT_EQ(w.stride, (std::vector<std::int64_t>{13, 1}));
  EXPECT_EQ(w.storage_offset, 18);
  EXPECT_EQ(w.storage->numel, 488u);
  std::int16_t bits[3];
  std::memcpy(bits, tensor_bytes(w).data(), 6);
  EXPECT_EQ(bits[0], -19353);
  EXPECT_EQ(bits[1], -21423);
  EXPECT_EQ(bits[2], -20302);
  const ValuePtr head = module->get("head.weight");
  EXPECT_NE(head.get(), module->get("fc1.weight").get());
  EXPECT_EQ(head->tensor.storage.get(), w.storage.get());
  EXPECT_EQ(head->tensor.storage_offset, 18);
  EXPECT_EQ(module->get("calls")->tensor.dtype(), DType::kI64);
  // param_shapes: [OrderedDict(name -> torch.Size)].
  EXPECT_TRUE(values_equal(f->root()->get("param_shapes")->items.at(0)->get("fc1.weight"), Value::size({7, 13})));
  EXPECT_TRUE(values_equal(f->root()->get("shared_params"),
                           Value::dict({{Value::string("head.weight"), Value::string("fc1.weight")}})));
}

// A torch-like zip with the given records.
void write_zip(const std::string& path, const std::vector<std::pair<std::string, std::vector<std::byte>>>& records) {
  std::vector<ZipBlob> blobs;
  for (const auto& [name, data] : records) blobs.push_back({name, data});
  ASSERT_THAT(write_zip_file(path, blobs), IsOk());
}

TEST(TorchFile, BrokenFiles) {
  TempDir tmp;
  EXPECT_THAT(TorchFile::open(tmp.file("missing.pt")), StatusIs(StatusCode::kNotFound, HasSubstr("missing.pt")));

  const std::string garbage = tmp.file("garbage.pt");
  std::ofstream(garbage) << "this is not a zip file at all, not even close............";
  auto g = TorchFile::open(garbage);
  EXPECT_FALSE(g.ok());
  EXPECT_THAT(g.status().message(), HasSubstr("garbage.pt"));

  const auto pickle = testdata::unhex(testdata::kFakeTensorOk);  // FloatStorage '0' of 12 elements
  const std::string no_pkl = tmp.file("no_pkl.pt");
  write_zip(no_pkl, {{"a/data/0", std::vector<std::byte>(48)}, {"a/version", std::vector<std::byte>(2)}});
  EXPECT_THAT(TorchFile::open(no_pkl), StatusIs(StatusCode::kDataLoss, HasSubstr("no_pkl.pt': no '<archive>/data.pkl'")));

  const std::string nested = tmp.file("nested.pt");  // data.pkl one folder too deep
  write_zip(nested, {{"a/b/data.pkl", pickle}});
  EXPECT_THAT(TorchFile::open(nested), StatusIs(StatusCode::kDataLoss, HasSubstr("no '<archive>/data.pkl'")));

  const std::string no_storage = tmp.file("no_storage.pt");
  write_zip(no_storage, {{"a/data.pkl", pickle}});
  EXPECT_THAT(TorchFile::open(no_storage),
              StatusIs(StatusCode::kNotFound, HasSubstr("storage '0': no record 'a/data/0'")));

  const std::string short_storage = tmp.file("short.pt");
  write_zip(short_storage, {{"a/data.pkl", pickle}, {"a/data/0", std::vector<std::byte>(47)}});
  EXPECT_THAT(TorchFile::open(short_storage),
              StatusIs(StatusCode::kDataLoss, HasSubstr("short.pt': record 'a/data.pkl': BINPERSID at offset")));
  EXPECT_THAT(TorchFile::open(short_storage), StatusIs(StatusCode::kDataLoss, HasSubstr("needs 48 bytes, record 'a/data/0' holds 47")));

  const std::string ok = tmp.file("ok.pt");  // a longer record is fine: its prefix is the storage
  write_zip(ok, {{"a/data.pkl", pickle}, {"a/data/0", std::vector<std::byte>(52)}});
  auto okf = TorchFile::open(ok);
  ASSERT_THAT(okf, IsOk());
  EXPECT_EQ(okf->archive_name(), "a");
  EXPECT_EQ(okf->root()->tensor.storage->nbytes(), 48u);

  const std::string past_end = tmp.file("past_end.pt");
  write_zip(past_end, {{"a/data.pkl", testdata::unhex(testdata::kFakeTensorPastEnd)}, {"a/data/0", std::vector<std::byte>(48)}});
  EXPECT_THAT(TorchFile::open(past_end), StatusIs(StatusCode::kDataLoss, HasSubstr("runs past the end of its storage")));

  // A persistent id of the wrong shape: pickle.dumps with persistent_id returning ('storage', 1).
  const std::string bad_pid = tmp.file("bad_pid.pt");
  const std::string raw("\x80\x02X\x07\x00\x00\x00storageK\x01\x86Q.", 19);
  std::vector<std::byte> raw_bytes(reinterpret_cast<const std::byte*>(raw.data()),
                                   reinterpret_cast<const std::byte*>(raw.data()) + raw.size());
  write_zip(bad_pid, {{"a/data.pkl", raw_bytes}});
  EXPECT_THAT(TorchFile::open(bad_pid), StatusIs(StatusCode::kDataLoss, HasSubstr("expected ('storage', class, key, location, numel)")));
}

TEST(TorchFile, StoragesSharedByKeyAndUntyped) {
  TempDir tmp;
  // [tensor on storage '7' (4 floats), tensor on the same key at offset 1]
  const std::string shared = tmp.file("shared.pt");
  write_zip(shared, {{"x/data.pkl", testdata::unhex(testdata::kFakeSharedKey)}, {"x/data/7", std::vector<std::byte>(16)}});
  auto f = TorchFile::open(shared);
  ASSERT_THAT(f, IsOk());
  EXPECT_EQ(f->root()->items[0]->tensor.storage.get(), f->root()->items[1]->tensor.storage.get());
  EXPECT_EQ(f->root()->items[0]->tensor.storage->key, "7");

  // torch.UntypedStorage: bytes.
  const std::string untyped = tmp.file("untyped.pt");
  write_zip(untyped, {{"u/data.pkl", testdata::unhex(testdata::kFakeUntyped)}, {"u/data/0", std::vector<std::byte>(8)}});
  auto u = TorchFile::open(untyped);
  ASSERT_THAT(u, IsOk());
  EXPECT_EQ(u->root()->tensor.dtype(), DType::kU8);
  EXPECT_EQ(u->root()->tensor.numel(), 8u);
}

TEST(TorchFile, WriteTorchFile) {
  TempDir tmp;
  // Two views of one storage and one of another; the shared storage is written once.
  std::vector<std::byte> a(40), b(6);
  for (std::size_t i = 0; i < a.size(); ++i) a[i] = static_cast<std::byte>(i);
  for (std::size_t i = 0; i < b.size(); ++i) b[i] = static_cast<std::byte>(100 + i);
  Tensor t1 = Tensor::from_bytes(DType::kF32, {10}, a);
  Tensor t2 = t1;
  t2.storage_offset = 2;
  t2.shape = {2, 4};
  t2.stride = {4, 1};
  Tensor t3 = Tensor::from_bytes(DType::kI16, {3}, b);
  auto root = Value::dict({{Value::string("t3"), Value::tensor_value(t3)},
                           {Value::string("t1"), Value::tensor_value(t1)},
                           {Value::string("t2"), Value::tensor_value(t2)}});
  const std::string path = tmp.file("model.v1.pt");
  ASSERT_THAT(write_torch_file(path, root), IsOk());
  auto f = TorchFile::open(path);
  ASSERT_THAT(f, IsOk());
  EXPECT_EQ(f->archive_name(), "model.v1");  // the stem
  std::vector<std::string> names;
  for (const auto& r : f->zip().records()) names.push_back(r.name);
  EXPECT_EQ(names, (std::vector<std::string>{"model.v1/data.pkl", "model.v1/data/0", "model.v1/data/1",
                                             "model.v1/version", "model.v1/byteorder"}));
  EXPECT_EQ(as_string(f->zip().view(*f->zip().find("model.v1/data/0"))), as_string(b));
  EXPECT_EQ(as_string(f->zip().view(*f->zip().find("model.v1/data/1"))), as_string(a));
  EXPECT_EQ(first_difference(root, f->root()), "");
  EXPECT_EQ(f->root()->get("t1")->tensor.storage.get(), f->root()->get("t2")->tensor.storage.get());

  TorchWriteOptions named;
  named.archive_name = "archive";
  named.protocol = 4;
  ASSERT_THAT(write_torch_file(tmp.file("x.pt"), root, named), IsOk());
  auto x = TorchFile::open(tmp.file("x.pt"));
  ASSERT_THAT(x, IsOk());
  EXPECT_EQ(x->archive_name(), "archive");
  EXPECT_EQ(first_difference(root, x->root()), "");

  // A storage whose bytes are fewer than numel * element size cannot be written.
  Tensor lying = Tensor::from_bytes(DType::kF32, {2}, std::vector<std::byte>(8));
  lying.storage->numel = 3;
  EXPECT_THAT(write_torch_file(tmp.file("bad.pt"), Value::tensor_value(lying)),
              StatusIs(StatusCode::kInvalidArgument, HasSubstr("storage 0 has 8 bytes, expected 3 x 4")));
  EXPECT_THAT(write_torch_file(tmp.file("bad2.pt"), Value::list({nullptr})),
              StatusIs(StatusCode::kInvalidArgument, HasSubstr("bad2.pt")));
}

}  // namespace
}  // namespace ucp::format
