// to-dcp: a PyTorch DCP folder chunked for the ranks of the next training run.
#include "dcp_template.h"
#include "targets.h"
#include "ucp/base/size.h"
#include "ucp/plan/dcp_plan.h"

namespace ucp::exec {
using base::Result;

Result<PlannedConversion> plan_dcp_folder(const OpenedModelTensors& source, const DcpTarget& target,
                                          const plan::PlanOptions& options, const std::string& out) {
  std::map<std::string, base::DType> dtype_of;
  UCP_ASSIGN_OR_RETURN(const plan::SourceLayout layout, dcp_view(source, target, dtype_of));
  plan::DcpPlanOptions dcp;
  dcp.target_world_size = target.target_world_size;
  dcp.float_dtype = target.float_dtype;
  if (!target.float_dtype) dcp.dtype_of = std::move(dtype_of);  // --dtype wins over the template's
  UCP_ASSIGN_OR_RETURN(plan::FilePlan plan, plan::plan_dcp(layout, source.paths, options, dcp));
  if (!target.lingua_params.empty()) {
    UCP_ASSIGN_OR_RETURN(plan::SmallFile params, lingua_params_file(target, layout));
    plan.small_files.push_back(std::move(params));
  }
  const std::size_t tensors = layout.tensors.size(), chunks = plan.tensors.size();
  const int ranks = target.target_world_size;
  PlannedConversion p{std::move(plan), source.description, {}};
  p.done_message = [=](std::uint64_t written) {
    return "wrote " + std::to_string(tensors) + " tensors in " + std::to_string(chunks) + " chunks for " +
           std::to_string(ranks) + " rank(s), " + base::format_bytes(written) + " to " + out;
  };
  return p;
}

}  // namespace ucp::exec
