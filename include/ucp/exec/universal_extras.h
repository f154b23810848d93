// The parts of a universal checkpoint that are not partitioned tensor data: zero/optimizer_state.pt
// and zero/<param>/step.pt (rebuilt by rank 0 from rank 0's optimizer pickle, opaque DeepSpeed
// objects re-emitted as they were), copies of the model-state files (spread over the ranks), and
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

/// A torch file of a universal checkpoint built from rank 0's optimizer file: `path` relative to
/// the universal folder ("zero/optimizer_state.pt", "zero/<param>/step.pt"), `root` its pickled
/// tree (storages still view the mapped source: a ZeRO-3 optimizer_state.pt holds rank 0's
/// partitions, ~3/N of the optimizer state), `options` how to save it.
struct UniversalOptimizerFile {
  std::string path;
  format::ValuePtr root;
  format::TorchWriteOptions options;
};

/// Not collective: zero/optimizer_state.pt and the zero/<param>/step.pt files (stage <= 2, when
/// the optimizer keeps a step) of `params`, from rank 0's optimizer file. write_universal_extras
/// streams them to files; to-fp32 --with-optimizer embeds their bytes in the HDF5 file.
base::Result<std::vector<UniversalOptimizerFile>> universal_optimizer_files(const format::ZeroCheckpoint& ckpt,
                                                                            std::span<const plan::UniversalParam> params);

/// Not collective: what rank `rank` of `world` writes into `temp_dir` (the output's temporary
/// folder). Rank 0 writes optimizer_state.pt and the step.pt files; model-state file i is copied by
/// rank i % world.
base::Status write_universal_extras(const format::ZeroCheckpoint& ckpt, const plan::UniversalPlan& plan,
                                    const std::string& temp_dir, int rank, int world);

/// Writes `<parent of out>/latest_universal` holding basename(out) (no newline, as DeepSpeed).
base::Status write_latest_universal(const std::string& out);

}  // namespace ucp::exec
