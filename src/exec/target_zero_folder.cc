// reshard: DeepSpeed's own ZeRO files for a new data-parallel size, with `latest` and the framework
// files of the source's save dir (HF Trainer's checkpoint-K/).
#include "targets.h"
#include "ucp/base/size.h"
#include "save_dir_extras.h"
#include "ucp/plan/zero_files_plan.h"

namespace ucp::exec {
using base::Result;

Result<PlannedConversion> plan_zero_folder(const OpenedParamStates& source, const ZeroFilesTarget& target,
                                           const plan::PlanOptions& options, const std::string& out,
                                           std::vector<std::string>& warnings) {
  UCP_ASSIGN_OR_RETURN(plan::FilePlan plan, plan::plan_zero_files(source.states, target.target_dp, options));
  if (!source.save_dir.empty()) {
    UCP_ASSIGN_OR_RETURN(std::vector<plan::SmallFile> extras, save_dir_small_files(source.save_dir, target.target_dp, warnings));
    for (auto& f : extras) plan.small_files.push_back(std::move(f));
  }
  plan.small_files.push_back({"latest", source.states.tag, {}, plan::SmallFile::Place::kInOutput});  // no newline, as DeepSpeed
  const std::size_t files = plan.files.size();
  PlannedConversion p{std::move(plan), source.description + " -> dp " + std::to_string(target.target_dp), {}};
  p.done_message = [=, tag = source.states.tag, dp = target.target_dp](std::uint64_t written) {
    return "wrote " + std::to_string(files) + " files (" + base::format_bytes(written) + ") for dp " + std::to_string(dp) +
           " to " + out + "/" + tag;
  };
  return p;
}

}  // namespace ucp::exec
