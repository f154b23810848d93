#include "ucp/plan/universal_plan.h"

#include "ucp/base/checked_math.h"
#include "ucp/format/value.h"

namespace ucp::plan {
using base::Result;
using base::Status;

namespace {

constexpr OptimizerState kStates[] = {OptimizerState::kFp32, OptimizerState::kExpAvg, OptimizerState::kExpAvgSq};

// ds_to_universal's stage <= 2 merge: torch.save({'cat_dim': 0, 'param': tensor}).
format::ValuePtr cat_dim_root(std::vector<std::pair<std::string, format::ValuePtr>> tensors) {
  std::vector<std::pair<format::ValuePtr, format::ValuePtr>> entries;
  entries.emplace_back(format::Value::string("cat_dim"), format::Value::integer(0));
  entries.emplace_back(format::Value::string("param"), std::move(tensors.at(0).second));
  return format::Value::dict(std::move(entries));
}

// ZeRO-3 merge: torch.save(tensor).
format::ValuePtr bare_root(std::vector<std::pair<std::string, format::ValuePtr>> tensors) {
  return std::move(tensors.at(0).second);
}

// A folder name must stay one path component inside OUT/zero.
Status check_param_name(const std::string& name) {
  if (name.empty() || name == "." || name == ".." || name.find('/') != std::string::npos ||
      name.find('\0') != std::string::npos)
    return base::failed_precondition("parameter name '" + name + "' cannot be used as a folder name in a universal checkpoint");
  return {};
}

}  // namespace

Result<std::vector<UniversalParam>> universal_params(const format::ZeroCheckpoint& ckpt) {
  std::vector<UniversalParam> params;
  if (ckpt.models.empty()) return base::internal_error("universal_params: no model-state file was read");
  for (std::size_t g = 0; g < ckpt.models[0].param_shapes.size(); ++g)
    for (const auto& p : ckpt.models[0].param_shapes[g]) {
      UCP_RETURN_IF_ERROR(check_param_name(p.name));
      params.push_back({p.name, static_cast<int>(g)});
    }
  return params;
}

Result<UniversalPlan> plan_universal(const format::ZeroCheckpoint& ckpt, const PlanOptions& options,
                                     const UniversalCarried& carried) {
  if (options.float_dtype != base::DType::kF32) return base::internal_error("plan_universal: output dtype must be fp32");
  const bool zero3 = ckpt.kind == format::DeepSpeedOptimizerKind::kZero3;
  UniversalPlan out;
  UCP_ASSIGN_OR_RETURN(out.params, universal_params(ckpt));

  // One logical tensor per (param, state), param-major: fp32, exp_avg, exp_avg_sq.
  std::vector<std::vector<LogicalTensor>> per_state;
  for (OptimizerState s : kStates) {
    UCP_ASSIGN_OR_RETURN(auto tensors, layout_optimizer_state(ckpt, s));
    if (tensors.size() != out.params.size()) return base::internal_error("plan_universal: parameter count mismatch");
    per_state.push_back(std::move(tensors));
  }
  SourceLayout layout;
  FilePlan& plan = out.plan;
  for (std::size_t i = 0; i < out.params.size(); ++i) {
    for (std::size_t k = 0; k < per_state.size(); ++k) {
      LogicalTensor t = std::move(per_state[k][i]);
      const std::string state = optimizer_state_name(kStates[k]);
      OutputTensor o;
      o.name = t.name + "/" + state;
      o.logical = static_cast<int>(layout.tensors.size());
      // As saved: fp32, or bf16 for DeepSpeed's bf16 master weights / optimizer states (what its
      // ds_to_universal writes too; never converted, so nothing is rounded or widened).
      o.dtype = t.dtype;
      if (zero3) o.shape = {static_cast<std::int64_t>(t.numel())};
      else o.shape = t.shape;
      auto nbytes = base::checked_mul(t.numel(), base::dtype_size(o.dtype));
      if (!nbytes) return base::data_loss("tensor '" + t.name + "' is too large");
      o.nbytes = *nbytes;
      o.requires_grad = kStates[k] == OptimizerState::kFp32;
      o.file = static_cast<int>(plan.files.size());
      plan.tensors.push_back(o);
      layout.tensors.push_back(std::move(t));

      OutputFile file;
      file.name = "zero/" + out.params[i].name + "/" + state + ".pt";
      UCP_RETURN_IF_ERROR(build_torch_file(file, plan.tensors, {static_cast<int>(plan.tensors.size() - 1)},
                                           zero3 ? TorchRootFn(bare_root) : TorchRootFn(cat_dim_root)));
      plan.files.push_back(std::move(file));
    }
  }
  for (const SourceFileCopy& c : carried.copies) {
    plan.tensors[static_cast<std::size_t>(add_verbatim_tensor(c.path, c.location(), plan, layout))].file =
        static_cast<int>(plan.files.size());
    OutputFile file;
    file.name = c.path;
    file.size = c.size;
    plan.files.push_back(std::move(file));
  }
  if (!carried.trees.empty() && !carried.locate)
    return base::internal_error("plan_universal: tree files need a storage locator");
  for (const UniversalTreeFile& f : carried.trees)
    UCP_RETURN_IF_ERROR(build_tree_file(f.path, f.root, {}, carried.locate, plan, layout));
  UCP_RETURN_IF_ERROR(finish_plan(plan, layout, ckpt.paths, options));
  return out;
}

}  // namespace ucp::plan
