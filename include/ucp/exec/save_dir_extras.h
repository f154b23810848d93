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

namespace ucp::exec {

struct SaveDirCopy {
  std::string from;  ///< Absolute source path.
  std::string to;    ///< Name relative to the output save dir.
};

/// What to copy from save dir `source_dir` (top-level regular files other than latest /
/// latest_universal / zero_to_fp32.py copies are kept as DeepSpeed writes them) for `target_dp`
/// ranks. `warnings` receives one line per policy decision the user should know about.
base::Result<std::vector<SaveDirCopy>> plan_save_dir_extras(const std::string& source_dir, int target_dp,
                                                            std::vector<std::string>& warnings);

/// Copies them into `out_dir` (bounded memory, errors name the file).
base::Status copy_save_dir_extras(const std::vector<SaveDirCopy>& copies, const std::string& out_dir);

}  // namespace ucp::exec
