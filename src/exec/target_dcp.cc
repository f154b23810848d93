// to-dcp: a PyTorch DCP folder chunked for the ranks of the next training run.
#include "targets.h"
#include "dcp_training_state.h"
#include "ucp/base/size.h"
#include "ucp/plan/dcp_plan.h"

namespace ucp::exec {
using base::Result;

Result<PlannedConversion> plan_dcp_folder(const OpenedModelTensors& source, const DcpTarget& target,
                                          const std::vector<OptimizerStep>& steps, const plan::PlanOptions& options,
                                          const std::string& out) {
  if (target.with_optimizer && !source.zero)
    return base::invalid_argument("--with-optimizer takes the optimizer's state from DeepSpeed ZeRO files; the source is a " +
                                  source.description);
  UCP_ASSIGN_OR_RETURN(const DcpLayout nesting, dcp_layout_from_name(target.layout));
  UCP_ASSIGN_OR_RETURN(const plan::SourceLayout model, selected(source.layout, target.select));
  UCP_ASSIGN_OR_RETURN(DcpTrainingState state,
                       dcp_training_state(model, nesting, target.with_optimizer ? &*source.zero : nullptr, steps));
  const plan::SourceLayout& layout = state.layout;
  UCP_ASSIGN_OR_RETURN(plan::FilePlan plan, plan::plan_dcp(layout, source.paths, options,
                                                           {target.target_world_size, target.float_dtype}, state.extras));
  const std::size_t tensors = layout.tensors.size() + state.extras.scalars.size(), chunks = plan.tensors.size(),
                    objects = state.extras.objects.size();
  const int ranks = target.target_world_size;
  PlannedConversion p{std::move(plan), source.description, {}};
  p.done_message = [=](std::uint64_t written) {
    std::string line = "wrote " + std::to_string(tensors) + " tensors in " + std::to_string(chunks) + " chunks";
    if (objects > 0) line += " and " + std::to_string(objects) + " non-tensor items";
    return line + " for " + std::to_string(ranks) + " rank(s), " + base::format_bytes(written) + " to " + out;
  };
  return p;
}

}  // namespace ucp::exec
