// The pickle VM against CPython's own pickles (pickle_test_vectors.h: what pickle.dumps and
// torch.save wrote, and what pickle.loads makes of hand-written ones), plus hostile inputs.
#include "ucp/format/pickle_reader.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <map>
#include <string>

#include "testutil/status_matchers.h"
#include "unit/format/pickle_test_vectors.h"

namespace ucp::format {
namespace {

using base::StatusCode;
using testing::HasSubstr;
using testutil::IsOk;
using testutil::StatusIs;
using Kind = Value::Kind;
namespace td = testdata;

// ---- expected-value builders
ValuePtr I(std::int64_t v) { return Value::integer(v); }
ValuePtr S(std::string v) { return Value::string(std::move(v)); }
ValuePtr B(std::string v) { return Value::bytes(std::move(v)); }
ValuePtr F(double v) { return Value::floating(v); }
ValuePtr Fbits(std::uint64_t bits) {
  double d;
  std::memcpy(&d, &bits, 8);
  return F(d);
}
ValuePtr Bool(bool v) { return Value::boolean(v); }
ValuePtr None() { return Value::none(); }
ValuePtr L(std::vector<ValuePtr> v) { return Value::list(std::move(v)); }
ValuePtr T(std::vector<ValuePtr> v) { return Value::tuple(std::move(v)); }
ValuePtr D(std::vector<std::pair<ValuePtr, ValuePtr>> e, bool ordered = false) { return Value::dict(std::move(e), ordered); }
ValuePtr Big(const std::string& le_hex) {
  auto v = std::make_shared<Value>();
  v->kind = Kind::kBigInt;
  for (std::byte b : td::unhex(le_hex)) v->str += static_cast<char>(b);
  return v;
}
ValuePtr Coll(Kind kind, std::vector<ValuePtr> items) {
  auto v = std::make_shared<Value>();
  v->kind = kind;
  v->items = std::move(items);
  return v;
}
ValuePtr ByteArray(std::string raw) {
  auto v = Value::bytes(std::move(raw));
  v->kind = Kind::kByteArray;
  return v;
}

base::Result<ValuePtr> read(const char* hex, const PersistentLoad& load = nullptr, const PickleLimits& limits = {}) {
  const auto bytes = td::unhex(hex);
  return read_pickle(bytes, load, limits);
}
base::Result<ValuePtr> read_bytes(const std::string& raw, const PersistentLoad& load = nullptr,
                                  const PickleLimits& limits = {}) {
  return read_pickle(std::span(reinterpret_cast<const std::byte*>(raw.data()), raw.size()), load, limits);
}

// Resolves torch-shaped persistent ids to zero-filled storages, one per key (as torch.load does).
struct FakeStorages {
  std::map<std::string, ValuePtr> by_key;
  int calls = 0;
  PersistentLoad loader() {
    return [this](const ValuePtr& pid) -> base::Result<ValuePtr> {
      ++calls;
      if (pid->kind != Kind::kTuple || pid->items.size() != 5) return base::data_loss("bad pid");
      const auto& a = pid->items;
      auto& slot = by_key[a[2]->str];
      if (!slot) {
        const auto dtype = a[1]->global.name == "UntypedStorage" ? base::DType::kU8
                                                                  : *base::dtype_from_torch_storage_class(a[1]->global.name);
        auto s = Storage::owning(dtype, std::vector<std::byte>(static_cast<std::size_t>(a[4]->i) * base::dtype_size(dtype)));
        s->key = a[2]->str;
        slot = std::make_shared<Value>();
        slot->kind = Kind::kStorage;
        slot->storage = s;
      }
      return slot;
    };
  }
};

ValuePtr rich_expected(ValuePtr* shared_out = nullptr) {
  auto shared = L({I(1), I(2)});
  if (shared_out) *shared_out = shared;
  std::string all_bytes;
  for (int i = 0; i < 256; ++i) all_bytes += static_cast<char>(i);
  return D({
      {S("ints"), L({I(0), I(1), I(255), I(256), I(65535), I(65536), I(-1), I(2147483647), I(-2147483648LL),
                     I(2147483648LL), I(-2147483649LL), I(std::numeric_limits<std::int64_t>::max()),
                     I(std::numeric_limits<std::int64_t>::min()),
                     Big("000000000000000001"),            // 2**64
                     Big("00000000000000000000000010"),    // 2**100
                     Big("0000000000000000c0")})},         // -2**70
      {S("floats"), L({F(0.0), Fbits(0x8000000000000000ull), F(1.5), Fbits(0x7ff0000000000000ull),
                       Fbits(0xfff0000000000000ull), Fbits(0x7ff8000000000000ull), F(1e-308)})},
      {S("strs"), L({S(""), S("ascii"), S("ünïcødé"), S("日本語"), S("\xF0\x9F\x98\x80"), S(std::string(300, 'x'))})},
      {S("bytes"), L({B(""), B(std::string("\x00\xff\x80" "abc", 6)), B(all_bytes)})},
      {S("bytearray"), L({ByteArray(""), ByteArray("\x01\x02")})},
      {S("set"), Coll(Kind::kSet, {I(1), I(2), I(3)})},
      {S("frozenset"), Coll(Kind::kFrozenSet, {S("a")})},
      {S("od"), D({{S("b"), I(1)}, {S("a"), I(2)}}, true)},
      {S("od_empty"), D({}, true)},
      {S("tuples"), T({T({}), T({I(1)}), T({I(1), I(2)}), T({I(1), I(2), I(3)}), T({I(1), I(2), I(3), I(4)})})},
      {S("shared"), T({shared, shared})},
      {S("none"), None()},
      {S("true"), Bool(true)},
      {S("false"), Bool(false)},
      {I(7), S("int key")},
  });
}

TEST(PickleReader, RichProtocol2And4MatchPython) {
  for (const char* hex : {td::kRichP2, td::kRichP4}) {
    auto v = read(hex);
    ASSERT_THAT(v, IsOk());
    EXPECT_EQ(first_difference(rich_expected(), *v), "");
    // The two references to `shared` are one object (memo), as in Python.
    const ValuePtr& pair = (*v)->get("shared");
    ASSERT_TRUE(pair);
    ASSERT_EQ(pair->items.size(), 2u);
    EXPECT_EQ(pair->items[0].get(), pair->items[1].get());
    EXPECT_TRUE((*v)->get("od")->ordered_dict);
  }
}

TEST(PickleReader, Protocol0And1MatchPython) {
  // {'a': [1, 2.5, 'x', None, True, 2**70, -3], 'b': b'ab', 's': 'café €'}
  auto expected = D({{S("a"), L({I(1), F(2.5), S("x"), None(), Bool(true), Big("000000000000000040"), I(-3)})},
                     {S("b"), B("ab")},
                     {S("s"), S("caf\xC3\xA9 \xE2\x82\xAC")}});
  for (const char* hex : {td::kSmallP0, td::kSmallP1}) {
    auto v = read(hex);
    ASSERT_THAT(v, IsOk());
    EXPECT_EQ(first_difference(expected, *v), "");
  }
}

TEST(PickleReader, TextOpcodesMatchPython) {
  auto v = read(td::kTextString);
  ASSERT_THAT(v, IsOk());
  EXPECT_EQ(first_difference(S("a\nbAA"), *v), "");

  v = read(td::kBinStrings);
  ASSERT_THAT(v, IsOk());
  EXPECT_EQ(first_difference(T({S("abc"), S("hi")}), *v), "");

  v = read(td::kTextUnicode);  // '€\\\\u0041é': an even backslash run does not start an escape
  ASSERT_THAT(v, IsOk());
  EXPECT_EQ(first_difference(S("\xE2\x82\xAC\\\\u0041\xC3\xA9"), *v), "");

  v = read(td::kTextNumbers);  // (-1250.0, 123456789012345678901234567890, -2**64, True, False, -7, 5)
  ASSERT_THAT(v, IsOk());
  EXPECT_EQ(first_difference(T({F(-1250.0), Big("d20a3f4eeee073c3f60fe98e01"), Big("0000000000000000ff"), Bool(true),
                                Bool(false), I(-7), I(5)}),
                             *v),
            "");

  std::string seen;
  auto pid = read(td::kTextPersId, [&](const ValuePtr& p) -> base::Result<ValuePtr> {
    seen = p->str;
    return S("resolved");
  });
  ASSERT_THAT(pid, IsOk());
  EXPECT_EQ(seen, "abc");
  EXPECT_EQ((*pid)->str, "resolved");
}

TEST(PickleReader, MemoDupPopAndPopMark) {
  // ([], ([], 5, 5)) where all three lists are one object (MEMOIZE, LONG_BINPUT 70000, BINGET,
  // LONG_BINGET, DUP, POP_MARK).
  auto v = read(td::kMemoOps);
  ASSERT_THAT(v, IsOk());
  auto l = L({});
  EXPECT_EQ(first_difference(T({l, T({l, I(5), I(5)})}), *v), "");
  const Value* a = (*v)->items[0].get();
  EXPECT_EQ(a, (*v)->items[1]->items[0].get());
  EXPECT_EQ((*v)->items[1]->items[1].get(), (*v)->items[1]->items[2].get());  // DUP: same object

  // POP on an empty frame discards the MARK, as in CPython.
  auto p = read_bytes(std::string("\x80\x02K\x01(0.", 7));
  ASSERT_THAT(p, IsOk());
  EXPECT_EQ((*p)->i, 1);
}

TEST(PickleReader, OpaqueObjectsKeepTheirConstruction) {
  // collections.defaultdict(list, {'k': [1]}): REDUCE(defaultdict, (list,)) then SETITEM.
  auto dd = read(td::kDefaultDict);
  ASSERT_THAT(dd, IsOk());
  ASSERT_EQ((*dd)->kind, Kind::kObject);
  EXPECT_EQ((*dd)->type_name(), "collections.defaultdict");
  EXPECT_EQ((*dd)->object.kind, BuildKind::kReduce);
  EXPECT_EQ(first_difference((*dd)->object.args, T({Value::global_ref("builtins", "list")})), "");
  ASSERT_EQ((*dd)->object.dict_items.size(), 1u);
  EXPECT_EQ(first_difference((*dd)->object.dict_items[0].first, S("k")), "");
  EXPECT_EQ(first_difference((*dd)->object.dict_items[0].second, L({I(1)})), "");
  EXPECT_FALSE((*dd)->object.state);

  // argparse.Namespace(lr=0.5, name='adam'): NEWOBJ then BUILD with the instance dict.
  auto ns = read(td::kNamespace);
  ASSERT_THAT(ns, IsOk());
  EXPECT_EQ((*ns)->object.kind, BuildKind::kNewObj);
  EXPECT_EQ(first_difference((*ns)->object.callable, Value::global_ref("argparse", "Namespace")), "");
  EXPECT_EQ(first_difference((*ns)->object.state, D({{S("lr"), F(0.5)}, {S("name"), S("adam")}})), "");

  // datetime.date(2020, 1, 2): REDUCE(date, (b'\x07\xe4\x01\x02',)), the bytes via _codecs.encode.
  auto date = read(td::kDate);
  ASSERT_THAT(date, IsOk());
  EXPECT_EQ(first_difference((*date)->object.args, T({B("\x07\xe4\x01\x02")})), "");

  // NEWOBJ_EX (protocol 4, STACK_GLOBAL): Namespace.__new__(Namespace, *(), **{'a': 1}).
  auto ex = read(td::kNewObjEx);
  ASSERT_THAT(ex, IsOk());
  EXPECT_EQ((*ex)->object.kind, BuildKind::kNewObjEx);
  EXPECT_EQ(first_difference((*ex)->object.kwargs, D({{S("a"), I(1)}})), "");
  EXPECT_EQ(first_difference((*ex)->object.callable, Value::global_ref("argparse", "Namespace")), "");
}

TEST(PickleReader, RecognisedGlobals) {
  auto size = read(td::kTorchSize);
  ASSERT_THAT(size, IsOk());
  EXPECT_EQ(first_difference(Value::size({2, 3}), *size), "");

  auto dtypes = read(td::kTorchDtype);
  ASSERT_THAT(dtypes, IsOk());
  EXPECT_EQ(first_difference(L({Value::global_ref("torch", "float16"), Value::global_ref("torch", "bfloat16")}), *dtypes), "");

  auto od = read(td::kOrderedDictPairs);  // OrderedDict([[1, 2], [3, 4]]) form
  ASSERT_THAT(od, IsOk());
  EXPECT_EQ(first_difference(D({{I(1), I(2)}, {I(3), I(4)}}, true), *od), "");

  auto set = read(td::kBuiltinsSet);  // module "builtins" as well as "__builtin__"
  ASSERT_THAT(set, IsOk());
  EXPECT_EQ(first_difference(Coll(Kind::kSet, {I(1), I(2)}), *set), "");

  // Python fails on it (UnicodeEncodeError); so do we.
  EXPECT_THAT(read(td::kCodecsWide), StatusIs(StatusCode::kDataLoss, HasSubstr("above U+00FF")));
}

TEST(PickleReader, TorchTensorsFromTorchSave) {
  FakeStorages fake;
  auto m = read(td::kTorchMatrix, fake.loader());
  ASSERT_THAT(m, IsOk());
  ASSERT_EQ((*m)->kind, Kind::kTensor);
  const Tensor& t = (*m)->tensor;
  EXPECT_EQ(t.dtype(), base::DType::kF32);
  EXPECT_EQ(t.shape, (std::vector<std::int64_t>{2, 3}));
  EXPECT_EQ(t.stride, (std::vector<std::int64_t>{3, 1}));
  EXPECT_EQ(t.storage_offset, 0);
  EXPECT_EQ(t.storage->numel, 6u);
  EXPECT_FALSE(t.requires_grad);
  EXPECT_FALSE(t.parameter);
  EXPECT_EQ(first_difference(t.backward_hooks, D({}, true)), "");

  FakeStorages views;
  // x = arange(10, f64); {'a': x[2:5], 'b': x.view(2, 5).t(), 'c': x, 'd': x}
  auto v = read(td::kTorchViews, views.loader());
  ASSERT_THAT(v, IsOk());
  const Tensor& a = (*v)->get("a")->tensor;
  const Tensor& b = (*v)->get("b")->tensor;
  EXPECT_EQ(a.storage_offset, 2);
  EXPECT_EQ(a.shape, (std::vector<std::int64_t>{3}));
  EXPECT_EQ(b.shape, (std::vector<std::int64_t>{5, 2}));
  EXPECT_EQ(b.stride, (std::vector<std::int64_t>{1, 5}));
  EXPECT_EQ(a.storage.get(), b.storage.get());
  EXPECT_EQ((*v)->get("c").get(), (*v)->get("d").get());  // one tensor object, memoised
  EXPECT_EQ(views.by_key.size(), 1u);
  EXPECT_EQ(a.dtype(), base::DType::kF64);

  FakeStorages param;
  auto p = read(td::kTorchParam, param.loader());
  ASSERT_THAT(p, IsOk());
  ASSERT_TRUE((*p)->tensor.parameter);
  EXPECT_TRUE((*p)->tensor.parameter->requires_grad);
  EXPECT_FALSE((*p)->tensor.requires_grad);  // the data tensor inside the Parameter
  EXPECT_EQ((*p)->tensor.dtype(), base::DType::kF16);
  EXPECT_EQ((*p)->type_name(), "Parameter");
}

TEST(PickleReader, TensorMetadataIsValidated) {
  {
    FakeStorages f;
    auto ok = read(td::kFakeTensorOk, f.loader());
    ASSERT_THAT(ok, IsOk());
    EXPECT_EQ((*ok)->tensor.storage_offset, 2);
    PickleLimits one_dim;
    one_dim.max_tensor_dims = 1;
    EXPECT_THAT(read(td::kFakeTensorOk, f.loader(), one_dim), StatusIs(StatusCode::kDataLoss, HasSubstr("dims")));
  }
  {
    FakeStorages f;
    EXPECT_THAT(read(td::kFakeTensorPastEnd, f.loader()),
                StatusIs(StatusCode::kDataLoss, HasSubstr("runs past the end of its storage of 12 elements")));
  }
  {
    FakeStorages f;
    EXPECT_THAT(read(td::kFakeTensorNegStride, f.loader()), StatusIs(StatusCode::kDataLoss, HasSubstr("negative")));
  }
  {
    FakeStorages f;
    EXPECT_THAT(read(td::kFakeTensorRankMismatch, f.loader()), StatusIs(StatusCode::kDataLoss, HasSubstr("differ in length")));
  }
  {
    FakeStorages f;
    EXPECT_THAT(read(td::kFakeTensorHuge, f.loader()), StatusIs(StatusCode::kDataLoss, HasSubstr("_rebuild_tensor_v2")));
  }
  {
    FakeStorages f;
    auto empty = read(td::kFakeTensorEmpty, f.loader());
    ASSERT_THAT(empty, IsOk());
    EXPECT_EQ((*empty)->tensor.numel(), 0u);
  }
  {
    FakeStorages f;
    EXPECT_THAT(read(td::kFakeTensorNotStorage, f.loader()),
                StatusIs(StatusCode::kDataLoss, HasSubstr("expected a storage")));
  }
  {
    FakeStorages f;
    auto shared = read(td::kFakeSharedKey, f.loader());
    ASSERT_THAT(shared, IsOk());
    EXPECT_EQ((*shared)->items[0]->tensor.storage.get(), (*shared)->items[1]->tensor.storage.get());
    EXPECT_EQ(f.calls, 2);  // the reader asks for every reference; the loader dedupes
  }
}

TEST(PickleReader, ReferenceCyclesAreRefused) {
  EXPECT_THAT(read(td::kSelfList), StatusIs(StatusCode::kDataLoss, HasSubstr("reference cycle")));
  EXPECT_THAT(read(td::kSelfDict), StatusIs(StatusCode::kDataLoss, HasSubstr("reference cycle")));
}

// n nested lists, the innermost holding one int: [[...[1]...]].
std::string nested_lists(std::size_t n) {
  std::string p = "\x80\x02";
  p.append(n, ']');
  p += "K\x01";
  p.append(n, 'a');
  return p + ".";
}

TEST(PickleReader, DepthLimit) {
  EXPECT_THAT(read_bytes(nested_lists(1000)), IsOk());
  EXPECT_THAT(read_bytes(nested_lists(1001)), StatusIs(StatusCode::kDataLoss, HasSubstr("pickle nesting deeper than 1000")));
  PickleLimits three;
  three.max_depth = 3;
  EXPECT_THAT(read_bytes(nested_lists(3), nullptr, three), IsOk());
  EXPECT_THAT(read_bytes(nested_lists(4), nullptr, three), StatusIs(StatusCode::kDataLoss, HasSubstr("deeper than 3")));
}

TEST(PickleReader, MillionDeepNestingNeitherRecursesNorLeaks) {
  // A million nested lists built top-down ("]]]...K1aaa..."): all million lists exist before the
  // first APPEND links them; refused, and freed without recursion.
  EXPECT_THAT(read_bytes(nested_lists(1'000'000)),
              StatusIs(StatusCode::kDataLoss, HasSubstr("APPEND at offset 1001004: pickle nesting deeper than 1000")));
  // Built bottom-up, where freeing a finished chain would recurse through every level: refused at
  // the 1001st level, never built further. Lists ("(((...N lll..."), tuples ("N" + TUPLE1s) and
  // dicts ("(K1(K1...N ddd...").
  constexpr std::size_t kDeep = 1'000'000;
  std::string lists = "\x80\x02";
  lists.append(kDeep, '(');
  lists += 'N';
  lists.append(kDeep, 'l');
  EXPECT_THAT(read_bytes(lists + "."), StatusIs(StatusCode::kDataLoss, HasSubstr("LIST at offset 1001003: pickle nesting deeper than 1000")));
  std::string tuples = "\x80\x02N";
  tuples.append(kDeep, '\x85');
  EXPECT_THAT(read_bytes(tuples + "."), StatusIs(StatusCode::kDataLoss, HasSubstr("TUPLE1 at offset 1003: pickle nesting deeper than 1000")));
  std::string dicts = "\x80\x02";
  for (std::size_t i = 0; i < kDeep; ++i) dicts += "(K\x01";
  dicts += "N";
  dicts.append(kDeep, 'd');
  EXPECT_THAT(read_bytes(dicts + "."), StatusIs(StatusCode::kDataLoss, HasSubstr("DICT at offset")));
  // Refused as soon as the nesting passes the limit, even if it would be dropped before STOP.
  std::string dropped = nested_lists(100'000);
  dropped.back() = '0';
  EXPECT_THAT(read_bytes(dropped + "N."), StatusIs(StatusCode::kDataLoss, HasSubstr("pickle nesting deeper than 1000")));
  // Garbage within the limit is simply dropped.
  std::string shallow = nested_lists(50);
  shallow.back() = '0';
  EXPECT_THAT(read_bytes(shallow + "N."), IsOk());
  // Cut short in the middle of a deep structure.
  EXPECT_THAT(read_bytes(nested_lists(100'000).substr(0, 150'000)), StatusIs(StatusCode::kDataLoss, testing::_));
}

// L0 = [1]; L(i) = [L(i-1)] * 10 via memo references: 10**levels leaves from a few hundred bytes.
std::string fan_out(int levels) {
  std::string p = "\x80\x02]K\x01" "aq";
  p += '\0';
  for (int i = 1; i <= levels; ++i) {
    p += "](";
    for (int k = 0; k < 10; ++k) {
      p += 'h';
      p += static_cast<char>(i - 1);
    }
    p += "eq";
    p += static_cast<char>(i);
  }
  return p + ".";
}

TEST(PickleReader, ExpandedSizeLimit) {
  EXPECT_THAT(read_bytes(fan_out(30)), StatusIs(StatusCode::kDataLoss, HasSubstr("expands to more than 67108864")));
  PickleLimits small;
  small.max_expanded_values = 1000;
  // Counting every reference: L0 = [1] is 2 values, L1 = 1 + 10 * 2 = 21, L2 = 211, L3 = 2111.
  EXPECT_THAT(read_bytes(fan_out(3), nullptr, small), StatusIs(StatusCode::kDataLoss, HasSubstr("expands")));
  auto ok = read_bytes(fan_out(2), nullptr, small);
  ASSERT_THAT(ok, IsOk());
  EXPECT_EQ((*ok)->items.size(), 10u);
  EXPECT_EQ((*ok)->items[0].get(), (*ok)->items[9].get());  // shared, not copied
}

TEST(PickleReader, EveryTruncationIsAnError) {
  for (const char* hex : {td::kRichP2, td::kRichP4, td::kSmallP0, td::kSmallP1, td::kTorchViews, td::kNamespace}) {
    const auto bytes = td::unhex(hex);
    FakeStorages f;
    ASSERT_THAT(read_pickle(bytes, f.loader()), IsOk());
    for (std::size_t n = 0; n < bytes.size(); ++n) {
      auto r = read_pickle(std::span(bytes.data(), n), f.loader());
      ASSERT_FALSE(r.ok()) << "prefix of " << n << " bytes";
      ASSERT_EQ(r.status().code(), StatusCode::kDataLoss) << r.status().to_string();
    }
  }
}

TEST(PickleReader, MalformedInputMessages) {
  auto raw = [](const char* s, std::size_t n) { return std::string(s, n); };
  EXPECT_THAT(read_bytes(raw("\x80\x02\xff.", 4)),
              StatusIs(StatusCode::kDataLoss, testing::Eq("unknown pickle opcode 0xff at offset 2")));
  EXPECT_THAT(read_bytes(raw("\x80\x02h\x05.", 5)),
              StatusIs(StatusCode::kDataLoss, testing::Eq("BINGET at offset 2: memo key 5 was never stored")));
  EXPECT_THAT(read_bytes(raw("\x80\x02]a.", 5)), StatusIs(StatusCode::kDataLoss, HasSubstr("APPEND at offset 3: stack underflow")));
  EXPECT_THAT(read_bytes(raw("\x80\x02.", 3)), StatusIs(StatusCode::kDataLoss, HasSubstr("STOP at offset 2: stack underflow")));
  // TUPLE1 may not reach below a MARK.
  EXPECT_THAT(read_bytes(raw("\x80\x02N(\x85.", 6)), StatusIs(StatusCode::kDataLoss, HasSubstr("TUPLE1 at offset 4: stack underflow")));
  EXPECT_THAT(read_bytes(raw("\x80\x02Nt.", 5)), StatusIs(StatusCode::kDataLoss, HasSubstr("TUPLE at offset 3: no MARK")));
  EXPECT_THAT(read_bytes(raw("\x80\x02](K\x01K\x02u.", 11)),
              StatusIs(StatusCode::kDataLoss, HasSubstr("SETITEMS at offset 8: cannot set items on a list")));
  EXPECT_THAT(read_bytes(raw("\x80\x02}K\x01" "a.", 7)), StatusIs(StatusCode::kDataLoss, HasSubstr("cannot append to a dict")));
  EXPECT_THAT(read_bytes(raw("\x80\x02}(K\x01u.", 8)), StatusIs(StatusCode::kDataLoss, HasSubstr("odd number of items")));
  EXPECT_THAT(read_bytes(raw("\x80\x02N", 3)), StatusIs(StatusCode::kDataLoss, HasSubstr("without a STOP")));
  EXPECT_THAT(read_bytes(raw("\x80\x06N.", 4)), StatusIs(StatusCode::kUnimplemented, HasSubstr("protocol 6")));
  EXPECT_THAT(read_bytes(raw("\x80\x02\x82\x01.", 5)), StatusIs(StatusCode::kUnimplemented, HasSubstr("EXT1")));
  EXPECT_THAT(read_bytes("(imod\nCls\n."), StatusIs(StatusCode::kUnimplemented, HasSubstr("INST")));
  EXPECT_THAT(read_bytes(raw("\x80\x05\x97.", 4)), StatusIs(StatusCode::kUnimplemented, HasSubstr("NEXT_BUFFER")));
  // Lengths are checked against the input before anything is allocated.
  EXPECT_THAT(read_bytes(raw("\x80\x02X\xff\xff\xff\xff" "ab.", 10)),
              StatusIs(StatusCode::kDataLoss, HasSubstr("BINUNICODE at offset 2: needs 4294967295 bytes but only 3 remain")));
  EXPECT_THAT(read_bytes(raw("\x80\x04\x8e\xff\xff\xff\xff\xff\xff\xff\x7f.", 12)), StatusIs(StatusCode::kDataLoss, HasSubstr("needs")));
  EXPECT_THAT(read_bytes(raw("\x80\x02\x8b\xff\xff\xff\x7f.", 8)), StatusIs(StatusCode::kDataLoss, HasSubstr("LONG4")));
  EXPECT_THAT(read_bytes(raw("\x80\x02\x8b\xff\xff\xff\xff.", 8)), StatusIs(StatusCode::kDataLoss, HasSubstr("negative byte count")));
  EXPECT_THAT(read_bytes(raw("\x80\x04\x95\xff\x00\x00\x00\x00\x00\x00\x00N.", 13)),
              StatusIs(StatusCode::kDataLoss, HasSubstr("FRAME")));
  EXPECT_THAT(read_bytes(raw("\x80\x02X\x02\x00\x00\x00\xc3\x28.", 9)), StatusIs(StatusCode::kDataLoss, HasSubstr("UTF-8")));
  EXPECT_THAT(read_bytes("Ifoo\n."), StatusIs(StatusCode::kDataLoss, HasSubstr("not a decimal integer")));
  EXPECT_THAT(read_bytes("I12"), StatusIs(StatusCode::kDataLoss, HasSubstr("no terminating newline")));
  EXPECT_THAT(read_bytes(raw("\x80\x02X\x01\x00\x00\x00" "a\x93.", 10)), StatusIs(StatusCode::kDataLoss, HasSubstr("STACK_GLOBAL")));
  EXPECT_THAT(read_bytes(raw("\x80\x02K\x01K\x02R.", 8)), StatusIs(StatusCode::kDataLoss, HasSubstr("expected a tuple")));
  // BUILD: twice on one object, or with real state on a non-object.
  EXPECT_THAT(read_bytes(raw("\x80\x02" "cm\nC\n)\x81}b}b.", 14)), StatusIs(StatusCode::kUnimplemented, HasSubstr("second BUILD")));
  EXPECT_THAT(read_bytes(raw("\x80\x02]K\x01" "b.", 7)), StatusIs(StatusCode::kUnimplemented, HasSubstr("BUILD")));
}

TEST(PickleReader, PersistentIds) {
  const std::string p("\x80\x02K\x07Q.", 6);
  EXPECT_THAT(read_bytes(p), StatusIs(StatusCode::kDataLoss, HasSubstr("no persistent_load")));
  auto failing = [](const ValuePtr&) -> base::Result<ValuePtr> { return base::not_found("no such storage"); };
  EXPECT_THAT(read_bytes(p, failing), StatusIs(StatusCode::kNotFound, testing::Eq("BINPERSID at offset 4: no such storage")));
  auto echo = [](const ValuePtr& pid) -> base::Result<ValuePtr> { return T({pid}); };
  auto r = read_bytes(p, echo);
  ASSERT_THAT(r, IsOk());
  EXPECT_EQ(first_difference(T({I(7)}), *r), "");
}

}  // namespace
}  // namespace ucp::format
