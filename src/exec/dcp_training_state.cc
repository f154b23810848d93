#include "dcp_training_state.h"

#include <bit>
#include <cstring>
#include <map>

#include "universal_extras.h"
#include "ucp/plan/key_map.h"
#include "ucp/format/value.h"

namespace ucp::exec {
using base::Result;
using base::Status;
using format::Value;
using format::ValuePtr;

namespace {

using format::dcp::StatePath;

// Where each part of the training state goes in the layout's nested state dict.
struct Keys {
  DcpLayout layout;

  StatePath model(const std::string& fqn) const {
    if (layout == DcpLayout::kLingua) return {"model", fqn};
    return {fqn};
  }
  StatePath state(const std::string& fqn, const std::string& key) const {
    if (layout == DcpLayout::kLingua) return {"optim", "state", fqn, key};
    return {"optimizer", "state." + fqn + "." + key};
  }
};

void add_tensor(plan::LogicalTensor t, StatePath path, DcpTrainingState& out) {
  t.name = format::dcp::joined_key(path);
  out.extras.paths[t.name] = std::move(path);
  out.layout.tensors.push_back(std::move(t));
}

// Whether torch's flattening stops at a list: it descends only into lists that hold a dict (or a
// list that does); tuples, strings and numbers are values.
bool is_leaf_list(const Value& v) {
  for (const ValuePtr& item : v.items) {
    if (item->is_dict()) return false;
    if (item->kind == Value::Kind::kList && !is_leaf_list(*item)) return false;
  }
  return true;
}

// The non-tensor items of `value` at `path`, flattened as torch's flatten_state_dict does.
void add_objects(const ValuePtr& value, const StatePath& path, DcpTrainingState& out) {
  if (value->is_dict()) {
    for (const auto& [k, v] : value->entries) {
      StatePath next = path;
      next.push_back(k->is_str() ? k->str : std::to_string(k->i));
      add_objects(v, next, out);
    }
  } else if (value->kind == Value::Kind::kList && !is_leaf_list(*value)) {
    for (std::size_t i = 0; i < value->items.size(); ++i) {
      StatePath next = path;
      next.push_back(format::dcp::PathElement::at(static_cast<std::int64_t>(i)));
      add_objects(value->items[i], next, out);
    }
  } else {
    out.extras.objects.push_back({format::dcp::joined_key(path), path, value});
  }
}

// The fp32 value of a step counter (torch Adam keeps a 0-d float32 tensor; old torch a Python int).
Result<float> step_value(const OptimizerStep& step, std::size_t group) {
  if (const auto* i = std::get_if<std::int64_t>(&step)) return static_cast<float>(*i);
  if (const auto* d = std::get_if<double>(&step)) return static_cast<float>(*d);
  return base::failed_precondition("flat group " + std::to_string(group) +
                                   " of the optimizer has no 'step': a torch Adam state needs one");
}

plan::DcpScalar fp32_scalar(std::string fqn, StatePath path, float value) {
  static_assert(std::endian::native == std::endian::little, "DCP items are little-endian");
  plan::DcpScalar s{std::move(fqn), std::move(path), base::DType::kF32, std::vector<std::byte>(sizeof(float))};
  std::memcpy(s.value.data(), &value, sizeof(float));
  return s;
}

// The output name of every parameter (by the source's name) that keeps optimizer state: what the
// key map makes of it; a parameter it drops is absent.
using NewNames = std::map<std::string, std::string>;

// Torch's param groups with 'params' as the parameters' output names, as get_optimizer_state_dict
// gives them: each group's flat groups (DeepSpeed's 'params' are their indices) in order.
Result<std::vector<ValuePtr>> named_param_groups(const format::ZeroCheckpoint& ckpt, const Rank0Optimizer& rank0,
                                                 const NewNames& names_of) {
  const auto& flat = ckpt.models.at(0).param_shapes;
  std::vector<ValuePtr> groups;
  for (std::size_t g = 0; g < rank0.param_groups->items.size(); ++g) {
    const ValuePtr& group = rank0.param_groups->items[g];
    const std::string where = "'" + rank0.path + "': param_groups[" + std::to_string(g) + "]";
    ValuePtr ids = group && group->is_dict() ? group->get("params") : nullptr;
    if (!ids || ids->kind != Value::Kind::kList) return base::data_loss(where + " has no 'params' list");
    std::vector<ValuePtr> names;
    for (const ValuePtr& id : ids->items) {
      if (!id || id->kind != Value::Kind::kInt || id->i < 0 || static_cast<std::size_t>(id->i) >= flat.size())
        return base::data_loss(where + "['params'] names a flat group that param_shapes does not have (" +
                               std::to_string(flat.size()) + " groups)");
      for (const format::NamedShape& p : flat[static_cast<std::size_t>(id->i)])
        if (auto it = names_of.find(p.name); it != names_of.end()) names.push_back(Value::string(it->second));
    }
    auto named = std::make_shared<Value>(*group);
    named->set("params", Value::list(std::move(names)));
    groups.push_back(std::move(named));
  }
  return groups;
}

void add_param_groups(const std::vector<ValuePtr>& groups, const Keys& keys, DcpTrainingState& out) {
  if (keys.layout == DcpLayout::kLingua) {
    add_objects(Value::list(groups), {"optim", "param_groups"}, out);
    return;
  }
  // torchtitan's flattened optimizer state dict: a value per parameter and hyper-parameter.
  for (const ValuePtr& group : groups)
    for (const ValuePtr& name : group->get("params")->items)
      for (const auto& [k, v] : group->entries)
        if (k->is_str() && k->str != "params") add_objects(v, {"optimizer", "param_groups." + name->str + "." + k->str}, out);
}

// Each trainable parameter's step, by its source name: its flat group's.
Result<std::map<std::string, float>> steps_by_param(const format::ZeroCheckpoint& ckpt, const std::vector<OptimizerStep>& steps) {
  const auto& flat = ckpt.models.at(0).param_shapes;
  std::map<std::string, float> out;
  for (std::size_t g = 0; g < flat.size(); ++g) {
    if (g >= steps.size()) return base::internal_error("no step read for flat group " + std::to_string(g));
    UCP_ASSIGN_OR_RETURN(float step, step_value(steps[g], g));
    for (const format::NamedShape& p : flat[g]) out[p.name] = step;
  }
  return out;
}

// One moment of every parameter, named and permuted as the model is; `names_of` filled from it.
Result<plan::SourceLayout> mapped_moment(const format::ZeroCheckpoint& ckpt, plan::OptimizerState which, const MomentView& view,
                                         NewNames& names_of) {
  UCP_ASSIGN_OR_RETURN(std::vector<plan::LogicalTensor> tensors, plan::layout_optimizer_state(ckpt, which));
  plan::SourceLayout moments{std::move(tensors)};
  std::vector<std::size_t> sources;
  UCP_ASSIGN_OR_RETURN(plan::SourceLayout mapped, view(moments, &sources));
  plan::SourceLayout out;
  for (std::size_t k = 0; k < mapped.tensors.size(); ++k) {
    if (sources.at(k) == plan::kNoSource) continue;  // a tie: the tied-to parameter holds the state
    names_of[moments.tensors.at(sources[k]).name] = mapped.tensors[k].name;
    out.tensors.push_back(std::move(mapped.tensors[k]));
  }
  return out;
}

Status add_optimizer(const format::ZeroCheckpoint& ckpt, const std::vector<OptimizerStep>& steps, const Keys& keys,
                     const MomentView& view, DcpTrainingState& out) {
  NewNames names_of;
  UCP_ASSIGN_OR_RETURN(plan::SourceLayout exp_avg, mapped_moment(ckpt, plan::OptimizerState::kExpAvg, view, names_of));
  UCP_ASSIGN_OR_RETURN(plan::SourceLayout exp_avg_sq, mapped_moment(ckpt, plan::OptimizerState::kExpAvgSq, view, names_of));
  UCP_ASSIGN_OR_RETURN(const auto step_of, steps_by_param(ckpt, steps));
  std::map<std::string, float> step_by_name;
  for (const auto& [source, name] : names_of) step_by_name[name] = step_of.at(source);
  for (std::size_t p = 0; p < exp_avg.tensors.size(); ++p) {
    const std::string fqn = exp_avg.tensors[p].name;
    if (p >= exp_avg_sq.tensors.size() || exp_avg_sq.tensors[p].name != fqn)
      return base::internal_error("exp_avg and exp_avg_sq are not named alike at '" + fqn + "'");
    StatePath step_path = keys.state(fqn, "step");
    out.extras.scalars.push_back(fp32_scalar(format::dcp::joined_key(step_path), step_path, step_by_name.at(fqn)));
    add_tensor(std::move(exp_avg.tensors[p]), keys.state(fqn, "exp_avg"), out);
    add_tensor(std::move(exp_avg_sq.tensors[p]), keys.state(fqn, "exp_avg_sq"), out);
  }
  UCP_ASSIGN_OR_RETURN(Rank0Optimizer rank0, open_rank0_optimizer(ckpt));
  UCP_ASSIGN_OR_RETURN(std::vector<ValuePtr> groups, named_param_groups(ckpt, rank0, names_of));
  add_param_groups(groups, keys, out);
  return {};
}

}  // namespace

Result<DcpLayout> dcp_layout_from_name(const std::string& name) {
  if (name == "plain") return DcpLayout::kPlain;
  if (name == "lingua") return DcpLayout::kLingua;
  if (name == "torchtitan") return DcpLayout::kTorchtitan;
  return base::invalid_argument("--layout '" + name + "': expected plain, lingua or torchtitan");
}

Result<DcpTrainingState> dcp_training_state(const plan::SourceLayout& model, DcpLayout layout,
                                            const format::ZeroCheckpoint* ckpt, const std::vector<OptimizerStep>& steps,
                                            const MomentView& view) {
  const Keys keys{layout};
  DcpTrainingState out;
  for (const plan::LogicalTensor& t : model.tensors) {
    if (layout == DcpLayout::kLingua) {
      add_tensor(t, keys.model(t.name), out);
    } else {
      out.layout.tensors.push_back(t);  // top level: the key is its own path
    }
  }
  if (!ckpt) return out;
  if (layout == DcpLayout::kPlain)
    return base::invalid_argument("--with-optimizer needs --layout lingua or torchtitan (where the optimizer's keys go)");
  UCP_RETURN_IF_ERROR(add_optimizer(*ckpt, steps, keys, view, out));
  return out;
}

}  // namespace ucp::exec
