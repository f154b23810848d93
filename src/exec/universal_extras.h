// The parts of a universal checkpoint that are not partitioned tensor data: zero/optimizer_state.pt
// and zero/<param>/step.pt (trees rebuilt from rank 0's optimizer pickle, opaque DeepSpeed objects
// re-emitted as they were), copies of the model-state files, and <parent of OUT>/latest_universal.
#pragma once

#include <span>
#include <string>
#include <vector>

#include "ucp/base/status.h"
#include "ucp/format/torch_file.h"
#include "ucp/format/zero_checkpoint.h"
#include "ucp/plan/universal_plan.h"

namespace ucp::exec {

/// Rank 0's optimizer file of a ZeRO checkpoint, parsed: the wrapper's dict and the torch
/// optimizer's own state_dict inside it (base_optimizer_state below ZeRO-3, optimizer_state_dict
/// at ZeRO-3), whose param_groups hold the hyper-parameters.
struct Rank0Optimizer {
  std::string path;
  std::uint32_t index = 0;  ///< Its index in ZeroCheckpoint::paths.
  format::TorchFile file;
  format::ValuePtr osd;           ///< ['optimizer_state_dict']
  format::ValuePtr inner;         ///< The torch optimizer's state_dict.
  format::ValuePtr param_groups;  ///< inner['param_groups'], a list.
};

/// Not collective. DataLoss naming the file when the dicts are not where DeepSpeed puts them.
base::Result<Rank0Optimizer> open_rank0_optimizer(const format::ZeroCheckpoint& ckpt);

/// Not collective: what a universal checkpoint of `ckpt` carries from it (plan/universal_plan.h):
/// the model-state files (sizes read here), and zero/optimizer_state.pt and the zero/<param>/step.pt
/// files (stage <= 2, when the optimizer keeps a step) of `params` rebuilt from rank 0's optimizer
/// file, whose storages still view the mapped source (step counters are copied into memory).
/// to-universal plans them; to-fp32 --with-optimizer stores them in the HDF5 file.
base::Result<plan::UniversalCarried> universal_carried_files(const format::ZeroCheckpoint& ckpt,
                                                             std::span<const plan::UniversalParam> params);

/// The options torch.save-compatible writers use for a universal tree file: protocol 2, the
/// archive folder named after the file's stem.
format::TorchWriteOptions universal_tree_file_options(const plan::UniversalTreeFile& file);

/// `latest_universal`, planned beside OUT, holding basename(out) (no newline, as DeepSpeed).
plan::SmallFile latest_universal_file(const std::string& out);

}  // namespace ucp::exec
