// PyTorch Distributed Checkpoint folders (torch.distributed.checkpoint, "DCP"), as FSDP2,
// torchtitan and Lingua write them: `.metadata`, a pickle of Metadata (decoded by our pickle VM,
// nothing executed), and data files `__{rank}_{n}.distcp` in which every item is a complete
// torch.save zip at (offset, length): a tensor chunk, or a pickled Python object ("bytes item").
// A tensor's chunks are N-d boxes of its global shape (DTensor shards, replicated copies kept
// once); here they become the pieces of a format::SourceLayout, reading only zip directories and
// chunk pickles, never tensor data.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <variant>
#include <vector>

#include "ucp/base/dtype.h"
#include "ucp/base/status.h"
#include "ucp/format/tensor_layout.h"

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

/// A step into a nested state dict: a dict key, or a list index (torch descends into lists that
/// hold dicts or tensors: "optim.param_groups.0.lr" is {"optim", "param_groups", 0, "lr"}).
using PathElement = std::variant<std::string, std::int64_t>;
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
/// Unimplemented for an item stored with a transform (zstd) or non-row-major strides. `mapped`,
/// when given, receives the mapped data files (index = TensorLocation::file).
base::Result<SourceLayout> read_layout(const Metadata& metadata,
                                       std::vector<std::shared_ptr<const MappedFile>>* mapped = nullptr);

/// The .metadata bytes describing `tensors` and the non-tensor `objects` (each `stored` says where
/// its torch.save item lies) as torch's FileSystemWriter pickles them: what dcp.load and
/// dcp_to_torch_save read. planner_data maps each key to its `path` (to the key itself when empty).
base::Result<std::vector<std::byte>> metadata_bytes(const std::vector<TensorItem>& tensors,
                                                    const std::vector<BytesItem>& objects = {});

/// "__{rank}_0.distcp": the one data file a writing rank writes.
inline std::string data_file_name(int rank) { return "__" + std::to_string(rank) + "_0.distcp"; }

}  // namespace ucp::format::dcp
