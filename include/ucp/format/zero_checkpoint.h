// The metadata of a DeepSpeed ZeRO / BF16_Optimizer checkpoint that conversion plans are built
// from: names, shapes, group structure, and *where* every tensor's bytes sit in which file. No
// tensor data is read here; only the pickles.
//
// Each rank extracts the metadata of the files assigned to it (extract_*), the pieces travel as
// JSON through an all-gather, and every rank assembles the same ZeroCheckpoint (assemble_...).
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "ucp/base/dtype.h"
#include "ucp/base/status.h"
#include "ucp/format/deepspeed_checkpoint.h"
#include "ucp/format/tensor_layout.h"
#include "ucp/format/torch_file.h"

namespace ucp::format {

struct NamedShape {
  std::string name;
  std::vector<std::int64_t> shape;
  std::uint64_t numel() const;
};

/// A named tensor stored contiguously in a file.
struct NamedTensor {
  std::string name;
  std::vector<std::int64_t> shape;
  TensorLocation location;
};

/// What one optimizer file holds (one DP rank).
struct OptimFileMeta {
  int zero_stage = 0;  ///< 1, 2, 3; 0 for BF16_Optimizer (no zero_stage key).
  std::int64_t partition_count = 0;  ///< DP size the file was written for (max over groups).
  /// This rank's fp32 master partition per flat group (ZeRO-1/2/BF16: param group; ZeRO-3: sub-group).
  std::vector<TensorLocation> fp32;
  std::vector<std::int64_t> group_paddings;  ///< ZeRO-1/2/BF16 only.
  /// The keys of each flat group's optimizer state, as saved (Adam: exp_avg, exp_avg_sq, step; SGD:
  /// momentum_buffer; ...), same indexing as fp32; empty for a group with no state (no step yet).
  std::vector<std::vector<std::string>> state_keys;
  /// Per flat group, same indexing as fp32, every state entry that is a tensor of one or more
  /// dimensions (Adam's exp_avg and exp_avg_sq, SGD's momentum_buffer, ...), in saved order: the
  /// per-element state that goes with the parameters. 0-d tensors (step) and other values are not here.
  std::vector<std::vector<std::pair<std::string, TensorLocation>>> partition_states;
};

/// What one model-state file holds.
struct ModelFileMeta {
  std::vector<std::vector<NamedShape>> param_shapes;  ///< Per flat group, in flattening order.
  bool has_frozen_param_shapes = false;
  std::vector<NamedShape> frozen_param_shapes;
  std::vector<std::pair<std::string, std::string>> shared_params;  ///< alias -> source name.
  std::vector<std::string> buffer_names;
  std::vector<NamedTensor> module;            ///< Every `module` entry (ZeRO-3 params: 0 elements).
  std::vector<NamedTensor> frozen_fragments;  ///< frozen_param_fragments (ZeRO-3: this rank's slice).
  std::int64_t dp_world_size = 0;
  std::int64_t mp_world_size = 1;
  std::string ds_version;
};

/// The whole checkpoint's metadata, identical on every rank.
struct ZeroCheckpoint {
  DeepSpeedCheckpointFiles files;
  DeepSpeedOptimizerKind kind = DeepSpeedOptimizerKind::kZero12;
  int zero_stage = 0;
  int dp = 0;
  std::vector<std::string> paths;       ///< Every file a TensorLocation may refer to.
  std::vector<ModelFileMeta> models;    ///< One per model-state file (ZeRO-3: one per DP rank).
  std::vector<OptimFileMeta> optims;    ///< One per DP rank.
};

/// How errors name rank r's optimizer file: "'<path>'" (or "rank r's optimizer file" for metadata
/// built without files, as in tests).
std::string optim_file_label(const ZeroCheckpoint& ckpt, std::size_t r);

/// OK when every rank's optimizer state is Adam's (exp_avg, exp_avg_sq, step per flat group) or
/// empty everywhere (no step taken yet). Otherwise Unimplemented, naming the file, the group and the
/// keys it holds: re-partitioning other optimizers' state (SGD momentum, Muon, Lion, Adagrad, AMSGrad's
/// max_exp_avg_sq) is not supported, and dropping it would silently restart it.
base::Status check_adam_optimizer_state(const ZeroCheckpoint& ckpt);

/// OK when every per-element optimizer state (partition_states) can be re-partitioned: each is
/// partitioned exactly like the parameters (as many elements as the group's moment partition: the
/// fp32 partition plus ZeRO-1/2's alignment padding), and every rank holds the same keys for a
/// group. Otherwise Unimplemented naming the file, group and key (Muon's ZeRO-1/2 momentum covers
/// whole parameters, not the partition).
base::Status check_partitioned_optimizer_state(const ZeroCheckpoint& ckpt);

/// Elements of flat group g's per-element optimizer state in rank file `o` (the fp32 partition,
/// plus ZeRO-1/2's alignment padding, which the moments keep and the fp32 masters drop).
std::uint64_t moment_partition_numel(const ZeroCheckpoint& ckpt, const OptimFileMeta& o, std::size_t g);

/// Reads one optimizer file's pickle. `file_index` is stored in every TensorLocation.
base::Result<OptimFileMeta> extract_optim_meta(const std::string& path, std::uint32_t file_index);
/// Reads one model-state file's pickle.
base::Result<ModelFileMeta> extract_model_meta(const std::string& path, std::uint32_t file_index);
/// Same, from a file already opened (its pickle is parsed once).
base::Result<ModelFileMeta> extract_model_meta(const TorchFile& file, std::uint32_t file_index);

/// The files of a checkpoint in the order ZeroCheckpoint::paths uses: model-state files, then
/// optimizer files by DP rank. Index i of this list is the file_index to extract with.
std::vector<std::string> zero_checkpoint_paths(const DeepSpeedCheckpointFiles& files);

/// JSON round trip of per-file metadata (what ranks all-gather).
std::string to_json(const OptimFileMeta& meta);
std::string to_json(const ModelFileMeta& meta);
base::Result<OptimFileMeta> optim_meta_from_json(std::string_view json);
base::Result<ModelFileMeta> model_meta_from_json(std::string_view json);

/// Assembles and cross-checks: MP size 1 (TP/PP detected and refused clearly), one stage and DP
/// size across files, partition_count == number of files, dp_world_size recorded == files, ...
base::Result<ZeroCheckpoint> assemble_zero_checkpoint(DeepSpeedCheckpointFiles files,
                                                      std::vector<ModelFileMeta> models,
                                                      std::vector<OptimFileMeta> optims);

/// Single-process convenience: discover + extract every file + assemble.
base::Result<ZeroCheckpoint> read_zero_checkpoint(const std::string& path, const std::string& tag = "");

}  // namespace ucp::format
