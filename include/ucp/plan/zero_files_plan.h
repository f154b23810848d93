// The plan of `reshard`: a DeepSpeed ZeRO checkpoint (the files DeepSpeed itself writes, a
// `load_checkpoint` on M ranks reads with no special flag) re-partitioned for a new data-parallel
// size M, from the per-parameter states of a source checkpoint (ZeRO files of any DP size, or a
// universal checkpoint).
//
// Every output file is a source file's pickle tree with the partitioned tensors replaced: the
// optimizer files of rank 0 are the template of every new optimizer file, so objects we do not
// interpret (loss scaler, ZeroStageEnum, fragment_address, hyper-parameters, client keys) are
// carried over as they were. What changes: the fp32 master partitions, the Adam moments, ZeRO-3
// frozen fragments (re-cut for M, zero padded), group_paddings, partition_count,
// param_slice_mappings, ZeRO-3 sub-groups (param_shapes, state keys, param_groups' params) and
// dp_world_size. Pure: metadata in, FilePlan out (the executor of to-fp32 moves the bytes).
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "ucp/base/status.h"
#include "ucp/format/deepspeed_checkpoint.h"
#include "ucp/format/zero_checkpoint.h"
#include "ucp/format/value.h"
#include "ucp/plan/source_layout.h"
#include "ucp/plan/file_plan.h"
#include "ucp/plan/tree_file.h"

namespace ucp::plan {

/// A checkpoint described per parameter, whatever files it came from.
struct ParamStates {
  format::DeepSpeedOptimizerKind kind = format::DeepSpeedOptimizerKind::kZero12;
  int zero_stage = 0;  ///< 1, 2, 3; 0 for BF16_Optimizer.
  int dp = 0;          ///< DP size the source was written for.
  std::string tag;
  std::vector<std::string> paths;  ///< Source files every TensorLocation refers to.

  /// Trainable parameters (name, shape), param group by param group, each group in flattening order.
  std::vector<std::vector<format::NamedShape>> groups;
  /// fp32 masters: per parameter in `groups` order, pieces covering [0, numel) of the flattened parameter.
  std::vector<LogicalTensor> fp32;
  /// Per-element optimizer states, re-partitioned like the parameters: the key as saved (Adam's
  /// exp_avg and exp_avg_sq, SGD's momentum_buffer, Muon's under ZeRO-3, ...) and its pieces per
  /// parameter in the same order. A parameter of a flat group without that state has no pieces
  /// (Muon's auxiliary Adam groups). Empty when the optimizer has taken no step yet.
  std::vector<std::pair<std::string, std::vector<LogicalTensor>>> moments;
  /// ZeRO-3 only: frozen parameters, whole (model dtype), in frozen_param_shapes order.
  std::vector<LogicalTensor> frozen;
  std::uint64_t sub_group_size = 1'000'000'000;  ///< ZeRO-3: zero_optimization.sub_group_size.

  /// Templates. optimizer: the root of an optimizer file ({'optimizer_state_dict', 'ds_config',
  /// 'ds_version'}) whose 'optimizer_state_dict' holds every non-partitioned entry; for ZeRO-3 its
  /// inner state has one entry per source sub-group, `group_of_state[k]` being its param group.
  format::ValuePtr optimizer;
  /// Model-state files: one (ZeRO-1/2/BF16: mp_rank_00) or one per source DP rank (ZeRO-3).
  std::vector<format::ValuePtr> models;
  std::string optimizer_prefix;  ///< "bf16_" or "".
  StorageLocator locate;         ///< For template storages.
};

/// Builds the plan writing `<tag>/...` files for `target_dp` ranks (options.world_size = ranks
/// running the conversion). The caller writes `latest`.
base::Result<FilePlan> plan_zero_files(const ParamStates& source, int target_dp, const PlanOptions& options);

/// File names DeepSpeed uses for rank `rank` (relative to the tag folder).
std::string zero_optimizer_file_name(const std::string& prefix, int rank);
std::string zero_model_file_name(bool zero3, int rank);

}  // namespace ucp::plan
