// to-dcp: a PyTorch DCP folder chunked for the ranks of the next training run.
#include <fstream>
#include <sstream>

#include "targets.h"
#include "ucp/base/size.h"
#include "ucp/format/dcp.h"
#include "ucp/plan/dcp_plan.h"
#include "ucp/plan/lingua_params.h"

namespace ucp::exec {
using base::Result;

namespace {

// --like: the template's tensors. Every rank reads its small .metadata; errors are agreed as the
// plan's. TODO(bytes items): the template's non-tensor items (a torchtitan seed's train_state,
// dataloader, lr_scheduler) are not carried into the output yet: m.bytes_items is where they are.
Result<std::vector<plan::TemplateTensor>> template_tensors(const std::string& dir) {
  if (!format::dcp::is_dcp_folder(dir)) return base::invalid_argument("--like " + dir + ": not a DCP folder (no .metadata)");
  UCP_ASSIGN_OR_RETURN(const format::dcp::Metadata m, format::dcp::read_metadata(dir));
  std::vector<plan::TemplateTensor> tensors;
  for (const auto& t : m.tensors) tensors.push_back({t.fqn, t.shape, t.dtype});
  return tensors;
}

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

}  // namespace

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
