// The files around a DeepSpeed save dir that frameworks add (HF Trainer's checkpoint-K/:
// trainer_state.json, config, tokenizer, scheduler.pt, rng_state_<rank>.pth; Lightning's client
// state lives inside the model-state file and needs nothing here), carried into a re-partitioned
// save dir. Per-rank RNG files follow the new ranks: rank r gets the source's rank r mod N file
// (HF's `rng_state.pth` when a side has one rank); a warning says so because RNG streams then
// repeat across ranks.
#pragma once

#include <string>
#include <vector>

#include "ucp/base/status.h"
#include "ucp/plan/file_plan.h"

namespace ucp::exec {

/// The files to copy from save dir `source_dir` into the new save dir for `target_dp` ranks, as
/// small files of the plan (copied by name, sorted by output name): top-level regular files other
/// than latest / latest_universal are kept as the framework wrote them; RNG files follow the new
/// ranks. `warnings` receives one line per policy decision the user should know about.
base::Result<std::vector<plan::SmallFile>> save_dir_small_files(const std::string& source_dir, int target_dp,
                                                                std::vector<std::string>& warnings);

}  // namespace ucp::exec
