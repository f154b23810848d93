// The plan of `to-universal`: DeepSpeed's universal checkpoint (ds_to_universal.py, v0.14.5) —
// one small torch file per (trainable parameter, optimizer state) under zero/<name>/ — built on
// the same transfer / round / coverage machinery as to-fp32 (finish_plan). The files that carry
// no partitioned tensor data (step.pt, optimizer_state.pt, model-state copies) are planned too,
// from what exec/universal_extras finds in the source (UniversalCarried); only latest_universal,
// beside OUT, is written outside the plan.
#pragma once

#include <string>
#include <vector>

#include "ucp/base/status.h"
#include "ucp/format/zero_checkpoint.h"
#include "ucp/plan/source_layout.h"
#include "ucp/plan/file_plan.h"
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

/// What a universal checkpoint carries from the source besides the per-parameter states.
struct UniversalCarried {
  std::vector<SourceFileCopy> copies;     ///< The model-state files.
  std::vector<UniversalTreeFile> trees;   ///< zero/optimizer_state.pt, zero/<param>/step.pt.
  StorageLocator locate;                  ///< Where the trees' storages sit in ckpt.paths.
};

struct UniversalPlan {
  FilePlan plan;                        ///< Tensors named "<param>/<state>"; files "zero/<param>/<state>.pt".
  std::vector<UniversalParam> params;   ///< Trainable parameters, param_shapes order.
};

/// The trainable parameters of `ckpt`, param_shapes order; each name must be usable as a folder.
base::Result<std::vector<UniversalParam>> universal_params(const format::ZeroCheckpoint& ckpt);

/// Stage <= 2 and BF16_Optimizer: zero/<name>/<state>.pt = {'cat_dim': 0, 'param': fp32 tensor of
/// the full shape}; ZeRO-3: the bare 1-D tensor of exactly numel elements (DeepSpeed's own
/// converter emits padding for ranks holding none of a parameter; we do not). fp32 is saved with
/// requires_grad=True, the moments without, as DeepSpeed does. Uses options.max_memory,
/// max_transfer_bytes and world_size; float_dtype must be fp32. The `carried` files join the plan
/// after the state files.
base::Result<UniversalPlan> plan_universal(const format::ZeroCheckpoint& ckpt, const PlanOptions& options,
                                           const UniversalCarried& carried = {});

}  // namespace ucp::plan
