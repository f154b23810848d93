// The parts of a universal checkpoint that are not partitioned tensor data: zero/optimizer_state.pt
// and zero/<param>/step.pt (trees rebuilt from rank 0's optimizer pickle, opaque DeepSpeed objects
// re-emitted as they were), copies of the model-state files (spread over the ranks), and
// <parent of OUT>/latest_universal.
#pragma once

#include <span>
#include <string>
#include <vector>

#include "ucp/base/status.h"
#include "ucp/comm/communicator.h"
#include "ucp/format/torch_file.h"
#include "ucp/format/zero_checkpoint.h"
#include "ucp/plan/universal_plan.h"

namespace ucp::exec {

/// The files of a universal checkpoint built from rank 0's optimizer file, and where their
/// storages sit in ckpt.paths (they still view the mapped source: a ZeRO-3 optimizer_state.pt holds
/// rank 0's partitions, ~3/N of the optimizer state; step.pt counters are copied into memory).
struct UniversalTreeFiles {
  std::vector<plan::UniversalTreeFile> files;
  plan::StorageLocator locate;
};

/// Not collective: zero/optimizer_state.pt and the zero/<param>/step.pt files (stage <= 2, when
/// the optimizer keeps a step) of `params`, from rank 0's optimizer file. to-universal plans them
/// (plan_universal); to-fp32 --with-optimizer embeds their bytes in the HDF5 file.
base::Result<UniversalTreeFiles> universal_optimizer_files(const format::ZeroCheckpoint& ckpt,
                                                           std::span<const plan::UniversalParam> params);

/// The options torch.save-compatible writers use for a universal tree file: protocol 2, the
/// archive folder named after the file's stem.
format::TorchWriteOptions universal_tree_file_options(const plan::UniversalTreeFile& file);

/// Not collective: copies model-state file i into `temp_dir` (the output's temporary folder) on
/// rank i % world.
base::Status copy_model_states(const format::ZeroCheckpoint& ckpt, const std::string& temp_dir, int rank, int world);

/// Writes `<parent of out>/latest_universal` holding basename(out) (no newline, as DeepSpeed).
base::Status write_latest_universal(const std::string& out);

}  // namespace ucp::exec
