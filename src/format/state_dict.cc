#include "ucp/format/state_dict.h"

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <set>
#include <utility>

#include <nlohmann/json.hpp>

#include "ucp/base/checked_math.h"
#include "ucp/format/dcp.h"
#include "ucp/format/mapped_file.h"
#include "ucp/format/safetensors.h"
#include "ucp/format/torch_file.h"
#include "ucp/format/value.h"

namespace ucp::format {

// Fills a StateDict (the friend of StateDict that may touch its members).
class StateDictBuilder {
 public:
  /// Adds or, for a repeated name (a pickle may set one key twice; Python keeps the last), replaces.
  void add(StateDictTensor t) {
    auto& sd = dict;
    if (auto it = sd.index_.find(t.name); it != sd.index_.end()) {
      sd.tensors_[it->second] = std::move(t);
      return;
    }
    sd.index_.emplace(t.name, sd.tensors_.size());
    sd.tensors_.push_back(std::move(t));
  }
  /// Values follow the same last-one-wins rule as tensors.
  void add_value(StateDictValue v) {
    auto& sd = dict;
    sd.holds_values_ = true;
    if (auto it = sd.value_index_.find(v.name); it != sd.value_index_.end()) {
      sd.values_[it->second] = std::move(v);
      return;
    }
    sd.value_index_.emplace(v.name, sd.values_.size());
    sd.values_.push_back(std::move(v));
  }
  void set_holds_values() { dict.holds_values_ = true; }
  void set_format(std::string f) { dict.format_ = std::move(f); }
  void add_file(std::string f) { dict.files_.push_back(std::move(f)); }
  void add_skipped(std::size_t n) { dict.skipped_non_tensors_ += n; }
  void add_note(std::string n) { dict.notes_.push_back(std::move(n)); }

  StateDict dict;
};

namespace {

using base::Result;
using base::Status;
namespace fs = std::filesystem;

enum class FileKind { kSafetensors, kTorch, kIndex, kHdf5 };

// Largest non-contiguous torch view we copy when it has more bytes than its storage (possible only
// for broadcast views with zero strides): beyond that a crafted file could make us allocate
// arbitrarily much from a few bytes of input.
constexpr std::uint64_t kMaxBroadcastMaterialise = 256ull << 20;

// Largest index JSON we read (real ones are a few hundred KB for the largest models).
constexpr std::uint64_t kMaxIndexSize = 256ull << 20;

std::string in_quotes(const std::string& path) { return "'" + path + "'"; }

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return s;
}

// The kind a file's name says it is (case-insensitive), if it says one.
std::optional<FileKind> kind_by_name(const std::string& file_name) {
  const std::string name = lower(file_name);
  if (name.ends_with(".index.json")) return FileKind::kIndex;
  if (name.ends_with(".safetensors")) return FileKind::kSafetensors;
  for (std::string_view ext : {".bin", ".pt", ".pth", ".ckpt"})
    if (name.ends_with(ext)) return FileKind::kTorch;
  if (name.ends_with(".h5") || name.ends_with(".hdf5")) return FileKind::kHdf5;
  return std::nullopt;
}

// By name first; files with other names by their first bytes (zip -> torch, HDF5 signature), and
// everything else is tried as safetensors, whose reader then says what is wrong.
Result<FileKind> classify(const std::string& path) {
  if (std::optional<FileKind> kind = kind_by_name(fs::path(path).filename().string())) return *kind;
  std::ifstream in(path, std::ios::binary);
  if (!in) return base::not_found(in_quotes(path) + ": cannot open");
  char magic[8] = {};
  in.read(magic, sizeof(magic));
  const std::string_view head(magic, static_cast<std::size_t>(in.gcount()));
  if (head.substr(0, 4) == std::string_view("PK\x03\x04", 4)) return FileKind::kTorch;
  if (head == std::string_view("\x89HDF\r\n\x1a\n", 8)) return FileKind::kHdf5;
  return FileKind::kSafetensors;
}

Status hdf5_unimplemented(const std::string& path) {
  return base::unimplemented(in_quotes(path) + ": HDF5 state dicts are not supported yet "
                             "(use a .safetensors or torch .bin/.pt file)");
}

// What one file holds, before any index filtering.
using FileContents = StateDictContents;

StateDictFileLoader& hdf5_loader() {
  static StateDictFileLoader loader = nullptr;
  return loader;
}

// Where `bytes` starts in `file` when it lies inside the file's own bytes; nullopt for a copy.
std::optional<std::uint64_t> offset_in(const MappedFile& file, std::span<const std::byte> bytes) {
  const auto base = reinterpret_cast<std::uintptr_t>(file.bytes().data());
  const auto at = reinterpret_cast<std::uintptr_t>(bytes.data());
  if (bytes.empty()) return 0;
  if (at < base || at - base > file.size() || bytes.size() > file.size() - (at - base)) return std::nullopt;
  return static_cast<std::uint64_t>(at - base);
}

Result<FileContents> read_safetensors(const std::string& path) {
  UCP_ASSIGN_OR_RETURN(SafetensorsFile file, SafetensorsFile::open(path));
  FileContents out;
  for (const SafetensorsEntry& e : file.entries()) {
    StateDictTensor t;
    t.name = e.name;
    t.dtype = e.dtype;
    t.shape = e.shape;
    t.bytes = file.view(e);
    t.owner = file.file();
    t.source_file = path;
    t.file_offset = offset_in(*file.file(), t.bytes);
    out.tensors.push_back(std::move(t));
  }
  return out;
}

Result<StateDictTensor> torch_tensor(const TorchFile& file, const std::string& path, const std::string& name,
                                     const Tensor& t) {
  const std::string where = in_quotes(path) + ": tensor '" + name + "'";
  UCP_RETURN_IF_ERROR(check_tensor(t).annotate(where));
  StateDictTensor out;
  out.name = name;
  out.dtype = t.dtype();
  out.shape = t.shape;
  out.source_file = path;
  if (auto bytes = contiguous_bytes(t)) {
    out.bytes = *bytes;
    out.owner = t.storage;
    out.file_offset = offset_in(*file.zip().file(), out.bytes);
    return out;
  }
  // Non-contiguous view: materialise row-major. Its size is bounded by check_tensor (it fits in
  // 64 bits); what bounds it by the input is that a view without zero strides never has more
  // elements than its storage.
  const std::uint64_t nbytes = t.nbytes();
  if (nbytes > t.storage->nbytes() && nbytes > kMaxBroadcastMaterialise)
    return base::resource_exhausted(where + " is a broadcast view of " + std::to_string(nbytes) +
                                    " bytes over a storage of " + std::to_string(t.storage->nbytes()) +
                                    " bytes: not materialised (limit " + std::to_string(kMaxBroadcastMaterialise) +
                                    " bytes)");
  auto owned = std::make_shared<std::vector<std::byte>>(tensor_bytes(t));
  out.bytes = std::span<const std::byte>(owned->data(), owned->size());
  out.owner = std::move(owned);
  return out;
}

bool has_tensor_value(const Value& dict) {
  return std::any_of(dict.entries.begin(), dict.entries.end(),
                     [](const auto& kv) { return kv.second && kv.second->is_tensor(); });
}

// torch's DCP flattening (>= 2.4): dicts are always descended into, lists only when they hold a
// tensor or a container that is itself descended into; everything else is a leaf. Answers are
// memoised per object: a pickle may share one subtree many times (a DAG), and an unmemoised walk
// of it would be exponential.
class Flattener {
 public:
  Flattener(const TorchFile& file, const std::string& path, FileContents& out) : file_(file), path_(path), out_(out) {}

  Status flatten(const std::string& prefix, const ValuePtr& v) {
    const std::string dot = prefix.empty() ? "" : prefix + ".";
    if (v->is_dict()) {
      for (const auto& [k, x] : v->entries) UCP_RETURN_IF_ERROR(leaf(dot + key_text(k), x));
      return {};
    }
    for (std::size_t i = 0; i < v->items.size(); ++i) UCP_RETURN_IF_ERROR(leaf(dot + std::to_string(i), v->items[i]));
    return {};
  }

 private:
  static std::string key_text(const ValuePtr& k) {
    if (k && k->is_str()) return k->str;
    if (k && k->is_int()) return std::to_string(k->i);
    return "";
  }

  bool descend_into(const ValuePtr& v) {
    if (!v) return false;
    if (v->is_dict()) return true;
    if (v->kind != Value::Kind::kList) return false;
    if (auto it = descends_.find(v.get()); it != descends_.end()) return it->second;
    const bool d = std::any_of(v->items.begin(), v->items.end(),
                               [&](const ValuePtr& x) { return x && (x->is_tensor() || descend_into(x)); });
    descends_[v.get()] = d;
    return d;
  }

  Status leaf(const std::string& name, const ValuePtr& x) {
    if (x && x->is_tensor()) {
      UCP_ASSIGN_OR_RETURN(StateDictTensor t, torch_tensor(file_, path_, name, x->tensor));
      out_.tensors.push_back(std::move(t));
      return {};
    }
    if (descend_into(x)) return flatten(name, x);
    ++out_.skipped;
    out_.values.push_back({name, x, path_});
    return {};
  }

  const TorchFile& file_;
  const std::string& path_;
  FileContents& out_;
  std::map<const Value*, bool> descends_;
};

// Whether a tensor sits anywhere under `v` in dicts and lists (memoised as above).
bool has_nested_tensor(const ValuePtr& v, std::map<const Value*, bool>& seen) {
  if (!v) return false;
  if (v->is_tensor()) return true;
  if (!v->is_dict() && v->kind != Value::Kind::kList) return false;
  if (auto it = seen.find(v.get()); it != seen.end()) return it->second;
  seen[v.get()] = false;
  bool found = false;
  for (const auto& [k, x] : v->entries) found = found || has_nested_tensor(x, seen);
  for (const ValuePtr& x : v->items) found = found || has_nested_tensor(x, seen);
  seen[v.get()] = found;
  return found;
}


void note_skipped(const std::string& path, FileContents& out) {
  if (out.skipped != 0)
    out.notes.push_back(in_quotes(path) + ": skipped " + std::to_string(out.skipped) + " non-tensor value" +
                        (out.skipped == 1 ? "" : "s"));
}

Result<FileContents> read_torch(const std::string& path, const StateDictOptions& options) {
  UCP_ASSIGN_OR_RETURN(TorchFile file, TorchFile::open(path));
  const ValuePtr& root = file.root();
  if (!root || !root->is_dict())
    return base::data_loss(in_quotes(path) + ": top-level object is a " + (root ? root->type_name() : "null") +
                           ", expected a dict of name -> tensor");
  FileContents out;
  if (options.flatten_nested) {
    UCP_RETURN_IF_ERROR(Flattener(file, path, out).flatten("", root));
    note_skipped(path, out);
    return out;
  }
  const Value* dict = root.get();
  if (!has_tensor_value(*root)) {
    // Training checkpoints nest the weights: {'state_dict': {...}, 'epoch': 3} or {'module': {...}}.
    for (std::string_view key : {"state_dict", "module"}) {
      ValuePtr nested = root->get(key);
      if (nested && nested->is_dict() && has_tensor_value(*nested)) {
        dict = nested.get();
        out.notes.push_back(in_quotes(path) + ": no tensors at the top level; using the '" + std::string(key) +
                            "' entry (" + std::to_string(root->entries.size() - 1) + " other top-level entries ignored)");
        break;
      }
    }
  }
  std::map<const Value*, bool> seen;
  if (dict == root.get() && !has_tensor_value(*root) && has_nested_tensor(root, seen)) {
    // A nested state (dcp_to_torch_save's output): flattened as DCP flattens it.
    UCP_RETURN_IF_ERROR(Flattener(file, path, out).flatten("", root));
    out.notes.push_back(in_quotes(path) + ": a nested state, flattened to dotted names as DCP flattens it");
    return out;
  }
  for (const auto& [key, value] : dict->entries) {
    if (!key || !key->is_str() || !value || !value->is_tensor()) {
      ++out.skipped;
      if (key && key->is_str() && dict == root.get()) out.values.push_back({key->str, value, path});
      continue;
    }
    UCP_ASSIGN_OR_RETURN(StateDictTensor t, torch_tensor(file, path, key->str, value->tensor));
    out.tensors.push_back(std::move(t));
  }
  note_skipped(path, out);
  return out;
}

Result<FileContents> read_single(const std::string& path, FileKind kind, const StateDictOptions& options) {
  switch (kind) {
    case FileKind::kSafetensors:
      return read_safetensors(path);
    case FileKind::kTorch:
      return read_torch(path, options);
    case FileKind::kHdf5:
      if (StateDictFileLoader loader = hdf5_loader()) return loader(path);
      return hdf5_unimplemented(path);
    case FileKind::kIndex:
      break;
  }
  return base::internal_error(in_quotes(path) + ": an index file cannot be a shard");
}

void add_contents(StateDictBuilder& b, FileContents contents) {
  for (StateDictTensor& t : contents.tensors) b.add(std::move(t));
  for (StateDictValue& v : contents.values) b.add_value(std::move(v));
  b.add_skipped(contents.skipped);
  for (std::string& n : contents.notes) b.add_note(std::move(n));
}

std::string_view kind_name(FileKind kind) {
  switch (kind) {
    case FileKind::kSafetensors:
      return "safetensors";
    case FileKind::kTorch:
      return "torch";
    case FileKind::kHdf5:
      return "hdf5";
    case FileKind::kIndex:
      break;
  }
  return "index";
}

// A shard name from an index must stay inside the index's directory: relative, no "..".
Status check_shard_name(const std::string& index_path, const std::string& name) {
  const fs::path p(name);
  bool bad = name.empty() || p.is_absolute() || p.has_root_name();
  for (const fs::path& part : p) bad = bad || part == "..";
  if (bad)
    return base::data_loss(in_quotes(index_path) + ": weight_map names shard '" + name +
                           "', expected a file name relative to the index's directory");
  return Status();
}

Status read_index(const std::string& path, const StateDictOptions& options, StateDictBuilder& b) {
  UCP_ASSIGN_OR_RETURN(std::shared_ptr<const MappedFile> file, MappedFile::open(path));
  if (file->size() > kMaxIndexSize)
    return base::resource_exhausted(in_quotes(path) + ": index of " + std::to_string(file->size()) +
                                    " bytes is over the " + std::to_string(kMaxIndexSize) + "-byte limit");
  const auto* begin = reinterpret_cast<const char*>(file->bytes().data());
  const nlohmann::ordered_json j = nlohmann::ordered_json::parse(begin, begin + file->size(), nullptr, false);
  if (j.is_discarded()) return base::data_loss(in_quotes(path) + ": not valid JSON");
  if (!j.is_object() || !j.contains("weight_map") || !j["weight_map"].is_object())
    return base::data_loss(in_quotes(path) + ": expected a JSON object with a \"weight_map\" object");
  const auto& weight_map = j["weight_map"];
  if (weight_map.empty()) return base::data_loss(in_quotes(path) + ": weight_map is empty");

  // Shards in order of first mention; each opened once.
  std::vector<std::string> shard_names;
  std::map<std::string, std::size_t> shard_of_name;
  for (const auto& [name, shard] : weight_map.items()) {
    if (!shard.is_string())
      return base::data_loss(in_quotes(path) + ": weight_map entry '" + name + "' is " + shard.type_name() +
                             ", expected a shard file name");
    const std::string s = shard.get<std::string>();
    UCP_RETURN_IF_ERROR(check_shard_name(path, s));
    if (!shard_of_name.count(s)) {
      shard_of_name.emplace(s, shard_names.size());
      shard_names.push_back(s);
    }
  }

  const fs::path dir = fs::path(path).parent_path();
  std::vector<std::map<std::string, StateDictTensor>> shards(shard_names.size());
  std::vector<std::string> shard_paths;
  std::set<FileKind> kinds;
  std::size_t skipped = 0;
  for (std::size_t i = 0; i < shard_names.size(); ++i) {
    const std::string shard_path = (dir / shard_names[i]).string();
    shard_paths.push_back(shard_path);
    UCP_ASSIGN_OR_RETURN(FileKind kind, classify(shard_path).annotate("shard of " + in_quotes(path)));
    if (kind == FileKind::kIndex) return base::data_loss(in_quotes(path) + ": shard '" + shard_names[i] + "' is an index");
    kinds.insert(kind);
    UCP_ASSIGN_OR_RETURN(FileContents contents,
                         read_single(shard_path, kind, options).annotate("shard of " + in_quotes(path)));
    b.add_file(shard_path);
    skipped += contents.skipped;
    for (std::string& n : contents.notes) b.add_note(std::move(n));
    for (StateDictTensor& t : contents.tensors) {
      std::string name = t.name;
      shards[i].insert_or_assign(std::move(name), std::move(t));
    }
  }

  for (const auto& [name, shard] : weight_map.items()) {
    const std::size_t i = shard_of_name.at(shard.get<std::string>());
    auto it = shards[i].find(name);
    if (it == shards[i].end())
      return base::data_loss(in_quotes(shard_paths[i]) + ": has no tensor '" + name + "', which the weight_map of " +
                             in_quotes(path) + " places there");
    b.add(std::move(it->second));
    shards[i].erase(it);
  }
  std::size_t unlisted = 0;
  for (const auto& s : shards) unlisted += s.size();
  if (unlisted != 0)
    b.add_note(in_quotes(path) + ": ignored " + std::to_string(unlisted) + " tensor" + (unlisted == 1 ? "" : "s") +
               " present in shards but absent from the weight_map");
  b.add_skipped(skipped);
  std::string fmt = kinds.size() == 1 ? std::string(kind_name(*kinds.begin())) : "mixed";
  b.set_format(fmt + " index (" + std::to_string(shard_names.size()) + " shard" +
               (shard_names.size() == 1 ? "" : "s") + ")");
  return Status();
}

Status open_file(const std::string& path, const StateDictOptions& options, StateDictBuilder& b) {
  UCP_ASSIGN_OR_RETURN(FileKind kind, classify(path));
  if (kind == FileKind::kIndex) return read_index(path, options, b);
  UCP_ASSIGN_OR_RETURN(FileContents contents, read_single(path, kind, options));
  b.add_file(path);
  b.set_format(std::string(kind_name(kind)));
  if (kind == FileKind::kTorch) b.set_holds_values();
  add_contents(b, std::move(contents));
  return Status();
}

}  // namespace

void set_hdf5_state_dict_loader(StateDictFileLoader loader) { hdf5_loader() = loader; }

const StateDictValue* StateDict::find_value(std::string_view name) const {
  auto it = value_index_.find(name);
  return it == value_index_.end() ? nullptr : &values_[it->second];
}

const StateDictTensor* StateDict::find(std::string_view name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &tensors_[it->second];
}

namespace {

// A PyTorch DCP folder: every tensor item assembled from its chunks (owned copies); non-tensor
// items are skipped and counted.
Result<StateDict> open_dcp(const std::string& path) {
  UCP_ASSIGN_OR_RETURN(dcp::Metadata m, dcp::read_metadata(path));
  std::vector<std::shared_ptr<const MappedFile>> files;
  UCP_ASSIGN_OR_RETURN(SourceLayout layout, dcp::read_layout(m, &files));
  StateDictBuilder b;
  b.set_format("dcp");
  for (const auto& f : m.files) b.add_file(path + "/" + f);
  b.add_skipped(m.bytes_items.size());
  b.set_holds_values();
  UCP_ASSIGN_OR_RETURN(std::vector<ValuePtr> values, dcp::read_bytes_items(m));
  for (std::size_t i = 0; i < values.size(); ++i) b.add_value({m.bytes_items[i].fqn, values[i], m.metadata_path()});
  for (const LogicalTensor& t : layout.tensors) {
    if (const auto run = whole_run(t)) {  // one chunk: a view of its data file, as for other formats
      const auto& file = files[run->file];
      b.add({t.name, t.dtype, t.shape, file->bytes().subspan(run->offset, run->nbytes()), file, file->path(),
             run->offset});
      continue;
    }
    auto bytes = std::make_shared<std::vector<std::byte>>(t.numel() * base::dtype_size(t.dtype));
    UCP_RETURN_IF_ERROR(read_tensor(t, files, *bytes));
    b.add({t.name, t.dtype, t.shape, std::span<const std::byte>(*bytes), bytes, m.metadata_path(),
           std::nullopt});
  }
  return std::move(b.dict);
}

}  // namespace

Result<StateDict> StateDict::open(const std::string& path) { return open(path, StateDictOptions{}); }

bool has_state_dict_file_name(const std::string& file_name) { return kind_by_name(file_name).has_value(); }

std::string hf_model_file_in(const std::string& dir) {
  static constexpr std::string_view kCandidates[] = {"model.safetensors", "model.safetensors.index.json",
                                                     "pytorch_model.bin", "pytorch_model.bin.index.json"};
  std::error_code ec;
  for (std::string_view c : kCandidates)
    if (const fs::path p = fs::path(dir) / c; fs::is_regular_file(p, ec)) return p.string();
  return {};
}

Result<StateDict> StateDict::open(const std::string& path, const StateDictOptions& options) {
  std::error_code ec;
  const fs::file_status st = fs::status(path, ec);
  if (ec || !fs::exists(st)) return base::not_found(in_quotes(path) + ": no such file or directory");
  if (fs::is_directory(st) && dcp::is_dcp_folder(path)) return open_dcp(path);
  StateDictBuilder b;
  if (fs::is_directory(st)) {
    const std::string chosen = hf_model_file_in(path);
    if (chosen.empty()) {
      if (hdf5_loader() && fs::is_regular_file(fs::path(path) / "model.h5", ec)) {
        UCP_RETURN_IF_ERROR(open_file((fs::path(path) / "model.h5").string(), options, b));
        return std::move(b.dict);
      }
      if (fs::is_regular_file(fs::path(path) / "model.h5", ec) || fs::is_regular_file(fs::path(path) / "tf_model.h5", ec))
        return hdf5_unimplemented(path);
      return base::not_found(in_quotes(path) + ": directory holds none of model.safetensors, "
                             "model.safetensors.index.json, pytorch_model.bin, pytorch_model.bin.index.json");
    }
    UCP_RETURN_IF_ERROR(open_file(chosen, options, b));
  } else {
    UCP_RETURN_IF_ERROR(open_file(path, options, b));
  }
  return std::move(b.dict);
}

}  // namespace ucp::format
