#include "ucp/plan/zero_files_plan.h"

#include <algorithm>
#include <map>

#include "ucp/plan/zero_partition.h"

namespace ucp::plan {
using base::Result;
using base::Status;
using format::Value;
using format::ValuePtr;

std::string zero_optimizer_file_name(const std::string& prefix, int rank) {
  return prefix + "zero_pp_rank_" + std::to_string(rank) + "_mp_rank_00_optim_states.pt";
}

std::string zero_model_file_name(bool zero3, int rank) {
  return zero3 ? "zero_pp_rank_" + std::to_string(rank) + "_mp_rank_00_model_states.pt" : "mp_rank_00_model_states.pt";
}

namespace {

ValuePtr shallow_copy(const ValuePtr& v) { return std::make_shared<Value>(*v); }

// The pieces of `t` for flattened elements [begin, begin + count), shifted to start at `dst`.
void take(const LogicalTensor& t, std::uint64_t begin, std::uint64_t count, std::uint64_t dst, std::vector<Piece>& out) {
  auto it = std::upper_bound(t.pieces.begin(), t.pieces.end(), begin,
                             [](std::uint64_t b, const Piece& p) { return b < p.dst_offset; });
  if (it != t.pieces.begin()) --it;
  const std::uint64_t end = begin + count;
  for (; it != t.pieces.end() && it->dst_offset < end; ++it) {
    const std::uint64_t lo = std::max(begin, it->dst_offset), hi = std::min(end, it->dst_offset + it->src.numel);
    if (lo < hi) out.push_back({it->src.slice(lo - it->dst_offset, hi - lo), dst + (lo - begin)});
  }
}

// Proof that a planned partition is whole: its pieces and zero runs cover [0, numel) exactly once.
Status check_partition(const std::string& name, const std::vector<Piece>& pieces, const PartitionLayout& layout) {
  std::vector<std::pair<std::uint64_t, std::uint64_t>> spans = layout.zeros;
  for (const Piece& p : pieces) spans.emplace_back(p.dst_offset, p.dst_offset + p.src.numel);
  std::sort(spans.begin(), spans.end());
  std::uint64_t next = 0;
  for (const auto& [b, e] : spans) {
    if (b != next)
      return base::internal_error("reshard plan: '" + name + "' elements [" + std::to_string(std::min(b, next)) + ", " +
                                  std::to_string(std::max(b, next)) + ") are " + (b > next ? "never written" : "written twice"));
    next = e;
  }
  if (next != layout.numel)
    return base::internal_error("reshard plan: '" + name + "' covers " + std::to_string(next) + " of " +
                                std::to_string(layout.numel) + " elements");
  return {};
}

class ZeroFilesPlanner {
 public:
  ZeroFilesPlanner(const ParamStates& src, int target) : src_(src), target_(target) {}

  Result<FilePlan> run(const PlanOptions& options) {
    UCP_RETURN_IF_ERROR(check_source());
    const bool zero3 = src_.kind == format::DeepSpeedOptimizerKind::kZero3;
    for (int r = 0; r < target_; ++r) {
      if (zero3) UCP_RETURN_IF_ERROR(zero3_files(r));
      else UCP_RETURN_IF_ERROR(flat_optimizer_file(r));
    }
    if (!zero3) {
      ValuePtr model = shallow_copy(src_.models.at(0));
      model->set("dp_world_size", Value::integer(target_));
      UCP_RETURN_IF_ERROR(add_file(zero_model_file_name(false, 0), model));
    }
    UCP_RETURN_IF_ERROR(finish_plan(plan_, layout_, src_.paths, options));
    return std::move(plan_);
  }

 private:
  Status check_source() const {
    if (target_ < 1) return base::invalid_argument("--target-dp must be at least 1");
    if (!src_.optimizer || !src_.optimizer->is_dict() || !src_.optimizer->get("optimizer_state_dict"))
      return base::internal_error("reshard plan: no optimizer template");
    if (src_.models.empty()) return base::internal_error("reshard plan: no model-state template");
    std::size_t params = 0;
    for (const auto& g : src_.groups) params += g.size();
    if (src_.fp32.size() != params) return base::internal_error("reshard plan: fp32 states do not match the parameters");
    for (const auto& [key, tensors] : src_.moments)
      if (tensors.size() != params) return base::internal_error("reshard plan: '" + key + "' states do not match the parameters");
    return {};
  }

  bool has_moments() const { return !src_.moments.empty(); }

  // The per-parameter layout of per-element optimizer state `key`, or null if the source has none.
  const std::vector<LogicalTensor>* state_layout(const std::string& key) const {
    for (const auto& [k, tensors] : src_.moments)
      if (k == key) return &tensors;
    return nullptr;
  }

  // A new rank's state entry for one flat group: the template's entry with every per-element state
  // tensor (exp_avg, exp_avg_sq, momentum_buffer, ...) re-partitioned over `params` as `layout`,
  // and scalar tensors (step) on storages of their own, so that groups never share one.
  Result<ValuePtr> repartitioned_state_entry(const ValuePtr& entry, const std::string& prefix, const std::string& index,
                                             const std::vector<int>& params, const PartitionLayout& layout) {
    ValuePtr out = shallow_copy(entry);
    for (auto& [k, v] : out->entries) {
      if (!v || !v->is_tensor()) continue;
      if (v->tensor.shape.empty() || !k || !k->is_str()) {
        ValuePtr copy = shallow_copy(v);
        copy->tensor.storage = std::make_shared<format::Storage>(*v->tensor.storage);
        v = copy;
        continue;
      }
      const std::vector<LogicalTensor>* states = state_layout(k->str);
      if (!states) return base::internal_error("reshard plan: no layout for optimizer state '" + k->str + "'");
      UCP_ASSIGN_OR_RETURN(v, partition_tensor(prefix + ":" + k->str + "[" + index + "]", *states, params, layout,
                                               base::DType::kF32, v));
    }
    return out;
  }

  // A new storage for the partition `layout` of state `state` over the parameters `params`
  // (indices into the flattened parameter list), and the tensor value pointing at it (a copy of
  // `like` when there is one, so requires_grad, hooks and parameter-ness stay as DeepSpeed saved them).
  // The storage has the dtype of its source partitions; `dtype` is used only for an empty one.
  Result<ValuePtr> partition_tensor(const std::string& name, const std::vector<LogicalTensor>& state,
                                    const std::vector<int>& params, const PartitionLayout& layout, base::DType dtype,
                                    const ValuePtr& like) {
    std::vector<Piece> pieces;
    for (const Segment& s : layout.segments)
      take(state.at(static_cast<std::size_t>(params.at(static_cast<std::size_t>(s.param)))), s.param_offset, s.numel,
           s.dst_offset, pieces);
    UCP_RETURN_IF_ERROR(check_partition(name, pieces, layout));
    // The state keeps the dtype it was saved in: fp32 masters normally, bf16 with DeepSpeed's
    // bf16_master_weights_and_grads / bf16_optimizer_states. Never converted, so N -> M -> N is exact.
    if (!pieces.empty()) dtype = pieces.front().src.dtype;
    else if (like && like->is_tensor() && like->tensor.storage) dtype = like->tensor.dtype();
    for (const Piece& p : pieces)
      if (p.src.dtype != dtype)
        return base::data_loss("reshard: '" + name + "' gathers " + std::string(base::dtype_name(dtype)) + " and " +
                               std::string(base::dtype_name(p.src.dtype)) + " partitions: the source ranks disagree on its dtype");

    OutputTensor t;
    t.name = name;
    t.logical = static_cast<int>(layout_.tensors.size());
    t.dtype = dtype;
    t.shape = {static_cast<std::int64_t>(layout.numel)};
    t.nbytes = layout.numel * base::dtype_size(dtype);
    LogicalTensor lt;
    lt.name = name;
    lt.shape = t.shape;
    lt.dtype = dtype;
    lt.pieces = std::move(pieces);
    layout_.tensors.push_back(std::move(lt));
    const int index = static_cast<int>(plan_.tensors.size());
    plan_.tensors.push_back(std::move(t));

    auto storage = std::make_shared<format::Storage>();
    storage->dtype = dtype;
    storage->numel = layout.numel;
    format::Tensor tensor;
    if (like && like->is_tensor()) {
      tensor = like->tensor;
      storage->location = like->tensor.storage ? like->tensor.storage->location : "cpu";
    }
    tensor.storage = storage;
    tensor.storage_offset = 0;
    tensor.shape = {static_cast<std::int64_t>(layout.numel)};
    tensor.stride = {1};
    pending_[storage.get()] = {index, layout.zeros};
    return Value::tensor_value(std::move(tensor));
  }

  Status add_file(const std::string& file_name, const ValuePtr& root) {
    const std::string name = src_.tag + "/" + file_name;
    Status s = build_tree_file(name, root, pending_, src_.locate, plan_, layout_);
    pending_.clear();
    return s;
  }

  static Result<ValuePtr> dict_entry(const ValuePtr& d, const std::string& key, const std::string& where) {
    ValuePtr v = d && d->is_dict() ? d->get(key) : nullptr;
    if (!v) return base::data_loss("optimizer template: " + where + " has no '" + key + "'");
    return v;
  }

  // A state entry of a new flat group: the template's entry (step and any other scalar) with the
  // moments replaced. Every tensor left in it gets a storage of its own, so no two groups share a
  // step counter that Adam increments in place.
  std::vector<std::uint64_t> numels_of(const std::vector<int>& params) const {
    std::vector<std::uint64_t> out;
    for (int p : params) out.push_back(src_.fp32[static_cast<std::size_t>(p)].numel());
    return out;
  }

  // Indices of group g's parameters in the flattened parameter list.
  std::vector<int> group_params(std::size_t g) const {
    int first = 0;
    for (std::size_t i = 0; i < g; ++i) first += static_cast<int>(src_.groups[i].size());
    std::vector<int> out(src_.groups[g].size());
    for (std::size_t i = 0; i < out.size(); ++i) out[i] = first + static_cast<int>(i);
    return out;
  }

  const std::string& param_name(int p) const { return src_.fp32[static_cast<std::size_t>(p)].name; }

  // ZeRO-1/2 and BF16_Optimizer: one optimizer file per new rank.
  Status flat_optimizer_file(int r) {
    const bool bf16_optimizer = src_.kind == format::DeepSpeedOptimizerKind::kBf16;
    ValuePtr top = shallow_copy(src_.optimizer);
    UCP_ASSIGN_OR_RETURN(ValuePtr osd_template, dict_entry(top, "optimizer_state_dict", "the root"));
    ValuePtr osd = shallow_copy(osd_template);
    UCP_ASSIGN_OR_RETURN(ValuePtr base_template, dict_entry(osd, "base_optimizer_state", "['optimizer_state_dict']"));
    UCP_ASSIGN_OR_RETURN(ValuePtr fp32_template, dict_entry(osd, "single_partition_of_fp32_groups", "['optimizer_state_dict']"));
    ValuePtr base = shallow_copy(base_template);
    UCP_ASSIGN_OR_RETURN(ValuePtr state_template, dict_entry(base, "state", "['base_optimizer_state']"));
    ValuePtr state = Value::dict();
    ValuePtr mapping_template = osd->get("param_slice_mappings");
    ValuePtr address_template = first_fragment_address(mapping_template);

    std::vector<ValuePtr> fp32s, paddings, counts, mappings;
    const std::string prefix = src_.tag + "/" + zero_optimizer_file_name(src_.optimizer_prefix, r);
    for (std::size_t g = 0; g < src_.groups.size(); ++g) {
      const std::vector<int> params = group_params(g);
      const std::vector<std::uint64_t> numels = numels_of(params);
      std::uint64_t total = 0;
      for (auto n : numels) total += n;
      const PartitionLayout lean = flat_partition(numels, target_, r, /*with_padding=*/bf16_optimizer);
      const PartitionLayout full = flat_partition(numels, target_, r, /*with_padding=*/true);
      const ValuePtr like = g < fp32_template->items.size() ? fp32_template->items[g] : nullptr;
      const std::string gs = std::to_string(g);
      UCP_ASSIGN_OR_RETURN(ValuePtr fp32, partition_tensor(prefix + ":fp32[" + gs + "]", src_.fp32, params, lean,
                                                           base::DType::kF32, like));
      fp32s.push_back(fp32);
      if (has_moments()) {
        ValuePtr entry = state_template->get(static_cast<std::int64_t>(g));
        if (!entry || !entry->is_dict()) return base::data_loss("optimizer template: no state for group " + gs);
        UCP_ASSIGN_OR_RETURN(ValuePtr fresh, repartitioned_state_entry(entry, prefix, gs, params, full));
        state->entries.emplace_back(Value::integer(static_cast<std::int64_t>(g)), fresh);
      }
      const std::uint64_t padding = bf16_optimizer ? (r == target_ - 1 ? flat_partition_size(total, target_) * target_ - total : 0)
                                                   : flat_partition_padding(total, target_, r);
      paddings.push_back(Value::integer(static_cast<std::int64_t>(padding)));
      counts.push_back(Value::integer(target_));
      // param_slice_mappings: every parameter intersecting the partition, in group order.
      ValuePtr mapping = Value::dict({}, /*ordered=*/true);
      for (const Segment& s : full.segments) {
        if (!address_template) return base::data_loss("optimizer template: no fragment_address to copy");
        ValuePtr address = shallow_copy(address_template);
        ValuePtr st = std::make_shared<Value>(*address->object.state);
        st->set("numel", Value::integer(static_cast<std::int64_t>(s.numel)));
        st->set("start", Value::integer(static_cast<std::int64_t>(s.dst_offset)));
        address->object.state = st;
        mapping->entries.emplace_back(Value::string(param_name(params[static_cast<std::size_t>(s.param)])), address);
      }
      mappings.push_back(mapping);
    }
    base->set("state", state);
    osd->set("base_optimizer_state", base);
    osd->set("single_partition_of_fp32_groups", Value::list(std::move(fp32s)));
    if (osd->get("group_paddings")) osd->set("group_paddings", Value::list(std::move(paddings)));
    if (osd->get("partition_count")) osd->set("partition_count", Value::list(std::move(counts)));
    if (mapping_template) osd->set("param_slice_mappings", Value::list(std::move(mappings)));
    top->set("optimizer_state_dict", osd);
    return add_file(zero_optimizer_file_name(src_.optimizer_prefix, r), top);
  }

  static ValuePtr first_fragment_address(const ValuePtr& mappings) {
    if (!mappings) return nullptr;
    for (const auto& m : mappings->items)
      if (m && m->is_dict())
        for (const auto& [k, v] : m->entries)
          if (v && v->kind == Value::Kind::kObject && v->object.state && v->object.state->is_dict()) return v;
    return nullptr;
  }

  // ZeRO-3: the optimizer file and the model-state file of new rank r.
  Status zero3_files(int r) {
    UCP_ASSIGN_OR_RETURN(std::vector<ValuePtr> shapes, zero3_optimizer_file(r));
    return zero3_model_file(r, std::move(shapes));
  }

  // ZeRO-3: new rank r's optimizer file; returns its sub-groups' param_shapes for the model file.
  Result<std::vector<ValuePtr>> zero3_optimizer_file(int r) {
    ValuePtr top = shallow_copy(src_.optimizer);
    UCP_ASSIGN_OR_RETURN(ValuePtr osd_template, dict_entry(top, "optimizer_state_dict", "the root"));
    ValuePtr osd = shallow_copy(osd_template);
    UCP_ASSIGN_OR_RETURN(ValuePtr inner_template, dict_entry(osd, "optimizer_state_dict", "['optimizer_state_dict']"));
    ValuePtr inner = shallow_copy(inner_template);
    UCP_ASSIGN_OR_RETURN(ValuePtr state_template, dict_entry(inner, "state", "['optimizer_state_dict']['optimizer_state_dict']"));
    UCP_ASSIGN_OR_RETURN(ValuePtr groups_template, dict_entry(inner, "param_groups", "['optimizer_state_dict']['optimizer_state_dict']"));
    UCP_ASSIGN_OR_RETURN(ValuePtr flat_template, dict_entry(osd, "fp32_flat_groups", "['optimizer_state_dict']"));
    if (groups_template->items.size() != src_.groups.size())
      return base::data_loss("optimizer template: " + std::to_string(groups_template->items.size()) + " param groups, expected " +
                             std::to_string(src_.groups.size()));

    const std::string prefix = src_.tag + "/" + zero_optimizer_file_name(src_.optimizer_prefix, r);
    ValuePtr state = Value::dict();
    std::vector<ValuePtr> flats, param_groups, shapes;
    int k = 0;
    for (std::size_t g = 0; g < src_.groups.size(); ++g) {
      const std::vector<int> params = group_params(g);
      ValuePtr group = shallow_copy(groups_template->items[g]);
      UCP_ASSIGN_OR_RETURN(ValuePtr old_ids, dict_entry(group, "params", "param_groups[" + std::to_string(g) + "]"));
      std::vector<ValuePtr> ids;
      for (const std::vector<int>& sub : zero3_sub_groups(numels_of(params), target_, src_.sub_group_size)) {
        std::vector<int> members;
        ValuePtr shape_dict = Value::dict({}, /*ordered=*/true);
        for (int i : sub) {
          const int p = params[static_cast<std::size_t>(i)];
          members.push_back(p);
          shape_dict->entries.emplace_back(Value::string(param_name(p)),
                                           Value::size(src_.fp32[static_cast<std::size_t>(p)].shape));
        }
        const PartitionLayout layout = zero3_partition(numels_of(members), target_, r);
        const std::string ks = std::to_string(k);
        const ValuePtr like = flat_template->items.empty() ? nullptr : flat_template->items.front();
        UCP_ASSIGN_OR_RETURN(ValuePtr fp32, partition_tensor(prefix + ":fp32[" + ks + "]", src_.fp32, members, layout,
                                                             base::DType::kF32, like));
        flats.push_back(fp32);
        if (has_moments()) {
          // Steps and other scalars come from the source's first sub-group of this param group.
          ValuePtr entry = old_ids->items.empty() ? nullptr : state_template->get(old_ids->items.front()->i);
          if (!entry || !entry->is_dict()) return base::data_loss("optimizer template: no state for param group " + std::to_string(g));
          UCP_ASSIGN_OR_RETURN(ValuePtr fresh, repartitioned_state_entry(entry, prefix, ks, members, layout));
          state->entries.emplace_back(Value::integer(k), fresh);
        }
        ids.push_back(Value::integer(k));
        shapes.push_back(shape_dict);
        ++k;
      }
      group->set("params", Value::list(std::move(ids)));
      param_groups.push_back(group);
    }
    inner->set("state", state);
    inner->set("param_groups", Value::list(std::move(param_groups)));
    osd->set("optimizer_state_dict", inner);
    osd->set("fp32_flat_groups", Value::list(std::move(flats)));
    osd->set("partition_count", Value::integer(target_));
    top->set("optimizer_state_dict", osd);
    UCP_RETURN_IF_ERROR(add_file(zero_optimizer_file_name(src_.optimizer_prefix, r), top));
    return shapes;
  }

  // ZeRO-3: new rank r's model-state file: the source rank r mod N's file (its client state), with
  // the new sub-groups' param_shapes and re-cut frozen fragments.
  Status zero3_model_file(int r, std::vector<ValuePtr> shapes) {
    const ValuePtr& model_template = src_.models[static_cast<std::size_t>(r) % src_.models.size()];
    ValuePtr model = shallow_copy(model_template);
    model->set("dp_world_size", Value::integer(target_));
    model->set("param_shapes", Value::list(std::move(shapes)));
    if (model->get("shared_params"))
      model->set("shared_params", r == 0 ? src_.models[0]->get("shared_params") : Value::dict());
    if (ValuePtr fragments_template = model->get("frozen_param_fragments"); fragments_template && fragments_template->is_dict()) {
      ValuePtr fragments = shallow_copy(fragments_template);
      fragments->entries.clear();
      const std::string model_prefix = src_.tag + "/" + zero_model_file_name(true, r);
      for (std::size_t f = 0; f < src_.frozen.size(); ++f) {
        const LogicalTensor& frozen = src_.frozen[f];
        const PartitionLayout layout = zero3_partition({frozen.numel()}, target_, r);
        ValuePtr like = fragments_template->get(frozen.name);
        UCP_ASSIGN_OR_RETURN(ValuePtr t, partition_tensor(model_prefix + ":" + frozen.name, src_.frozen, {static_cast<int>(f)},
                                                          layout, frozen.dtype, like));
        fragments->entries.emplace_back(Value::string(frozen.name), t);
      }
      model->set("frozen_param_fragments", fragments);
    }
    return add_file(zero_model_file_name(true, r), model);
  }

  const ParamStates& src_;
  const int target_;
  FilePlan plan_;
  SourceLayout layout_;
  std::map<const format::Storage*, PlannedStorage> pending_;  // planned storages of the file being built
};

}  // namespace

Result<FilePlan> plan_zero_files(const ParamStates& source, int target_dp, const PlanOptions& options) {
  ZeroFilesPlanner planner(source, target_dp);
  return planner.run(options);
}

}  // namespace ucp::plan
