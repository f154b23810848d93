// to-dcp's --like (a template DCP's keys, shapes and dtypes) and --lingua-params (Lingua's
// params.json beside the output), around the view of the source every target reads.
#include "dcp_template.h"

#include <fstream>
#include <sstream>

#include "ucp/format/dcp.h"
#include "ucp/plan/key_map.h"
#include "ucp/plan/lingua_params.h"

namespace ucp::exec {
using base::Result;

Result<std::optional<format::dcp::Metadata>> read_template(const DcpTarget& target) {
  if (target.like.empty()) return std::optional<format::dcp::Metadata>();
  if (!format::dcp::is_dcp_folder(target.like))
    return base::invalid_argument("--like " + target.like + ": not a DCP folder (no .metadata)");
  UCP_ASSIGN_OR_RETURN(format::dcp::Metadata m, format::dcp::read_metadata(target.like));
  return std::optional<format::dcp::Metadata>(std::move(m));
}

// The source as the DCP target sees it: source_view, then (--like) in the template's keys, order,
// shapes and dtypes (dtype_of: per key, floating tensors only).
Result<plan::SourceLayout> dcp_view(const OpenedModelTensors& source, const DcpTarget& target,
                                    const format::dcp::Metadata* like, std::map<std::string, base::DType>& dtype_of) {
  if (!like) return source_view(source, target.select, target.key_map);
  std::vector<plan::TemplateTensor> tensors;
  std::vector<std::string> keys;
  for (const auto& t : like->tensors) {
    tensors.push_back({t.fqn, t.shape, t.dtype});
    keys.push_back(t.fqn);
    dtype_of[t.fqn] = t.dtype;
  }
  UCP_ASSIGN_OR_RETURN(plan::SourceLayout layout, source_view(source, target.select, target.key_map, &keys));
  return plan::conform_to_template(layout, tensors, target.like);
}

// --lingua-params: params.json from an HF config.json, in the dtype the DCP holds.
Result<plan::SmallFile> lingua_params_file(const DcpTarget& target, const plan::SourceLayout& layout) {
  std::ifstream in(target.lingua_params, std::ios::binary);
  std::stringstream text;
  if (in.is_open()) text << in.rdbuf();
  if (!in.is_open() || !in) return base::invalid_argument("--lingua-params " + target.lingua_params + ": cannot read it");
  base::DType dtype = target.float_dtype.value_or(base::DType::kF32);
  if (!target.float_dtype)
    for (const auto& t : layout.tensors)
      if (base::dtype_is_floating(t.dtype)) {
        dtype = t.dtype;
        break;
      }
  const std::string model_dtype = dtype == base::DType::kBF16 ? "bf16" : dtype == base::DType::kF16 ? "fp16" : "fp32";
  UCP_ASSIGN_OR_RETURN(std::string json, plan::lingua_params_json(text.str(), target.lingua_params, target.lingua_tokenizer, model_dtype));
  return plan::SmallFile{"params.json", std::move(json), {}, plan::SmallFile::Place::kInOutput};
}

}  // namespace ucp::exec
