#include "ucp/format/zero_checkpoint.h"

#include <nlohmann/json.hpp>
#include <algorithm>
#include <set>

#include "ucp/base/checked_math.h"
#include "ucp/format/torch_file.h"

namespace ucp::format {
using base::Result;
using base::Status;
using Json = nlohmann::json;

std::uint64_t NamedShape::numel() const { return base::checked_numel(shape).value_or(0); }

namespace {

// Everything below reads an untrusted tree: each accessor names the file and the key path.
struct Reader {
  const TorchFile& file;
  std::uint32_t index;

  Status error(const std::string& where, const std::string& what) const {
    return base::data_loss("'" + file.path() + "': " + where + ": " + what);
  }

  Result<ValuePtr> dict_at(const ValuePtr& d, const std::string& key, const std::string& where) const {
    ValuePtr v = d && d->is_dict() ? d->get(key) : nullptr;
    if (!v) return error(where, "missing key '" + key + "'");
    return v;
  }

  Result<TensorLocation> location(const ValuePtr& v, const std::string& where) const {
    if (!v || !v->is_tensor()) return error(where, "expected a tensor, found " + (v ? v->type_name() : "nothing"));
    const Tensor& t = v->tensor;
    TensorLocation loc;
    loc.file = index;
    loc.dtype = t.dtype();
    loc.numel = t.numel();
    if (loc.numel == 0) return loc;
    if (!t.is_contiguous())
      return base::unimplemented("'" + file.path() + "': " + where + ": tensor is not contiguous (strides not row-major)");
    const std::byte* base_ptr = file.zip().file()->bytes().data();
    loc.offset = static_cast<std::uint64_t>(t.storage->bytes.data() - base_ptr) +
                 static_cast<std::uint64_t>(t.storage_offset) * base::dtype_size(loc.dtype);
    return loc;
  }

  Result<std::vector<NamedShape>> shapes(const ValuePtr& d, const std::string& where) const {
    std::vector<NamedShape> out;
    if (!d->is_dict()) return error(where, "expected a dict of name -> torch.Size, found " + d->type_name());
    for (const auto& [k, v] : d->entries) {
      auto dims = shape_of(v);
      if (!k->is_str() || !dims) return error(where, "expected name -> torch.Size entries");
      if (!base::checked_numel(*dims)) return error(where, "parameter '" + k->str + "' has an impossible shape");
      out.push_back({k->str, *dims});
    }
    return out;
  }

  Result<std::vector<NamedTensor>> tensors(const ValuePtr& d, const std::string& where) const {
    std::vector<NamedTensor> out;
    if (!d->is_dict()) return error(where, "expected a dict of name -> tensor, found " + d->type_name());
    for (const auto& [k, v] : d->entries) {
      if (!k->is_str()) return error(where, "expected string keys");
      UCP_ASSIGN_OR_RETURN(TensorLocation loc, location(v, where + "['" + k->str + "']"));
      out.push_back({k->str, v->tensor.shape, loc});
    }
    return out;
  }
};

Json loc_json(const TensorLocation& l) {
  return Json::array({l.file, l.offset, l.numel, std::string(base::dtype_name(l.dtype))});
}

TensorLocation loc_from(const Json& j) {
  TensorLocation l;
  l.file = j.at(0).get<std::uint32_t>();
  l.offset = j.at(1).get<std::uint64_t>();
  l.numel = j.at(2).get<std::uint64_t>();
  const std::string name = j.at(3).get<std::string>();
  for (base::DType t : base::kAllDTypes)
    if (base::dtype_name(t) == name) l.dtype = t;
  return l;
}

Json locs_json(const std::vector<TensorLocation>& v) {
  Json a = Json::array();
  for (const auto& l : v) a.push_back(loc_json(l));
  return a;
}

std::vector<TensorLocation> locs_from(const Json& j) {
  std::vector<TensorLocation> v;
  for (const auto& e : j) v.push_back(loc_from(e));
  return v;
}

Json shapes_json(const std::vector<NamedShape>& v) {
  Json a = Json::array();
  for (const auto& s : v) a.push_back(Json::array({s.name, s.shape}));
  return a;
}

std::vector<NamedShape> shapes_from(const Json& j) {
  std::vector<NamedShape> v;
  for (const auto& e : j) v.push_back({e.at(0).get<std::string>(), e.at(1).get<std::vector<std::int64_t>>()});
  return v;
}

Json tensors_json(const std::vector<NamedTensor>& v) {
  Json a = Json::array();
  for (const auto& t : v) a.push_back(Json::array({t.name, t.shape, loc_json(t.location)}));
  return a;
}

Json partition_states_json(const std::vector<std::vector<std::pair<std::string, TensorLocation>>>& groups) {
  Json a = Json::array();
  for (const auto& group : groups) {
    Json g = Json::array();
    for (const auto& [key, loc] : group) g.push_back(Json::array({key, loc_json(loc)}));
    a.push_back(std::move(g));
  }
  return a;
}

std::vector<NamedTensor> tensors_from(const Json& j) {
  std::vector<NamedTensor> v;
  for (const auto& e : j)
    v.push_back({e.at(0).get<std::string>(), e.at(1).get<std::vector<std::int64_t>>(), loc_from(e.at(2))});
  return v;
}

}  // namespace

Result<OptimFileMeta> extract_optim_meta(const std::string& path, std::uint32_t file_index) {
  UCP_ASSIGN_OR_RETURN(TorchFile file, TorchFile::open(path));
  Reader r{file, file_index};
  OptimFileMeta meta;
  UCP_ASSIGN_OR_RETURN(ValuePtr osd, r.dict_at(file.root(), "optimizer_state_dict", "top level"));
  if (!osd->is_dict()) return r.error("optimizer_state_dict", "expected a dict, found " + osd->type_name());

  if (ValuePtr stage = osd->get("zero_stage")) {
    meta.zero_stage = decode_zero_stage(stage);
    if (meta.zero_stage < 1 || meta.zero_stage > 3) return r.error("optimizer_state_dict['zero_stage']", "unrecognised value");
  }
  UCP_ASSIGN_OR_RETURN(ValuePtr pc, r.dict_at(osd, "partition_count", "optimizer_state_dict"));
  if (pc->is_int()) {
    meta.partition_count = pc->i;
  } else if (pc->kind == Value::Kind::kList || pc->kind == Value::Kind::kTuple) {
    for (const auto& v : pc->items)
      if (v->is_int()) meta.partition_count = std::max(meta.partition_count, v->i);
  } else {
    return r.error("optimizer_state_dict['partition_count']", "expected an int or a list of ints");
  }

  if (ValuePtr v = osd->get("ds_zero_partition_groups"); v && v->kind != Value::Kind::kNone)
    return base::unimplemented("'" + path + "' records 'ds_zero_partition_groups': ZeRO-3 partitioned over "
                               "expert groups (AutoEP) is not supported yet");
  const bool zero3 = meta.zero_stage == 3;
  const std::string fp32_key = zero3 ? "fp32_flat_groups" : "single_partition_of_fp32_groups";
  UCP_ASSIGN_OR_RETURN(ValuePtr groups, r.dict_at(osd, fp32_key, "optimizer_state_dict"));
  if (groups->kind != Value::Kind::kList && groups->kind != Value::Kind::kTuple)
    return r.error("optimizer_state_dict['" + fp32_key + "']", "expected a list of tensors");
  for (std::size_t g = 0; g < groups->items.size(); ++g) {
    UCP_ASSIGN_OR_RETURN(TensorLocation loc, r.location(groups->items[g], fp32_key + "[" + std::to_string(g) + "]"));
    meta.fp32.push_back(loc);
  }
  if (!zero3) {
    UCP_ASSIGN_OR_RETURN(ValuePtr pads, r.dict_at(osd, "group_paddings", "optimizer_state_dict"));
    for (const auto& v : pads->items) {
      if (!v->is_int() || v->i < 0) return r.error("optimizer_state_dict['group_paddings']", "expected non-negative ints");
      meta.group_paddings.push_back(v->i);
    }
    if (meta.group_paddings.size() != meta.fp32.size())
      return r.error("optimizer_state_dict['group_paddings']", "has " + std::to_string(meta.group_paddings.size()) +
                                                                    " entries, expected one per group (" + std::to_string(meta.fp32.size()) + ")");
  }

  // Optimizer state: rigid {'state': {g: {...}}} or elastic [ {...} per group ].
  ValuePtr inner = osd->get(zero3 ? "optimizer_state_dict" : "base_optimizer_state");
  std::vector<ValuePtr> per_group(meta.fp32.size());
  if (inner && inner->is_dict()) {
    if (ValuePtr state = inner->get("state"); state && state->is_dict())
      for (const auto& [k, v] : state->entries)
        if (k->is_int() && k->i >= 0 && static_cast<std::size_t>(k->i) < per_group.size()) per_group[static_cast<std::size_t>(k->i)] = v;
  } else if (inner && inner->kind == Value::Kind::kList) {
    for (std::size_t g = 0; g < inner->items.size() && g < per_group.size(); ++g) per_group[g] = inner->items[g];
  }
  for (std::size_t g = 0; g < per_group.size(); ++g) {
    std::vector<std::string> keys;
    std::vector<std::pair<std::string, TensorLocation>> partitioned;
    if (per_group[g] && per_group[g]->is_dict()) {
      for (const auto& [k, v] : per_group[g]->entries) {
        keys.push_back(k->is_str() ? k->str : k->type_name());
        if (!k->is_str() || !v->is_tensor() || v->tensor.shape.empty()) continue;
        UCP_ASSIGN_OR_RETURN(TensorLocation loc,
                             r.location(v, "optimizer state[" + std::to_string(g) + "]['" + k->str + "']"));
        partitioned.emplace_back(k->str, loc);
      }
    }
    meta.state_keys.push_back(std::move(keys));
    meta.partition_states.push_back(std::move(partitioned));
  }
  return meta;
}

Result<ModelFileMeta> extract_model_meta(const std::string& path, std::uint32_t file_index) {
  UCP_ASSIGN_OR_RETURN(TorchFile file, TorchFile::open(path));
  return extract_model_meta(file, file_index);
}

Result<ModelFileMeta> extract_model_meta(const TorchFile& file, std::uint32_t file_index) {
  Reader r{file, file_index};
  const ValuePtr& root = file.root();
  if (!root->is_dict()) return r.error("top level", "expected a dict, found " + root->type_name());
  ModelFileMeta meta;

  for (const char* key : {"num_experts", "ds_autoep_layers"})
    if (ValuePtr v = root->get(key); v && v->kind != Value::Kind::kNone)
      return base::unimplemented("'" + file.path() + "' records '" + key +
                                 "': mixture-of-experts checkpoints (deepspeed.moe, AutoEP) are not supported yet");
  UCP_ASSIGN_OR_RETURN(ValuePtr ps, r.dict_at(root, "param_shapes", "top level"));
  if (ps->is_dict()) {
    // DeepSpeed < 0.5.4 wrote a single OrderedDict.
    UCP_ASSIGN_OR_RETURN(auto group, r.shapes(ps, "param_shapes"));
    meta.param_shapes.push_back(std::move(group));
  } else if (ps->kind == Value::Kind::kList || ps->kind == Value::Kind::kTuple) {
    for (std::size_t g = 0; g < ps->items.size(); ++g) {
      UCP_ASSIGN_OR_RETURN(auto group, r.shapes(ps->items[g], "param_shapes[" + std::to_string(g) + "]"));
      meta.param_shapes.push_back(std::move(group));
    }
  } else {
    return r.error("param_shapes", "expected a list of dicts, found " + ps->type_name());
  }
  if (ValuePtr f = root->get("frozen_param_shapes"); f && f->kind != Value::Kind::kNone) {
    meta.has_frozen_param_shapes = true;
    UCP_ASSIGN_OR_RETURN(meta.frozen_param_shapes, r.shapes(f, "frozen_param_shapes"));
  }
  if (ValuePtr s = root->get("shared_params"); s && s->is_dict()) {
    for (const auto& [k, v] : s->entries) {
      if (!k->is_str() || !v->is_str()) return r.error("shared_params", "expected str -> str entries");
      meta.shared_params.emplace_back(k->str, v->str);
    }
  }
  UCP_ASSIGN_OR_RETURN(ValuePtr bn, r.dict_at(root, "buffer_names", "top level"));
  for (const auto& v : bn->items) {
    if (!v->is_str()) return r.error("buffer_names", "expected a list of str");
    meta.buffer_names.push_back(v->str);
  }
  UCP_ASSIGN_OR_RETURN(ValuePtr module, r.dict_at(root, "module", "top level"));
  if (module->kind == Value::Kind::kNone)
    return base::unimplemented("'" + file.path() + "': 'module' is None: a pipeline-parallel checkpoint (weights in layer_* files), not supported yet");
  UCP_ASSIGN_OR_RETURN(meta.module, r.tensors(module, "module"));
  if (ValuePtr f = root->get("frozen_param_fragments"); f && f->kind != Value::Kind::kNone) {
    UCP_ASSIGN_OR_RETURN(meta.frozen_fragments, r.tensors(f, "frozen_param_fragments"));
  }
  if (ValuePtr v = root->get("dp_world_size"); v && v->is_int()) meta.dp_world_size = v->i;
  if (ValuePtr v = root->get("mp_world_size"); v && v->is_int()) meta.mp_world_size = v->i;
  if (ValuePtr v = root->get("ds_version"); v && v->is_str()) meta.ds_version = v->str;
  return meta;
}

std::vector<std::string> zero_checkpoint_paths(const DeepSpeedCheckpointFiles& files) {
  std::vector<std::string> paths = files.model_state_files;
  paths.insert(paths.end(), files.optim_files.begin(), files.optim_files.end());
  return paths;
}

std::string to_json(const OptimFileMeta& m) {
  return Json{{"zero_stage", m.zero_stage}, {"partition_count", m.partition_count}, {"fp32", locs_json(m.fp32)},
              {"group_paddings", m.group_paddings}, {"state_keys", m.state_keys},
              {"partition_states", partition_states_json(m.partition_states)}}
      .dump();
}

std::string to_json(const ModelFileMeta& m) {
  Json ps = Json::array();
  for (const auto& g : m.param_shapes) ps.push_back(shapes_json(g));
  return Json{{"param_shapes", ps}, {"has_frozen_param_shapes", m.has_frozen_param_shapes},
              {"frozen_param_shapes", shapes_json(m.frozen_param_shapes)}, {"shared_params", m.shared_params},
              {"buffer_names", m.buffer_names}, {"module", tensors_json(m.module)},
              {"frozen_fragments", tensors_json(m.frozen_fragments)}, {"dp_world_size", m.dp_world_size},
              {"mp_world_size", m.mp_world_size}, {"ds_version", m.ds_version}}
      .dump();
}

Result<OptimFileMeta> optim_meta_from_json(std::string_view text) {
  try {
    Json j = Json::parse(text);
    OptimFileMeta m;
    m.zero_stage = j.at("zero_stage").get<int>();
    m.partition_count = j.at("partition_count").get<std::int64_t>();
    m.fp32 = locs_from(j.at("fp32"));
    m.group_paddings = j.at("group_paddings").get<std::vector<std::int64_t>>();
    m.state_keys = j.at("state_keys").get<std::vector<std::vector<std::string>>>();
    for (const auto& group : j.at("partition_states")) {
      m.partition_states.emplace_back();
      for (const auto& e : group) m.partition_states.back().emplace_back(e.at(0).get<std::string>(), loc_from(e.at(1)));
    }
    return m;
  } catch (const std::exception& e) {
    return base::internal_error(std::string("malformed optimizer metadata from a peer rank: ") + e.what());
  }
}

Result<ModelFileMeta> model_meta_from_json(std::string_view text) {
  try {
    Json j = Json::parse(text);
    ModelFileMeta m;
    for (const auto& g : j.at("param_shapes")) m.param_shapes.push_back(shapes_from(g));
    m.has_frozen_param_shapes = j.at("has_frozen_param_shapes").get<bool>();
    m.frozen_param_shapes = shapes_from(j.at("frozen_param_shapes"));
    m.shared_params = j.at("shared_params").get<std::vector<std::pair<std::string, std::string>>>();
    m.buffer_names = j.at("buffer_names").get<std::vector<std::string>>();
    m.module = tensors_from(j.at("module"));
    m.frozen_fragments = tensors_from(j.at("frozen_fragments"));
    m.dp_world_size = j.at("dp_world_size").get<std::int64_t>();
    m.mp_world_size = j.at("mp_world_size").get<std::int64_t>();
    m.ds_version = j.at("ds_version").get<std::string>();
    return m;
  } catch (const std::exception& e) {
    return base::internal_error(std::string("malformed model metadata from a peer rank: ") + e.what());
  }
}

Result<ZeroCheckpoint> assemble_zero_checkpoint(DeepSpeedCheckpointFiles files, std::vector<ModelFileMeta> models,
                                                std::vector<OptimFileMeta> optims) {
  ZeroCheckpoint ck;
  ck.paths = zero_checkpoint_paths(files);
  if (files.mp_size != 1 || !files.layer_files.empty())
    return base::unimplemented("'" + files.tag_dir + "' is a tensor/pipeline-parallel checkpoint (" +
                               std::to_string(files.mp_size) + " model-parallel ranks" +
                               (files.layer_files.empty() ? "" : ", pipeline layer files") +
                               "): only model-parallel size 1 is supported so far");
  ck.dp = files.dp_size;
  if (optims.size() != static_cast<std::size_t>(ck.dp) || models.empty())
    return base::internal_error("assemble_zero_checkpoint: metadata count does not match the files");
  ck.zero_stage = optims[0].zero_stage;
  ck.kind = ck.zero_stage == 0 ? DeepSpeedOptimizerKind::kBf16
            : ck.zero_stage == 3 ? DeepSpeedOptimizerKind::kZero3 : DeepSpeedOptimizerKind::kZero12;
  const std::size_t groups = optims[0].fp32.size();
  for (int r = 0; r < ck.dp; ++r) {
    const OptimFileMeta& o = optims[static_cast<std::size_t>(r)];
    const std::string& path = files.optim_files[static_cast<std::size_t>(r)];
    if (o.zero_stage != ck.zero_stage)
      return base::failed_precondition("'" + path + "' has zero_stage " + std::to_string(o.zero_stage) + " but '" +
                                       files.optim_files[0] + "' has " + std::to_string(ck.zero_stage) + ": files from two runs");
    if (o.partition_count != ck.dp)
      return base::failed_precondition("'" + path + "' was written for " + std::to_string(o.partition_count) +
                                       " data-parallel ranks (partition_count), but the checkpoint has " +
                                       std::to_string(ck.dp) + " optimizer files (up to '" + files.optim_files.back() +
                                       "'): files from two world sizes or two runs");
    if (o.fp32.size() != groups)
      return base::failed_precondition("'" + path + "' has " + std::to_string(o.fp32.size()) + " fp32 groups, expected " +
                                       std::to_string(groups) + " like rank 0");
  }
  if (files.zero3_model_files != (ck.kind == DeepSpeedOptimizerKind::kZero3))
    return base::data_loss("'" + files.optim_files[0] + "': zero_stage " + std::to_string(ck.zero_stage) +
                           " does not match the model-state file layout of '" + files.tag_dir + "'");
  for (std::size_t i = 0; i < models.size(); ++i) {
    const ModelFileMeta& m = models[i];
    if (m.dp_world_size != ck.dp)
      return base::failed_precondition("'" + files.model_state_files[i] + "' records dp_world_size=" +
                                       std::to_string(m.dp_world_size) + " but '" + files.tag_dir +
                                       "' holds optimizer files for " + std::to_string(ck.dp) + " ranks");
    if (m.mp_world_size != 1)
      return base::unimplemented("'" + files.model_state_files[i] + "' records mp_world_size=" +
                                 std::to_string(m.mp_world_size) + ": tensor/pipeline parallelism is not supported yet");
  }
  if (models[0].param_shapes.size() != groups)
    return base::data_loss("'" + files.model_state_files[0] + "' lists " + std::to_string(models[0].param_shapes.size()) +
                           " parameter groups in param_shapes, but the optimizer files have " + std::to_string(groups));
  ck.files = std::move(files);
  ck.models = std::move(models);
  ck.optims = std::move(optims);
  return ck;
}

std::string optim_file_label(const ZeroCheckpoint& ck, std::size_t r) {
  return r < ck.files.optim_files.size() ? "'" + ck.files.optim_files[r] + "'" : "rank " + std::to_string(r) + "'s optimizer file";
}

Status check_adam_optimizer_state(const ZeroCheckpoint& ck) {
  static const std::set<std::string> kAdam = {"exp_avg", "exp_avg_sq", "step"};
  bool any_state = false;
  for (const auto& o : ck.optims)
    for (const auto& keys : o.state_keys) any_state = any_state || !keys.empty();
  if (!any_state) return Status();  // no optimizer step yet: nothing to carry
  for (std::size_t r = 0; r < ck.optims.size(); ++r) {
    const auto& groups = ck.optims[r].state_keys;
    for (std::size_t g = 0; g < groups.size(); ++g) {
      const std::set<std::string> keys(groups[g].begin(), groups[g].end());
      const bool adam = keys.count("exp_avg") && keys.count("exp_avg_sq") &&
                        std::all_of(keys.begin(), keys.end(), [](const std::string& k) { return kAdam.count(k) > 0; });
      if (adam) continue;
      std::string list;
      for (const auto& k : groups[g]) list += (list.empty() ? "'" : ", '") + k + "'";
      return base::unimplemented(optim_file_label(ck, r) + ": optimizer state of flat group " + std::to_string(g) + " holds " +
                                 (list.empty() ? std::string("nothing while other groups hold state") : list) +
                                 ", not Adam's exp_avg/exp_avg_sq/step: only Adam-family optimizer state can be "
                                 "re-partitioned (SGD momentum, Muon, Lion, Adagrad, AMSGrad are refused rather than lost)");
    }
  }
  return Status();
}

std::uint64_t moment_partition_numel(const ZeroCheckpoint& ck, const OptimFileMeta& o, std::size_t g) {
  std::uint64_t n = g < o.fp32.size() ? o.fp32[g].numel : 0;
  if (ck.kind == DeepSpeedOptimizerKind::kZero12 && g < o.group_paddings.size())
    n += static_cast<std::uint64_t>(o.group_paddings[g]);
  return n;
}

Status check_partitioned_optimizer_state(const ZeroCheckpoint& ck) {
  for (std::size_t r = 0; r < ck.optims.size(); ++r) {
    const OptimFileMeta& o = ck.optims[r];
    const std::string file = optim_file_label(ck, r);
    for (std::size_t g = 0; g < o.partition_states.size(); ++g) {
      const std::uint64_t want = moment_partition_numel(ck, o, g);
      for (const auto& [key, loc] : o.partition_states[g]) {
        if (loc.numel != want)
          return base::unimplemented(file + ": optimizer state '" + key + "' of flat group " + std::to_string(g) +
                                     " holds " + std::to_string(loc.numel) + " elements, but the group's partition has " +
                                     std::to_string(want) + ": it is not partitioned like the parameters (as Muon's "
                                     "momentum under ZeRO-1/2), so it cannot be re-partitioned");
      }
      if (r > 0 && g < ck.optims[0].state_keys.size() && o.state_keys[g] != ck.optims[0].state_keys[g])
        return base::data_loss(file + ": optimizer state of flat group " + std::to_string(g) +
                               " has other keys than rank 0's: files from two runs?");
    }
  }
  return Status();
}

Result<ZeroCheckpoint> read_zero_checkpoint(const std::string& path, const std::string& tag) {
  UCP_ASSIGN_OR_RETURN(DeepSpeedCheckpointFiles files, discover_deepspeed_checkpoint(path, tag));
  const std::vector<std::string> paths = zero_checkpoint_paths(files);
  std::vector<ModelFileMeta> models;
  std::vector<OptimFileMeta> optims;
  std::uint32_t index = 0;
  for (const auto& p : files.model_state_files) {
    UCP_ASSIGN_OR_RETURN(ModelFileMeta m, extract_model_meta(p, index++));
    models.push_back(std::move(m));
  }
  for (const auto& p : files.optim_files) {
    UCP_ASSIGN_OR_RETURN(OptimFileMeta o, extract_optim_meta(p, index++));
    optims.push_back(std::move(o));
  }
  return assemble_zero_checkpoint(std::move(files), std::move(models), std::move(optims));
}

}  // namespace ucp::format
