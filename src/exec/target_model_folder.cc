// to-fp32's consolidated model: HF safetensors / torch shards with their index and the HF model
// folder's config and tokenizer files, or Lightning's one file.
#include "targets.h"
#include "ucp/base/size.h"
#include "hf_model_files.h"
#include "mapped_files.h"
#include "ucp/plan/lightning_plan.h"
#include "ucp/plan/source_layout.h"

#include <sys/stat.h>

#include <map>
#include <memory>
#include <set>

namespace ucp::exec {
using base::Result;

namespace {

// Lightning keeps its trainer state in the model-state file it reads (rank 0's at ZeRO-3): every
// rank parses that one small pickle and plans the same file.
Result<plan::FilePlan> plan_lightning_file(const format::ZeroCheckpoint& ckpt, const plan::SourceLayout& layout,
                                           const plan::PlanOptions& options) {
  UCP_ASSIGN_OR_RETURN(format::TorchFile model_state, format::TorchFile::open(ckpt.paths.at(0)));
  MappedFiles mapped;
  mapped.add(0, model_state);
  return plan::plan_lightning(layout, model_state.root(), mapped.locator(), ckpt.paths, options);
}

// What dcp_to_torch_save writes, and so what Lingua's evaluation reads (consolidated/consolidated.pth).
constexpr const char* kDcpStateFile = "consolidated.pth";

// A DCP's whole state as one torch file: every tensor item and every non-tensor item (decoded
// here, on every rank: they are small) at its planner_data path. The nesting is checked once with
// placeholders, so building the root at layout time cannot fail.
Result<PlannedConversion> plan_dcp_state_file(const OpenedModelTensors& source, const ModelFolderTarget& target,
                                              plan::PlanOptions options, const std::string& out) {
  const format::dcp::Metadata& m = *source.dcp;
  if (!target.hf_config.empty())
    return base::invalid_argument("--hf-config makes an HF model folder; the whole state of DCP folder '" + m.dir +
                                  "' is not one (add --select model for its model tensors)");
  UCP_ASSIGN_OR_RETURN(std::vector<format::ValuePtr> values, format::dcp::read_bytes_items(m));
  auto leaves = std::make_shared<std::map<std::string, format::ValuePtr>>();
  for (std::size_t i = 0; i < values.size(); ++i) (*leaves)[m.bytes_items[i].fqn] = values[i];
  std::map<std::string, format::ValuePtr> placeholders = *leaves;
  for (const auto& t : source.layout.tensors) placeholders[t.name] = format::Value::none();
  UCP_RETURN_IF_ERROR(format::dcp::nested_state(m, placeholders).status());
  options.keep_float_dtypes = !target.dtype_given;
  auto metadata = source.dcp;
  plan::TorchRootFn root = [metadata, leaves](std::vector<std::pair<std::string, format::ValuePtr>> tensors) {
    std::map<std::string, format::ValuePtr> all = *leaves;
    for (auto& [name, value] : tensors) all[name] = std::move(value);
    auto nested = format::dcp::nested_state(*metadata, all);
    return nested.ok() ? *nested : format::Value::dict();  // checked above with the same keys
  };
  // An asked --dtype casts floating tensors but not optimizer step counters (torch keeps `step` as
  // a float tensor; bf16 cannot count past 256 exactly).
  std::set<std::string> keep_dtype;
  for (const auto& t : source.layout.tensors) {
    const auto path = format::dcp::path_of(m, t.name);
    if (t.shape.empty() && !path.back().is_index() && path.back().key == "step") keep_dtype.insert(t.name);
  }
  UCP_ASSIGN_OR_RETURN(plan::FilePlan plan,
                       plan::plan_torch_state_file(source.layout, source.paths, options, kDcpStateFile, root, keep_dtype));
  // Lingua's consolidation copies the step folder's params.json beside consolidated.pth: its
  // evaluation reads the model configuration from there.
  const std::string params = m.dir + "/params.json";
  struct stat st {};
  const bool with_params = ::stat(params.c_str(), &st) == 0 && S_ISREG(st.st_mode);
  if (with_params) plan.small_files.push_back({"params.json", "", params, plan::SmallFile::Place::kInOutput});
  const std::size_t tensors = plan.tensors.size(), items = values.size();
  PlannedConversion p{std::move(plan), source.description, {}};
  p.done_message = [=](std::uint64_t written) {
    return "wrote the whole state (" + std::to_string(tensors) + " tensors, " + std::to_string(items) +
           " non-tensor values) in " + std::string(kDcpStateFile) + (with_params ? " (+ params.json)" : "") + ", " +
           base::format_bytes(written) + " to " + out;
  };
  return p;
}

}  // namespace

Result<PlannedConversion> plan_model_folder(const OpenedModelTensors& source, const ModelFolderTarget& target,
                                            const plan::PlanOptions& options, const std::string& out) {
  if (target.lightning && !source.zero)
    return base::invalid_argument("--format lightning writes Lightning's DeepSpeed file and needs DeepSpeed ZeRO files; "
                                  "the source is a " + source.description);
  if (target.lightning && !target.select.empty())
    return base::invalid_argument("--select does not apply to --format lightning (Lightning's file holds the whole model)");
  if (target.lightning && target.key_map.map)
    return base::invalid_argument("--key-map does not apply to --format lightning (Lightning's file keeps DeepSpeed's names)");
  // A DCP's whole state as dcp_to_torch_save writes it; a selection or a key map gives model files.
  if (source.dcp && !target.lightning && target.select.empty() && !target.key_map.map &&
      options.format == plan::OutputFormat::kTorch)
    return plan_dcp_state_file(source, target, options, out);
  UCP_ASSIGN_OR_RETURN(const plan::SourceLayout layout, source_view(source, target.select, target.key_map));
  UCP_ASSIGN_OR_RETURN(plan::FilePlan plan, target.lightning ? plan_lightning_file(*source.zero, layout, options)
                                                             : plan::plan_consolidated(layout, source.paths, options));
  HfModelFiles hf;
  if (!target.lightning) {
    UCP_ASSIGN_OR_RETURN(hf, find_hf_model_files(source.save_dir, target.hf_config));
    UCP_ASSIGN_OR_RETURN(std::vector<plan::SmallFile> small, hf_model_small_files(hf, options.float_dtype));
    for (auto& f : small) plan.small_files.push_back(std::move(f));
  }
  const std::size_t tensors = plan.tensors.size(), files = plan.files.size();
  PlannedConversion p{std::move(plan), source.description, {}};
  p.done_message = [=](std::uint64_t written) {
    std::string line = "wrote " + std::to_string(tensors) + " tensors in " + std::to_string(files) + " file(s), " +
                       base::format_bytes(written) + " to " + out;
    if (!hf.names.empty())
      line += " (+ " + std::to_string(hf.names.size()) + " HF model files from " + hf.source_dir + ")";
    return line;
  };
  return p;
}

}  // namespace ucp::exec
