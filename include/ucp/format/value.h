// The value tree a pickle decodes to: Python's data model, reduced to what checkpoints hold.
//
// Nothing in a pickle is ever executed. Classes we understand become typed values (containers,
// torch.Size, tensors, storages); every other class is kept as an opaque Object recording how the
// pickle built it (callable + args, NEWOBJ, BUILD state, appended items), so the pickle writer can
// re-emit it and Python will rebuild the very same object.
//
// Identity matters: two references to one shared_ptr mean one Python object (the writer memoises
// it, like pickle does), and tensors that share a Storage pointer share bytes in torch.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "ucp/base/dtype.h"
#include "ucp/base/status.h"

namespace ucp::format {

struct Value;
using ValuePtr = std::shared_ptr<Value>;

/// One torch storage (a flat typed buffer). Bytes are a view into a mapped file, or owned.
struct Storage {
  base::DType dtype = base::DType::kF32;
  std::uint64_t numel = 0;         ///< Elements (not bytes) in the storage.
  std::string key;                 ///< Record name under "data/" in the file it came from.
  std::string location = "cpu";    ///< Device string as pickled ("cpu", "cuda:3"); never interpreted.
  std::span<const std::byte> bytes;   ///< numel * dtype_size bytes.
  std::shared_ptr<const void> owner;  ///< Keeps `bytes` alive (a MappedFile or a byte vector).

  std::uint64_t nbytes() const { return bytes.size(); }
  /// A storage owning a copy of nothing: `data` is moved in.
  static std::shared_ptr<Storage> owning(base::DType dtype, std::vector<std::byte> data,
                                         std::string location = "cpu");
};

/// A tensor as torch._utils._rebuild_tensor_v2 describes it: a strided view of a storage.
struct Tensor {
  std::shared_ptr<Storage> storage;
  std::int64_t storage_offset = 0;  ///< In elements.
  std::vector<std::int64_t> shape;
  std::vector<std::int64_t> stride;  ///< In elements.
  bool requires_grad = false;
  ValuePtr backward_hooks;  ///< As pickled (normally an empty OrderedDict); null -> write an empty one.
  ValuePtr metadata;        ///< Optional 7th argument of _rebuild_tensor_v2; null if absent.
  /// Set when the pickle wrapped it in torch._utils._rebuild_parameter(data, requires_grad, hooks).
  struct Parameter {
    bool requires_grad = true;
    ValuePtr backward_hooks;
    /// Extra state of torch._utils._rebuild_parameter_with_state (torch >= 2.0); null -> plain
    /// _rebuild_parameter.
    ValuePtr state;
  };
  std::optional<Parameter> parameter;
  /// Python attributes set on a plain tensor (DeepSpeed sets `ds_id` on every ZeRO-3 fp32 partition).
  /// torch >= 2.0 pickles such a tensor as torch._tensor._rebuild_from_type_v2(_rebuild_tensor_v2,
  /// torch.Tensor, args, state); this is that `state` (normally a dict), written back the same way.
  /// Null when the tensor had none (torch 1.13 drops them).
  ValuePtr python_state;

  base::DType dtype() const { return storage->dtype; }
  std::uint64_t numel() const;
  std::uint64_t nbytes() const { return numel() * base::dtype_size(dtype()); }
  bool is_contiguous() const;
  /// Row-major strides for `shape`.
  static std::vector<std::int64_t> contiguous_strides(const std::vector<std::int64_t>& shape);
  /// A contiguous tensor over a fresh owning storage.
  static Tensor from_bytes(base::DType dtype, std::vector<std::int64_t> shape, std::vector<std::byte> data);
};

/// InvalidArgument unless `t` is a consistent view: storage set, shape and stride of equal length,
/// sizes/strides/offset non-negative, and (for a non-empty tensor) every element inside the
/// storage's numel (checked arithmetic). The reader and writer both enforce it.
base::Status check_tensor(const Tensor& t);

/// Contiguous bytes of `t` without copying if it is contiguous, else nullopt.
std::optional<std::span<const std::byte>> contiguous_bytes(const Tensor& t);
/// Copies `t`'s elements in row-major order into `out` (exactly t.nbytes() bytes), honouring strides:
/// one memcpy per contiguous innermost run. Precondition: check_tensor(t) is OK, the storage holds
/// numel * dtype_size bytes and out.size() == t.nbytes(); if not, `out` is zero-filled instead of
/// reading out of bounds.
void copy_tensor_bytes(const Tensor& t, std::span<std::byte> out);
/// Row-major copy of the tensor's elements.
std::vector<std::byte> tensor_bytes(const Tensor& t);

/// How an opaque object was constructed in the pickle.
enum class BuildKind : std::uint8_t {
  kReduce,    ///< callable(*args)             (REDUCE)
  kNewObj,    ///< cls.__new__(cls, *args)     (NEWOBJ)
  kNewObjEx,  ///< cls.__new__(cls, *args, **kwargs) (NEWOBJ_EX)
};

/// An instance of a class we do not interpret: enough to re-pickle it exactly.
struct Object {
  ValuePtr callable;  ///< Usually a Global (class or function).
  BuildKind kind = BuildKind::kReduce;
  ValuePtr args;      ///< A Tuple.
  ValuePtr kwargs;    ///< A Dict, for NEWOBJ_EX only.
  ValuePtr state;     ///< BUILD argument, null if there was no BUILD.
  std::vector<ValuePtr> list_items;                     ///< APPEND(S) applied to the object.
  std::vector<std::pair<ValuePtr, ValuePtr>> dict_items;  ///< SETITEM(S) applied to the object.
};

struct Global {
  std::string module;  ///< Python 3 spelling: Python 2 names ("__builtin__", "copy_reg") read as "builtins", "copyreg".
  std::string name;
};

struct Value {
  enum class Kind : std::uint8_t {
    kNone,
    kBool,
    kInt,      ///< Fits in int64.
    kBigInt,   ///< Arbitrary size: `bytes` holds little-endian two's complement (pickle LONG1/LONG4).
    kFloat,
    kStr,      ///< UTF-8.
    kBytes,
    kByteArray,
    kTuple,
    kList,
    kDict,     ///< Ordered by insertion; `ordered_dict` marks collections.OrderedDict.
    kSet,
    kFrozenSet,
    kSize,     ///< torch.Size: `items` are Int values.
    kGlobal,   ///< A class/function reference (GLOBAL / STACK_GLOBAL), e.g. torch.float16.
    kObject,   ///< Opaque instance.
    kStorage,  ///< A bare storage (persistent id resolved).
    kTensor,
  };

  Kind kind = Kind::kNone;
  bool b = false;
  std::int64_t i = 0;
  double f = 0;
  std::string str;                 ///< kStr text; kBytes/kByteArray/kBigInt raw bytes.
  std::vector<ValuePtr> items;     ///< kTuple, kList, kSet, kFrozenSet, kSize.
  std::vector<std::pair<ValuePtr, ValuePtr>> entries;  ///< kDict.
  bool ordered_dict = false;
  /// kDict only: BUILD state applied to the dict object, null if none. An OrderedDict returned by
  /// Module.state_dict() carries its `_metadata` attribute this way ({'_metadata': ...}).
  ValuePtr state;
  Global global;
  Object object;
  std::shared_ptr<Storage> storage;
  Tensor tensor;

  // Constructors for the common kinds.
  static ValuePtr none();
  static ValuePtr boolean(bool v);
  static ValuePtr integer(std::int64_t v);
  static ValuePtr floating(double v);
  static ValuePtr string(std::string v);
  static ValuePtr bytes(std::string raw);
  static ValuePtr tuple(std::vector<ValuePtr> items);
  static ValuePtr list(std::vector<ValuePtr> items);
  static ValuePtr dict(std::vector<std::pair<ValuePtr, ValuePtr>> entries = {}, bool ordered = false);
  static ValuePtr size(const std::vector<std::int64_t>& dims);
  static ValuePtr global_ref(std::string module, std::string name);
  static ValuePtr tensor_value(Tensor t);

  bool is_str() const { return kind == Kind::kStr; }
  bool is_int() const { return kind == Kind::kInt; }
  bool is_dict() const { return kind == Kind::kDict; }
  bool is_tensor() const { return kind == Kind::kTensor; }
  /// For a kDict: the value whose key is the string `key`, or nullptr. With duplicate keys (a pickle
  /// may SETITEM one key twice; the reader keeps every entry) the last one wins, as in Python.
  ValuePtr get(std::string_view key) const;
  /// For a kDict: the value whose key is the integer `key` (torch optimizer state is keyed by
  /// parameter index), or nullptr; the last one wins as above.
  ValuePtr get(std::int64_t key) const;
  /// For a kDict: sets (replacing in place or appending) the string key.
  void set(std::string key, ValuePtr value);
  /// Python-ish name of the kind or class: "dict", "OrderedDict", "Tensor", "deepspeed...LossScaler".
  std::string type_name() const;
};

/// Calls f(child) for every ValuePtr directly held by `v` (items, dict keys and values, object
/// callable/args/kwargs/state/items, tensor hooks/metadata/parameter state). Children may be null.
template <typename F>
void for_each_child(const Value& v, F&& f);
/// False when `v` certainly holds no child (a scalar or an empty container): cheap pre-check for walks.
inline bool may_have_children(const Value& v) {
  return !v.items.empty() || !v.entries.empty() || v.state || v.kind == Value::Kind::kObject ||
         v.kind == Value::Kind::kTensor;
}

/// Deep structural equality: same kinds, values, container order, tensor dtype/shape and element
/// bytes (not strides, storage layout, storage key or location), same object construction. Float
/// compared bitwise. Tensors also compare requires_grad, parameter-ness, backward hooks and
/// metadata; a null hooks pointer equals an empty dict, null object args an empty tuple, null
/// kwargs an empty dict.
bool values_equal(const ValuePtr& a, const ValuePtr& b);
/// First difference as a path ("['optimizer_state_dict']['loss_scaler'].state['cur_scale']: 1 vs 2"), or "".
std::string first_difference(const ValuePtr& a, const ValuePtr& b);

template <typename F>
void for_each_child(const Value& v, F&& f) {
  for (const ValuePtr& c : v.items) f(c);
  for (const auto& [k, x] : v.entries) {
    f(k);
    f(x);
  }
  if (v.state) f(v.state);
  if (v.kind == Value::Kind::kObject) {
    const Object& o = v.object;
    f(o.callable);
    f(o.args);
    f(o.kwargs);
    f(o.state);
    for (const ValuePtr& c : o.list_items) f(c);
    for (const auto& [k, x] : o.dict_items) {
      f(k);
      f(x);
    }
  } else if (v.kind == Value::Kind::kTensor) {
    const Tensor& t = v.tensor;
    f(t.backward_hooks);
    f(t.metadata);
    if (t.parameter) {
      f(t.parameter->backward_hooks);
      f(t.parameter->state);
    }
    f(t.python_state);
  }
}

}  // namespace ucp::format
