#include "ucp/plan/lightning_plan.h"

#include <map>
#include <memory>
#include <set>


namespace ucp::plan {
using base::Result;
using format::Value;
using format::ValuePtr;

namespace {

// What Lightning's converter drops from the model-state file: DeepSpeed's own entries.
const std::set<std::string> kDeepSpeedKeys = {"module",         "optimizer",     "lr_scheduler",
                                              "csr_tensor_module_names", "skipped_steps", "global_steps",
                                              "dp_world_size",  "mp_world_size"};

// Lightning < 2.1 saved the model under a wrapper; its converter strips the prefix.
std::string without_wrapper_prefix(const std::string& name) {
  static const std::string kPrefix = "_forward_module.";
  return name.rfind(kPrefix, 0) == 0 ? name.substr(kPrefix.size()) : name;
}

}  // namespace

Result<FilePlan> plan_lightning(const SourceLayout& source_layout, const ValuePtr& model_state, const StorageLocator& locate,
                                const std::vector<std::string>& source_paths, const PlanOptions& options) {
  if (!model_state || !model_state->is_dict())
    return base::data_loss("model-state file: expected a dict at the top level");
  FilePlan plan;
  SourceLayout layout = source_layout;
  std::map<const format::Storage*, PlannedStorage> planned;

  // state_dict: a plain dict (Lightning builds it with a comprehension), one planned storage per
  // tensor, tied names as second references to their source's tensor.
  ValuePtr state_dict = Value::dict();
  std::vector<ValuePtr> values(layout.tensors.size());
  for (std::size_t i = 0; i < layout.tensors.size(); ++i) {
    const LogicalTensor& t = layout.tensors[i];
    if (t.role == TensorRole::kAlias) {
      values[i] = values.at(static_cast<std::size_t>(t.alias_of));
    } else {
      UCP_ASSIGN_OR_RETURN(OutputTensor o, output_tensor_of(t, static_cast<int>(i), options.float_dtype));
      auto storage = std::make_shared<format::Storage>();
      storage->dtype = o.dtype;
      storage->numel = t.numel();
      format::Tensor tensor;
      tensor.storage = storage;
      tensor.shape = t.shape;
      tensor.stride = format::Tensor::contiguous_strides(t.shape);
      planned[storage.get()] = {static_cast<int>(plan.tensors.size()), {}};
      plan.tensors.push_back(std::move(o));
      values[i] = Value::tensor_value(std::move(tensor));
    }
    state_dict->set(without_wrapper_prefix(t.name), values[i]);
  }

  ValuePtr root = Value::dict();
  for (const auto& [k, v] : model_state->entries)
    if (!(k->is_str() && kDeepSpeedKeys.count(k->str))) root->entries.emplace_back(k, v);
  root->set("state_dict", state_dict);

  UCP_RETURN_IF_ERROR(build_tree_file(kLightningFileName, root, planned, locate, plan, layout));
  UCP_RETURN_IF_ERROR(finish_plan(plan, layout, source_paths, options));
  return plan;
}

}  // namespace ucp::plan
