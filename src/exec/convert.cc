#include "ucp/exec/convert.h"

#include <iostream>

#include "targets.h"
#include "zero_source.h"

namespace ucp::exec {
using base::Result;
using base::Status;

Status convert(comm::Communicator& comm, const std::string& source, const std::string& tag, const Target& target,
               const plan::PlanOptions& options, const RunOptions& run, PhaseTimer& timer) {
  if (const auto* zero_files = std::get_if<ZeroFilesTarget>(&target)) {
    // Per-parameter states from any source of the registry (exec/param_state_sources.cc).
    UCP_ASSIGN_OR_RETURN(OpenedParamStates states, open_param_states(comm, source, tag, timer));
    std::vector<std::string> warnings;
    Result<PlannedConversion> planned = plan_zero_folder(states, *zero_files, options, run.out, warnings);
    if (comm.rank() == 0)
      for (const auto& w : warnings) std::cerr << "ucp-reshard " << run.command << ": warning: " << w << std::endl;
    return run_conversion(comm, run, planned, timer);
  }
  if (const auto* model = std::get_if<ModelFolderTarget>(&target)) {
    // Model tensors from any source of the registry (exec/model_tensor_sources.cc).
    UCP_ASSIGN_OR_RETURN(OpenedModelTensors tensors, open_model_tensors(comm, source, tag, model->exclude_frozen, timer));
    return run_conversion(comm, run, plan_model_folder(tensors, *model, options, run.out), timer);
  }
  if (const auto* dcp = std::get_if<DcpTarget>(&target)) {
    UCP_ASSIGN_OR_RETURN(OpenedModelTensors tensors, open_model_tensors(comm, source, tag, false, timer));
    std::vector<OptimizerStep> steps;  // collective, as for HDF5
    if (dcp->with_optimizer && tensors.zero) {
      UCP_ASSIGN_OR_RETURN(steps, read_optimizer_steps(comm, *tensors.zero));
    }
    return run_conversion(comm, run, plan_dcp_folder(tensors, *dcp, steps, options, run.out), timer);
  }
  if (const auto* hdf5 = std::get_if<Hdf5Target>(&target)) {
    UCP_ASSIGN_OR_RETURN(OpenedModelTensors tensors, open_model_tensors(comm, source, tag, hdf5->exclude_frozen, timer));
    std::vector<OptimizerStep> steps;  // collective: rank 0 reads them, every rank gets them (agreed)
    if (hdf5->with_optimizer && tensors.zero) {
      UCP_ASSIGN_OR_RETURN(steps, read_optimizer_steps(comm, *tensors.zero));
    }
    return run_conversion(comm, run, plan_hdf5_file(tensors, *hdf5, steps, options, run.out), timer);
  }
  UCP_ASSIGN_OR_RETURN(format::ZeroCheckpoint ckpt, read_zero_checkpoint(comm, source, tag, timer));
  return run_conversion(comm, run, plan_universal_folder(ckpt, options, run.out), timer);
}

}  // namespace ucp::exec
