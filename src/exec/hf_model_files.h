// The non-weight files of an HF model folder (config.json, generation_config.json, tokenizer files,
// chat template), carried into a to-fp32 output so that `from_pretrained(OUT)` loads it as a
// complete model: found beside the checkpoint (HF Trainer's checkpoint-K/ holds them) or in a folder
// the user names (--hf-config; XTuner and similar runs save them elsewhere). config.json records the
// dtype of the weights written, where transformers reads it ("dtype"; "torch_dtype" too when the
// source config uses that older key).
#pragma once

#include <string>
#include <vector>

#include "ucp/base/dtype.h"
#include "ucp/base/status.h"
#include "ucp/plan/file_plan.h"

namespace ucp::exec {

struct HfModelFiles {
  std::string source_dir;          ///< Where they were found; empty: none (a plain DeepSpeed save dir).
  std::vector<std::string> names;  ///< File names in source_dir, config.json first when present.
};

/// `hf_config_dir` non-empty: that folder, which must hold config.json (NotFound otherwise).
/// Else `save_dir` (the folder holding `latest`), if it holds config.json; else none.
base::Result<HfModelFiles> find_hf_model_files(const std::string& save_dir, const std::string& hf_config_dir);

/// The small files of the output folder: config.json (read now) with its dtype set to
/// `weights_dtype`, the others copied as they are.
base::Result<std::vector<plan::SmallFile>> hf_model_small_files(const HfModelFiles& files, base::DType weights_dtype);

}  // namespace ucp::exec
