// A model's flat name -> tensor map read from any of the layouts models are shipped in, so that
// commands comparing or consuming weights (diff, to-fp32 checks) need not care which one it was:
// a .safetensors file, a torch.save file (.bin/.pt/.pth), or a Hugging Face style directory
// (model.safetensors, model.safetensors.index.json, pytorch_model.bin, pytorch_model.bin.index.json).
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "ucp/base/dtype.h"
#include "ucp/base/status.h"
#include "ucp/format/value.h"

namespace ucp::format {

struct StateDictTensor {
  std::string name;
  base::DType dtype = base::DType::kF32;
  std::vector<std::int64_t> shape;
  /// numel * dtype_size bytes, row-major and contiguous. A view into the mapped file when the
  /// tensor is stored contiguously; non-contiguous torch views are copied into owned storage.
  std::span<const std::byte> bytes;
  std::shared_ptr<const void> owner;  ///< Keeps `bytes` alive.
  std::string source_file;            ///< The file the tensor was read from.
  /// Where `bytes` starts in `source_file` when it is a view of that file's own bytes (stored
  /// contiguously, uncompressed); nullopt for copies (non-contiguous torch views, DCP chunks put
  /// together, HDF5). Lets a reader name the tensor as one run of its file instead of its bytes.
  std::optional<std::uint64_t> file_offset;

  std::uint64_t numel() const { return bytes.size() / base::dtype_size(dtype); }
};

/// A non-tensor value under a flat name: a DCP folder's non-tensor item ("step",
/// "optim.param_groups.0.lr"), a torch file's non-tensor entry.
struct StateDictValue {
  std::string name;
  ValuePtr value;
  std::string source_file;
};

/// What one file of a state dict holds, in file order.
struct StateDictContents {
  std::vector<StateDictTensor> tensors;
  std::vector<StateDictValue> values;  ///< Non-tensor values (torch files; also counted in `skipped`).
  std::size_t skipped = 0;  ///< Non-tensor values left out.
  std::vector<std::string> notes;
};

/// Reads one file into StateDictContents (errors name the file).
using StateDictFileLoader = base::Result<StateDictContents> (*)(const std::string& path);
/// HDF5 needs libhdf5, which ucp_format does not link: a binary built with HDF5 installs its
/// loader here (format/hdf5_state_dict.h) before opening state dicts. Without one, HDF5 inputs
/// are Unimplemented.
void set_hdf5_state_dict_loader(StateDictFileLoader loader);

/// How StateDict::open reads torch files.
struct StateDictOptions {
  /// Torch files: nested dicts and lists (not tuples) are walked and their tensors named by the keys on the
  /// way joined with "." ({"model": {"w": t}} -> "model.w"), as DCP flattens a state dict; no
  /// 'state_dict'/'module' sub-dict is picked. Off (diff): the top-level dict only.
  bool flatten_nested = false;
};

/// Whether a file's name (not its contents) says it is one StateDict::open reads: .safetensors, an
/// index (*.index.json), a torch .bin/.pt/.pth/.ckpt or an HDF5 .h5/.hdf5 (case-insensitive).
bool has_state_dict_file_name(const std::string& file_name);
/// The HF model file StateDict::open reads in directory `dir`: the first of model.safetensors,
/// model.safetensors.index.json, pytorch_model.bin, pytorch_model.bin.index.json there; "" if none.
std::string hf_model_file_in(const std::string& dir);

class StateDict {
 public:
  /// Opens PATH:
  ///  - a .safetensors file;
  ///  - a torch.save file (.bin/.pt/.pth/.ckpt, or any zip file): its top-level dict of
  ///    name -> tensor; if the top level holds no tensor but a 'state_dict' or 'module' entry that is
  ///    a dict of tensors, that dict (noted in notes()); otherwise a nested state (dcp_to_torch_save's
  ///    {"model": {...}, "optim": {...}}) flattened as DCP flattens it (dotted keys, list indices
  ///    where lists hold tensors or containers). Non-tensor values are kept in values() (and counted
  ///    as skipped);
  ///  - an index file (*.safetensors.index.json / *.bin.index.json) or a directory holding, by
  ///    preference, model.safetensors, model.safetensors.index.json, pytorch_model.bin or
  ///    pytorch_model.bin.index.json. Each shard of an index is opened once; every name of the
  ///    weight map must be in its shard (DataLoss naming the shard otherwise).
  ///  - a PyTorch DCP folder (.metadata): every tensor item assembled from its chunks, non-tensor
  ///    items decoded into values() (refused as dcp::read_bytes_item refuses) and counted as skipped;
  ///  - an HDF5 file (.h5/.hdf5, or a directory holding model.h5) written by to-fp32 --format hdf5,
  ///    when a loader was installed (set_hdf5_state_dict_loader); Unimplemented otherwise.
  /// Errors name the file.
  static base::Result<StateDict> open(const std::string& path);
  static base::Result<StateDict> open(const std::string& path, const StateDictOptions& options);

  /// Tensors in file order (for an index: weight-map order). Names are unique.
  const std::vector<StateDictTensor>& tensors() const { return tensors_; }
  std::size_t size() const { return tensors_.size(); }
  const StateDictTensor* find(std::string_view name) const;

  /// What was read: "safetensors", "safetensors index (3 shards)", "torch", "torch index (2 shards)".
  const std::string& format() const { return format_; }
  /// The files actually opened, in opening order.
  const std::vector<std::string>& files() const { return files_; }
  /// Non-tensor values skipped in torch dicts (step counters, config objects, ...).
  std::size_t skipped_non_tensors() const { return skipped_non_tensors_; }
  /// Non-tensor values by flat name, in file order (DCP: its non-tensor items, decoded; torch: the
  /// non-tensor entries beside the tensors). Names are unique and distinct from tensor names.
  const std::vector<StateDictValue>& values() const { return values_; }
  const StateDictValue* find_value(std::string_view name) const;
  /// The input can hold non-tensor values (a torch file, a DCP folder; not safetensors or HDF5):
  /// diff compares values only when both sides can.
  bool holds_values() const { return holds_values_; }
  /// Human-readable remarks about how the input was interpreted (which sub-dict was used, what was
  /// skipped or ignored). Empty when nothing needs saying.
  const std::vector<std::string>& notes() const { return notes_; }

 private:
  friend class StateDictBuilder;
  std::vector<StateDictTensor> tensors_;
  std::map<std::string, std::size_t, std::less<>> index_;
  std::string format_;
  std::vector<std::string> files_;
  std::size_t skipped_non_tensors_ = 0;
  std::vector<std::string> notes_;
  std::vector<StateDictValue> values_;
  std::map<std::string, std::size_t, std::less<>> value_index_;
  bool holds_values_ = false;
};

}  // namespace ucp::format
