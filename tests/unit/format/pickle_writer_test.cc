// The pickle encoder against CPython's C pickler: re-encoding what pickle.dumps / torch.save wrote
// at protocol 2 must give back the very same bytes (pickle_test_vectors.h), large containers must
// batch as CPython does (compared by length and CRC-32 of Python's output), and protocol 4 output
// must decode to the same value.
#include "ucp/format/pickle_writer.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <map>
#include <string>

#include "testutil/status_matchers.h"
#include "ucp/format/crc32.h"
#include "ucp/format/pickle_reader.h"
#include "unit/format/pickle_test_vectors.h"

namespace ucp::format {
namespace {

using base::StatusCode;
using testing::HasSubstr;
using testutil::IsOk;
using testutil::StatusIs;
using Kind = Value::Kind;
namespace td = testdata;

// Zero-filled storages for torch-shaped persistent ids, one per key.
PersistentLoad fake_storages(std::shared_ptr<std::map<std::string, ValuePtr>> by_key) {
  return [by_key](const ValuePtr& pid) -> base::Result<ValuePtr> {
    const auto& a = pid->items;
    auto& slot = (*by_key)[a[2]->str];
    if (!slot) {
      const auto dtype = *base::dtype_from_torch_storage_class(a[1]->global.name);
      slot = std::make_shared<Value>();
      slot->kind = Kind::kStorage;
      slot->storage = Storage::owning(dtype, std::vector<std::byte>(static_cast<std::size_t>(a[4]->i) * base::dtype_size(dtype)));
      slot->storage->location = a[3]->str;
    }
    return slot;
  };
}

ValuePtr read_ok(std::span<const std::byte> bytes) {
  auto r = read_pickle(bytes, fake_storages(std::make_shared<std::map<std::string, ValuePtr>>()));
  EXPECT_THAT(r, IsOk());
  return r.ok() ? *r : nullptr;
}

std::vector<std::byte> write_ok(const ValuePtr& v, int protocol = 2, const StorageKeyFn& keys = nullptr) {
  PickleWriteOptions o;
  o.protocol = protocol;
  auto r = write_pickle(v, keys, o);
  EXPECT_THAT(r, IsOk());
  return r.ok() ? *r : std::vector<std::byte>();
}

std::string printable(std::span<const std::byte> b) {
  std::string s;
  for (std::byte x : b) {
    const auto c = static_cast<unsigned char>(x);
    if (c >= 32 && c < 127) {
      s += static_cast<char>(c);
    } else {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", c);
      s += buf;
    }
  }
  return s;
}

TEST(PickleWriter, Protocol2IsByteIdenticalToCPython) {
  const std::pair<const char*, const char*> vectors[] = {
      {"rich", td::kRichP2},          {"defaultdict", td::kDefaultDict}, {"Namespace", td::kNamespace},
      {"date", td::kDate},            {"torch.Size", td::kTorchSize},    {"dtypes", td::kTorchDtype},
      {"torch tensor", td::kTorchMatrix}, {"tensor views", td::kTorchViews}, {"Parameter", td::kTorchParam},
  };
  for (const auto& [name, hex] : vectors) {
    SCOPED_TRACE(name);
    const auto original = td::unhex(hex);
    ValuePtr v = read_ok(original);
    ASSERT_TRUE(v);
    const auto written = write_ok(v);
    EXPECT_EQ(printable(written), printable(original));
  }
}

TEST(PickleWriter, Protocol4MatchesCPythonWithoutFraming) {
  // We write no FRAME opcodes (optional in protocol 4); otherwise the bytes are CPython's.
  const auto original = td::unhex(td::kSmallListP4);
  ASSERT_EQ(static_cast<int>(original[2]), 0x95);
  std::vector<std::byte> unframed(original.begin(), original.begin() + 2);
  unframed.insert(unframed.end(), original.begin() + 11, original.end());
  EXPECT_EQ(printable(write_ok(read_ok(original), 4)), printable(unframed));
}

TEST(PickleWriter, Protocol4RoundTripsEveryKind) {
  for (const char* hex : {td::kRichP4, td::kRichP2, td::kNamespace, td::kDefaultDict, td::kTorchViews, td::kTorchParam,
                          td::kNewObjEx, td::kSmallP0}) {
    const ValuePtr v = read_ok(td::unhex(hex));
    ASSERT_TRUE(v);
    for (int protocol : {2, 4}) {
      if (protocol == 2 && hex == td::kNewObjEx) continue;
      const auto bytes = write_ok(v, protocol);
      EXPECT_EQ(static_cast<int>(bytes[1]), protocol);
      const ValuePtr back = read_ok(bytes);
      EXPECT_EQ(first_difference(v, back), "") << "protocol " << protocol;
    }
  }
}

TEST(PickleWriter, PythonTwoModuleNamesReadAsPythonThreeAtEveryProtocol) {
  // A protocol-4 stream naming Python 2 modules (GLOBAL and STACK_GLOBAL; found by the fuzzer):
  // read as the Python 3 names, so writing at protocol 2 (spelled "__builtin__") or 4 and
  // reading back gives the same tree.
  const std::string global = "\x80\x04" "c__builtin__\ngetattr\n.";
  const std::string stack = "\x80\x04" "\x8c\x08" "copy_reg" "\x8c\x0e" "_reconstructor" "\x93.";
  const std::pair<std::string, ValuePtr> cases[] = {{global, Value::global_ref("builtins", "getattr")},
                                                    {stack, Value::global_ref("copyreg", "_reconstructor")}};
  for (const auto& [pickle, expected] : cases) {
    const ValuePtr v = read_ok(std::as_bytes(std::span(pickle)));
    ASSERT_TRUE(v);
    EXPECT_EQ(first_difference(v, expected), "");
    for (int protocol : {2, 4}) EXPECT_EQ(first_difference(v, read_ok(write_ok(v, protocol))), "") << "protocol " << protocol;
  }
  const auto p2 = write_ok(Value::global_ref("builtins", "getattr"), 2);
  EXPECT_NE(std::string(reinterpret_cast<const char*>(p2.data()), p2.size()).find("c__builtin__\ngetattr\n"), std::string::npos);
}

std::uint32_t crc(const std::vector<std::byte>& b) { return crc32_update(0, b); }

ValuePtr int_range(Kind kind, int n) {
  auto v = std::make_shared<Value>();
  v->kind = kind;
  for (int i = 0; i < n; ++i) v->items.push_back(Value::integer(i));
  return v;
}

ValuePtr int_dict(int n, bool ordered) {
  std::vector<std::pair<ValuePtr, ValuePtr>> e;
  for (int i = 0; i < n; ++i) e.emplace_back(Value::integer(i), Value::integer(i));
  return Value::dict(std::move(e), ordered);
}

TEST(PickleWriter, BatchesLikeCPython) {
  // Length and zlib.crc32 of CPython's output (see pickle_test_vectors.h).
  struct Case {
    ValuePtr value;
    int protocol;
    std::size_t size;
    std::uint32_t crc;
  } cases[] = {
      {int_range(Kind::kList, 1000), 2, 2752, 0xe43c8d40},
      {int_range(Kind::kList, 1001), 2, 2757, 0x356ad1e8},
      {int_range(Kind::kList, 2000), 2, 5754, 0x075b65cf},
      {int_dict(1000, false), 2, 5498, 0x8d101511},  // a trailing empty MARK SETITEMS, as CPython
      {int_dict(1000, true), 2, 5524, 0x6acce98c},
      {int_dict(1001, false), 2, 5504, 0x28bdecfe},
      {int_dict(1001, true), 2, 5531, 0x1a7a5605},
      {int_range(Kind::kSet, 999), 4, 2748, 0x7607d75a},
      {int_range(Kind::kSet, 1000), 4, 2753, 0xeef24fa2},
  };
  for (const auto& c : cases) {
    const auto bytes = write_ok(c.value, c.protocol);
    EXPECT_EQ(bytes.size(), c.size) << c.value->type_name() << " of " << c.value->items.size() + c.value->entries.size();
    EXPECT_EQ(crc(bytes), c.crc) << c.value->type_name() << " of " << c.value->items.size() + c.value->entries.size();
    EXPECT_EQ(first_difference(c.value, read_ok(bytes)), "");
  }
}

TEST(PickleWriter, SharedValuesStayShared) {
  auto shared = Value::list({Value::integer(1)});
  auto s = Value::string("text");
  auto root = Value::tuple({shared, shared, s, s, Value::dict({{s, shared}})});
  const auto bytes = write_ok(root);
  const ValuePtr back = read_ok(bytes);
  ASSERT_TRUE(back);
  EXPECT_EQ(back->items[0].get(), back->items[1].get());
  EXPECT_EQ(back->items[2].get(), back->items[3].get());
  EXPECT_EQ(back->items[4]->entries[0].second.get(), back->items[0].get());
  // "text" is written once.
  EXPECT_EQ(printable(bytes).find("text"), printable(bytes).rfind("text"));
}

TEST(PickleWriter, StorageKeysOncePerStorageInPicklingOrder) {
  auto s1 = Storage::owning(base::DType::kF32, std::vector<std::byte>(40));
  auto s2 = Storage::owning(base::DType::kBF16, std::vector<std::byte>(8), "cuda:1");
  auto view = [](std::shared_ptr<Storage> s, std::int64_t offset, std::vector<std::int64_t> shape) {
    Tensor t;
    t.storage = std::move(s);
    t.storage_offset = offset;
    t.stride = Tensor::contiguous_strides(shape);
    t.shape = std::move(shape);
    return Value::tensor_value(std::move(t));
  };
  auto root = Value::dict({{Value::string("a"), view(s2, 0, {4})},
                           {Value::string("b"), view(s1, 2, {2, 4})},
                           {Value::string("c"), view(s2, 1, {3})}});
  std::vector<const Storage*> calls;
  StorageKeyFn keys = [&](const std::shared_ptr<Storage>& s) {
    calls.push_back(s.get());
    return "k" + std::to_string(calls.size());
  };
  const auto bytes = write_ok(root, 2, keys);
  EXPECT_EQ(calls, (std::vector<const Storage*>{s2.get(), s1.get()}));
  std::map<std::string, int> pid_keys;
  auto load = [&](const ValuePtr& pid) -> base::Result<ValuePtr> {
    pid_keys[pid->items[2]->str]++;
    EXPECT_EQ(pid->items[0]->str, "storage");
    auto v = std::make_shared<Value>();
    v->kind = Kind::kStorage;
    v->storage = pid->items[2]->str == "k1" ? s2 : s1;
    EXPECT_EQ(pid->items[1]->global.name, pid->items[2]->str == "k1" ? "BFloat16Storage" : "FloatStorage");
    EXPECT_EQ(pid->items[3]->str, pid->items[2]->str == "k1" ? "cuda:1" : "cpu");
    EXPECT_EQ(pid->items[4]->i, pid->items[2]->str == "k1" ? 4 : 10);
    return v;
  };
  auto back = read_pickle(bytes, load);
  ASSERT_THAT(back, IsOk());
  EXPECT_EQ(pid_keys, (std::map<std::string, int>{{"k1", 2}, {"k2", 1}}));
  EXPECT_EQ(first_difference(root, *back), "");
  EXPECT_EQ((*back)->get("c")->tensor.storage_offset, 1);
}

TEST(PickleWriter, TensorExtras) {
  // A Parameter with state (_rebuild_parameter_with_state) and a tensor with metadata.
  Tensor t = Tensor::from_bytes(base::DType::kF16, {2}, std::vector<std::byte>(4));
  t.metadata = Value::dict({{Value::string("m"), Value::integer(1)}});
  t.parameter = Tensor::Parameter{true, nullptr, Value::dict({{Value::string("extra"), Value::boolean(true)}})};
  auto root = Value::tensor_value(t);
  for (int protocol : {2, 4}) {
    const auto bytes = write_ok(root, protocol);
    EXPECT_NE(printable(bytes).find("_rebuild_parameter_with_state"), std::string::npos);
    const ValuePtr back = read_ok(bytes);
    ASSERT_TRUE(back);
    EXPECT_EQ(first_difference(root, back), "");
    ASSERT_TRUE(back->tensor.parameter && back->tensor.parameter->state);
    ASSERT_TRUE(back->tensor.metadata);
  }
}

TEST(PickleWriter, ObjectsWithItemsAndState) {
  auto obj = std::make_shared<Value>();
  obj->kind = Kind::kObject;
  obj->object.callable = Value::global_ref("pkg.mod", "Thing");
  obj->object.kind = BuildKind::kNewObj;
  obj->object.args = Value::tuple({Value::integer(3)});
  obj->object.list_items = {Value::integer(1), Value::integer(2)};
  obj->object.dict_items = {{Value::string("k"), Value::none()}};
  obj->object.state = Value::dict({{Value::string("x"), Value::floating(0.25)}});
  for (int protocol : {2, 4}) EXPECT_EQ(first_difference(obj, read_ok(write_ok(obj, protocol))), "");

  obj->object.kind = BuildKind::kNewObjEx;
  obj->object.kwargs = Value::dict({{Value::string("kw"), Value::integer(5)}});
  EXPECT_EQ(first_difference(obj, read_ok(write_ok(obj, 4))), "");
  EXPECT_THAT(write_pickle(obj, nullptr), StatusIs(StatusCode::kUnimplemented, HasSubstr("NEWOBJ_EX")));
}

TEST(PickleWriter, RefusesWhatCannotBeWritten) {
  EXPECT_THAT(write_pickle(Value::list({nullptr}), nullptr), StatusIs(StatusCode::kInvalidArgument, HasSubstr("null")));
  auto cyclic = Value::list({});
  cyclic->items.push_back(cyclic);
  EXPECT_THAT(write_pickle(cyclic, nullptr), StatusIs(StatusCode::kInvalidArgument, HasSubstr("cycle")));
  cyclic->items.clear();  // break it so the test does not leak

  PickleWriteOptions bad;
  bad.protocol = 3;
  EXPECT_THAT(write_pickle(Value::none(), nullptr, bad), StatusIs(StatusCode::kInvalidArgument, HasSubstr("protocol 3")));

  // Depth as the reader counts it: 1000 nested non-empty lists are fine, 1001 are not.
  auto nest = [](int n) {
    ValuePtr v = Value::integer(1);
    for (int i = 0; i < n; ++i) v = Value::list({v});
    return v;
  };
  const ValuePtr deep = nest(1000);
  EXPECT_EQ(first_difference(deep, read_ok(write_ok(deep))), "");
  EXPECT_THAT(write_pickle(nest(1001), nullptr), StatusIs(StatusCode::kInvalidArgument, HasSubstr("deeper than 1000")));

  auto odd = Value::global_ref("mod\nx", "name");
  EXPECT_THAT(write_pickle(odd, nullptr), StatusIs(StatusCode::kInvalidArgument, HasSubstr("newline")));
  EXPECT_EQ(first_difference(odd, read_ok(write_ok(odd, 4))), "");  // STACK_GLOBAL

  Tensor t = Tensor::from_bytes(base::DType::kF32, {4}, std::vector<std::byte>(16));
  t.storage_offset = 1;
  EXPECT_THAT(write_pickle(Value::tensor_value(t), nullptr),
              StatusIs(StatusCode::kInvalidArgument, HasSubstr("runs past the end of its storage")));

  auto plain = Value::dict({});
  plain->state = Value::dict({});
  EXPECT_THAT(write_pickle(plain, nullptr), StatusIs(StatusCode::kInvalidArgument, HasSubstr("OrderedDict")));
}

TEST(PickleWriter, ScalarEncodings) {
  // Spot checks against pickle.dumps(x, 2) / pickle.dumps(x, 4) of single values.
  auto bytes_of = [](const char* s, std::size_t n) {
    const auto* p = reinterpret_cast<const std::byte*>(s);
    return printable(std::vector<std::byte>(p, p + n));
  };
  EXPECT_EQ(printable(write_ok(Value::integer(-1))), bytes_of("\x80\x02J\xff\xff\xff\xff.", 8));
  EXPECT_EQ(printable(write_ok(Value::integer(1LL << 31))), bytes_of("\x80\x02\x8a\x05\x00\x00\x00\x80\x00.", 10));
  EXPECT_EQ(printable(write_ok(Value::floating(-0.0))), bytes_of("\x80\x02G\x80\x00\x00\x00\x00\x00\x00\x00.", 12));
  EXPECT_EQ(printable(write_ok(Value::bytes("ab"), 4)), bytes_of("\x80\x04" "C\x02" "ab\x94.", 8));
  EXPECT_EQ(printable(write_ok(Value::string("ab"), 4)), bytes_of("\x80\x04\x8c\x02" "ab\x94.", 8));
  EXPECT_EQ(printable(write_ok(Value::boolean(true))), bytes_of("\x80\x02\x88.", 4));
  EXPECT_EQ(printable(write_ok(Value::none())), bytes_of("\x80\x02N.", 4));
}

}  // namespace
}  // namespace ucp::format
