// Pickle encoder. It mirrors what CPython's C pickler (Modules/_pickle.c) emits for the Python
// objects a Value tree stands for, opcode for opcode: memoise after a tuple's items but before a
// list's or dict's, one APPEND/SETITEM for a single item, batches of 1000, the protocol-2 encodings
// of bytes and sets via REDUCE. Matching it keeps re-written files as close to torch.save's as
// possible (byte-identical for what torch 1.13 writes), which makes differences easy to review.
#include "ucp/format/pickle_writer.h"

#include <cstring>
#include <string_view>
#include <unordered_map>
#include <unordered_set>

#include "pickle_opcodes.h"
#include "ucp/base/checked_math.h"

namespace ucp::format {
namespace {

using namespace pickle;  // NOLINT: the opcode table

using base::Result;
using base::Status;
using Kind = Value::Kind;


constexpr std::size_t kBatchSize = 1000;  // CPython's BATCHSIZE


using Entries = std::vector<std::pair<ValuePtr, ValuePtr>>;

class Writer {
 public:
  Writer(const StorageKeyFn& key_fn, const PickleWriteOptions& options) : key_fn_(key_fn), options_(options) {}

  Result<std::vector<std::byte>> run(const ValuePtr& root) {
    if (options_.protocol != 2 && options_.protocol != 4)
      return base::invalid_argument("pickle protocol " + std::to_string(options_.protocol) + " is not supported (2 or 4)");
    op(kProto);
    byte(static_cast<std::uint8_t>(options_.protocol));
    UCP_RETURN_IF_ERROR(save(root));
    UCP_RETURN_IF_ERROR(deferred_);
    op(kStop);
    return std::move(out_);
  }

 private:
  // ------------------------------------------------------------ output primitives

  void op(std::uint8_t o) { out_.push_back(static_cast<std::byte>(o)); }
  void byte(std::uint8_t b) { out_.push_back(static_cast<std::byte>(b)); }
  void le(std::uint64_t v, int n) {
    for (int k = 0; k < n; ++k) byte(static_cast<std::uint8_t>(v >> (8 * k)));
  }
  void raw(std::string_view s) {
    const auto* p = reinterpret_cast<const std::byte*>(s.data());
    out_.insert(out_.end(), p, p + s.size());
  }

  std::uint32_t memoize() {
    const std::uint32_t idx = next_memo_++;
    if (options_.protocol >= 4) {
      op(kMemoize);
    } else if (idx < 256) {
      op(kBinPut);
      byte(static_cast<std::uint8_t>(idx));
    } else {
      op(kLongBinPut);
      le(idx, 4);
    }
    return idx;
  }

  void get(std::uint32_t idx) {
    if (idx < 256) {
      op(kBinGet);
      byte(static_cast<std::uint8_t>(idx));
    } else {
      op(kLongBinGet);
      le(idx, 4);
    }
  }

  // Pointer-memoised values: emitted once, referenced by BINGET afterwards.
  bool emit_memoised(const Value* v) {
    auto it = memo_.find(v);
    if (it == memo_.end()) return false;
    get(it->second);
    return true;
  }
  void remember(const Value* v) { memo_[v] = memoize(); }

  // ------------------------------------------------------------ scalars

  [[gnu::noinline]] void save_int(std::int64_t x) {
    if (x >= 0 && x <= 0xff) {
      op(kBinInt1);
      byte(static_cast<std::uint8_t>(x));
    } else if (x >= 0 && x <= 0xffff) {
      op(kBinInt2);
      le(static_cast<std::uint64_t>(x), 2);
    } else if (x >= INT32_MIN && x <= INT32_MAX) {
      op(kBinInt);
      le(static_cast<std::uint32_t>(static_cast<std::int32_t>(x)), 4);
    } else {
      // Minimal little-endian two's complement, as pickle.encode_long.
      std::string b;
      for (int k = 0; k < 8; ++k) b += static_cast<char>(static_cast<std::uint64_t>(x) >> (8 * k));
      while (b.size() > 1) {
        const auto last = static_cast<unsigned char>(b[b.size() - 1]);
        const auto prev = static_cast<unsigned char>(b[b.size() - 2]);
        if ((last == 0 && !(prev & 0x80)) || (last == 0xff && (prev & 0x80))) {
          b.pop_back();
        } else {
          break;
        }
      }
      save_long_bytes(b);
    }
  }

  [[gnu::noinline]] void save_long_bytes(std::string_view b) {
    if (b.size() > 0x7fffffffu) return defer("an int of " + std::to_string(b.size()) + " bytes is too large for LONG4");
    if (b.size() < 256) {
      op(kLong1);
      byte(static_cast<std::uint8_t>(b.size()));
    } else {
      op(kLong4);
      le(b.size(), 4);
    }
    raw(b);
  }

  void save_float(double d) {
    std::uint64_t bits;
    std::memcpy(&bits, &d, 8);
    op(kBinFloat);
    for (int k = 7; k >= 0; --k) byte(static_cast<std::uint8_t>(bits >> (8 * k)));
  }

  [[gnu::noinline]] void emit_str(std::string_view s) {
    if (options_.protocol < 4 && s.size() > 0xffffffffull)
      return defer("a string of " + std::to_string(s.size()) + " bytes needs pickle protocol 4");
    if (options_.protocol >= 4 && s.size() < 256) {
      op(kShortBinUnicode);
      byte(static_cast<std::uint8_t>(s.size()));
    } else if (options_.protocol >= 4 && s.size() > 0xffffffffull) {
      op(kBinUnicode8);
      le(s.size(), 8);
    } else {
      op(kBinUnicode);
      le(s.size(), 4);
    }
    raw(s);
  }

  // Strings the writer makes up itself ('storage', 'latin1', locations, module names for
  // STACK_GLOBAL): memoised by value, as CPython does for the interned constants they are there.
  [[gnu::noinline]] void save_const_str(const std::string& s) {
    auto it = const_str_memo_.find(s);
    if (it != const_str_memo_.end()) {
      get(it->second);
      return;
    }
    emit_str(s);
    const_str_memo_[s] = memoize();
  }

  // A fresh bytes object: protocol 2 has no opcode for bytes, so CPython writes
  // _codecs.encode(<latin-1 text>, 'latin1') (or bytes() when empty) and Python 3 rebuilds bytes.
  [[gnu::noinline]] Status emit_bytes_object(std::string_view data) {
    if (options_.protocol >= 4) {
      if (data.size() < 256) {
        op(kShortBinBytes);
        byte(static_cast<std::uint8_t>(data.size()));
      } else if (data.size() <= 0xffffffffull) {
        op(kBinBytes);
        le(data.size(), 4);
      } else {
        op(kBinBytes8);
        le(data.size(), 8);
      }
      raw(data);
      return Status();
    }
    if (data.empty()) {
      UCP_RETURN_IF_ERROR(save_global("__builtin__", "bytes"));
      op(kEmptyTuple);
      op(kReduce);
      return Status();
    }
    UCP_RETURN_IF_ERROR(save_global("_codecs", "encode"));
    std::string text;
    text.reserve(data.size() * 2);
    for (char c : data) {
      const auto u = static_cast<unsigned char>(c);
      if (u < 0x80) {
        text += static_cast<char>(u);
      } else {
        text += static_cast<char>(0xc0 | (u >> 6));
        text += static_cast<char>(0x80 | (u & 0x3f));
      }
    }
    emit_str(text);
    memoize();
    save_const_str("latin1");
    op(kTuple1 + 1);  // TUPLE2
    memoize();
    op(kReduce);
    return Status();
  }

  [[gnu::noinline]] Status save_global(const std::string& module_as_read, const std::string& name) {
    // Python only translates Python 2 module names (what protocol <= 2 pickles carry, e.g.
    // "__builtin__") when loading a protocol < 3 pickle, so each protocol gets its own spelling,
    // as CPython's fix_imports does.
    const std::string module = module_for_protocol(module_as_read, options_.protocol);
    const std::string key = module + '\n' + name;
    auto it = global_memo_.find(key);
    if (it != global_memo_.end()) {
      get(it->second);
      return Status();
    }
    if (module.find('\n') != std::string::npos || name.find('\n') != std::string::npos) {
      if (options_.protocol < 4)
        return base::invalid_argument("global '" + module + "." + name +
                                      "' has a newline in its name: not expressible at pickle protocol 2");
      save_const_str(module);
      save_const_str(name);
      op(kStackGlobal);
    } else {
      op(kGlobal);
      raw(module);
      byte('\n');
      raw(name);
      byte('\n');
    }
    global_memo_[key] = memoize();
    return Status();
  }

  // ------------------------------------------------------------ batching (as _pickle.c)

  // batch_list_exact: a plain list's items.
  [[gnu::noinline]] Status batch_list_exact(const std::vector<ValuePtr>& items) {
    if (items.empty()) return Status();
    if (items.size() == 1) {
      UCP_RETURN_IF_ERROR(save(items[0]));
      op(kAppend);
      return Status();
    }
    std::size_t total = 0;
    do {
      op(kMark);
      for (std::size_t n = 0; total < items.size() && n < kBatchSize; ++n) UCP_RETURN_IF_ERROR(save(items[total++]));
      op(kAppends);
    } while (total < items.size());
    return Status();
  }

  // batch_list: items produced by an iterator (objects' appended items).
  [[gnu::noinline]] Status batch_list_generic(const std::vector<ValuePtr>& items) {
    std::size_t i = 0;
    while (i < items.size()) {
      const std::size_t n = std::min(kBatchSize, items.size() - i);
      if (n == 1) {
        UCP_RETURN_IF_ERROR(save(items[i]));
        op(kAppend);
        return Status();
      }
      op(kMark);
      for (std::size_t k = 0; k < n; ++k) UCP_RETURN_IF_ERROR(save(items[i + k]));
      op(kAppends);
      i += n;
      if (n < kBatchSize) break;
    }
    return Status();
  }

  Status save_pair(const std::pair<ValuePtr, ValuePtr>& e) {
    UCP_RETURN_IF_ERROR(save(e.first));
    return save(e.second);
  }

  // batch_dict_exact: a plain dict. Note CPython's do/while writes an empty MARK SETITEMS after a
  // last batch of exactly 1000 items; we do the same.
  [[gnu::noinline]] Status batch_dict_exact(const Entries& entries) {
    if (entries.empty()) return Status();
    if (entries.size() == 1) {
      UCP_RETURN_IF_ERROR(save_pair(entries[0]));
      op(kSetItem);
      return Status();
    }
    std::size_t total = 0;
    std::size_t n;
    do {
      op(kMark);
      for (n = 0; total < entries.size() && n < kBatchSize; ++n) UCP_RETURN_IF_ERROR(save_pair(entries[total++]));
      op(kSetItems);
    } while (n == kBatchSize);
    return Status();
  }

  // batch_dict: pairs produced by an iterator (OrderedDict, objects' set items).
  [[gnu::noinline]] Status batch_dict_generic(const Entries& entries) {
    std::size_t i = 0;
    while (i < entries.size()) {
      const std::size_t n = std::min(kBatchSize, entries.size() - i);
      if (n == 1) {
        UCP_RETURN_IF_ERROR(save_pair(entries[i]));
        op(kSetItem);
        return Status();
      }
      op(kMark);
      for (std::size_t k = 0; k < n; ++k) UCP_RETURN_IF_ERROR(save_pair(entries[i + k]));
      op(kSetItems);
      i += n;
      if (n < kBatchSize) break;
    }
    return Status();
  }

  // ------------------------------------------------------------ containers

  // A tuple's items then TUPLE1/2/3 or MARK..TUPLE; memoised unless empty.
  template <typename SaveItem>
  Status emit_tuple(std::size_t n, SaveItem&& save_item) {
    if (n == 0) {
      op(kEmptyTuple);
      return Status();
    }
    if (n > 3) op(kMark);
    for (std::size_t k = 0; k < n; ++k) UCP_RETURN_IF_ERROR(save_item(k));
    op(n <= 3 ? static_cast<std::uint8_t>(kTuple1 + n - 1) : static_cast<std::uint8_t>(kTuple));
    memoize();
    return Status();
  }

  Status emit_int_tuple(const std::vector<std::int64_t>& v) {
    return emit_tuple(v.size(), [&](std::size_t k) {
      save_int(v[k]);
      return Status();
    });
  }

  // ([items],) as the argument of set/frozenset at protocol 2.
  Status emit_list_arg(const std::vector<ValuePtr>& items) {
    op(kEmptyList);
    memoize();
    UCP_RETURN_IF_ERROR(batch_list_exact(items));
    op(kTuple1);
    memoize();
    return Status();
  }

  [[gnu::noinline]] Status save_set(const Value& v) {
    const bool frozen = v.kind == Kind::kFrozenSet;
    if (options_.protocol < 4) {
      UCP_RETURN_IF_ERROR(save_global("__builtin__", frozen ? "frozenset" : "set"));
      UCP_RETURN_IF_ERROR(emit_list_arg(v.items));
      op(kReduce);
      remember(&v);
      return Status();
    }
    if (frozen) {
      op(kMark);
      for (const auto& it : v.items) UCP_RETURN_IF_ERROR(save(it));
      op(kFrozenSet);
      remember(&v);
      return Status();
    }
    op(kEmptySet);
    remember(&v);
    if (v.items.empty()) return Status();
    std::size_t total = 0;
    std::size_t n;
    do {  // as _pickle.c save_set: an empty trailing batch after exactly 1000
      op(kMark);
      for (n = 0; total < v.items.size() && n < kBatchSize; ++n) UCP_RETURN_IF_ERROR(save(v.items[total++]));
      op(kAddItems);
    } while (n == kBatchSize);
    return Status();
  }

  [[gnu::noinline]] Status save_object(const Value& v) {
    const Object& o = v.object;
    if (!o.callable) return base::invalid_argument("object has no callable");
    if (o.args && o.args->kind != Kind::kTuple)
      return base::invalid_argument("object arguments are a " + o.args->type_name() + ", expected a tuple");
    if (o.kind == BuildKind::kNewObjEx && options_.protocol < 4)
      return base::unimplemented("object " + v.type_name() + " is built with NEWOBJ_EX, which needs pickle protocol 4");
    UCP_RETURN_IF_ERROR(save(o.callable));
    if (o.args) {
      UCP_RETURN_IF_ERROR(save(o.args));
    } else {
      op(kEmptyTuple);
    }
    switch (o.kind) {
      case BuildKind::kReduce: op(kReduce); break;
      case BuildKind::kNewObj: op(kNewObj); break;
      case BuildKind::kNewObjEx:
        if (o.kwargs) {
          if (o.kwargs->kind != Kind::kDict)
            return base::invalid_argument("object keyword arguments are a " + o.kwargs->type_name() + ", expected a dict");
          UCP_RETURN_IF_ERROR(save(o.kwargs));
        } else {
          op(kEmptyDict);
          memoize();
        }
        op(kNewObjEx);
        break;
    }
    remember(&v);
    UCP_RETURN_IF_ERROR(batch_list_generic(o.list_items));
    UCP_RETURN_IF_ERROR(batch_dict_generic(o.dict_items));
    if (o.state) {
      UCP_RETURN_IF_ERROR(save(o.state));
      op(kBuild);
    }
    return Status();
  }

  // ------------------------------------------------------------ torch

  // ('storage', torch.<X>Storage, key, location, numel) BINPERSID; for a dtype without a typed
  // storage class ('storage', torch.storage.UntypedStorage, key, location, nbytes), as torch 2.x writes.
  // Like torch.save, every reference gets a fresh tuple; the key string is memoised per storage, so
  // repeats are BINGETs.
  [[gnu::noinline]] Status save_storage_ref(const std::shared_ptr<Storage>& s) {
    if (!s) return base::invalid_argument("storage reference is null");
    const std::string_view typed_class = base::torch_storage_class(s->dtype);
    op(kMark);
    save_const_str("storage");
    if (typed_class.empty()) {
      UCP_RETURN_IF_ERROR(save_global("torch.storage", "UntypedStorage"));
    } else {
      UCP_RETURN_IF_ERROR(save_global("torch", std::string(typed_class)));
    }
    auto it = key_memo_.find(s.get());
    if (it != key_memo_.end()) {
      get(it->second);
    } else {
      std::string key = key_fn_ ? key_fn_(s) : std::to_string(key_memo_.size());
      emit_str(key);
      key_memo_[s.get()] = memoize();
    }
    save_const_str(s->location);
    auto count = typed_class.empty() ? base::checked_mul(s->numel, base::dtype_size(s->dtype)) : s->numel;
    if (!count || *count > static_cast<std::uint64_t>(INT64_MAX))
      return base::invalid_argument("storage numel overflows int64");
    save_int(static_cast<std::int64_t>(*count));
    op(kTuple);
    memoize();
    op(kBinPersId);
    return Status();
  }

  Status save_hooks(const ValuePtr& hooks) {
    if (hooks) return save(hooks);
    UCP_RETURN_IF_ERROR(save_global("collections", "OrderedDict"));  // a fresh OrderedDict()
    op(kEmptyTuple);
    op(kReduce);
    memoize();
    return Status();
  }

  // torch._utils._rebuild_tensor_v2(storage, offset, size, stride, requires_grad, hooks[, metadata]),
  // or _v3(untyped storage, ..., hooks, dtype[, metadata]) for a dtype without a typed storage class
  // (torch's own choice); wrapped as torch._tensor._rebuild_from_type_v2(func, torch.Tensor, args,
  // state) when the tensor carries Python attributes, as torch >= 2.0 writes it.
  [[gnu::noinline]] Status emit_rebuild_tensor(const Tensor& t) {
    const bool v3 = base::torch_storage_class(t.dtype()).empty();
    const char* rebuild = v3 ? "_rebuild_tensor_v3" : "_rebuild_tensor_v2";
    if (t.python_state) {
      UCP_RETURN_IF_ERROR(save_global("torch._tensor", "_rebuild_from_type_v2"));
      op(kMark);
    }
    UCP_RETURN_IF_ERROR(save_global("torch._utils", rebuild));
    if (t.python_state) UCP_RETURN_IF_ERROR(save_global("torch", "Tensor"));
    op(kMark);
    UCP_RETURN_IF_ERROR(save_storage_ref(t.storage));
    save_int(t.storage_offset);
    UCP_RETURN_IF_ERROR(emit_int_tuple(t.shape));
    UCP_RETURN_IF_ERROR(emit_int_tuple(t.stride));
    op(t.requires_grad ? kNewTrue : kNewFalse);
    UCP_RETURN_IF_ERROR(save_hooks(t.backward_hooks));
    if (v3) UCP_RETURN_IF_ERROR(save_global("torch", std::string(base::torch_dtype_attr(t.dtype()))));
    if (t.metadata) UCP_RETURN_IF_ERROR(save(t.metadata));
    op(kTuple);
    memoize();
    if (t.python_state) {
      UCP_RETURN_IF_ERROR(save(t.python_state));
      op(kTuple);
      memoize();
    }
    op(kReduce);
    return Status();
  }

  [[gnu::noinline]] Status save_tensor(const Value& v) {
    const Tensor& t = v.tensor;
    if (Status s = check_tensor(t); !s.ok()) return std::move(s).annotate("cannot pickle tensor");
    if (!t.parameter) {
      UCP_RETURN_IF_ERROR(emit_rebuild_tensor(t));
      remember(&v);
      return Status();
    }
    const Tensor::Parameter& p = *t.parameter;
    UCP_RETURN_IF_ERROR(save_global("torch._utils", p.state ? "_rebuild_parameter_with_state" : "_rebuild_parameter"));
    if (p.state) op(kMark);
    UCP_RETURN_IF_ERROR(emit_rebuild_tensor(t));
    memoize();  // the data tensor is an object of its own in torch's pickle
    op(p.requires_grad ? kNewTrue : kNewFalse);
    UCP_RETURN_IF_ERROR(save_hooks(p.backward_hooks));
    if (p.state) {
      UCP_RETURN_IF_ERROR(save(p.state));
      op(kTuple);
    } else {
      op(kTuple1 + 2);  // TUPLE3
    }
    memoize();
    op(kReduce);
    remember(&v);
    return Status();
  }

  // ------------------------------------------------------------ dispatch
  //
  // save() recurses once per nesting level (up to options_.max_depth). The per-kind work lives in
  // separate non-inlined functions so that the frames on that recursion path stay small even in
  // sanitizer builds, where every inlined temporary would otherwise add its own stack slot.

  Status save(const ValuePtr& p) {
    if (!p) return null_error();
    const Value& v = *p;
    switch (v.kind) {
      case Kind::kNone: op(kNone); return Status();
      case Kind::kBool: op(v.b ? kNewTrue : kNewFalse); return Status();
      case Kind::kInt: save_int(v.i); return Status();
      case Kind::kBigInt: save_long_bytes(v.str); return Status();
      case Kind::kFloat: save_float(v.f); return Status();
      case Kind::kGlobal: return save_global(v.global.module, v.global.name);
      case Kind::kStorage: return save_storage_ref(v.storage);
      default: break;
    }
    // Before the memo: a list or dict is memoised before its items, so a cycle through one would
    // otherwise be written (as CPython does) and then refused by every reader of ours.
    if (in_progress_.count(&v)) return cycle_error(v);
    if (emit_memoised(&v)) return Status();
    const bool frame = may_have_children(v);
    if (frame && depth_ >= options_.max_depth) return depth_error();
    if (frame) ++depth_;
    in_progress_.insert(&v);
    Status s = save_compound(v);
    in_progress_.erase(&v);
    if (frame) --depth_;
    return s;
  }

  [[gnu::noinline, gnu::cold]] static Status null_error() {
    return base::invalid_argument("null value in the tree to pickle");
  }
  [[gnu::noinline, gnu::cold]] static Status cycle_error(const Value& v) {
    return base::invalid_argument("the tree to pickle has a reference cycle (through a " + v.type_name() + ")");
  }
  [[gnu::noinline, gnu::cold]] Status depth_error() const {
    return base::invalid_argument("the tree to pickle is nested deeper than " + std::to_string(options_.max_depth));
  }

  [[gnu::noinline]] Status save_compound(const Value& v) {
    switch (v.kind) {
      case Kind::kStr: return save_str_value(v);
      case Kind::kBytes: return save_bytes_value(v);
      case Kind::kByteArray: return save_bytearray(v);
      case Kind::kTuple: return save_tuple(v);
      case Kind::kList: return save_list(v);
      case Kind::kDict: return save_dict(v);
      case Kind::kSet:
      case Kind::kFrozenSet: return save_set(v);
      case Kind::kSize: return save_size(v);
      case Kind::kObject: return save_object(v);
      case Kind::kTensor: return save_tensor(v);
      default: return base::internal_error("unhandled value kind in the pickle writer");
    }
  }

  [[gnu::noinline]] Status save_str_value(const Value& v) {
    emit_str(v.str);
    remember(&v);
    return Status();
  }

  [[gnu::noinline]] Status save_bytes_value(const Value& v) {
    UCP_RETURN_IF_ERROR(emit_bytes_object(v.str));
    remember(&v);
    return Status();
  }

  [[gnu::noinline]] Status save_bytearray(const Value& v) {
    UCP_RETURN_IF_ERROR(save_global(options_.protocol < 4 ? "__builtin__" : "builtins", "bytearray"));
    if (v.str.empty()) {
      op(kEmptyTuple);
    } else {
      UCP_RETURN_IF_ERROR(emit_bytes_object(v.str));
      memoize();
      op(kTuple1);
      memoize();
    }
    op(kReduce);
    remember(&v);
    return Status();
  }

  [[gnu::noinline]] Status save_tuple(const Value& v) {
    UCP_RETURN_IF_ERROR(emit_tuple(v.items.size(), [&](std::size_t k) { return save(v.items[k]); }));
    if (!v.items.empty()) memo_[&v] = next_memo_ - 1;
    return Status();
  }

  [[gnu::noinline]] Status save_list(const Value& v) {
    op(kEmptyList);
    remember(&v);
    return batch_list_exact(v.items);
  }

  [[gnu::noinline]] Status save_dict(const Value& v) {
    for (const auto& [k, x] : v.entries)
      if (!k || !x) return null_error();
    if (v.ordered_dict) {
      UCP_RETURN_IF_ERROR(save_global("collections", "OrderedDict"));
      op(kEmptyTuple);
      op(kReduce);
      remember(&v);
      UCP_RETURN_IF_ERROR(batch_dict_generic(v.entries));
      if (v.state) {
        UCP_RETURN_IF_ERROR(save(v.state));
        op(kBuild);
      }
      return Status();
    }
    if (v.state) return base::invalid_argument("a plain dict cannot carry BUILD state (only an OrderedDict can)");
    op(kEmptyDict);
    remember(&v);
    return batch_dict_exact(v.entries);
  }

  [[gnu::noinline]] Status save_size(const Value& v) {
    // torch.Size.__reduce__: (torch.Size, (tuple(self),))
    UCP_RETURN_IF_ERROR(save_global("torch", "Size"));
    UCP_RETURN_IF_ERROR(emit_tuple(v.items.size(), [&](std::size_t k) { return save(v.items[k]); }));
    op(kTuple1);
    memoize();
    op(kReduce);
    remember(&v);
    return Status();
  }

  // Rare size errors found deep inside the emitters, reported once the tree is done.
  void defer(std::string message) {
    if (deferred_.ok()) deferred_ = base::invalid_argument(std::move(message));
  }

  const StorageKeyFn& key_fn_;
  const PickleWriteOptions& options_;
  Status deferred_;
  std::vector<std::byte> out_;
  std::uint32_t next_memo_ = 0;
  std::unordered_map<const Value*, std::uint32_t> memo_;
  std::unordered_map<std::string, std::uint32_t> global_memo_;
  std::unordered_map<std::string, std::uint32_t> const_str_memo_;
  std::unordered_map<const Storage*, std::uint32_t> key_memo_;
  std::unordered_set<const Value*> in_progress_;
  std::size_t depth_ = 0;
};

}  // namespace

Result<std::vector<std::byte>> write_pickle(const ValuePtr& root, const StorageKeyFn& storage_key,
                                            const PickleWriteOptions& options) {
  Writer w(storage_key, options);
  return w.run(root);
}

}  // namespace ucp::format
