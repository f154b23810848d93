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

namespace {

// --like: the template's tensors. Every rank reads its small .metadata; errors are agreed as the
// plan's. Its non-tensor items and nesting are carried by target_dcp.cc (carry_dcp_state).
Result<std::vector<plan::TemplateTensor>> template_tensors(const std::string& dir) {
  if (!format::dcp::is_dcp_folder(dir)) return base::invalid_argument("--like " + dir + ": not a DCP folder (no .metadata)");
  UCP_ASSIGN_OR_RETURN(const format::dcp::Metadata m, format::dcp::read_metadata(dir));
  std::vector<plan::TemplateTensor> tensors;
  for (const auto& t : m.tensors) tensors.push_back({t.fqn, t.shape, t.dtype});
  return tensors;
}

}  // namespace

// The source as the DCP target sees it: source_view, then (--like) in the template's keys, order,
// shapes and dtypes (dtype_of: per key, floating tensors only).
Result<plan::SourceLayout> dcp_view(const OpenedModelTensors& source, const DcpTarget& target,
                                    std::map<std::string, base::DType>& dtype_of) {
  if (target.like.empty()) return source_view(source, target.select, target.key_map);
  UCP_ASSIGN_OR_RETURN(const std::vector<plan::TemplateTensor> tensors, template_tensors(target.like));
  std::vector<std::string> keys;
  for (const auto& t : tensors) keys.push_back(t.key);
  UCP_ASSIGN_OR_RETURN(plan::SourceLayout layout, source_view(source, target.select, target.key_map, &keys));
  for (const auto& t : tensors) dtype_of[t.key] = t.dtype;
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
