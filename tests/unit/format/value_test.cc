// Value helpers: constructors and dict access, tensor geometry, strided copies (checked against a
// plain per-element index loop), and structural equality with its difference paths.
#include "ucp/format/value.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstring>
#include <limits>

#include "testutil/status_matchers.h"

namespace ucp::format {
namespace {

using base::DType;
using base::StatusCode;
using testing::HasSubstr;
using testutil::IsOk;
using testutil::StatusIs;
using Kind = Value::Kind;

TEST(Value, ConstructorsAndTypeNames) {
  EXPECT_EQ(Value::none()->type_name(), "None");
  EXPECT_EQ(Value::boolean(true)->b, true);
  EXPECT_EQ(Value::integer(-5)->i, -5);
  EXPECT_EQ(Value::floating(2.5)->f, 2.5);
  EXPECT_EQ(Value::string("s")->type_name(), "str");
  EXPECT_EQ(Value::bytes("b")->type_name(), "bytes");
  EXPECT_EQ(Value::tuple({})->type_name(), "tuple");
  EXPECT_EQ(Value::list({})->type_name(), "list");
  EXPECT_EQ(Value::dict()->type_name(), "dict");
  EXPECT_EQ(Value::dict({}, true)->type_name(), "OrderedDict");
  auto size = Value::size({2, 3});
  EXPECT_EQ(size->type_name(), "torch.Size");
  ASSERT_EQ(size->items.size(), 2u);
  EXPECT_EQ(size->items[1]->i, 3);
  EXPECT_EQ(Value::global_ref("torch", "float16")->type_name(), "global torch.float16");
  auto obj = std::make_shared<Value>();
  obj->kind = Kind::kObject;
  obj->object.callable = Value::global_ref("deepspeed.runtime.fp16.loss_scaler", "LossScaler");
  EXPECT_EQ(obj->type_name(), "deepspeed.runtime.fp16.loss_scaler.LossScaler");
  Tensor t = Tensor::from_bytes(DType::kF32, {1}, std::vector<std::byte>(4));
  EXPECT_EQ(Value::tensor_value(t)->type_name(), "Tensor");
  t.parameter = Tensor::Parameter{};
  EXPECT_EQ(Value::tensor_value(t)->type_name(), "Parameter");
}

TEST(Value, DictGetAndSet) {
  auto d = Value::dict({{Value::string("a"), Value::integer(1)}, {Value::integer(2), Value::integer(2)}});
  EXPECT_EQ(d->get("a")->i, 1);
  EXPECT_EQ(d->get("b"), nullptr);
  EXPECT_EQ(d->get("2"), nullptr);  // an int key is not the string "2"
  d->set("a", Value::integer(10));
  d->set("b", Value::integer(20));
  ASSERT_EQ(d->entries.size(), 3u);
  EXPECT_EQ(d->entries[0].second->i, 10);  // replaced in place
  EXPECT_EQ(d->entries[2].first->str, "b");
  // A pickle may set one key twice; the later value wins, as in Python.
  d->entries.emplace_back(Value::string("a"), Value::integer(99));
  EXPECT_EQ(d->get("a")->i, 99);
  EXPECT_EQ(Value::list({})->get("a"), nullptr);
}

TEST(Tensor, Geometry) {
  EXPECT_EQ(Tensor::contiguous_strides({2, 3, 4}), (std::vector<std::int64_t>{12, 4, 1}));
  EXPECT_EQ(Tensor::contiguous_strides({}), (std::vector<std::int64_t>{}));
  EXPECT_EQ(Tensor::contiguous_strides({0, 5}), (std::vector<std::int64_t>{5, 1}));
  Tensor t = Tensor::from_bytes(DType::kBF16, {2, 3}, std::vector<std::byte>(12));
  EXPECT_EQ(t.numel(), 6u);
  EXPECT_EQ(t.nbytes(), 12u);
  EXPECT_EQ(t.storage->numel, 6u);
  EXPECT_TRUE(t.is_contiguous());
  t.stride = {1, 2};
  EXPECT_FALSE(t.is_contiguous());
  t.shape = {1, 6};
  t.stride = {99, 1};  // size-1 dims may carry any stride
  EXPECT_TRUE(t.is_contiguous());
  t.shape = {0, 6};
  t.stride = {7, 3};
  EXPECT_TRUE(t.is_contiguous());
  EXPECT_EQ(t.numel(), 0u);
  Tensor scalar = Tensor::from_bytes(DType::kF64, {}, std::vector<std::byte>(8));
  EXPECT_EQ(scalar.numel(), 1u);
  EXPECT_TRUE(scalar.is_contiguous());
}

TEST(Tensor, CheckTensor) {
  Tensor t = Tensor::from_bytes(DType::kF32, {3, 4}, std::vector<std::byte>(48));
  EXPECT_THAT(check_tensor(t), IsOk());
  t.storage_offset = 1;
  EXPECT_THAT(check_tensor(t), StatusIs(StatusCode::kInvalidArgument, HasSubstr("runs past the end of its storage of 12")));
  t.storage_offset = 0;
  t.stride = {4, -1};
  EXPECT_THAT(check_tensor(t), StatusIs(StatusCode::kInvalidArgument, HasSubstr("negative")));
  t.stride = {4};
  EXPECT_THAT(check_tensor(t), StatusIs(StatusCode::kInvalidArgument, HasSubstr("differ in length")));
  t.shape = {std::int64_t{1} << 62, 8};
  t.stride = {0, 0};
  EXPECT_THAT(check_tensor(t), StatusIs(StatusCode::kInvalidArgument, HasSubstr("overflows")));
  t.shape = {std::numeric_limits<std::int64_t>::max(), 2};
  t.stride = {1, std::numeric_limits<std::int64_t>::max()};
  EXPECT_THAT(check_tensor(t), StatusIs(StatusCode::kInvalidArgument, testing::_));
  t.shape = {0, 100};
  t.stride = {100, 1};
  t.storage_offset = 1000;  // an empty view touches nothing
  EXPECT_THAT(check_tensor(t), IsOk());
  Tensor none;
  EXPECT_THAT(check_tensor(none), StatusIs(StatusCode::kInvalidArgument, HasSubstr("no storage")));
}

// Storage of n int32 elements 0..n-1, viewed with the given geometry.
Tensor iota_view(std::int64_t n, std::int64_t offset, std::vector<std::int64_t> shape, std::vector<std::int64_t> stride) {
  std::vector<std::byte> data(static_cast<std::size_t>(n) * 4);
  for (std::int32_t i = 0; i < n; ++i) std::memcpy(data.data() + 4 * i, &i, 4);
  Tensor t = Tensor::from_bytes(DType::kI32, {n}, std::move(data));
  t.storage_offset = offset;
  t.shape = std::move(shape);
  t.stride = std::move(stride);
  return t;
}

// The reference: visit every multi-index in row-major order and read storage[offset + sum(i*s)].
std::vector<std::int32_t> naive_elements(const Tensor& t) {
  std::vector<std::int32_t> out;
  const std::size_t rank = t.shape.size();
  for (std::int64_t d : t.shape)
    if (d == 0) return out;
  std::vector<std::int64_t> idx(rank, 0);
  while (true) {
    std::int64_t pos = t.storage_offset;
    for (std::size_t d = 0; d < rank; ++d) pos += idx[d] * t.stride[d];
    std::int32_t v;
    std::memcpy(&v, t.storage->bytes.data() + 4 * pos, 4);
    out.push_back(v);
    std::size_t d = rank;
    while (d > 0 && ++idx[d - 1] == t.shape[d - 1]) idx[--d] = 0;
    if (d == 0) return out;
  }
}

std::vector<std::int32_t> copied_elements(const Tensor& t) {
  const std::vector<std::byte> bytes = tensor_bytes(t);
  std::vector<std::int32_t> out(bytes.size() / 4);
  if (!bytes.empty()) std::memcpy(out.data(), bytes.data(), bytes.size());
  return out;
}

TEST(Tensor, StridedCopiesMatchElementByElementReads) {
  struct Case {
    std::int64_t n, offset;
    std::vector<std::int64_t> shape, stride;
  } cases[] = {
      {12, 0, {3, 4}, {4, 1}},           // contiguous
      {12, 0, {4, 3}, {1, 4}},           // transposed
      {20, 3, {2, 3}, {5, 1}},           // rows of a wider matrix, offset
      {24, 1, {2, 3, 2}, {12, 4, 2}},    // every other element
      {4, 0, {3, 4}, {0, 1}},            // broadcast rows (stride 0)
      {30, 2, {2, 1, 3, 2}, {15, 99, 5, 1}},  // size-1 dim with an odd stride, mergeable dims
      {10, 7, {}, {}},                   // 0-dim
      {10, 0, {0, 3}, {3, 1}},           // empty
      {60, 0, {3, 4, 5}, {20, 5, 1}},    // fully contiguous 3-D: one run
      {60, 0, {5, 4, 3}, {1, 5, 20}},    // fully reversed
  };
  for (const auto& c : cases) {
    Tensor t = iota_view(c.n, c.offset, c.shape, c.stride);
    ASSERT_THAT(check_tensor(t), IsOk());
    EXPECT_EQ(copied_elements(t), naive_elements(t)) << "shape rank " << c.shape.size() << " offset " << c.offset;
  }
}

TEST(Tensor, ContiguousBytesIsAViewOrNothing) {
  Tensor t = iota_view(20, 4, {2, 4}, {4, 1});
  auto view = contiguous_bytes(t);
  ASSERT_TRUE(view);
  EXPECT_EQ(view->data(), t.storage->bytes.data() + 16);
  EXPECT_EQ(view->size(), 32u);
  t.stride = {1, 2};
  EXPECT_FALSE(contiguous_bytes(t));
  t.stride = {4, 1};
  t.storage_offset = 13;  // past the end
  EXPECT_FALSE(contiguous_bytes(t));
  // An inconsistent tensor is never read out of bounds: the copy is zero-filled.
  std::vector<std::byte> out(32, std::byte{0x55});
  copy_tensor_bytes(t, out);
  EXPECT_EQ(out, std::vector<std::byte>(32, std::byte{0}));
  // The storage claims more elements than its bytes hold.
  Tensor lying = iota_view(4, 0, {4}, {1});
  lying.storage->numel = 8;
  lying.shape = {8};
  std::vector<std::byte> out2(32, std::byte{0x55});
  copy_tensor_bytes(lying, out2);
  EXPECT_EQ(out2, std::vector<std::byte>(32, std::byte{0}));
}

ValuePtr f64(std::uint64_t bits) {
  double d;
  std::memcpy(&d, &bits, 8);
  return Value::floating(d);
}

TEST(ValuesEqual, FloatsCompareBitwise) {
  EXPECT_TRUE(values_equal(f64(0x7ff8000000000000ull), f64(0x7ff8000000000000ull)));  // nan == same nan
  EXPECT_FALSE(values_equal(f64(0x7ff8000000000000ull), f64(0x7ff8000000000001ull)));
  EXPECT_FALSE(values_equal(Value::floating(0.0), Value::floating(-0.0)));
  EXPECT_EQ(first_difference(Value::floating(0.0), Value::floating(-0.0)), "<root>: 0 vs -0");
}

TEST(ValuesEqual, PathsToTheFirstDifference) {
  auto make = [](double cur_scale, std::int64_t x) {
    auto scaler = std::make_shared<Value>();
    scaler->kind = Kind::kObject;
    scaler->object.callable = Value::global_ref("m", "LossScaler");
    scaler->object.kind = BuildKind::kNewObj;
    scaler->object.state = Value::dict({{Value::string("cur_scale"), Value::floating(cur_scale)}});
    return Value::dict({{Value::string("optimizer_state_dict"),
                         Value::dict({{Value::string("loss_scaler"), scaler},
                                      {Value::string("list"), Value::list({Value::integer(0), Value::integer(x)})}})}});
  };
  EXPECT_EQ(first_difference(make(1, 2), make(1, 2)), "");
  EXPECT_TRUE(values_equal(make(1, 2), make(1, 2)));
  EXPECT_EQ(first_difference(make(1, 2), make(2, 2)), "['optimizer_state_dict']['loss_scaler'].state['cur_scale']: 1 vs 2");
  EXPECT_EQ(first_difference(make(1, 2), make(1, 3)), "['optimizer_state_dict']['list'][1]: 2 vs 3");
  EXPECT_EQ(first_difference(Value::list({Value::integer(1)}), Value::list({})), "<root>: length 1 vs 0");
  EXPECT_EQ(first_difference(Value::string("a"), Value::integer(1)), "<root>: 'a' vs 1");
  EXPECT_EQ(first_difference(Value::dict({{Value::string("k"), Value::none()}}), Value::dict({{Value::string("j"), Value::none()}})),
            ".keys[0]: 'k' vs 'j'");
  EXPECT_FALSE(values_equal(Value::dict(), Value::dict({}, true)));
  EXPECT_FALSE(values_equal(Value::list({}), Value::tuple({})));
  EXPECT_FALSE(values_equal(Value::global_ref("a", "b"), Value::global_ref("a", "c")));
  EXPECT_TRUE(values_equal(nullptr, nullptr));
  EXPECT_FALSE(values_equal(nullptr, Value::none()));
}

TEST(ValuesEqual, TensorsCompareElementsNotLayout) {
  // The same 2x3 matrix, once contiguous and once as the transpose of a 3x2 storage.
  Tensor a = iota_view(6, 0, {2, 3}, {3, 1});
  std::vector<std::byte> data(24);
  const std::int32_t transposed[6] = {0, 3, 1, 4, 2, 5};
  std::memcpy(data.data(), transposed, 24);
  Tensor b = Tensor::from_bytes(DType::kI32, {3, 2}, data);
  b.shape = {2, 3};
  b.stride = {1, 2};
  EXPECT_TRUE(values_equal(Value::tensor_value(a), Value::tensor_value(b)));
  // Null hooks are the empty OrderedDict torch writes.
  b.backward_hooks = Value::dict({}, true);
  EXPECT_TRUE(values_equal(Value::tensor_value(a), Value::tensor_value(b)));
  b.requires_grad = true;
  EXPECT_THAT(first_difference(Value::tensor_value(a), Value::tensor_value(b)), HasSubstr("requires_grad False vs True"));
  b.requires_grad = false;
  Tensor c = a;
  c.storage_offset = 0;
  c.shape = {3, 2};
  c.stride = {2, 1};
  EXPECT_FALSE(values_equal(Value::tensor_value(a), Value::tensor_value(c)));  // shape differs
  Tensor d = iota_view(7, 1, {2, 3}, {3, 1});  // elements 1..6
  EXPECT_THAT(first_difference(Value::tensor_value(a), Value::tensor_value(d)), HasSubstr("element bytes differ"));
  Tensor p = a;
  p.parameter = Tensor::Parameter{};
  EXPECT_FALSE(values_equal(Value::tensor_value(a), Value::tensor_value(p)));
  Tensor other_dtype = Tensor::from_bytes(DType::kF32, {2, 3}, tensor_bytes(a));
  EXPECT_FALSE(values_equal(Value::tensor_value(a), Value::tensor_value(other_dtype)));
}

TEST(ValuesEqual, ObjectsAndSharedSubtrees) {
  auto obj = [](std::int64_t item) {
    auto v = std::make_shared<Value>();
    v->kind = Kind::kObject;
    v->object.callable = Value::global_ref("collections", "defaultdict");
    v->object.args = Value::tuple({});
    v->object.dict_items = {{Value::string("k"), Value::integer(item)}};
    return v;
  };
  EXPECT_TRUE(values_equal(obj(1), obj(1)));
  EXPECT_EQ(first_difference(obj(1), obj(2)), ".dict_items['k']: 1 vs 2");
  auto no_args = obj(1);
  no_args->object.args = nullptr;  // null args mean ()
  EXPECT_TRUE(values_equal(no_args, obj(1)));
  auto newobj = obj(1);
  newobj->object.kind = BuildKind::kNewObj;
  EXPECT_FALSE(values_equal(newobj, obj(1)));

  // A DAG with 2^40 paths compares in linear time.
  ValuePtr a = Value::integer(1);
  ValuePtr b = Value::integer(1);
  for (int i = 0; i < 40; ++i) {
    a = Value::list({a, a});
    b = Value::list({b, b});
  }
  EXPECT_TRUE(values_equal(a, b));
}

}  // namespace
}  // namespace ucp::format
