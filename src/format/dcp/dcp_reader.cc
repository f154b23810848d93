#include <sys/stat.h>

#include <algorithm>
#include <map>
#include <memory>
#include <set>
#include <span>
#include <utility>

#include "ucp/format/dcp.h"
#include "ucp/format/mapped_file.h"
#include "ucp/format/pickle_reader.h"
#include "ucp/format/torch_file.h"
#include "ucp/format/value.h"
#include "zstd_items.h"

namespace ucp::format::dcp {
using base::Result;
using base::Status;

namespace {

// A list index in planner_data beyond this is refused: set_element would make a list that long.
constexpr std::int64_t kMaxListIndex = 1 << 20;

// The class an opaque object was built from ("TensorStorageMetadata"), or "".
std::string class_name(const ValuePtr& v) {
  if (!v || v->kind != Value::Kind::kObject || !v->object.callable || v->object.callable->kind != Value::Kind::kGlobal) return "";
  return v->object.callable->global.name;
}

// The BUILD state of a dataclass instance: a dict, or (for dataclasses with __slots__) the second
// element of a (None, slots) pair.
ValuePtr fields_of(const ValuePtr& v) {
  if (!v || v->kind != Value::Kind::kObject || !v->object.state) return nullptr;
  const ValuePtr& s = v->object.state;
  if (s->kind == Value::Kind::kDict) return s;
  if (s->kind == Value::Kind::kTuple && s->items.size() == 2 && s->items[1] && s->items[1]->kind == Value::Kind::kDict)
    return s->items[1];
  return nullptr;
}

// Reads Metadata's fields; every error is annotated with the .metadata path by the caller.
class MetadataParser {
 public:
  explicit MetadataParser(Metadata& out) : out_(out) {}

  Status parse(const ValuePtr& root) {
    if (class_name(root) != "Metadata" || !fields_of(root))
      return base::data_loss("expected a pickled torch.distributed.checkpoint Metadata, found " +
                             (root ? root->type_name() : std::string("nothing")));
    const ValuePtr fields = fields_of(root);
    if (const ValuePtr v = fields->get("version"); v && v->is_str()) out_.version = v->str;
    const ValuePtr storage = fields->get("storage_data");
    if (!storage || !storage->is_dict()) return base::data_loss("Metadata has no storage_data dict");
    for (const auto& [key, info] : storage->entries) UCP_RETURN_IF_ERROR(add_storage(key, info));
    const ValuePtr items = fields->get("state_dict_metadata");
    if (!items || !items->is_dict()) return base::data_loss("Metadata has no state_dict_metadata dict");
    for (const auto& [key, item] : items->entries) {
      if (!key || !key->is_str()) return base::data_loss("state_dict_metadata has a key that is not a string");
      UCP_RETURN_IF_ERROR(add_item(key->str, item));
      out_.item_order.push_back(key->str);
    }
    out_.files.assign(files_.begin(), files_.end());
    return add_planner_paths(fields->get("planner_data"));
  }

 private:
  using Box = std::vector<std::int64_t>;

  static Result<Box> dims(const ValuePtr& v, const std::string& what) {
    if (!v || (v->kind != Value::Kind::kSize && v->kind != Value::Kind::kTuple && v->kind != Value::Kind::kList))
      return base::data_loss(what + " is not a torch.Size");
    Box out;
    for (const ValuePtr& d : v->items) {
      if (!d || !d->is_int() || d->i < 0) return base::data_loss(what + " holds a dimension that is not a non-negative integer");
      out.push_back(d->i);
    }
    return out;
  }

  Status add_storage(const ValuePtr& key, const ValuePtr& info) {
    const ValuePtr k = fields_of(key), f = fields_of(info);
    if (class_name(key) != "MetadataIndex" || !k) return base::data_loss("a storage_data key is not a MetadataIndex");
    if (!f) return base::data_loss("a storage_data value is not a _StorageInfo");
    const ValuePtr fqn = k->get("fqn");
    if (!fqn || !fqn->is_str()) return base::data_loss("a MetadataIndex without an fqn");
    Box offset;
    if (const ValuePtr o = k->get("offset"); o && o->kind != Value::Kind::kNone) {
      UCP_ASSIGN_OR_RETURN(offset, dims(o, "the offset of '" + fqn->str + "'"));
    }
    StoredItem item;
    const ValuePtr path = f->get("relative_path"), off = f->get("offset"), len = f->get("length");
    if (!path || !path->is_str() || !off || !off->is_int() || off->i < 0 || !len || !len->is_int() || len->i < 0)
      return base::data_loss("the _StorageInfo of '" + fqn->str + "' lacks relative_path, offset or length");
    if (path->str.empty() || path->str.find('/') != std::string::npos || path->str == "." || path->str == "..")
      return base::data_loss("'" + fqn->str + "' is stored in '" + path->str + "', not a file name in the folder");
    item.file = path->str;
    item.offset = static_cast<std::uint64_t>(off->i);
    item.length = static_cast<std::uint64_t>(len->i);
    if (const ValuePtr t = f->get("transform_descriptors"); t && (t->kind == Value::Kind::kList || t->kind == Value::Kind::kTuple))
      for (const ValuePtr& d : t->items) item.transforms.push_back(d && d->is_str() ? d->str : "?");
    files_.insert(item.file);
    if (!stored_.emplace(std::make_pair(fqn->str, offset), std::move(item)).second)
      return base::data_loss("'" + fqn->str + "' has two stored items at one offset");
    return {};
  }

  // planner_data: {flat key: tuple of str keys and int list indices}; None or absent in torch 1.13.
  // Only the paths of listed items matter (a planner may record more).
  Status add_planner_paths(const ValuePtr& data) {
    if (!data || data->kind == Value::Kind::kNone) return {};
    if (!data->is_dict()) return base::data_loss("Metadata.planner_data is a " + data->type_name() + ", expected a dict");
    for (const auto& [key, path] : data->entries) {
      if (!key || !key->is_str() || !fqns_.count(key->str)) continue;
      if (!path || (path->kind != Value::Kind::kTuple && path->kind != Value::Kind::kList) || path->items.empty())
        return base::data_loss("planner_data of '" + key->str + "' is not a non-empty tuple of keys");
      std::vector<PathElement> elements;
      for (const ValuePtr& e : path->items) {
        if (e && e->is_str()) elements.push_back({e->str, -1});
        else if (e && e->is_int() && e->i >= 0 && e->i < kMaxListIndex) elements.push_back({"", e->i});
        else return base::data_loss("planner_data of '" + key->str + "' holds a step that is neither a str key nor a list index");
      }
      out_.planner_paths[key->str] = std::move(elements);
    }
    return {};
  }

  Result<StoredItem> stored_at(const std::string& fqn, const Box& offset) {
    auto it = stored_.find({fqn, offset});
    if (it == stored_.end()) {
      std::string at;
      for (std::int64_t d : offset) at += (at.empty() ? "" : ", ") + std::to_string(d);
      return base::data_loss("'" + fqn + "' has a chunk at offset (" + at + ") that no storage_data entry stores");
    }
    return it->second;
  }

  Status add_item(const std::string& fqn, const ValuePtr& item) {
    if (!fqns_.insert(fqn).second) return base::data_loss("item '" + fqn + "' is listed twice");
    const std::string cls = class_name(item);
    if (cls == "BytesStorageMetadata") {
      UCP_ASSIGN_OR_RETURN(StoredItem s, stored_at(fqn, {}));
      out_.bytes_items.push_back({fqn, std::move(s), {}});
      return {};
    }
    const ValuePtr f = fields_of(item);
    if (cls != "TensorStorageMetadata" || !f)
      return base::data_loss("item '" + fqn + "' is a " + (item ? item->type_name() : std::string("None")) +
                             ", expected TensorStorageMetadata or BytesStorageMetadata");
    TensorItem t;
    t.fqn = fqn;
    UCP_ASSIGN_OR_RETURN(t.dtype, dtype_of(fqn, f->get("properties")));
    UCP_ASSIGN_OR_RETURN(t.shape, dims(f->get("size"), "the size of '" + fqn + "'"));
    const ValuePtr chunks = f->get("chunks");
    if (!chunks || chunks->kind != Value::Kind::kList) return base::data_loss("'" + fqn + "' has no chunks list");
    for (const ValuePtr& c : chunks->items) {
      const ValuePtr cf = fields_of(c);
      if (class_name(c) != "ChunkStorageMetadata" || !cf) return base::data_loss("a chunk of '" + fqn + "' is not a ChunkStorageMetadata");
      Chunk chunk;
      UCP_ASSIGN_OR_RETURN(chunk.offsets, dims(cf->get("offsets"), "a chunk offset of '" + fqn + "'"));
      UCP_ASSIGN_OR_RETURN(chunk.sizes, dims(cf->get("sizes"), "a chunk size of '" + fqn + "'"));
      if (chunk.offsets.size() != t.shape.size() || chunk.sizes.size() != t.shape.size())
        return base::data_loss("a chunk of '" + fqn + "' has " + std::to_string(chunk.sizes.size()) +
                               " dimensions, the tensor " + std::to_string(t.shape.size()));
      UCP_ASSIGN_OR_RETURN(chunk.stored, stored_at(fqn, chunk.offsets));
      t.chunks.push_back(std::move(chunk));
    }
    out_.tensors.push_back(std::move(t));
    return {};
  }

  // TensorProperties pickles its state as a tuple (dtype, layout, requires_grad, memory_format,
  // pin_memory); torch <= 2.1's sharded_tensor TensorProperties as a dict.
  static Result<base::DType> dtype_of(const std::string& fqn, const ValuePtr& properties) {
    ValuePtr dtype;
    if (properties && properties->kind == Value::Kind::kObject && properties->object.state) {
      const ValuePtr& s = properties->object.state;
      if (s->kind == Value::Kind::kTuple && !s->items.empty()) dtype = s->items[0];
      else if (s->is_dict()) dtype = s->get("dtype");
    }
    if (!dtype || dtype->kind != Value::Kind::kGlobal || dtype->global.module != "torch")
      return base::data_loss("'" + fqn + "' has no torch dtype in its TensorProperties");
    if (auto d = base::dtype_from_torch_dtype_attr(dtype->global.name)) return *d;
    return base::unimplemented("'" + fqn + "' has dtype torch." + dtype->global.name + ", which is not supported");
  }

  Metadata& out_;
  std::map<std::pair<std::string, Box>, StoredItem> stored_;
  std::set<std::string> files_;  // data files the items name
  std::set<std::string> fqns_;
};

std::string dims_text(const std::vector<std::int64_t>& dims) {
  std::string s;
  for (std::size_t d = 0; d < dims.size(); ++d) s += (d ? ", " : "") + std::to_string(dims[d]);
  return "[" + s + "]";
}

std::string box_text(const Chunk& c) {
  std::string s;
  for (std::size_t d = 0; d < c.offsets.size(); ++d)
    s += (d ? ", " : "") + std::to_string(c.offsets[d]) + ":" + std::to_string(c.offsets[d] + c.sizes[d]);
  return "[" + s + "]";
}

// The chunk's elements in its data file: the item is a torch.save zip of one tensor (offsets
// inside it are relative to the item's start). A transformed (zstd) item has been decoded into a
// scratch file of its own: then [offset, +length) is that whole file, and `shown` names the data
// file it came from in messages (data->path() is /proc/self/fd/N).
Result<TensorLocation> locate_chunk(const std::shared_ptr<const MappedFile>& data, std::uint32_t file_index,
                                    const TensorItem& t, const Chunk& c, std::uint64_t offset, std::uint64_t length,
                                    const std::string& shown) {
  const std::string where = "chunk " + box_text(c) + " of '" + t.fqn + "' in '" + shown + "'";
  auto view = MappedFile::view(data, offset, length, data->path() + "@" + std::to_string(offset));
  if (!view.ok()) return base::data_loss(where + ": item [" + std::to_string(offset) + ", +" +
                                         std::to_string(length) + ") runs past the end of the file (" +
                                         std::to_string(data->size()) + " bytes)");
  auto file = TorchFile::parse(*view);
  if (!file.ok()) return std::move(file).take_status().annotate(where);
  const ValuePtr& root = file->root();
  if (!root || !root->is_tensor()) return base::data_loss(where + ": the item holds a " + (root ? root->type_name() : "nothing") + ", not a tensor");
  const Tensor& x = root->tensor;
  if (x.dtype() != t.dtype || x.shape != c.sizes)
    return base::data_loss(where + ": the item holds a " + std::string(base::dtype_name(x.dtype())) + " tensor " +
                           dims_text(x.shape) + ", the metadata says " + std::string(base::dtype_name(t.dtype)) + " " +
                           dims_text(c.sizes));
  if (!x.is_contiguous())
    return base::unimplemented(where + ": the chunk is stored with non-row-major strides (a transposed or channels_last tensor)");
  const std::byte* base = data->bytes().data();
  const auto at = static_cast<std::uint64_t>(x.storage->bytes.data() - base) +
                  static_cast<std::uint64_t>(x.storage_offset) * base::dtype_size(x.dtype());
  return TensorLocation{file_index, at, x.numel(), x.dtype()};
}

}  // namespace

bool is_dcp_folder(const std::string& dir) {
  struct stat st {};
  return ::stat((dir + "/" + kMetadataFile).c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

Result<Metadata> parse_metadata(std::span<const std::byte> bytes, const std::string& dir) {
  Metadata m;
  m.dir = dir;
  const std::string path = m.metadata_path();
  auto root = read_pickle(bytes, nullptr);
  if (!root.ok()) return std::move(root).take_status().annotate("'" + path + "'");
  MetadataParser parser(m);
  if (Status s = parser.parse(*root); !s.ok()) return s.annotate("'" + path + "'");
  return m;
}

Result<Metadata> read_metadata(const std::string& dir) {
  const std::string path = dir + "/" + kMetadataFile;
  if (!is_dcp_folder(dir)) {
    struct stat st {};
    if (::stat((dir + "/__0.metadata").c_str(), &st) == 0)
      return base::unimplemented("'" + dir + "' holds rank-local __<rank>.metadata files (dcp.save with "
                                 "use_collectives=False) and no global .metadata; it cannot be resharded");
    return base::not_found("'" + path + "' does not exist: not a torch.distributed.checkpoint folder");
  }
  UCP_ASSIGN_OR_RETURN(std::shared_ptr<const MappedFile> file, MappedFile::open(path));
  return parse_metadata(file->bytes(), dir);
}

Result<SourceLayout> read_layout(const Metadata& m, std::vector<std::shared_ptr<const MappedFile>>* mapped) {
  std::vector<std::shared_ptr<const MappedFile>> files;
  for (const std::string& name : m.files) {
    auto f = MappedFile::open(m.dir + "/" + name);
    if (!f.ok()) return std::move(f).take_status().annotate("data file named by '" + m.metadata_path() + "'");
    files.push_back(std::move(*f));
  }
  auto index_of = [&](const std::string& name) {
    return static_cast<std::uint32_t>(std::lower_bound(m.files.begin(), m.files.end(), name) - m.files.begin());
  };
  SourceLayout layout;
  for (const TensorItem& t : m.tensors) {
    LogicalTensor lt;
    lt.name = t.fqn;
    lt.shape = t.shape;
    lt.dtype = t.dtype;
    lt.role = TensorRole::kStored;
    for (const Chunk& c : t.chunks) {
      std::uint64_t numel = 1;
      for (std::int64_t s : c.sizes) numel *= static_cast<std::uint64_t>(s);
      if (numel == 0) continue;  // uneven Shard(0) leaves empty boxes on the last ranks
      std::uint32_t f = index_of(c.stored.file);
      std::uint64_t offset = c.stored.offset, length = c.stored.length;
      std::string shown = files[f]->path();
      if (!c.stored.transforms.empty()) {  // decoded whole into a scratch file: one more source file
        const std::string where = "chunk " + box_text(c) + " of '" + t.fqn + "' in '" + files[f]->path() + "'";
        auto item = MappedFile::view(files[f], offset, length, files[f]->path() + "@" + std::to_string(offset));
        if (!item.ok()) return base::data_loss(where + ": item [" + std::to_string(offset) + ", +" + std::to_string(length) +
                                               ") runs past the end of the file (" + std::to_string(files[f]->size()) + " bytes)");
        UCP_ASSIGN_OR_RETURN(std::shared_ptr<const MappedFile> decoded, undo_transforms(*item, c.stored.transforms, where));
        shown += " (zstd item at " + std::to_string(offset) + ", decoded)";
        f = static_cast<std::uint32_t>(files.size());
        offset = 0;
        length = decoded->size();
        files.push_back(std::move(decoded));
      }
      UCP_ASSIGN_OR_RETURN(TensorLocation src, locate_chunk(files[f], f, t, c, offset, length, shown));
      auto pieces = box_pieces(t.shape, c.offsets, c.sizes, src);
      if (!pieces.ok()) return std::move(pieces).take_status().annotate("'" + m.metadata_path() + "': '" + t.fqn + "'");
      lt.pieces.insert(lt.pieces.end(), pieces->begin(), pieces->end());
    }
    std::sort(lt.pieces.begin(), lt.pieces.end(), [](const Piece& a, const Piece& b) { return a.dst_offset < b.dst_offset; });
    if (Status s = check_coverage(lt); !s.ok()) return s.annotate("'" + m.metadata_path() + "'");
    layout.tensors.push_back(std::move(lt));
  }
  if (mapped) *mapped = std::move(files);
  return layout;
}

}  // namespace ucp::format::dcp
