// The plan of `to-universal`: DeepSpeed's universal checkpoint (ds_to_universal.py, v0.14.5) —
// one small torch file per (trainable parameter, optimizer state) under zero/<name>/ — built on
// the same transfer / round / coverage machinery as to-fp32 (finish_plan). The files that carry
// no partitioned tensor data (step.pt, optimizer_state.pt, model-state copies) are written
// outside the plan by exec/universal_extras.
#pragma once

#include <span>
#include <string>
#include <vector>

#include "ucp/base/status.h"
#include "ucp/format/zero_checkpoint.h"
#include "ucp/plan/fp32_layout.h"
#include "ucp/plan/fp32_plan.h"
#include "ucp/plan/tree_file.h"

namespace ucp::plan {

struct UniversalParam {
  std::string name;
  int group = 0;  ///< Flat group (ZeRO-1/2, BF16: param group; ZeRO-3: sub-group) holding it.
};

/// A file of the universal checkpoint carried from the source, not assembled from partitions:
/// `path` relative to the universal folder ("zero/optimizer_state.pt"), `root` the tree
/// torch.save pickles (protocol 2, archive folder = the file's stem).
struct UniversalTreeFile {
  std::string path;
  format::ValuePtr root;
};

struct UniversalPlan {
  Fp32Plan plan;                        ///< Tensors named "<param>/<state>"; files "zero/<param>/<state>.pt".
  std::vector<UniversalParam> params;   ///< Trainable parameters, param_shapes order.
};

/// The trainable parameters of `ckpt`, param_shapes order; each name must be usable as a folder.
base::Result<std::vector<UniversalParam>> universal_params(const format::ZeroCheckpoint& ckpt);

/// Stage <= 2 and BF16_Optimizer: zero/<name>/<state>.pt = {'cat_dim': 0, 'param': fp32 tensor of
/// the full shape}; ZeRO-3: the bare 1-D tensor of exactly numel elements (DeepSpeed's own
/// converter emits padding for ranks holding none of a parameter; we do not). fp32 is saved with
/// requires_grad=True, the moments without, as DeepSpeed does. Uses options.max_memory,
/// max_transfer_bytes and world_size; float_dtype must be fp32. `tree_files` join the plan after
/// the state files; `locate` resolves their storages in ckpt.paths (plan/tree_file.h).
base::Result<UniversalPlan> plan_universal(const format::ZeroCheckpoint& ckpt, const Fp32Options& options,
                                           std::span<const UniversalTreeFile> tree_files = {},
                                           const StorageLocator& locate = {});

}  // namespace ucp::plan
