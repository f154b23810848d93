// The .metadata of a DCP folder we write, as torch's FileSystemWriter pickles it (protocol 4;
// see ../shared/spec/dcp.md section 1.2): classes by their torch module paths, built with NEWOBJ
// and BUILD, TensorProperties' state a tuple, planner_data always present (torch 2.6 needs it).
#include <algorithm>
#include <map>
#include <utility>

#include "ucp/format/dcp.h"
#include "ucp/format/pickle_writer.h"
#include "ucp/format/value.h"

namespace ucp::format::dcp {
using base::Result;

namespace {

constexpr const char* kMetadataModule = "torch.distributed.checkpoint.metadata";

// cls.__new__(cls) then BUILD `state`: how dataclasses pickle.
ValuePtr instance(const char* module, const char* cls, ValuePtr state) {
  auto v = std::make_shared<Value>();
  v->kind = Value::Kind::kObject;
  v->object.callable = Value::global_ref(module, cls);
  v->object.kind = BuildKind::kNewObj;
  v->object.args = Value::tuple({});
  v->object.state = std::move(state);
  return v;
}

ValuePtr reduce(ValuePtr callable, std::vector<ValuePtr> args) {
  auto v = std::make_shared<Value>();
  v->kind = Value::Kind::kObject;
  v->object.callable = std::move(callable);
  v->object.kind = BuildKind::kReduce;
  v->object.args = Value::tuple(std::move(args));
  return v;
}

ValuePtr fields(std::vector<std::pair<const char*, ValuePtr>> named) {
  std::vector<std::pair<ValuePtr, ValuePtr>> entries;
  for (auto& [k, v] : named) entries.emplace_back(Value::string(k), std::move(v));
  return Value::dict(std::move(entries));
}

// (dtype, layout, requires_grad, memory_format, pin_memory); only dtype is read by torch.
ValuePtr tensor_properties(base::DType dtype) {
  ValuePtr layout = reduce(Value::global_ref("torch.serialization", "_get_layout"), {Value::string("torch.strided")});
  ValuePtr contiguous = reduce(Value::global_ref(kMetadataModule, "_MEM_FORMAT_ENCODING"), {Value::integer(0)});
  return instance(kMetadataModule, "TensorProperties",
                  Value::tuple({Value::global_ref("torch", std::string(base::torch_dtype_attr(dtype))), layout,
                                Value::boolean(false), contiguous, Value::boolean(false)}));
}

// planner_data's entry of a key: the path of its value in the nested state dict, as a tuple.
ValuePtr planner_path(const std::string& fqn, const StatePath& path) {
  std::vector<ValuePtr> parts;
  for (const PathElement& p : path)
    parts.push_back(p.is_index() ? Value::integer(p.index) : Value::string(p.key));
  if (parts.empty()) parts.push_back(Value::string(fqn));
  return Value::tuple(std::move(parts));
}

ValuePtr storage_info(const StoredItem& stored) {
  return instance("torch.distributed.checkpoint.filesystem", "_StorageInfo",
                  fields({{"relative_path", Value::string(stored.file)},
                          {"offset", Value::integer(static_cast<std::int64_t>(stored.offset))},
                          {"length", Value::integer(static_cast<std::int64_t>(stored.length))}}));
}

}  // namespace

std::string joined_key(const StatePath& path) {
  std::string out;
  for (const PathElement& p : path) {
    if (!out.empty()) out += '.';
    out += p.is_index() ? std::to_string(p.index) : p.key;
  }
  return out;
}

Result<std::vector<std::byte>> metadata_bytes(const std::vector<TensorItem>& tensors, const std::vector<BytesItem>& objects,
                                              const std::vector<std::string>& order) {
  std::vector<std::pair<ValuePtr, ValuePtr>> items, planner, storage;
  for (const TensorItem& t : tensors) {
    std::vector<ValuePtr> chunks;
    for (std::size_t k = 0; k < t.chunks.size(); ++k) {
      const Chunk& c = t.chunks[k];
      chunks.push_back(instance(kMetadataModule, "ChunkStorageMetadata",
                                fields({{"offsets", Value::size(c.offsets)}, {"sizes", Value::size(c.sizes)}})));
      ValuePtr index = instance(kMetadataModule, "MetadataIndex",
                                fields({{"fqn", Value::string(t.fqn)}, {"offset", Value::size(c.offsets)},
                                        {"index", Value::integer(static_cast<std::int64_t>(k))}}));
      storage.emplace_back(std::move(index), storage_info(c.stored));
    }
    items.emplace_back(Value::string(t.fqn),
                       instance(kMetadataModule, "TensorStorageMetadata",
                                fields({{"properties", tensor_properties(t.dtype)}, {"size", Value::size(t.shape)},
                                        {"chunks", Value::list(std::move(chunks))}})));
    planner.emplace_back(Value::string(t.fqn), planner_path(t.fqn, t.path));
  }
  // A non-tensor item: BytesStorageMetadata (no fields), found by a MetadataIndex without offset.
  for (const BytesItem& o : objects) {
    items.emplace_back(Value::string(o.fqn), instance(kMetadataModule, "BytesStorageMetadata", nullptr));
    ValuePtr index = instance(kMetadataModule, "MetadataIndex", fields({{"fqn", Value::string(o.fqn)}, {"index", Value::none()}}));
    storage.emplace_back(std::move(index), storage_info(o.stored));
    planner.emplace_back(Value::string(o.fqn), planner_path(o.fqn, o.path));
  }
  if (!order.empty()) {
    std::map<std::string, std::size_t> rank;
    for (std::size_t i = 0; i < order.size(); ++i) rank.emplace(order[i], i);
    auto rank_of = [&](const std::pair<ValuePtr, ValuePtr>& item) {
      auto it = rank.find(item.first->str);
      return it == rank.end() ? order.size() : it->second;
    };
    std::stable_sort(items.begin(), items.end(), [&](const auto& a, const auto& b) { return rank_of(a) < rank_of(b); });
  }
  ValuePtr root = instance(kMetadataModule, "Metadata",
                           fields({{"state_dict_metadata", Value::dict(std::move(items))},
                                   {"planner_data", Value::dict(std::move(planner))},
                                   {"storage_data", Value::dict(std::move(storage))},
                                   {"storage_meta", Value::none()},
                                   {"version", Value::string(kWrittenVersion)}}));
  PickleWriteOptions options;
  options.protocol = 4;
  return write_pickle(root, nullptr, options);
}

}  // namespace ucp::format::dcp
