// to-dcp: a PyTorch DCP folder chunked for the ranks of the next training run.
#include "dcp_template.h"
#include "targets.h"
#include "dcp_training_state.h"
#include "ucp/base/size.h"
#include "ucp/plan/dcp_plan.h"

namespace ucp::exec {
using base::Result;
using base::Status;

namespace {

// The nesting, key order and non-tensor items of the DCP `m` describes, onto the tensors of `state`
// (which carry its keys).
Status take_state_of(const format::dcp::Metadata& m, DcpTrainingState& state) {
  for (const plan::LogicalTensor& t : state.layout.tensors) state.extras.paths[t.name] = format::dcp::path_of(m, t.name);
  state.extras.order = m.item_order;
  UCP_ASSIGN_OR_RETURN(const std::vector<format::ValuePtr> values, format::dcp::read_bytes_items(m));
  for (std::size_t i = 0; i < values.size(); ++i) {
    const std::string& fqn = m.bytes_items[i].fqn;
    state.extras.objects.push_back({fqn, format::dcp::path_of(m, fqn), values[i]});
  }
  return {};
}

// Whose nesting and non-tensor items the output takes: --like's template; else a DCP source
// rewritten whole (--layout plain, no --select or key map), as a re-chunked copy of a training
// checkpoint must keep them; else none.
const format::dcp::Metadata* state_to_carry(const OpenedModelTensors& source, const DcpTarget& target, DcpLayout nesting,
                                            const std::optional<format::dcp::Metadata>& like) {
  if (like) return &*like;
  if (source.dcp && nesting == DcpLayout::kPlain && target.select.empty() && !target.key_map.map) return source.dcp.get();
  return nullptr;
}

}  // namespace

Result<PlannedConversion> plan_dcp_folder(const OpenedModelTensors& source, const DcpTarget& target,
                                          const std::vector<OptimizerStep>& steps, const plan::PlanOptions& options,
                                          const std::string& out) {
  if (target.with_optimizer && !source.zero)
    return base::invalid_argument("--with-optimizer takes the optimizer's state from DeepSpeed ZeRO files; the source is a " +
                                  source.description);
  if (target.with_optimizer && !target.select.empty())
    return base::invalid_argument("--select does not apply with --with-optimizer (the optimizer holds the whole model)");
  UCP_ASSIGN_OR_RETURN(const DcpLayout nesting, dcp_layout_from_name(target.layout));
  if (!target.like.empty() && nesting != DcpLayout::kPlain)
    return base::invalid_argument("--like takes every key from its template; it goes with --layout plain");
  UCP_ASSIGN_OR_RETURN(const std::optional<format::dcp::Metadata> like, read_template(target));
  std::map<std::string, base::DType> dtype_of;
  UCP_ASSIGN_OR_RETURN(const plan::SourceLayout model, dcp_view(source, target, like ? &*like : nullptr, dtype_of));
  // The optimizer's moments are named and permuted as the model's tensors are (--key-map).
  const MomentView moment_view = [&](const plan::SourceLayout& moments, std::vector<std::size_t>* sources) {
    return key_mapped(source, target.key_map, moments, sources);
  };
  UCP_ASSIGN_OR_RETURN(DcpTrainingState state, dcp_training_state(model, nesting, target.with_optimizer ? &*source.zero : nullptr,
                                                                  steps, moment_view));
  if (const format::dcp::Metadata* carried = state_to_carry(source, target, nesting, like)) {
    UCP_RETURN_IF_ERROR(take_state_of(*carried, state));
  }
  const plan::SourceLayout& layout = state.layout;
  plan::DcpPlanOptions dcp;
  dcp.target_world_size = target.target_world_size;
  dcp.float_dtype = target.float_dtype;
  if (!target.float_dtype) dcp.dtype_of = std::move(dtype_of);  // --dtype wins over the template's
  UCP_ASSIGN_OR_RETURN(plan::FilePlan plan, plan::plan_dcp(layout, source.paths, options, dcp, state.extras));
  if (!target.lingua_params.empty()) {
    UCP_ASSIGN_OR_RETURN(plan::SmallFile params, lingua_params_file(target, model));
    plan.small_files.push_back(std::move(params));
  }
  const std::size_t tensors = layout.tensors.size() + state.extras.scalars.size(), chunks = plan.tensors.size(),
                    objects = state.extras.objects.size();
  const int ranks = target.target_world_size;
  PlannedConversion p{std::move(plan), source.description, {}};
  p.done_message = [=](std::uint64_t written) {
    std::string line = "wrote " + std::to_string(tensors) + " tensors in " + std::to_string(chunks) + " chunks";
    if (objects > 0) line += " and " + std::to_string(objects) + " non-tensor items";
    return line + " for " + std::to_string(ranks) + " rank(s), " + base::format_bytes(written) + " to " + out;
  };
  return p;
}

}  // namespace ucp::exec
