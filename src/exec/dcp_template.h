// Private to exec: what to-dcp adds to the view of the source (model_tensor_sources.h): --like's
// template and --lingua-params' params.json.
#pragma once

#include <map>
#include <optional>
#include <string>

#include "model_tensor_sources.h"
#include "ucp/base/dtype.h"
#include "ucp/base/status.h"
#include "ucp/exec/convert.h"
#include "ucp/format/dcp.h"
#include "ucp/plan/file_plan.h"

namespace ucp::exec {

/// --like's template, parsed (every rank reads its small .metadata; errors are agreed as the
/// plan's); nothing without --like.
base::Result<std::optional<format::dcp::Metadata>> read_template(const DcpTarget& target);

/// source_view, then (with the template `like`) in the template's keys, order and shapes;
/// `dtype_of` gets the template's dtype per key.
base::Result<plan::SourceLayout> dcp_view(const OpenedModelTensors& source, const DcpTarget& target,
                                          const format::dcp::Metadata* like, std::map<std::string, base::DType>& dtype_of);

/// --lingua-params: params.json (in OUT) from the HF config.json it names, in the dtype `layout`
/// will be written in.
base::Result<plan::SmallFile> lingua_params_file(const DcpTarget& target, const plan::SourceLayout& layout);

}  // namespace ucp::exec
