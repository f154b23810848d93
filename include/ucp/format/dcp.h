// PyTorch Distributed Checkpoint folders (torch.distributed.checkpoint, "DCP"), as FSDP2,
// torchtitan and Lingua write them: `.metadata`, a pickle of Metadata (decoded by our pickle VM,
// nothing executed), and data files `__{rank}_{n}.distcp` in which every item is a complete
// torch.save zip at (offset, length): a tensor chunk, or a pickled Python object ("bytes item").
// A tensor's chunks are N-d boxes of its global shape (DTensor shards, replicated copies kept
// once); here they become the pieces of a format::SourceLayout, reading only zip directories and
// chunk pickles, never tensor data.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "ucp/base/dtype.h"
#include "ucp/base/status.h"
#include "ucp/format/tensor_layout.h"
#include "ucp/format/value.h"

namespace ucp::format {
class MappedFile;
}

namespace ucp::format::dcp {

inline constexpr const char* kMetadataFile = ".metadata";
/// Metadata.version of what we write (torch 2.14's CURRENT_DCP_VERSION).
inline constexpr const char* kWrittenVersion = "1.0.0";

/// Where an item's serialized bytes lie (torch's _StorageInfo).
struct StoredItem {
  std::string file;  ///< Relative to the checkpoint folder ("__0_0.distcp").
  std::uint64_t offset = 0;
  std::uint64_t length = 0;
  std::vector<std::string> transforms;  ///< transform_descriptors ("stream.zstd/1"); empty for plain items.
};

/// One step of a key's path in the nested state dict (Metadata.planner_data): a dict key, or a
/// list index when `index` >= 0 (torch descends into lists that hold dicts or tensors:
/// "optim.param_groups.0.lr" is optim / param_groups / 0 / lr).
struct PathElement {
  std::string key;
  std::int64_t index = -1;
  PathElement() = default;
  PathElement(std::string k, std::int64_t i = -1) : key(std::move(k)), index(i) {}  // NOLINT: implicit, a key
  PathElement(const char* k) : key(k) {}                                             // NOLINT: implicit, a key
  static PathElement at(std::int64_t i) { return {"", i}; }
  bool is_index() const { return index >= 0; }
};
using StatePath = std::vector<PathElement>;

/// The flattened key of `path`: its elements joined by "." (as torch's flatten_state_dict).
std::string joined_key(const StatePath& path);

struct Chunk {
  std::vector<std::int64_t> offsets;  ///< The box in the global tensor.
  std::vector<std::int64_t> sizes;
  StoredItem stored;
};

struct TensorItem {
  std::string fqn;  ///< Flattened key ("model.layers.0.attention.wq.weight").
  base::DType dtype = base::DType::kF32;
  std::vector<std::int64_t> shape;  ///< Global shape.
  std::vector<Chunk> chunks;
  /// Where the value sits in the nested state dict the checkpoint was saved from (planner_data:
  /// {"optim", "state", "h.0.w", "exp_avg"}); empty when the state dict was flat (the key alone).
  StatePath path;
};

/// A non-tensor item (a step counter, param_groups, a string): torch.save'd Python object.
struct BytesItem {
  std::string fqn;
  StoredItem stored;
  StatePath path;  ///< As TensorItem::path.
};

struct Metadata {
  std::string dir;                    ///< The checkpoint folder.
  std::vector<TensorItem> tensors;    ///< In .metadata order (torch's global plan order).
  std::vector<BytesItem> bytes_items;
  std::vector<std::string> item_order;  ///< Every key (tensor or bytes item) in .metadata order.
  /// planner_data: each flat key's path in the nested state dict that was saved ("optim.param_groups.0.lr"
  /// -> optim / param_groups / 0 / lr). Empty when .metadata has none (torch 1.13): each key is its
  /// own one-element path.
  std::map<std::string, std::vector<PathElement>> planner_paths;
  std::vector<std::string> files;     ///< Data files the items name, sorted; TensorLocation::file indexes these.
  std::string version;                ///< Metadata.version ("1.0.0"), "" when absent (torch < 2.9).
  std::string metadata_path() const { return dir + "/" + kMetadataFile; }
};

/// True when `dir` is a folder holding a `.metadata` file.
bool is_dcp_folder(const std::string& dir);

/// Parses dir/.metadata: every tensor with its chunks and where each is stored, every bytes item.
/// Errors name the file and what was expected (DataLoss for a malformed Metadata, a chunk without
/// a stored item; Unimplemented for a dtype or a rank-local `__{r}.metadata` layout we do not read).
base::Result<Metadata> read_metadata(const std::string& dir);
/// The same from the bytes of a .metadata file (fuzzers, tests); `dir` only names it in errors.
base::Result<Metadata> parse_metadata(std::span<const std::byte> bytes, const std::string& dir);

/// The tensors of `metadata` as a layout (names = flattened keys, source files = `files` under
/// `dir`): maps every data file, parses each chunk's zip directory and pickle, checks that it
/// holds a tensor of the chunk's dtype and sizes stored row-major, and places it as pieces. Proves
/// coverage: chunks that overlap or leave holes are refused naming the tensor and the elements.
/// Items stored with the zstd transform ("stream.zstd/1") are decoded whole, streamed into unlinked
/// scratch files (bounded memory) that become extra source files after `files`; DataLoss for a
/// corrupt stream. Unimplemented for another transform or non-row-major strides. `mapped`, when
/// given, receives the mapped data files then the scratch files (index = TensorLocation::file;
/// their path() is what an executor opens: dir/name, or /proc/self/fd/N for a scratch file, valid
/// while this process lives).
base::Result<SourceLayout> read_layout(const Metadata& metadata,
                                       std::vector<std::shared_ptr<const MappedFile>>* mapped = nullptr);

/// The Python object bytes item `item` holds (a torch.save zip at its (offset, length)), decoded by
/// our pickle VM into a Value tree; nothing is executed. Only what torch.load(weights_only=True)
/// accepts is allowed: None, bool, int, float, str, bytes, tuple, list, set, dict, OrderedDict,
/// torch.Size, torch dtypes and devices, tensors. Anything else (a class, a function such as
/// os.system) is refused naming the item and the global (DataLoss); so is an item that runs past
/// its data file or is not a torch.save zip. Unimplemented for a transform we do not undo.
base::Result<ValuePtr> read_bytes_item(const Metadata& metadata, const BytesItem& item);
/// read_bytes_item of every bytes item, in Metadata::bytes_items order (each data file mapped once).
base::Result<std::vector<ValuePtr>> read_bytes_items(const Metadata& metadata);

/// The path of flat key `fqn` in the nested state: planner_data's, else the key itself.
std::vector<PathElement> path_of(const Metadata& metadata, const std::string& fqn);

/// The nested state dict dcp_to_torch_save rebuilds: every key of `leaves` (flat key -> value;
/// keys of metadata.item_order absent from it are left out) placed at its path, in .metadata
/// order: dicts are plain dicts, list indices make lists (holes None), as torch's set_element
/// does. DataLoss when two paths disagree (a key used as a dict and as a list).
base::Result<ValuePtr> nested_state(const Metadata& metadata, const std::map<std::string, ValuePtr>& leaves);

/// The .metadata bytes describing `tensors` and the non-tensor `objects` (each `stored` says where
/// its torch.save item lies) as torch's FileSystemWriter pickles them: what dcp.load and
/// dcp_to_torch_save read. planner_data maps each key to its `path` (to the key itself when empty).
/// `order`, when given, is the order of the keys in state_dict_metadata (the order in which
/// dcp_to_torch_save rebuilds the state: a re-chunked copy keeps its source's); others follow.
base::Result<std::vector<std::byte>> metadata_bytes(const std::vector<TensorItem>& tensors,
                                                    const std::vector<BytesItem>& objects = {},
                                                    const std::vector<std::string>& order = {});

/// "__{rank}_0.distcp": the one data file a writing rank writes.
inline std::string data_file_name(int rank) { return "__" + std::to_string(rank) + "_0.distcp"; }

}  // namespace ucp::format::dcp
