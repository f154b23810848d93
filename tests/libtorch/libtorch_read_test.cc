// libtorch (C++, Debian libtorch 1.13) as an independent reader of the files write_torch_file
// produces: torch::jit::pickle_load parses the zip container and the pickle with its own code, so
// every tensor it rebuilds (dtype, shape, strides, storage offset, shared storages, bytes) must match
// what we wrote.
//
// libtorch 1.13's unpickler is narrower than Python's, also on files torch.save writes: protocol 2
// only, LONG1 only with 8 bytes (ints in [2^55, 2^63)), no SETITEM (single-entry dicts), and
// collections.OrderedDict becomes None; so the trees here are plain dicts of two or more entries.
// It also gives every tensor its own copy of a shared storage (checked with torch.save's own files),
// so storage sharing is not observable here: the Python oracle tests check it.
#include <ATen/ATen.h>
#include <torch/csrc/jit/serialization/pickle.h>

#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <fstream>
#include <iterator>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "testutil/golden.h"
#include "testutil/temp_dir.h"
#include "ucp/base/dtype.h"
#include "ucp/format/torch_file.h"
#include "ucp/format/value.h"

namespace {

namespace fmt = ucp::format;
using ucp::base::DType;
using fmt::Value;
using fmt::ValuePtr;

at::ScalarType scalar_type(DType t) {
  switch (t) {
    case DType::kBool: return at::kBool;
    case DType::kU8: return at::kByte;
    case DType::kI8: return at::kChar;
    case DType::kI16: return at::kShort;
    case DType::kI32: return at::kInt;
    case DType::kI64: return at::kLong;
    case DType::kF16: return at::kHalf;
    case DType::kBF16: return at::kBFloat16;
    case DType::kF32: return at::kFloat;
    case DType::kF64: return at::kDouble;
    case DType::kC64: return at::kComplexFloat;
    case DType::kC128: return at::kComplexDouble;
    default: return at::ScalarType::Undefined;  // not in libtorch 1.13
  }
}

// Deterministic arbitrary bytes (NaN payloads, subnormals and all); bool elements are 0 or 1.
std::vector<std::byte> pattern(DType t, std::size_t numel, std::uint32_t seed) {
  std::vector<std::byte> out(numel * ucp::base::dtype_size(t));
  std::uint32_t x = seed * 2654435761u + 1;
  for (auto& b : out) {
    x = x * 1664525u + 1013904223u;
    b = static_cast<std::byte>(t == DType::kBool ? (x >> 16) & 1 : x >> 24);
  }
  return out;
}

std::vector<char> read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}

c10::IValue load_with_libtorch(const std::string& path) {
  return torch::jit::pickle_load(read_file(path));
}

// The value under string `key` of a dict IValue; empty if absent or not a dict.
std::optional<c10::IValue> dict_get(const c10::IValue& dict, const std::string& key) {
  if (!dict.isGenericDict()) return std::nullopt;
  for (const auto& entry : dict.toGenericDict()) {
    if (entry.key().isString() && entry.key().toStringRef() == key) return entry.value();
  }
  return std::nullopt;
}

// Compares what libtorch rebuilt with the tensor we wrote, field by field and bit by bit.
void expect_tensor_matches(const at::Tensor& got, const fmt::Tensor& want, const std::string& name) {
  SCOPED_TRACE("tensor '" + name + "'");
  ASSERT_EQ(got.scalar_type(), scalar_type(want.dtype()));
  EXPECT_EQ(std::vector<std::int64_t>(got.sizes().begin(), got.sizes().end()), want.shape);
  EXPECT_EQ(std::vector<std::int64_t>(got.strides().begin(), got.strides().end()), want.stride);
  EXPECT_EQ(got.storage_offset(), want.storage_offset);
  const bool want_grad = want.parameter ? want.parameter->requires_grad : want.requires_grad;
  EXPECT_EQ(got.requires_grad(), want_grad);
  EXPECT_EQ(got.storage().nbytes(), want.storage->nbytes()) << "storage size";
  // Whole storage, bitwise (padding a view does not cover included).
  if (want.storage->nbytes() > 0) {
    ASSERT_EQ(std::memcmp(got.storage().data(), want.storage->bytes.data(), want.storage->nbytes()), 0)
        << "storage bytes differ";
  }
  // Elements through libtorch's own strided indexing, bitwise against our row-major copy.
  const std::vector<std::byte> elems = fmt::tensor_bytes(want);
  const at::Tensor contiguous = got.detach().contiguous();
  ASSERT_EQ(static_cast<std::size_t>(contiguous.nbytes()), elems.size());
  if (!elems.empty()) {
    EXPECT_EQ(std::memcmp(contiguous.data_ptr(), elems.data(), elems.size()), 0) << "element bytes differ";
  }
  // And value equality through a tensor libtorch builds from the same bytes (non-float: no NaN).
  if (!ucp::base::dtype_is_floating(want.dtype())) {
    std::vector<std::byte> copy = elems;
    const at::Tensor expected =
        at::from_blob(copy.data(), want.shape, at::TensorOptions().dtype(scalar_type(want.dtype())));
    EXPECT_TRUE(at::equal(got.detach(), expected));
  }
}

ValuePtr tensor(DType t, std::vector<std::int64_t> shape, std::uint32_t seed) {
  std::size_t n = 1;
  for (auto d : shape) n *= static_cast<std::size_t>(d);
  return Value::tensor_value(fmt::Tensor::from_bytes(t, std::move(shape), pattern(t, n, seed)));
}

ValuePtr dict(std::vector<std::pair<std::string, ValuePtr>> entries) {
  std::vector<std::pair<ValuePtr, ValuePtr>> kv;
  for (auto& [k, v] : entries) kv.emplace_back(Value::string(k), std::move(v));
  return Value::dict(std::move(kv));
}

TEST(LibtorchReadsOurs, SyntheticStateDict) {
  const int protocol = 2;  // the only protocol libtorch reads
  std::map<std::string, ValuePtr> tensors;
  std::uint32_t seed = 1;
  const std::pair<const char*, DType> kDtypes[] = {
      {"f32", DType::kF32}, {"f64", DType::kF64}, {"f16", DType::kF16}, {"bf16", DType::kBF16},
      {"i8", DType::kI8},   {"i16", DType::kI16}, {"i32", DType::kI32}, {"i64", DType::kI64},
      {"u8", DType::kU8},   {"bool", DType::kBool}, {"c64", DType::kC64}, {"c128", DType::kC128}};
  for (const auto& [name, dt] : kDtypes) tensors[name] = tensor(dt, {2, 3}, seed++);
  tensors["scalar"] = tensor(DType::kF32, {}, seed++);
  tensors["empty"] = tensor(DType::kF32, {0}, seed++);
  tensors["empty_3x0"] = tensor(DType::kI64, {3, 0}, seed++);
  tensors["grad"] = tensor(DType::kF32, {4}, seed++);
  tensors["grad"]->tensor.requires_grad = true;

  // Two views of one storage (DeepSpeed's flat buffers): the whole buffer, and a transposed
  // window at offset 5 that leaves padding at the end uncovered.
  auto flat = fmt::Storage::owning(DType::kF32, pattern(DType::kF32, 20, 99));
  fmt::Tensor whole;
  whole.storage = flat;
  whole.shape = {20};
  whole.stride = {1};
  fmt::Tensor window = whole;
  window.storage_offset = 5;
  window.shape = {3, 2};
  window.stride = {1, 3};
  tensors["flat"] = Value::tensor_value(whole);
  tensors["window"] = Value::tensor_value(window);
  fmt::Tensor tail = whole;  // a third view sharing it, contiguous, at the end
  tail.storage_offset = 17;
  tail.shape = {3};
  tensors["tail"] = Value::tensor_value(tail);

  std::vector<std::pair<std::string, ValuePtr>> tensor_entries(tensors.begin(), tensors.end());
  ValuePtr in_list = tensor(DType::kI32, {2, 2}, seed++);
  ValuePtr root = dict({
      {"tensors", dict(tensor_entries)},
      {"nested", dict({{"list", Value::list({Value::integer(1), Value::string("two"),
                                             Value::list({Value::floating(3.5), Value::none(),
                                                          Value::boolean(true)})})},
                       {"tuple", Value::tuple({Value::integer(7), Value::string("x")})},
                       {"tensor_in_list", Value::list({in_list, Value::integer(-3)})}})},
      {"step", Value::integer(7)},
      {"big", Value::integer(std::int64_t{1} << 62)},
      {"negative", Value::integer(-(std::int64_t{1} << 60) - 5)},
      {"name", Value::string("ucp-reshard \xc3\xa9\xe5\x90\x8d")},
  });

  ucp::testutil::TempDir dir;
  const std::string path = (dir / "synthetic.pt").string();
  fmt::TorchWriteOptions options;
  options.protocol = protocol;
  ASSERT_TRUE(fmt::write_torch_file(path, root, options).ok());

  c10::IValue loaded;
  try {
    loaded = load_with_libtorch(path);
  } catch (const std::exception& e) {
    FAIL() << "libtorch cannot load our protocol-" << protocol << " file: " << e.what();
  }
  ASSERT_TRUE(loaded.isGenericDict()) << loaded.tagKind();

  const std::optional<c10::IValue> lt = dict_get(loaded, "tensors");
  ASSERT_TRUE(lt.has_value());
  ASSERT_TRUE(lt->isGenericDict());
  EXPECT_EQ(lt->toGenericDict().size(), tensors.size());
  std::map<std::string, at::Tensor> got;
  for (const auto& [name, value] : tensors) {
    const std::optional<c10::IValue> v = dict_get(*lt, name);
    ASSERT_TRUE(v.has_value()) << name;
    ASSERT_TRUE(v->isTensor()) << name << " is " << v->tagKind();
    got[name] = v->toTensor();
    expect_tensor_matches(got[name], value->tensor, name);
  }

  const std::optional<c10::IValue> nested = dict_get(loaded, "nested");
  ASSERT_TRUE(nested.has_value());
  const std::optional<c10::IValue> list = dict_get(*nested, "list");
  ASSERT_TRUE(list.has_value());
  ASSERT_TRUE(list->isList());
  const auto items = list->toListRef();
  ASSERT_EQ(items.size(), 3u);
  EXPECT_EQ(items[0].toInt(), 1);
  EXPECT_EQ(items[1].toStringRef(), "two");
  ASSERT_TRUE(items[2].isList());
  const auto inner = items[2].toListRef();
  ASSERT_EQ(inner.size(), 3u);
  EXPECT_EQ(inner[0].toDouble(), 3.5);
  EXPECT_TRUE(inner[1].isNone());
  EXPECT_TRUE(inner[2].toBool());
  const std::optional<c10::IValue> tup = dict_get(*nested, "tuple");
  ASSERT_TRUE(tup.has_value());
  ASSERT_TRUE(tup->isTuple());
  ASSERT_EQ(tup->toTupleRef().elements().size(), 2u);
  EXPECT_EQ(tup->toTupleRef().elements()[0].toInt(), 7);
  EXPECT_EQ(tup->toTupleRef().elements()[1].toStringRef(), "x");
  const std::optional<c10::IValue> tl = dict_get(*nested, "tensor_in_list");
  ASSERT_TRUE(tl.has_value());
  ASSERT_TRUE(tl->isList());
  ASSERT_EQ(tl->toListRef().size(), 2u);
  expect_tensor_matches(tl->toListRef()[0].toTensor(), in_list->tensor, "tensor_in_list[0]");
  EXPECT_EQ(tl->toListRef()[1].toInt(), -3);

  EXPECT_EQ(dict_get(loaded, "step").value().toInt(), 7);
  EXPECT_EQ(dict_get(loaded, "big").value().toInt(), std::int64_t{1} << 62);
  EXPECT_EQ(dict_get(loaded, "negative").value().toInt(), -(std::int64_t{1} << 60) - 5);
  EXPECT_EQ(dict_get(loaded, "name").value().toStringRef(), "ucp-reshard \xc3\xa9\xe5\x90\x8d");
}

// Real DeepSpeed tensors (views into flat buffers at offsets, tied weights, bf16/fp16/bool/int64
// buffers, ZeRO-3's empty placeholders), read by us from the fixtures, re-rooted in a plain dict
// (libtorch cannot rebuild OrderedDicts) and written by us: libtorch must see the same tensors.
TEST(LibtorchReadsOurs, DeepSpeedModelTensors) {
  ucp::testutil::TempDir dir;
  int files = 0;
  for (const std::string& path : ucp::testutil::all_golden_pt_files()) {
    const bool model_states = path.find("/checkpoint/") != std::string::npos &&
                              path.find("model_states.pt") != std::string::npos;
    if (!model_states && path.find("fp32_reference.pt") == std::string::npos) continue;
    SCOPED_TRACE(path);
    auto file = fmt::TorchFile::open(path);
    ASSERT_TRUE(file.ok()) << file.status().to_string();
    ValuePtr module = file->root();
    if (model_states) module = module->get("module");
    ASSERT_TRUE(module && module->is_dict());
    std::vector<std::pair<ValuePtr, ValuePtr>> entries;
    for (const auto& [k, v] : module->entries)
      if (k->is_str() && v->is_tensor()) entries.emplace_back(k, v);
    if (entries.size() < 2) continue;  // libtorch needs SETITEMS, i.e. two or more entries
    ValuePtr root = Value::dict(entries);

    const std::string out = (dir / ("out" + std::to_string(files++) + ".pt")).string();
    fmt::TorchWriteOptions options;
    options.protocol = 2;
    ASSERT_TRUE(fmt::write_torch_file(out, root, options).ok());
    c10::IValue loaded;
    try {
      loaded = load_with_libtorch(out);
    } catch (const std::exception& e) {
      FAIL() << "libtorch cannot load our rewrite: " << e.what();
    }
    ASSERT_TRUE(loaded.isGenericDict());
    ASSERT_EQ(loaded.toGenericDict().size(), entries.size());
    for (const auto& [k, v] : entries) {
      const std::optional<c10::IValue> got = dict_get(loaded, k->str);
      ASSERT_TRUE(got.has_value()) << k->str;
      ASSERT_TRUE(got->isTensor());
      const at::Tensor t = got->toTensor();
      expect_tensor_matches(t, v->tensor, k->str);
    }
  }
  EXPECT_GT(files, 20) << "fixtures missing under " << ucp::testutil::golden_dir();
}

}  // namespace
