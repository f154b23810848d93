// to-universal: DeepSpeed's universal checkpoint from a ZeRO checkpoint, latest_universal beside it.
#include "targets.h"
#include "ucp/base/size.h"
#include "universal_extras.h"
#include "zero_source.h"
#include "ucp/plan/universal_plan.h"

namespace ucp::exec {
using base::Result;

// Every rank builds the same plan: the optimizer_state.pt / step.pt trees come from rank 0's
// optimizer pickle (its tensor data stays mapped, unread, until the rank that copies it).
Result<PlannedConversion> plan_universal_folder(const format::ZeroCheckpoint& ckpt, const plan::PlanOptions& options,
                                                const std::string& out) {
  UCP_ASSIGN_OR_RETURN(std::vector<plan::UniversalParam> params, plan::universal_params(ckpt));
  UCP_ASSIGN_OR_RETURN(plan::UniversalCarried carried, universal_carried_files(ckpt, params));
  UCP_ASSIGN_OR_RETURN(plan::UniversalPlan universal, plan::plan_universal(ckpt, options, carried));
  universal.plan.small_files.push_back(latest_universal_file(out));
  const std::size_t files = universal.plan.files.size(), params_count = universal.params.size();
  const std::size_t copies = ckpt.files.model_state_files.size();
  PlannedConversion p{std::move(universal.plan), describe_checkpoint(ckpt), {}};
  p.done_message = [=](std::uint64_t written) {
    return "wrote " + std::to_string(params_count) + " parameters (" + std::to_string(files) + " files with " +
           std::to_string(copies) + " model-state copies, " + base::format_bytes(written) + ") to " + out;
  };
  return p;
}

}  // namespace ucp::exec
