// Lightning's single-file checkpoint of a DeepSpeed run, as lightning.pytorch.utilities.deepspeed.
// convert_zero_checkpoint_to_fp32_state_dict writes it: the model-state file's client state (the
// trainer fields Lightning stored: epoch, global_step, callbacks, hyper-parameters, loops, ...; every
// key but DeepSpeed's own) plus 'state_dict', the consolidated model, which
// LightningModule.load_from_checkpoint accepts. Pure: the layout and the model-state tree in, a plan out.
#pragma once

#include <string>
#include <vector>

#include "ucp/base/status.h"
#include "ucp/format/value.h"
#include "ucp/plan/file_plan.h"
#include "ucp/plan/tree_file.h"

namespace ucp::plan {

/// The file name we give it in the output folder (Lightning's own example name).
inline constexpr const char* kLightningFileName = "lightning_model.pt";

/// `model_state` is the root of the model-state file Lightning reads (mp_rank_00_model_states.pt, or
/// zero_pp_rank_0_mp_rank_00_model_states.pt at ZeRO-3); `locate` resolves its storages in
/// `source_paths`. Tensors follow `layout` (floating ones in options.float_dtype); tied names
/// reference their source's storage, as zero_to_fp32's state dict does.
base::Result<FilePlan> plan_lightning(const SourceLayout& layout, const format::ValuePtr& model_state,
                                      const StorageLocator& locate, const std::vector<std::string>& source_paths,
                                      const PlanOptions& options);

}  // namespace ucp::plan
