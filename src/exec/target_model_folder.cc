// to-fp32's consolidated model: HF safetensors / torch shards with their index and the HF model
// folder's config and tokenizer files, or Lightning's one file.
#include "targets.h"
#include "ucp/base/size.h"
#include "hf_model_files.h"
#include "mapped_files.h"
#include "ucp/plan/lightning_plan.h"
#include "ucp/plan/source_layout.h"

namespace ucp::exec {
using base::Result;

namespace {

// Lightning keeps its trainer state in the model-state file it reads (rank 0's at ZeRO-3): every
// rank parses that one small pickle and plans the same file.
Result<plan::FilePlan> plan_lightning_file(const format::ZeroCheckpoint& ckpt, const plan::SourceLayout& layout,
                                           const plan::PlanOptions& options) {
  UCP_ASSIGN_OR_RETURN(format::TorchFile model_state, format::TorchFile::open(ckpt.paths.at(0)));
  MappedFiles mapped;
  mapped.add(0, model_state);
  return plan::plan_lightning(layout, model_state.root(), mapped.locator(), ckpt.paths, options);
}

}  // namespace

Result<PlannedConversion> plan_model_folder(const OpenedModelTensors& source, const ModelFolderTarget& target,
                                            const plan::PlanOptions& options, const std::string& out) {
  if (target.lightning && !source.zero)
    return base::invalid_argument("--format lightning writes Lightning's DeepSpeed file and needs DeepSpeed ZeRO files; "
                                  "the source is a " + source.description);
  if (target.lightning && !target.select.empty())
    return base::invalid_argument("--select does not apply to --format lightning (Lightning's file holds the whole model)");
  if (target.lightning && target.key_map.map)
    return base::invalid_argument("--key-map does not apply to --format lightning (Lightning's file keeps DeepSpeed's names)");
  UCP_ASSIGN_OR_RETURN(const plan::SourceLayout layout, source_view(source, target.select, target.key_map));
  UCP_ASSIGN_OR_RETURN(plan::FilePlan plan, target.lightning ? plan_lightning_file(*source.zero, layout, options)
                                                             : plan::plan_consolidated(layout, source.paths, options));
  HfModelFiles hf;
  if (!target.lightning) {
    UCP_ASSIGN_OR_RETURN(hf, find_hf_model_files(source.save_dir, target.hf_config));
    UCP_ASSIGN_OR_RETURN(std::vector<plan::SmallFile> small, hf_model_small_files(hf, options.float_dtype));
    for (auto& f : small) plan.small_files.push_back(std::move(f));
  }
  const std::size_t tensors = plan.tensors.size(), files = plan.files.size();
  PlannedConversion p{std::move(plan), source.description, {}};
  p.done_message = [=](std::uint64_t written) {
    std::string line = "wrote " + std::to_string(tensors) + " tensors in " + std::to_string(files) + " file(s), " +
                       base::format_bytes(written) + " to " + out;
    if (!hf.names.empty())
      line += " (+ " + std::to_string(hf.names.size()) + " HF model files from " + hf.source_dir + ")";
    return line;
  };
  return p;
}

}  // namespace ucp::exec
