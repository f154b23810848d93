// Private to exec: one planner per target of exec/convert.h, each from the source it reads.
#pragma once

#include <string>
#include <vector>

#include "ucp/base/status.h"
#include "ucp/comm/communicator.h"
#include "ucp/exec/convert.h"
#include "model_tensor_sources.h"
#include "optimizer_steps.h"
#include "ucp/exec/param_states.h"
#include "ucp/exec/pipeline.h"
#include "ucp/format/zero_checkpoint.h"

namespace ucp::exec {

base::Result<PlannedConversion> plan_model_folder(const OpenedModelTensors& source, const ModelFolderTarget& target,
                                                  const plan::PlanOptions& options, const std::string& out);

/// `steps`: the optimizer's step per flat group (with_optimizer; exec/optimizer_steps.h), else empty.
base::Result<PlannedConversion> plan_hdf5_file(const OpenedModelTensors& source, const Hdf5Target& target,
                                               const std::vector<OptimizerStep>& steps, const plan::PlanOptions& options,
                                               const std::string& out);

/// `steps`: as for plan_hdf5_file (with_optimizer).
base::Result<PlannedConversion> plan_dcp_folder(const OpenedModelTensors& source, const DcpTarget& target,
                                                const std::vector<OptimizerStep>& steps, const plan::PlanOptions& options,
                                                const std::string& out);

base::Result<PlannedConversion> plan_universal_folder(const format::ZeroCheckpoint& ckpt, const plan::PlanOptions& options,
                                                      const std::string& out);

/// `warnings`: one line per policy decision the user should know about (RNG files).
base::Result<PlannedConversion> plan_zero_folder(const OpenedParamStates& source, const ZeroFilesTarget& target,
                                                 const plan::PlanOptions& options, const std::string& out,
                                                 std::vector<std::string>& warnings);

}  // namespace ucp::exec
