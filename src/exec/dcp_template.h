// Private to exec: what to-dcp adds to the view of the source (model_tensor_sources.h): --like's
// template and --lingua-params' params.json.
#pragma once

#include <map>
#include <string>

#include "model_tensor_sources.h"
#include "ucp/base/dtype.h"
#include "ucp/base/status.h"
#include "ucp/exec/convert.h"
#include "ucp/plan/file_plan.h"

namespace ucp::exec {

/// source_view, then (--like) in the template's keys, order and shapes; `dtype_of` gets the
/// template's dtype per key. Every rank reads the template's small .metadata; errors are the
/// same on every rank (the caller's plan agreement).
base::Result<plan::SourceLayout> dcp_view(const OpenedModelTensors& source, const DcpTarget& target,
                                          std::map<std::string, base::DType>& dtype_of);

/// --lingua-params: params.json (in OUT) from the HF config.json it names, in the dtype `layout`
/// will be written in.
base::Result<plan::SmallFile> lingua_params_file(const DcpTarget& target, const plan::SourceLayout& layout);

}  // namespace ucp::exec
