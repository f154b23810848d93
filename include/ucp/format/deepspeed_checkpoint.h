// Finding and recognising a DeepSpeed checkpoint on disk: which tag, which rank files, which
// ZeRO stage / precision / optimizer wrapper, and the world sizes that wrote it.
//
// Layout (spec: DeepSpeed checkpoint format, sections 1.3-1.4):
//   <save_dir>/latest                      the tag, no newline
//   <save_dir>/<tag>/mp_rank_MM_model_states.pt                  ZeRO-1/2, BF16_Optimizer
//   <save_dir>/<tag>/zero_pp_rank_D_mp_rank_MM_model_states.pt   ZeRO-3 (one per DP rank)
//   <save_dir>/<tag>/[bf16_]zero_pp_rank_D_mp_rank_MM_optim_states.pt  one per DP x MP rank
//   <save_dir>/<tag>/layer_LL-model_TT-model_states.pt           pipeline layers (not supported yet)
// "pp" in zero_pp_rank is the DP rank. D has no zero padding; MM is 2-digit padded.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "ucp/base/dtype.h"
#include "ucp/base/status.h"
#include "ucp/format/value.h"

namespace ucp::format {

/// The files of one tag folder, validated for completeness.
struct DeepSpeedCheckpointFiles {
  std::string save_dir;  ///< Folder holding `latest`; empty when given the tag folder without one.
  std::string tag;
  std::string tag_dir;
  int dp_size = 0;  ///< Number of optimizer files per model-parallel rank.
  int mp_size = 0;  ///< Number of model-parallel ranks (tp * pp).
  bool bf16_prefix = false;  ///< Optimizer files are named bf16_zero_pp_rank_*.
  bool zero3_model_files = false;  ///< One model-state file per DP rank (ZeRO-3).
  /// model_state_files[mp] (ZeRO-1/2), or model_state_files[mp * dp_size + dp] (ZeRO-3).
  std::vector<std::string> model_state_files;
  /// optim_files[mp * dp_size + dp].
  std::vector<std::string> optim_files;
  std::vector<std::string> layer_files;  ///< Pipeline layer files, if any.

  const std::string& optim_file(int dp, int mp = 0) const {
    return optim_files[static_cast<std::size_t>(mp * dp_size + dp)];
  }
};

/// Resolves CKPT (a save dir with `latest`, or a tag folder) and lists its rank files.
/// `tag` overrides the `latest` file. NotFound / FailedPrecondition with the path on anything
/// missing or inconsistent (a missing rank file is named, with the ranks that were found).
base::Result<DeepSpeedCheckpointFiles> discover_deepspeed_checkpoint(const std::string& path,
                                                                     const std::string& tag = "");

/// True if `path` looks like a DeepSpeed save dir or tag folder (cheap: names only).
bool looks_like_deepspeed_checkpoint(const std::string& path);

/// Which optimizer wrapper wrote the optimizer files.
enum class DeepSpeedOptimizerKind : std::uint8_t {
  kZero12,  ///< DeepSpeedZeroOptimizer (stage 1 or 2).
  kZero3,   ///< DeepSpeedZeroOptimizer_Stage3.
  kBf16,    ///< BF16_Optimizer (bf16 with fp32 grad accumulation; no zero_stage key).
};

/// What `inspect` reports about a checkpoint: read from rank 0's model-state and optimizer files.
struct DeepSpeedSummary {
  DeepSpeedOptimizerKind kind = DeepSpeedOptimizerKind::kZero12;
  int zero_stage = 0;              ///< 1, 2, 3 (BF16_Optimizer: the configured stage, often 1 or 0).
  base::DType model_dtype = base::DType::kF32;  ///< dtype of the module weights (precision).
  std::string optimizer_family;    ///< "Adam" when exp_avg/exp_avg_sq are present, else the state keys.
  int saved_dp_world_size = 0;     ///< dp_world_size recorded in the model-state file.
  int saved_mp_world_size = 0;
  std::string ds_version;
  std::int64_t global_steps = -1;
  std::size_t num_flat_groups = 0;   ///< Entries of param_shapes (param groups, or ZeRO-3 sub-groups).
  std::uint64_t trainable_params = 0;  ///< Elements over param_shapes.
  std::uint64_t frozen_params = 0;     ///< Elements over frozen_param_shapes.
  std::size_t num_tensors = 0;         ///< Distinct parameter names (trainable + frozen).
  std::size_t num_buffers = 0;
  std::size_t num_shared = 0;          ///< Tied names (shared_params).
  std::uint64_t checkpoint_bytes = 0;  ///< Sum of file sizes in the tag folder.
};

/// Reads the small metadata of rank 0's files and cross-checks it with the file listing.
base::Result<DeepSpeedSummary> summarize_deepspeed_checkpoint(const DeepSpeedCheckpointFiles& files);

std::string_view optimizer_kind_name(DeepSpeedOptimizerKind kind);

/// Decodes DeepSpeed's pickled ZeroStageEnum (getattr(ZeroStageEnum, 'gradients') or
/// ZeroStageEnum(2)) or a plain int. -1 if unrecognised.
int decode_zero_stage(const ValuePtr& v);

/// Shape of a torch.Size / tuple / list of ints; nullopt otherwise.
std::optional<std::vector<std::int64_t>> shape_of(const ValuePtr& v);

}  // namespace ucp::format
