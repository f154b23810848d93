#include "ucp/format/value.h"

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <set>
#include <string_view>

#include "ucp/base/checked_math.h"

namespace ucp::format {
namespace {

ValuePtr make(Value::Kind kind) {
  auto v = std::make_shared<Value>();
  v->kind = kind;
  return v;
}

}  // namespace

// ------------------------------------------------------------------ Storage / Tensor

std::shared_ptr<Storage> Storage::owning(base::DType dtype, std::vector<std::byte> data, std::string location) {
  auto buffer = std::make_shared<std::vector<std::byte>>(std::move(data));
  auto s = std::make_shared<Storage>();
  s->dtype = dtype;
  s->numel = buffer->size() / base::dtype_size(dtype);
  s->location = std::move(location);
  s->bytes = std::span<const std::byte>(buffer->data(), buffer->size());
  s->owner = std::move(buffer);
  return s;
}

std::uint64_t Tensor::numel() const {
  auto n = base::checked_numel(shape);
  return n ? *n : 0;
}

bool Tensor::is_contiguous() const {
  if (stride.size() != shape.size()) return false;
  std::int64_t expected = 1;
  for (std::size_t d = shape.size(); d-- > 0;) {
    if (shape[d] == 0) return true;  // empty: any strides describe the same (no) elements
  }
  for (std::size_t d = shape.size(); d-- > 0;) {
    if (shape[d] == 1) continue;  // a size-1 dim's stride is never used to address anything
    if (stride[d] != expected) return false;
    expected *= shape[d];
  }
  return true;
}

std::vector<std::int64_t> Tensor::contiguous_strides(const std::vector<std::int64_t>& shape) {
  std::vector<std::int64_t> strides(shape.size());
  std::int64_t s = 1;
  for (std::size_t d = shape.size(); d-- > 0;) {
    strides[d] = s;
    s *= std::max<std::int64_t>(shape[d], 1);
  }
  return strides;
}

Tensor Tensor::from_bytes(base::DType dtype, std::vector<std::int64_t> shape, std::vector<std::byte> data) {
  Tensor t;
  t.storage = Storage::owning(dtype, std::move(data));
  t.stride = contiguous_strides(shape);
  t.shape = std::move(shape);
  return t;
}

namespace {

std::string dims_string(const std::vector<std::int64_t>& dims) {
  std::string s = "[";
  for (std::size_t i = 0; i < dims.size(); ++i) {
    if (i) s += ", ";
    s += std::to_string(dims[i]);
  }
  return s + "]";
}

// Highest element index the view touches (offset + sum (size-1)*stride), or nullopt on overflow.
// Only meaningful for a non-empty tensor whose check_tensor passed the sign checks.
std::optional<std::uint64_t> last_element(const Tensor& t) {
  std::uint64_t last = static_cast<std::uint64_t>(t.storage_offset);
  for (std::size_t d = 0; d < t.shape.size(); ++d) {
    auto step = base::checked_mul(static_cast<std::uint64_t>(t.shape[d] - 1), static_cast<std::uint64_t>(t.stride[d]));
    if (!step) return std::nullopt;
    auto sum = base::checked_add(last, *step);
    if (!sum) return std::nullopt;
    last = *sum;
  }
  return last;
}

}  // namespace

base::Status check_tensor(const Tensor& t) {
  if (!t.storage) return base::invalid_argument("tensor has no storage");
  if (t.shape.size() != t.stride.size())
    return base::invalid_argument("tensor shape " + dims_string(t.shape) + " and stride " + dims_string(t.stride) +
                                  " differ in length");
  if (t.storage_offset < 0)
    return base::invalid_argument("tensor storage offset " + std::to_string(t.storage_offset) + " is negative");
  for (std::size_t d = 0; d < t.shape.size(); ++d) {
    if (t.shape[d] < 0 || t.stride[d] < 0)
      return base::invalid_argument("tensor shape " + dims_string(t.shape) + " / stride " + dims_string(t.stride) +
                                    " has a negative entry");
  }
  auto numel = base::checked_numel(t.shape);
  if (!numel) return base::invalid_argument("tensor shape " + dims_string(t.shape) + " overflows 64 bits");
  if (!base::checked_mul(*numel, base::dtype_size(t.storage->dtype)))
    return base::invalid_argument("tensor shape " + dims_string(t.shape) + " has more bytes than 64 bits count");
  if (*numel == 0) return base::Status();
  auto last = last_element(t);
  if (!last || *last >= t.storage->numel)
    return base::invalid_argument("tensor view (offset " + std::to_string(t.storage_offset) + ", shape " +
                                  dims_string(t.shape) + ", stride " + dims_string(t.stride) +
                                  ") runs past the end of its storage of " + std::to_string(t.storage->numel) +
                                  " elements");
  return base::Status();
}

std::optional<std::span<const std::byte>> contiguous_bytes(const Tensor& t) {
  if (!check_tensor(t).ok() || !t.is_contiguous()) return std::nullopt;
  const std::uint64_t esize = base::dtype_size(t.dtype());
  const std::uint64_t n = t.nbytes();
  if (n == 0) return std::span<const std::byte>();
  const std::uint64_t begin = static_cast<std::uint64_t>(t.storage_offset) * esize;  // < numel*esize: checked
  if (begin > t.storage->bytes.size() || n > t.storage->bytes.size() - begin) return std::nullopt;
  return t.storage->bytes.subspan(begin, n);
}

void copy_tensor_bytes(const Tensor& t, std::span<std::byte> out) {
  if (!check_tensor(t).ok() || out.size() != t.nbytes()) {
    std::fill(out.begin(), out.end(), std::byte{0});
    return;
  }
  if (out.empty()) return;
  const std::uint64_t esize = base::dtype_size(t.dtype());
  // Bytes the view reaches must exist in the storage.
  const std::uint64_t last = *last_element(t);
  if ((last + 1) * esize > t.storage->bytes.size()) {
    std::fill(out.begin(), out.end(), std::byte{0});
    return;
  }
  // Drop size-1 dims and merge dims that are contiguous with their inner neighbour, so the
  // innermost run is as long as possible.
  std::vector<std::pair<std::uint64_t, std::uint64_t>> dims;  // (size, stride) outer..inner
  for (std::size_t d = 0; d < t.shape.size(); ++d) {
    if (t.shape[d] == 1) continue;
    dims.emplace_back(static_cast<std::uint64_t>(t.shape[d]), static_cast<std::uint64_t>(t.stride[d]));
  }
  std::vector<std::pair<std::uint64_t, std::uint64_t>> merged;
  for (std::size_t i = dims.size(); i-- > 0;) {
    if (!merged.empty() && dims[i].second == merged.back().first * merged.back().second) {
      merged.back().first *= dims[i].first;
    } else {
      merged.push_back(dims[i]);
    }
  }
  std::reverse(merged.begin(), merged.end());
  std::uint64_t run = 1;  // elements copied by one memcpy
  if (!merged.empty() && merged.back().second == 1) {
    run = merged.back().first;
    merged.pop_back();
  }
  const std::byte* base = t.storage->bytes.data() + static_cast<std::uint64_t>(t.storage_offset) * esize;
  const std::uint64_t run_bytes = run * esize;
  std::vector<std::uint64_t> index(merged.size(), 0);
  std::byte* dst = out.data();
  std::uint64_t src_elem = 0;
  while (true) {
    std::memcpy(dst, base + src_elem * esize, run_bytes);
    dst += run_bytes;
    // Odometer over the outer dims.
    std::size_t d = merged.size();
    while (d > 0) {
      --d;
      if (++index[d] < merged[d].first) {
        src_elem += merged[d].second;
        break;
      }
      src_elem -= (merged[d].first - 1) * merged[d].second;
      index[d] = 0;
      if (d == 0) return;
    }
    if (merged.empty()) return;
  }
}

std::vector<std::byte> tensor_bytes(const Tensor& t) {
  std::vector<std::byte> out(t.nbytes());
  copy_tensor_bytes(t, out);
  return out;
}

// ------------------------------------------------------------------ Value

ValuePtr Value::none() { return make(Kind::kNone); }

ValuePtr Value::boolean(bool v) {
  auto r = make(Kind::kBool);
  r->b = v;
  return r;
}

ValuePtr Value::integer(std::int64_t v) {
  auto r = make(Kind::kInt);
  r->i = v;
  return r;
}

ValuePtr Value::floating(double v) {
  auto r = make(Kind::kFloat);
  r->f = v;
  return r;
}

ValuePtr Value::string(std::string v) {
  auto r = make(Kind::kStr);
  r->str = std::move(v);
  return r;
}

ValuePtr Value::bytes(std::string raw) {
  auto r = make(Kind::kBytes);
  r->str = std::move(raw);
  return r;
}

ValuePtr Value::tuple(std::vector<ValuePtr> items) {
  auto r = make(Kind::kTuple);
  r->items = std::move(items);
  return r;
}

ValuePtr Value::list(std::vector<ValuePtr> items) {
  auto r = make(Kind::kList);
  r->items = std::move(items);
  return r;
}

ValuePtr Value::dict(std::vector<std::pair<ValuePtr, ValuePtr>> entries, bool ordered) {
  auto r = make(Kind::kDict);
  r->entries = std::move(entries);
  r->ordered_dict = ordered;
  return r;
}

ValuePtr Value::size(const std::vector<std::int64_t>& dims) {
  auto r = make(Kind::kSize);
  r->items.reserve(dims.size());
  for (std::int64_t d : dims) r->items.push_back(integer(d));
  return r;
}

ValuePtr Value::global_ref(std::string module, std::string name) {
  auto r = make(Kind::kGlobal);
  r->global.module = std::move(module);
  r->global.name = std::move(name);
  return r;
}

ValuePtr Value::tensor_value(Tensor t) {
  auto r = make(Kind::kTensor);
  r->tensor = std::move(t);
  return r;
}

ValuePtr Value::get(std::string_view key) const {
  if (kind != Kind::kDict) return nullptr;
  for (auto it = entries.rbegin(); it != entries.rend(); ++it) {
    if (it->first && it->first->kind == Kind::kStr && it->first->str == key) return it->second;
  }
  return nullptr;
}

ValuePtr Value::get(std::int64_t key) const {
  if (kind != Kind::kDict) return nullptr;
  for (auto it = entries.rbegin(); it != entries.rend(); ++it) {
    if (it->first && it->first->kind == Kind::kInt && it->first->i == key) return it->second;
  }
  return nullptr;
}

void Value::set(std::string key, ValuePtr value) {
  if (kind != Kind::kDict) return;
  for (auto it = entries.rbegin(); it != entries.rend(); ++it) {
    if (it->first && it->first->kind == Kind::kStr && it->first->str == key) {
      it->second = std::move(value);
      return;
    }
  }
  entries.emplace_back(string(std::move(key)), std::move(value));
}

std::string Value::type_name() const {
  switch (kind) {
    case Kind::kNone: return "None";
    case Kind::kBool: return "bool";
    case Kind::kInt:
    case Kind::kBigInt: return "int";
    case Kind::kFloat: return "float";
    case Kind::kStr: return "str";
    case Kind::kBytes: return "bytes";
    case Kind::kByteArray: return "bytearray";
    case Kind::kTuple: return "tuple";
    case Kind::kList: return "list";
    case Kind::kDict: return ordered_dict ? "OrderedDict" : "dict";
    case Kind::kSet: return "set";
    case Kind::kFrozenSet: return "frozenset";
    case Kind::kSize: return "torch.Size";
    case Kind::kGlobal: return "global " + global.module + "." + global.name;
    case Kind::kObject:
      if (object.callable && object.callable->kind == Kind::kGlobal)
        return object.callable->global.module + "." + object.callable->global.name;
      return "object";
    case Kind::kStorage: return "Storage";
    case Kind::kTensor: return tensor.parameter ? "Parameter" : "Tensor";
  }
  return "?";
}

// ------------------------------------------------------------------ equality

namespace {

std::string short_repr(const ValuePtr& v) {
  if (!v) return "null";
  switch (v->kind) {
    case Value::Kind::kNone: return "None";
    case Value::Kind::kBool: return v->b ? "True" : "False";
    case Value::Kind::kInt: return std::to_string(v->i);
    case Value::Kind::kBigInt: return "int(" + std::to_string(v->str.size()) + " bytes)";
    case Value::Kind::kFloat: {
      char buf[40];
      std::snprintf(buf, sizeof buf, "%.17g", v->f);
      return buf;
    }
    case Value::Kind::kStr: {
      std::string s = v->str.size() > 40 ? v->str.substr(0, 40) + "..." : v->str;
      return "'" + s + "'";
    }
    case Value::Kind::kBytes:
    case Value::Kind::kByteArray: return v->type_name() + "(" + std::to_string(v->str.size()) + " bytes)";
    case Value::Kind::kTuple:
    case Value::Kind::kList:
    case Value::Kind::kSet:
    case Value::Kind::kFrozenSet:
    case Value::Kind::kSize: return v->type_name() + " of " + std::to_string(v->items.size());
    case Value::Kind::kDict: return v->type_name() + " of " + std::to_string(v->entries.size());
    case Value::Kind::kGlobal: return v->type_name();
    case Value::Kind::kObject: return "object " + v->type_name();
    case Value::Kind::kStorage:
      return v->storage ? "Storage " + std::string(base::dtype_name(v->storage->dtype)) + "[" +
                              std::to_string(v->storage->numel) + "]"
                        : "Storage(null)";
    case Value::Kind::kTensor:
      return v->type_name() + " " + (v->tensor.storage ? std::string(base::dtype_name(v->tensor.dtype())) : "?") +
             dims_string(v->tensor.shape);
  }
  return "?";
}

[[gnu::noinline]] std::string key_segment(const ValuePtr& k, std::size_t index) {
  if (k && k->kind == Value::Kind::kStr) return "['" + k->str + "']";
  if (k && k->kind == Value::Kind::kInt) return "[" + std::to_string(k->i) + "]";
  return "[<key #" + std::to_string(index) + ">]";
}

[[gnu::noinline]] std::string index_segment(const char* prefix, const char* open, std::size_t i) {
  return std::string(prefix) + open + std::to_string(i) + "]";
}

[[gnu::noinline]] std::string count_mismatch(const char* prefix, const char* what, std::size_t a, std::size_t b) {
  return std::string(prefix) + what + std::to_string(a) + " vs " + std::to_string(b);
}

bool is_empty_tuple(const ValuePtr& v) { return v && v->kind == Value::Kind::kTuple && v->items.empty(); }
bool is_empty_dict(const ValuePtr& v) { return v && v->kind == Value::Kind::kDict && v->entries.empty(); }

// One walker for values_equal (path == nullptr: no strings built) and first_difference.
// Recursive (depth is bounded by what the reader accepts); each step is its own non-inlined
// function so that the frames of one nesting level stay small, sanitizer builds included.
class Comparer {
 public:
  explicit Comparer(std::string* message) : message_(message) {}

  bool eq(const ValuePtr& a, const ValuePtr& b) {
    if (a.get() == b.get()) return true;
    if (!a || !b) return fail(a, b);
    if (a->kind != b->kind) return fail(a, b);
    // Shared subtrees: compare each pair of pointers once.
    const bool shared = a.use_count() > 1 && b.use_count() > 1 && may_have_children(*a);
    if (shared && done_.count({a.get(), b.get()})) return true;
    if (!eq_body(a, b)) return false;
    if (shared) done_.insert({a.get(), b.get()});
    return true;
  }

 private:
  [[gnu::noinline]] bool fail(const ValuePtr& a, const ValuePtr& b, const std::string& what = "") {
    if (message_) {
      std::string p;
      for (const auto& s : path_) p += s;
      if (p.empty()) p = "<root>";
      *message_ = p + ": " + (what.empty() ? short_repr(a) + " vs " + short_repr(b) : what);
    }
    return false;
  }

  template <typename F>
  bool with(std::string segment, F&& f) {
    if (message_) path_.push_back(std::move(segment));
    const bool r = f();
    if (message_) path_.pop_back();
    return r;
  }

  [[gnu::noinline]] bool seq(const std::vector<ValuePtr>& a, const std::vector<ValuePtr>& b, const ValuePtr& va, const ValuePtr& vb,
           const char* prefix = "") {
    if (a.size() != b.size())
      return fail(va, vb, count_mismatch(prefix, "length ", a.size(), b.size()));
    for (std::size_t i = 0; i < a.size(); ++i) {
      if (!with(message_ ? index_segment(prefix, "[", i) : std::string(),
                [&] { return eq(a[i], b[i]); }))
        return false;
    }
    return true;
  }

  [[gnu::noinline]] bool entries(const std::vector<std::pair<ValuePtr, ValuePtr>>& a, const std::vector<std::pair<ValuePtr, ValuePtr>>& b,
               const ValuePtr& va, const ValuePtr& vb, const char* prefix = "") {
    if (a.size() != b.size())
      return fail(va, vb, count_mismatch(prefix, "size ", a.size(), b.size()));
    for (std::size_t i = 0; i < a.size(); ++i) {
      if (!with(message_ ? index_segment(prefix, ".keys[", i) : std::string(),
                [&] { return eq(a[i].first, b[i].first); }))
        return false;
      if (!with(message_ ? prefix + key_segment(a[i].first, i) : std::string(),
                [&] { return eq(a[i].second, b[i].second); }))
        return false;
    }
    return true;
  }

  // Null and an empty container of `kind` are the same thing for optional fields.
  [[gnu::noinline]] bool optional_eq(const ValuePtr& a, const ValuePtr& b, bool (*empty)(const ValuePtr&)) {
    if (!a && b && empty(b)) return true;
    if (!b && a && empty(a)) return true;
    return eq(a, b);
  }

  [[gnu::noinline]] bool eq_body(const ValuePtr& a, const ValuePtr& b) {
    switch (a->kind) {
      case Value::Kind::kNone: return true;
      case Value::Kind::kBool: return a->b == b->b || fail(a, b);
      case Value::Kind::kInt: return a->i == b->i || fail(a, b);
      case Value::Kind::kFloat: {
        std::uint64_t x, y;
        std::memcpy(&x, &a->f, 8);
        std::memcpy(&y, &b->f, 8);
        return x == y || fail(a, b);
      }
      case Value::Kind::kBigInt:
      case Value::Kind::kStr:
      case Value::Kind::kBytes:
      case Value::Kind::kByteArray: return a->str == b->str || fail(a, b);
      case Value::Kind::kTuple:
      case Value::Kind::kList:
      case Value::Kind::kSet:
      case Value::Kind::kFrozenSet:
      case Value::Kind::kSize: return seq(a->items, b->items, a, b);
      case Value::Kind::kDict:
        if (a->ordered_dict != b->ordered_dict) return fail(a, b);
        return entries(a->entries, b->entries, a, b) && with(".state", [&] { return eq(a->state, b->state); });
      case Value::Kind::kGlobal:
        return (a->global.module == b->global.module && a->global.name == b->global.name) || fail(a, b);
      case Value::Kind::kObject: return object_eq(a, b);
      case Value::Kind::kStorage: return storage_eq(a, b);
      case Value::Kind::kTensor: return tensor_eq(a, b);
    }
    return fail(a, b);
  }

  [[gnu::noinline]] bool object_eq(const ValuePtr& a, const ValuePtr& b) {
    const Object& x = a->object;
    const Object& y = b->object;
    if (x.kind != y.kind)
      return fail(a, b, "built by " + std::to_string(static_cast<int>(x.kind)) + " vs " +
                            std::to_string(static_cast<int>(y.kind)));
    return with(".callable", [&] { return eq(x.callable, y.callable); }) &&
           with(".args", [&] { return optional_eq(x.args, y.args, is_empty_tuple); }) &&
           with(".kwargs", [&] { return optional_eq(x.kwargs, y.kwargs, is_empty_dict); }) &&
           with(".state", [&] { return eq(x.state, y.state); }) &&
           seq(x.list_items, y.list_items, a, b, ".list_items") &&
           entries(x.dict_items, y.dict_items, a, b, ".dict_items");
  }

  [[gnu::noinline]] bool storage_eq(const ValuePtr& a, const ValuePtr& b) {
    const auto& x = a->storage;
    const auto& y = b->storage;
    if (x.get() == y.get()) return true;
    if (!x || !y || x->dtype != y->dtype || x->numel != y->numel) return fail(a, b);
    if (x->bytes.size() != y->bytes.size() ||
        (!x->bytes.empty() && std::memcmp(x->bytes.data(), y->bytes.data(), x->bytes.size()) != 0))
      return fail(a, b, short_repr(a) + ": bytes differ");
    return true;
  }

  [[gnu::noinline]] bool tensor_eq(const ValuePtr& a, const ValuePtr& b) {
    const Tensor& x = a->tensor;
    const Tensor& y = b->tensor;
    if (!x.storage || !y.storage || x.dtype() != y.dtype() || x.shape != y.shape) return fail(a, b);
    if (x.requires_grad != y.requires_grad)
      return fail(a, b, short_repr(a) + ": requires_grad " + (x.requires_grad ? "True" : "False") + " vs " +
                            (y.requires_grad ? "True" : "False"));
    if (x.parameter.has_value() != y.parameter.has_value()) return fail(a, b);
    if (x.parameter) {
      if (x.parameter->requires_grad != y.parameter->requires_grad)
        return fail(a, b, "parameter requires_grad differs");
      if (!with(".parameter.backward_hooks",
                [&] { return optional_eq(x.parameter->backward_hooks, y.parameter->backward_hooks, is_empty_dict); }) ||
          !with(".parameter.state", [&] { return eq(x.parameter->state, y.parameter->state); }))
        return false;
    }
    if (!with(".backward_hooks", [&] { return optional_eq(x.backward_hooks, y.backward_hooks, is_empty_dict); }) ||
        !with(".metadata", [&] { return eq(x.metadata, y.metadata); }) ||
        !with(".python_state", [&] { return eq(x.python_state, y.python_state); }))
      return false;
    auto cx = contiguous_bytes(x);
    auto cy = contiguous_bytes(y);
    bool same;
    if (cx && cy) {
      same = cx->size() == cy->size() && (cx->empty() || std::memcmp(cx->data(), cy->data(), cx->size()) == 0);
    } else {
      same = tensor_bytes(x) == tensor_bytes(y);
    }
    return same || fail(a, b, short_repr(a) + ": element bytes differ");
  }

  std::string* message_;
  std::vector<std::string> path_;
  std::set<std::pair<const Value*, const Value*>> done_;
};

}  // namespace

bool values_equal(const ValuePtr& a, const ValuePtr& b) { return Comparer(nullptr).eq(a, b); }

std::string first_difference(const ValuePtr& a, const ValuePtr& b) {
  std::string message;
  if (Comparer(&message).eq(a, b)) return "";
  return message.empty() ? "<root>: values differ" : message;
}

}  // namespace ucp::format
