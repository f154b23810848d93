#include "universal_extras.h"


#include <filesystem>

#include "ucp/exec/file_io.h"
#include "mapped_files.h"
#include "ucp/format/torch_file.h"
#include "ucp/format/value.h"

namespace ucp::exec {
using base::Status;
using format::Value;
using format::ValuePtr;
namespace fs = std::filesystem;

namespace {

Status require_dict(const ValuePtr& v, const std::string& path, const std::string& where) {
  if (!v || !v->is_dict()) return base::data_loss("'" + path + "': " + where + " is missing or not a dict");
  return {};
}

// A fresh copy of a step value: a tensor gets its own one-element storage (the original may view
// a larger one); python numbers are written as they are, as torch.save(value) would.
ValuePtr fresh_step(const ValuePtr& step) {
  if (!step->is_tensor()) return step;
  format::Tensor t = format::Tensor::from_bytes(step->tensor.dtype(), step->tensor.shape, format::tensor_bytes(step->tensor));
  t.requires_grad = step->tensor.requires_grad;
  return Value::tensor_value(std::move(t));
}

}  // namespace

base::Result<Rank0Optimizer> open_rank0_optimizer(const format::ZeroCheckpoint& ck) {
  if (ck.files.optim_files.empty()) return base::not_found("'" + ck.files.tag_dir + "': no optimizer file");
  const std::string& path = ck.files.optim_files.at(0);
  const auto index = static_cast<std::uint32_t>(ck.files.model_state_files.size());
  if (index >= ck.paths.size() || ck.paths[index] != path)
    return base::internal_error("'" + path + "' is not where ZeroCheckpoint::paths puts rank 0's optimizer file");
  UCP_ASSIGN_OR_RETURN(format::TorchFile file, format::TorchFile::open(path));
  const ValuePtr top = file.root();
  UCP_RETURN_IF_ERROR(require_dict(top, path, "the root"));
  ValuePtr osd = top->get("optimizer_state_dict");
  UCP_RETURN_IF_ERROR(require_dict(osd, path, "'optimizer_state_dict'"));
  const bool zero3 = ck.kind == format::DeepSpeedOptimizerKind::kZero3;
  ValuePtr inner = osd->get(zero3 ? "optimizer_state_dict" : "base_optimizer_state");
  const std::string inner_name = zero3 ? "['optimizer_state_dict']['optimizer_state_dict']" : "['optimizer_state_dict']['base_optimizer_state']";
  UCP_RETURN_IF_ERROR(require_dict(inner, path, inner_name));
  ValuePtr param_groups = inner->get("param_groups");
  if (!param_groups || param_groups->kind != Value::Kind::kList)
    return base::data_loss("'" + path + "': " + inner_name + " has no 'param_groups' list");
  return Rank0Optimizer{path, index, std::move(file), std::move(osd), std::move(inner), std::move(param_groups)};
}

base::Result<plan::UniversalCarried> universal_carried_files(const format::ZeroCheckpoint& ck,
                                                             std::span<const plan::UniversalParam> params) {
  plan::UniversalCarried result;
  // ckpt.paths lists the model-state files, then the optimizer files.
  for (std::size_t i = 0; i < ck.files.model_state_files.size(); ++i) {
    std::error_code ec;
    const std::uint64_t size = fs::file_size(ck.paths[i], ec);
    if (ec) return base::not_found("'" + ck.paths[i] + "': cannot read its size: " + ec.message());
    result.copies.push_back({fs::path(ck.files.model_state_files[i]).filename().string(), static_cast<std::uint32_t>(i), size});
  }

  UCP_ASSIGN_OR_RETURN(Rank0Optimizer rank0, open_rank0_optimizer(ck));
  MappedFiles mapped;
  mapped.add(rank0.index, rank0.file);
  const ValuePtr osd = rank0.osd, inner = rank0.inner, param_groups = rank0.param_groups;
  const bool zero3 = ck.kind == format::DeepSpeedOptimizerKind::kZero3;

  // optimizer_state.pt. Stage <= 2 / BF16: rank 0's dict minus the sharded states, with
  // group_paddings zeroed and partition_count [dp] * G (as get_zero_checkpoint_state rewrites
  // them), plus param_groups. ZeRO-3: the whole dict plus param_groups.
  auto out = std::make_shared<Value>(*osd);
  if (!zero3) {
    out->entries.clear();
    const std::size_t groups = ck.optims[0].fp32.size();
    for (const auto& [k, v] : osd->entries) {
      const std::string key = k && k->is_str() ? k->str : "";
      if (key == "base_optimizer_state" || key == "param_slice_mappings" || key == "single_partition_of_fp32_groups") continue;
      if (key == "group_paddings") {
        std::vector<ValuePtr> zeros;
        for (std::size_t g = 0; g < groups; ++g) zeros.push_back(Value::integer(0));
        out->entries.emplace_back(k, Value::list(std::move(zeros)));
      } else if (key == "partition_count") {
        std::vector<ValuePtr> counts;
        for (std::size_t g = 0; g < groups; ++g) counts.push_back(Value::integer(ck.dp));
        out->entries.emplace_back(k, Value::list(std::move(counts)));
      } else {
        out->entries.emplace_back(k, v);
      }
    }
  }
  out->set("param_groups", param_groups);
  result.locate = mapped.locator();
  std::vector<plan::UniversalTreeFile>& files = result.trees;
  files.push_back({"zero/optimizer_state.pt", out});

  // step.pt: stage <= 2 only, when the base optimizer keeps a per-group 'step' (torch Adam).
  if (zero3) return result;
  ValuePtr state = inner->get("state");
  if (!state || !state->is_dict()) return result;
  for (const auto& p : params) {
    ValuePtr group_state = state->get(std::int64_t{p.group});
    if (!group_state || !group_state->is_dict()) continue;
    ValuePtr step = group_state->get("step");
    if (!step) continue;
    files.push_back({"zero/" + p.name + "/step.pt", fresh_step(step)});
  }
  return result;
}

format::TorchWriteOptions universal_tree_file_options(const plan::UniversalTreeFile& file) {
  return {format::torch_archive_name(file.path), 2};
}

plan::SmallFile latest_universal_file(const std::string& out) {
  fs::path p = fs::absolute(out).lexically_normal();
  if (p.filename().empty()) p = p.parent_path();  // "OUT/" names OUT, not an empty tag
  return {"latest_universal", p.filename().string(), {}, plan::SmallFile::Place::kBesideOutput};
}

}  // namespace ucp::exec
