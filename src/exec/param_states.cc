#include "ucp/exec/param_states.h"

#include <algorithm>
#include <array>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <unordered_map>

#include "mapped_files.h"
#include "ucp/format/torch_file.h"
#include "ucp/plan/zero_partition.h"

namespace ucp::exec {
using base::Result;
using base::Status;
using format::ValuePtr;

namespace {

// ds_config as saved (a dict; a path string when the run was configured from a file).
ValuePtr config_entry(const ValuePtr& root, const std::string& section, const std::string& key) {
  ValuePtr config = root && root->is_dict() ? root->get("ds_config") : nullptr;
  ValuePtr s = config && config->is_dict() ? config->get(section) : nullptr;
  return s && s->is_dict() ? s->get(key) : nullptr;
}

// Round-robin gradients flatten in an order that depends on the DP size: not re-partitionable.
Status check_flattening_order(const ValuePtr& model_root, const std::string& path) {
  if (ValuePtr rr = config_entry(model_root, "zero_optimization", "round_robin_gradients"); rr && rr->b)
    return base::unimplemented("'" + path +
                               "': written with zero_optimization.round_robin_gradients=true, whose flattening order "
                               "depends on the DP size; re-partitioning it is not supported");
  return {};
}

// ZeRO-3: `shapes` (param_shapes) has one entry per sub-group; the inner optimizer's
// param_groups[g]['params'] lists the sub-groups of param group g, which follow each other in
// order. Sets src.groups, and src.sub_group_size from ds_config, checked to reproduce the source's
// own sub-groups at its DP size (the new ones are computed from it).
Status set_zero3_groups(plan::ParamStates& src, const std::vector<std::vector<format::NamedShape>>& shapes,
                        const ValuePtr& model_root, const std::string& optim_path, const std::string& model_path) {
  ValuePtr osd = src.optimizer->get("optimizer_state_dict");
  ValuePtr inner = osd && osd->is_dict() ? osd->get("optimizer_state_dict") : nullptr;
  ValuePtr groups = inner && inner->is_dict() ? inner->get("param_groups") : nullptr;
  if (!groups || groups->kind != format::Value::Kind::kList)
    return base::data_loss("'" + optim_path + "': ['optimizer_state_dict']['optimizer_state_dict'] has no 'param_groups' list");
  std::int64_t next = 0;
  std::vector<std::vector<std::vector<std::uint64_t>>> sub_numels;  // per group, per sub-group
  src.groups.clear();
  for (std::size_t g = 0; g < groups->items.size(); ++g) {
    ValuePtr ids = groups->items[g] && groups->items[g]->is_dict() ? groups->items[g]->get("params") : nullptr;
    if (!ids || ids->kind != format::Value::Kind::kList)
      return base::data_loss("'" + optim_path + "': param_groups[" + std::to_string(g) + "] has no 'params' list");
    src.groups.emplace_back();
    sub_numels.emplace_back();
    for (const ValuePtr& id : ids->items) {
      if (!id || !id->is_int() || id->i != next || static_cast<std::size_t>(id->i) >= shapes.size())
        return base::data_loss("'" + optim_path + "': param_groups[" + std::to_string(g) +
                               "]['params'] does not list the sub-groups in order (expected " + std::to_string(next) + ")");
      sub_numels.back().emplace_back();
      for (const auto& p : shapes[static_cast<std::size_t>(next)]) {
        src.groups.back().push_back(p);
        sub_numels.back().back().push_back(p.numel());
      }
      ++next;
    }
  }
  if (static_cast<std::size_t>(next) != shapes.size())
    return base::data_loss("'" + optim_path + "': param_groups list " + std::to_string(next) + " sub-groups, param_shapes has " +
                           std::to_string(shapes.size()));

  if (ValuePtr size = config_entry(model_root, "zero_optimization", "sub_group_size")) {
    if (size->is_int() && size->i > 0) src.sub_group_size = static_cast<std::uint64_t>(size->i);
    else if (size->kind == format::Value::Kind::kFloat && size->f >= 1) src.sub_group_size = static_cast<std::uint64_t>(size->f);
  }
  for (std::size_t g = 0; g < sub_numels.size(); ++g) {
    std::vector<std::uint64_t> numels;
    std::vector<std::size_t> sizes;
    for (const auto& sub : sub_numels[g]) {
      numels.insert(numels.end(), sub.begin(), sub.end());
      sizes.push_back(sub.size());
    }
    std::vector<std::size_t> expected;
    for (const auto& sub : plan::zero3_sub_groups(numels, src.dp, src.sub_group_size)) expected.push_back(sub.size());
    if (expected != sizes)
      return base::failed_precondition("'" + model_path + "': the ZeRO-3 sub-groups of param group " + std::to_string(g) +
                                       " do not follow from sub_group_size=" + std::to_string(src.sub_group_size) +
                                       " (ds_config); cannot recompute them for another DP size");
  }
  return {};
}

}  // namespace

Result<plan::ParamStates> param_states_from_zero(const format::ZeroCheckpoint& ck) {
  plan::ParamStates src;
  src.kind = ck.kind;
  src.zero_stage = ck.zero_stage;
  src.dp = ck.dp;
  src.tag = ck.files.tag.empty() ? std::filesystem::path(ck.files.tag_dir).filename().string() : ck.files.tag;
  src.paths = ck.paths;
  src.optimizer_prefix = ck.files.bf16_prefix ? "bf16_" : "";
  const bool zero3 = ck.kind == format::DeepSpeedOptimizerKind::kZero3;

  MappedFiles mapped;
  const std::size_t n_models = ck.files.model_state_files.size();
  for (std::size_t i = 0; i < n_models; ++i) {
    UCP_ASSIGN_OR_RETURN(format::TorchFile file, format::TorchFile::open(ck.paths[i]));
    mapped.add(static_cast<std::uint32_t>(i), file);
    src.models.push_back(file.root());
  }
  {
    UCP_ASSIGN_OR_RETURN(format::TorchFile file, format::TorchFile::open(ck.paths[n_models]));
    mapped.add(static_cast<std::uint32_t>(n_models), file);
    src.optimizer = file.root();
  }
  src.locate = mapped.locator();
  const std::string& optim_path = ck.paths[n_models];

  UCP_RETURN_IF_ERROR(check_flattening_order(src.models[0], ck.paths[0]));

  // Per-parameter states in param_shapes order: the fp32 masters (the pieces to-universal writes),
  // then every per-element optimizer state the files hold (Adam's moments, SGD's momentum, ...),
  // each re-partitioned with the parameters. One that cannot be is refused, never dropped.
  UCP_ASSIGN_OR_RETURN(src.fp32, plan::layout_optimizer_state(ck, plan::OptimizerState::kFp32));
  std::vector<std::string> keys;
  for (const auto& group : ck.optims[0].partition_states)
    for (const auto& [key, loc] : group)
      if (std::find(keys.begin(), keys.end(), key) == keys.end()) keys.push_back(key);
  for (const std::string& key : keys) {
    UCP_ASSIGN_OR_RETURN(std::vector<plan::LogicalTensor> tensors, plan::layout_partitioned_state(ck, key));
    src.moments.emplace_back(key, std::move(tensors));
  }
  if (std::count(keys.begin(), keys.end(), "exp_avg") != std::count(keys.begin(), keys.end(), "exp_avg_sq"))
    return base::data_loss("'" + optim_path + "': has exp_avg without exp_avg_sq (or the reverse)");

  const auto& shapes = ck.models[0].param_shapes;
  if (!zero3) {
    src.groups = shapes;
    return src;
  }

  UCP_RETURN_IF_ERROR(set_zero3_groups(src, shapes, src.models[0], optim_path, ck.paths[0]));

  // Frozen parameters, whole, from every rank's fragments.
  UCP_ASSIGN_OR_RETURN(plan::SourceLayout layout, plan::layout_model_tensors(ck, /*exclude_frozen=*/false));
  for (auto& t : layout.tensors)
    if (t.role == plan::TensorRole::kFrozen) src.frozen.push_back(std::move(t));
  return src;
}

}  // namespace ucp::exec

namespace ucp::exec {

namespace {

namespace fs = std::filesystem;

bool is_universal_folder(const fs::path& p) {
  std::error_code ec;
  return fs::is_regular_file(p / "zero" / "optimizer_state.pt", ec);
}

// Python-dict order of DeepSpeed's optimizer dict: the partitioned entries sit after 'clip_grad'
// (ZeRO-1/2 and BF16_Optimizer alike); universal's optimizer_state.pt dropped them.
ValuePtr with_entry_after(const ValuePtr& dict, const std::string& after, std::vector<std::pair<std::string, ValuePtr>> add) {
  auto out = std::make_shared<format::Value>(*dict);
  out->entries.clear();
  bool placed = false;
  for (const auto& e : dict->entries) {
    out->entries.push_back(e);
    if (!placed && e.first && e.first->is_str() && e.first->str == after) {
      for (auto& [k, v] : add) out->entries.emplace_back(format::Value::string(k), v);
      placed = true;
    }
  }
  if (!placed)
    for (auto& [k, v] : add) out->entries.emplace_back(format::Value::string(k), v);
  return out;
}

ValuePtr placeholder_tensor(bool requires_grad) {
  format::Tensor t = format::Tensor::from_bytes(base::DType::kF32, {0}, {});
  t.requires_grad = requires_grad;
  return format::Value::tensor_value(std::move(t));
}

ValuePtr fragment_address_template() {
  auto v = std::make_shared<format::Value>();
  v->kind = format::Value::Kind::kObject;
  v->object.callable = format::Value::global_ref("deepspeed.utils.tensor_fragment", "fragment_address");
  v->object.kind = format::BuildKind::kNewObj;
  v->object.args = format::Value::tuple({});
  v->object.state = format::Value::dict({{format::Value::string("numel"), format::Value::integer(0)},
                                         {format::Value::string("start"), format::Value::integer(0)}});
  return v;
}

}  // namespace

std::string find_universal_folder(const std::string& path, const std::string& tag) {
  const fs::path p(path);
  if (!tag.empty()) return is_universal_folder(p / tag) ? (p / tag).string() : std::string();
  if (is_universal_folder(p)) return p.string();
  std::ifstream latest(p / "latest_universal");
  std::string name;
  if (latest >> name && is_universal_folder(p / name)) return (p / name).string();
  return {};
}

namespace {

// A universal checkpoint folder on disk.
class FolderFiles final : public UniversalFiles {
 public:
  explicit FolderFiles(std::string folder) : folder_(std::move(folder)) {}
  const std::string& name() const override { return folder_; }
  std::string tag() const override {
    const std::string tag = fs::path(folder_).lexically_normal().filename().string();
    return tag.empty() ? fs::path(folder_).parent_path().filename().string() : tag;
  }
  Result<std::vector<std::string>> top_level_files() const override {
    std::vector<std::string> names;
    std::error_code ec;
    for (fs::directory_iterator it(folder_, ec), end; !ec && it != end; it.increment(ec))
      names.push_back(it->path().filename().string());
    if (ec) return base::not_found("'" + folder_ + "': cannot list: " + ec.message());
    return names;
  }
  bool exists(const std::string& relative) const override {
    std::error_code ec;
    return fs::exists(fs::path(folder_) / relative, ec);
  }
  Result<format::TorchFile> open(const std::string& relative) const override {
    return format::TorchFile::open((fs::path(folder_) / relative).string());
  }
  Result<std::optional<State>> state(const std::string& param, const std::string& state) const override {
    const std::string relative = "zero/" + param + "/" + state + ".pt";
    // Moments may be absent (no optimizer step yet); a missing fp32 file fails to open, by name.
    if (state != "fp32" && !exists(relative)) return std::optional<State>();
    UCP_ASSIGN_OR_RETURN(format::TorchFile file, open(relative));
    State out;
    out.file = std::move(file);
    return std::optional<State>(std::move(out));
  }

 private:
  std::string folder_;
};

}  // namespace

Result<plan::ParamStates> param_states_from_universal(const std::string& folder) {
  return param_states_from_universal(FolderFiles(folder));
}

namespace {

// Reads a universal checkpoint into per-parameter states, one job per step, in call order.
class UniversalReader {
 public:
  explicit UniversalReader(const UniversalFiles& files) : files_(files), folder_(files.name()) {
    src_.tag = files.tag();
    src_.locate = mapped_.locator();
  }

  Result<plan::ParamStates> read() {
    UCP_RETURN_IF_ERROR(read_model_files());
    UCP_RETURN_IF_ERROR(read_optimizer_file());
    UCP_RETURN_IF_ERROR(read_parameter_states());
    rebuild_optimizer_template();
    if (zero3_) {
      UCP_RETURN_IF_ERROR(set_zero3_groups(src_, meta_.param_shapes, src_.models[0], opt_path_, model_path_));
      UCP_RETURN_IF_ERROR(read_zero3_frozen());
    }
    return std::move(src_);
  }

 private:
  // Every file (or container of embedded files) gets one index in src_.paths.
  std::uint32_t index_of(const std::string& path) {
    auto [it, added] = indices_.try_emplace(path, static_cast<std::uint32_t>(src_.paths.size()));
    if (added) src_.paths.push_back(path);
    return it->second;
  }
  void add(const format::TorchFile& file) {
    const auto& m = file.zip().file();
    mapped_.add(index_of(m->parent() ? m->parent()->path() : m->path()), file);
  }
  Result<format::TorchFile> open(const std::string& relative) {
    auto file = files_.open(relative);
    if (file.ok()) add(*file);
    return file;
  }

  // The model-state copies: one mp_rank_00 file, or one ZeRO-3 file per source rank (sets zero3_).
  Result<std::vector<std::string>> model_file_names() {
    std::vector<std::string> zero3_files;
    bool flat_model = false;
    UCP_ASSIGN_OR_RETURN(std::vector<std::string> top_level, files_.top_level_files());
    for (const std::string& name : top_level) {
      if (name == "mp_rank_00_model_states.pt") flat_model = true;
      if (name.rfind("zero_pp_rank_", 0) == 0 && name.find("_mp_rank_00_model_states.pt") != std::string::npos)
        zero3_files.push_back(name);
    }
    std::sort(zero3_files.begin(), zero3_files.end(), [](const std::string& a, const std::string& b) {
      return std::stoi(a.substr(13)) < std::stoi(b.substr(13));
    });
    for (std::size_t r = 0; r < zero3_files.size(); ++r)
      if (zero3_files[r] != plan::zero_model_file_name(true, static_cast<int>(r)))
        return base::not_found("'" + folder_ + "': model-state files of ZeRO-3 ranks are not numbered 0.." +
                               std::to_string(zero3_files.size() - 1) + " (found '" + zero3_files[r] + "')");
    if (flat_model == !zero3_files.empty())
      return base::not_found("'" + folder_ + "': expected the model-state file copies of a universal checkpoint "
                             "(mp_rank_00_model_states.pt, or zero_pp_rank_<r>_mp_rank_00_model_states.pt for ZeRO-3)");
    zero3_ = !zero3_files.empty();
    if (!zero3_) return std::vector<std::string>{"mp_rank_00_model_states.pt"};
    return zero3_files;  // one per source rank, in rank order
  }

  Status read_model_files() {
    UCP_ASSIGN_OR_RETURN(const std::vector<std::string> names, model_file_names());
    std::optional<format::TorchFile> first_model;  // rank 0's, parsed once for its metadata too
    for (const auto& name : names) {
      UCP_ASSIGN_OR_RETURN(format::TorchFile f, open(name));
      src_.models.push_back(f.root());
      if (!first_model) first_model = std::move(f);
    }
    model_path_ = first_model->path();
    const ValuePtr& model = src_.models[0];
    if (!model || !model->is_dict()) return base::data_loss("'" + model_path_ + "': the root is not a dict");
    ValuePtr dp = model->get("dp_world_size");
    if (!dp || !dp->is_int() || dp->i < 1) return base::data_loss("'" + model_path_ + "': no valid 'dp_world_size'");
    src_.dp = static_cast<int>(dp->i);
    UCP_RETURN_IF_ERROR(check_flattening_order(model, model_path_));
    UCP_ASSIGN_OR_RETURN(meta_, format::extract_model_meta(*first_model, 0));
    if (zero3_ && src_.models.size() != static_cast<std::size_t>(src_.dp))
      return base::not_found("'" + folder_ + "': " + std::to_string(src_.models.size()) +
                             " ZeRO-3 model-state files, but dp_world_size is " + std::to_string(src_.dp));
    // The optimizer-file prefix follows bf16.enabled in the run's config.
    ValuePtr bf16 = config_entry(model, "bf16", "enabled");
    src_.optimizer_prefix = bf16 && bf16->kind == format::Value::Kind::kBool && bf16->b ? "bf16_" : "";
    return {};
  }

  // zero/optimizer_state.pt: rank 0's optimizer dict less its partitioned entries; the stage.
  Status read_optimizer_file() {
    UCP_ASSIGN_OR_RETURN(format::TorchFile opt_file, open("zero/optimizer_state.pt"));
    opt_path_ = opt_file.path();
    ValuePtr saved = opt_file.root();
    if (!saved || !saved->is_dict()) return base::data_loss("'" + opt_path_ + "': the root is not a dict");
    param_groups_ = saved->get("param_groups");
    if (!param_groups_ || param_groups_->kind != format::Value::Kind::kList)
      return base::data_loss("'" + opt_path_ + "': no 'param_groups' list");
    osd_ = std::make_shared<format::Value>(*saved);
    osd_->entries.clear();
    for (const auto& e : saved->entries)
      if (!(e.first && e.first->is_str() && e.first->str == "param_groups")) osd_->entries.push_back(e);
    if (zero3_) {
      src_.kind = format::DeepSpeedOptimizerKind::kZero3;
      src_.zero_stage = 3;
    } else if (ValuePtr stage = osd_->get("zero_stage")) {
      src_.kind = format::DeepSpeedOptimizerKind::kZero12;
      src_.zero_stage = format::decode_zero_stage(stage);
      if (src_.zero_stage != 1 && src_.zero_stage != 2)
        return base::data_loss("'" + opt_path_ + "': zero_stage " + std::to_string(src_.zero_stage) + " with a stage <= 2 layout");
    } else {
      src_.kind = format::DeepSpeedOptimizerKind::kBf16;
      src_.zero_stage = 0;
    }
    return {};
  }

  // Where state `state` of parameter `p` sits: a tensor (or {'param': tensor}) in a torch file, or
  // raw elements of a container.
  Result<format::TensorLocation> state_location(const format::NamedShape& p, const UniversalFiles::State& state,
                                                const std::string& what) {
    if (!state.file) {
      format::TensorLocation loc = state.raw;
      loc.file = index_of(state.raw_path);
      if (loc.numel != p.numel() || (loc.dtype != base::DType::kF32 && loc.dtype != base::DType::kBF16))
        return base::data_loss(what + " holds " + std::to_string(loc.numel) + " " + std::string(base::dtype_name(loc.dtype)) +
                               " elements, expected " + std::to_string(p.numel()) + " fp32 or bf16");
      return loc;
    }
    add(*state.file);
    const std::string f = state.file->path();
    ValuePtr root = state.file->root();
    ValuePtr t = root && root->is_dict() ? root->get("param") : root;
    if (!t || !t->is_tensor()) return base::data_loss("'" + f + "': expected a tensor or {'param': tensor}");
    const format::Tensor& tensor = t->tensor;
    if (tensor.numel() != p.numel())
      return base::data_loss("'" + f + "' holds " + std::to_string(tensor.numel()) + " elements, expected " +
                             std::to_string(p.numel()) + " for parameter '" + p.name +
                             "' (a known ds_to_universal defect at ZeRO-3; convert the ZeRO checkpoint instead)");
    // fp32, or bf16 where DeepSpeed kept bf16 master weights / optimizer states.
    if ((tensor.dtype() != base::DType::kF32 && tensor.dtype() != base::DType::kBF16) || !tensor.is_contiguous())
      return base::unimplemented("'" + f + "': expected a contiguous fp32 (or bf16) tensor");
    UCP_ASSIGN_OR_RETURN(format::TensorLocation loc, src_.locate(*tensor.storage));
    return loc.slice(static_cast<std::uint64_t>(tensor.storage_offset), tensor.numel());
  }

  // zero/<param>/{fp32,exp_avg,exp_avg_sq}.pt (and step.pt below ZeRO-3) of every parameter.
  Status read_parameter_states() {
    static constexpr const char* kStates[] = {"fp32", "exp_avg", "exp_avg_sq"};
    std::array<std::vector<plan::LogicalTensor>, 3> states;  // in param_shapes order
    steps_.assign(meta_.param_shapes.size(), {});
    bool all_moments = true;
    for (std::size_t g = 0; g < meta_.param_shapes.size(); ++g) {
      for (const auto& p : meta_.param_shapes[g]) {
        for (std::size_t s = 0; s < 3; ++s) {
          UCP_ASSIGN_OR_RETURN(std::optional<UniversalFiles::State> state, files_.state(p.name, kStates[s]));
          if (s > 0 && !state) {
            all_moments = false;
            continue;
          }
          const std::string what = "'" + folder_ + "': state " + kStates[s] + " of parameter '" + p.name + "'";
          if (!state) return base::not_found(what + " is missing");
          if (s > 0) any_moments_ = true;
          UCP_ASSIGN_OR_RETURN(const format::TensorLocation loc, state_location(p, *state, what));
          plan::LogicalTensor lt;
          lt.name = p.name;
          lt.shape = p.shape;
          lt.dtype = loc.dtype;
          if (p.numel() > 0) lt.pieces.push_back({loc, 0});
          states[s].push_back(std::move(lt));
        }
        const std::string step = "zero/" + p.name + "/step.pt";
        if (!zero3_ && files_.exists(step)) {
          UCP_ASSIGN_OR_RETURN(format::TorchFile file, open(step));
          steps_[g].push_back(file.root());
        }
      }
      src_.groups.push_back(meta_.param_shapes[g]);
    }
    if (any_moments_ && !all_moments) return base::not_found("'" + folder_ + "': some parameters have no exp_avg/exp_avg_sq files");
    src_.fp32 = std::move(states[0]);
    if (any_moments_) src_.moments = {{kStates[1], std::move(states[1])}, {kStates[2], std::move(states[2])}};
    return {};
  }

  // Below ZeRO-3, rank 0's dict rebuilt around the states: base_optimizer_state with one state
  // entry per group (step from step.pt, as DeepSpeed's universal loader restores it), and
  // placeholders the plan replaces for every new rank.
  ValuePtr rebuilt_flat_optimizer_dict() const {
    std::vector<std::pair<format::ValuePtr, format::ValuePtr>> state;
    std::vector<ValuePtr> fp32s;
    for (std::size_t g = 0; g < meta_.param_shapes.size(); ++g) {
      fp32s.push_back(placeholder_tensor(true));
      if (!any_moments_) continue;
      std::vector<std::pair<format::ValuePtr, format::ValuePtr>> entry;
      if (!steps_[g].empty()) entry.emplace_back(format::Value::string("step"), steps_[g].front());
      entry.emplace_back(format::Value::string("exp_avg"), placeholder_tensor(false));
      entry.emplace_back(format::Value::string("exp_avg_sq"), placeholder_tensor(false));
      state.emplace_back(format::Value::integer(static_cast<std::int64_t>(g)), format::Value::dict(std::move(entry)));
    }
    ValuePtr base = format::Value::dict({{format::Value::string("state"), format::Value::dict(std::move(state))},
                                         {format::Value::string("param_groups"), param_groups_}});
    ValuePtr rebuilt = with_entry_after(osd_, "clip_grad", {{"base_optimizer_state", base},
                                                             {"single_partition_of_fp32_groups", format::Value::list(std::move(fp32s))}});
    std::vector<ValuePtr> mappings(meta_.param_shapes.size(), format::Value::dict({}, true));
    mappings.front()->entries.emplace_back(format::Value::string(""), fragment_address_template());
    rebuilt->set("param_slice_mappings", format::Value::list(std::move(mappings)));
    return rebuilt;
  }

  // The optimizer-file template: {'optimizer_state_dict', 'ds_config', 'ds_version'}. At ZeRO-3 the
  // whole rank-0 dict was kept; sub-groups come from its inner param_groups.
  void rebuild_optimizer_template() {
    const ValuePtr& model = src_.models[0];
    ValuePtr ds_config = model->get("ds_config"), ds_version = model->get("ds_version");
    std::vector<std::pair<format::ValuePtr, format::ValuePtr>> top;
    top.emplace_back(format::Value::string("optimizer_state_dict"), zero3_ ? osd_ : rebuilt_flat_optimizer_dict());
    if (ds_config) top.emplace_back(format::Value::string("ds_config"), ds_config);
    if (ds_version) top.emplace_back(format::Value::string("ds_version"), ds_version);
    src_.optimizer = format::Value::dict(std::move(top));
  }

  // ZeRO-3 frozen parameters, from every source rank's fragments (model dtype).
  Status read_zero3_frozen() {
    for (const auto& fp : meta_.frozen_param_shapes) {
      plan::LogicalTensor lt;
      lt.name = fp.name;
      lt.shape = fp.shape;
      const std::uint64_t part = plan::zero3_partition_numel(fp.numel(), src_.dp);
      for (int r = 0; r < src_.dp; ++r) {
        ValuePtr frags = src_.models[static_cast<std::size_t>(r)]->get("frozen_param_fragments");
        ValuePtr t = frags && frags->is_dict() ? frags->get(fp.name) : nullptr;
        if (!t || !t->is_tensor() || t->tensor.numel() != part)
          return base::data_loss("'" + src_.paths[static_cast<std::size_t>(r)] + "': frozen_param_fragments['" + fp.name +
                                 "'] missing or not " + std::to_string(part) + " elements");
        lt.dtype = t->tensor.dtype();
        const std::uint64_t first = static_cast<std::uint64_t>(r) * part;
        const std::uint64_t have = first >= fp.numel() ? 0 : std::min(part, fp.numel() - first);
        if (have == 0) continue;
        UCP_ASSIGN_OR_RETURN(format::TensorLocation loc, src_.locate(*t->tensor.storage));
        lt.pieces.push_back({loc.slice(static_cast<std::uint64_t>(t->tensor.storage_offset), have), first});
      }
      src_.frozen.push_back(std::move(lt));
    }
    return {};
  }

  const UniversalFiles& files_;
  const std::string folder_;
  plan::ParamStates src_;
  MappedFiles mapped_;
  std::unordered_map<std::string, std::uint32_t> indices_;
  bool zero3_ = false;
  bool any_moments_ = false;
  format::ModelFileMeta meta_;  // rank 0's model-state file
  std::string model_path_, opt_path_;
  ValuePtr osd_;           // optimizer_state.pt less param_groups
  ValuePtr param_groups_;
  std::vector<std::vector<ValuePtr>> steps_;  // per group: the step.pt roots
};

}  // namespace

Result<plan::ParamStates> param_states_from_universal(const UniversalFiles& files) {
  return UniversalReader(files).read();
}

}  // namespace ucp::exec
