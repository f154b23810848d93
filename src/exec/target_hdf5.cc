// to-fp32 --format hdf5: one parallel-HDF5 file; with --with-optimizer also the fp32 masters, the
// moments and the step per parameter, and the files of the universal checkpoint to-universal would
// write, so that the file is a universal checkpoint `reshard` reads.
#include <filesystem>

#include "targets.h"
#include "ucp/base/size.h"
#include "ucp/exec/hdf5_executor.h"
#include "universal_extras.h"
#include "zero_source.h"
#include "ucp/format/hdf5_layout.h"
#include "ucp/plan/hdf5_plan.h"
#include "ucp/plan/source_layout.h"
#include "ucp/plan/universal_plan.h"

namespace ucp::exec {
using base::Result;
using base::Status;

namespace {

// What the HDF5 file records about where it came from (attributes on "/").
std::vector<plan::Hdf5Attribute> source_attributes(const Hdf5Target& target, const format::ZeroCheckpoint& ckpt,
                                                   const plan::PlanOptions& p) {
  std::error_code ec;
  const std::string source = std::filesystem::absolute(ckpt.files.tag_dir, ec).lexically_normal().string();
  return {
      {"/", "producer", target.producer},
      {"/", "source_checkpoint", ec ? ckpt.files.tag_dir : source},
      {"/", "tag", ckpt.files.tag},
      {"/", "deepspeed_version", ckpt.models.empty() ? std::string() : ckpt.models[0].ds_version},
      {"/", "zero_stage", std::int64_t{ckpt.zero_stage}},
      {"/", "optimizer_wrapper", std::string(format::optimizer_kind_name(ckpt.kind))},
      {"/", "dp_world_size", std::int64_t{ckpt.dp}},
      {"/", "float_dtype", std::string(base::torch_dtype_attr(p.float_dtype))},
      {"/", "frozen_excluded", std::int64_t{target.exclude_frozen ? 1 : 0}},
  };
}

// The step of every parameter of a group that has one, as an attribute of its optimizer group.
void add_step_attributes(const format::ZeroCheckpoint& ckpt, const std::vector<OptimizerStep>& steps,
                         std::vector<plan::Hdf5Attribute>& attributes) {
  for (std::size_t g = 0; g < steps.size() && g < ckpt.models[0].param_shapes.size(); ++g) {
    if (std::holds_alternative<std::monostate>(steps[g])) continue;
    for (const auto& p : ckpt.models[0].param_shapes[g]) {
      plan::Hdf5Attribute a{std::string(format::kHdf5OptimizerGroup) + "/" + p.name, "step", std::int64_t{0}};
      if (const auto* i = std::get_if<std::int64_t>(&steps[g])) a.value = *i;
      else a.value = std::get<double>(steps[g]);
      attributes.push_back(std::move(a));
    }
  }
}

// The small files of the universal checkpoint to-universal would write: model-state copies (byte
// ranges of the sources) and the optimizer files to-universal builds (the same code, in memory).
Status add_universal_files(const format::ZeroCheckpoint& ckpt, plan::Hdf5OptimizerStates& states) {
  UCP_ASSIGN_OR_RETURN(std::vector<plan::UniversalParam> params, plan::universal_params(ckpt));
  UCP_ASSIGN_OR_RETURN(plan::UniversalCarried carried, universal_carried_files(ckpt, params));
  states.source_copies = std::move(carried.copies);
  for (auto& f : carried.trees) {
    UCP_ASSIGN_OR_RETURN(std::vector<std::byte> bytes, format::torch_file_bytes(f.root, universal_tree_file_options(f)));
    states.blobs.push_back({std::move(f.path), std::make_shared<const std::vector<std::byte>>(std::move(bytes))});
  }
  return {};
}

// fp32 masters, moments and the universal files, for --with-optimizer.
Result<plan::Hdf5OptimizerStates> optimizer_states(const format::ZeroCheckpoint& ckpt) {
  plan::Hdf5OptimizerStates states;
  UCP_ASSIGN_OR_RETURN(states.fp32, plan::layout_optimizer_state(ckpt, plan::OptimizerState::kFp32));
  UCP_ASSIGN_OR_RETURN(states.exp_avg, plan::layout_optimizer_state(ckpt, plan::OptimizerState::kExpAvg));
  UCP_ASSIGN_OR_RETURN(states.exp_avg_sq, plan::layout_optimizer_state(ckpt, plan::OptimizerState::kExpAvgSq));
  UCP_RETURN_IF_ERROR(add_universal_files(ckpt, states));
  return states;
}

}  // namespace

Result<PlannedConversion> plan_hdf5_file(const OpenedModelTensors& source, const Hdf5Target& target,
                                         const std::vector<OptimizerStep>& steps, const plan::PlanOptions& options,
                                         const std::string& out) {
  if (target.with_optimizer && !target.select.empty())
    return base::invalid_argument("--select does not apply with --with-optimizer (the file is a whole universal checkpoint)");
  UCP_ASSIGN_OR_RETURN(const plan::SourceLayout layout, source_view(source, target.select, target.key_map));
  std::vector<plan::Hdf5Attribute> attributes;
  std::optional<plan::Hdf5OptimizerStates> states;
  if (source.zero) {
    attributes = source_attributes(target, *source.zero, options);
    add_step_attributes(*source.zero, steps, attributes);
    if (target.with_optimizer) {
      UCP_ASSIGN_OR_RETURN(states, optimizer_states(*source.zero));
    }
  } else {
    if (target.with_optimizer)
      return base::invalid_argument("--with-optimizer writes DeepSpeed's optimizer states and needs DeepSpeed ZeRO files; "
                                    "the source is a " + source.description);
    std::error_code ec;
    const std::string path = std::filesystem::absolute(source.paths.empty() ? "" : source.paths[0], ec).parent_path().lexically_normal().string();
    attributes = {{"/", "producer", target.producer},
                  {"/", "source_checkpoint", path},
                  {"/", "float_dtype", std::string(base::torch_dtype_attr(options.float_dtype))}};
  }
  UCP_ASSIGN_OR_RETURN(plan::Hdf5Plan plan,
                       plan::plan_hdf5(layout, states ? &*states : nullptr, source.paths, options, std::move(attributes)));
  const std::size_t objects = plan.plan.tensors.size();
  PlannedConversion p{std::move(plan), source.description, {}};
  p.done_message = [objects, out](std::uint64_t written) {
    return "wrote " + std::to_string(objects) + " datasets/links to " + out + "/" + format::kHdf5FileName + ", " +
           base::format_bytes(written) + " of tensor data (" + hdf5_output_description() + ")";
  };
  return p;
}

}  // namespace ucp::exec
