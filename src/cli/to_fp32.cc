#include "ucp/cli/to_fp32.h"

#include <CLI/CLI.hpp>
#include <cstring>
#include <filesystem>
#include <optional>
#include <iostream>

#include "ucp/base/size.h"
#include "ucp/exec/pipeline.h"
#include "ucp/exec/hdf5_executor.h"
#include "ucp/exec/hf_model_files.h"
#include "ucp/exec/mapped_files.h"
#include "ucp/exec/optimizer_steps.h"
#include "ucp/exec/universal_extras.h"
#include "ucp/exec/zero_source.h"
#include "ucp/plan/source_layout.h"
#include "ucp/plan/file_plan.h"
#include "ucp/plan/hdf5_plan.h"
#include "ucp/plan/lightning_plan.h"

namespace ucp::cli {
using base::Result;
using base::Status;

CLI::App* add_to_fp32_command(CLI::App& app, ToFp32Options& o) {
  CLI::App* cmd = app.add_subcommand("to-fp32", "Consolidate a DeepSpeed ZeRO checkpoint into an fp32 model (like zero_to_fp32.py)");
  cmd->add_option("checkpoint", o.checkpoint, "DeepSpeed save dir (tag from 'latest') or tag folder")->required();
  cmd->add_option("out", o.out, "Output directory (created; must not exist or be empty unless --overwrite)")->required();
  cmd->add_option("--tag", o.tag, "Tag to convert instead of the one in 'latest'");
  cmd->add_option("--format", o.format,
                  "safetensors (default), torch (.bin), hdf5 (one model.h5, parallel HDF5) or lightning (one "
                  "lightning_model.pt as Lightning's convert_zero_checkpoint_to_fp32_state_dict writes it)")
      ->check(CLI::IsMember({"safetensors", "torch", "hdf5", "lightning"}));
  cmd->add_option("--max-shard-size", o.max_shard_size, "Largest output shard, e.g. 5GB (decimal) or 2GiB")
      ->capture_default_str()
      ->each([&o](const std::string&) { o.max_shard_size_given = true; });
  cmd->add_flag("--with-optimizer", o.with_optimizer,
                "hdf5: also store fp32 masters, exp_avg, exp_avg_sq (and step) per parameter under /optimizer");
  cmd->add_option("--dtype", o.dtype, "dtype of floating tensors: fp32, bf16 or fp16 (round to nearest even)")
      ->check(CLI::IsMember({"fp32", "bf16", "fp16"}))->capture_default_str();
  cmd->add_flag("--exclude-frozen", o.exclude_frozen, "Leave out parameters with requires_grad=False");
  cmd->add_option("--hf-config", o.hf_config,
                  "HF model folder whose config.json, generation_config.json and tokenizer files join the output "
                  "(default: those beside the checkpoint, as in an HF Trainer checkpoint-K/)");
  add_conversion_flags(cmd, o);
  return cmd;
}

namespace {

Result<plan::PlanOptions> plan_options(comm::Communicator& comm, const ToFp32Options& o) {
  UCP_ASSIGN_OR_RETURN(plan::PlanOptions p, shared_plan_options(comm, o));
  p.format = o.format == "torch" ? plan::OutputFormat::kTorch : plan::OutputFormat::kSafetensors;
  if (o.format == "hdf5") {
    // One file by design: sharding would defeat the point of a single, world-size-free file.
    if (o.max_shard_size_given) return base::invalid_argument("--max-shard-size does not apply to --format hdf5 (one model.h5)");
    if (!o.hf_config.empty()) return base::invalid_argument("--hf-config makes an HF model folder: use --format safetensors or torch");
    if (!exec::hdf5_output_available())
      return base::unimplemented("--format hdf5: this ucp-reshard was built without parallel HDF5 (install "
                                 "libhdf5-openmpi-dev and rebuild)");
  } else if (o.with_optimizer) {
    return base::invalid_argument("--with-optimizer needs --format hdf5 (use to-universal for torch files)");
  }
  if (o.format == "lightning") {
    p.format = plan::OutputFormat::kTorch;
    if (o.max_shard_size_given) return base::invalid_argument("--max-shard-size does not apply to --format lightning (one file)");
    if (!o.hf_config.empty()) return base::invalid_argument("--hf-config makes an HF model folder: use --format safetensors or torch");
  }
  UCP_ASSIGN_OR_RETURN(p.max_shard_bytes, base::parse_size(o.max_shard_size).annotate("--max-shard-size"));
  p.float_dtype = *base::dtype_from_user_name(o.dtype);
  return p;
}


// What the HDF5 file records about where it came from (attributes on "/").
std::vector<plan::Hdf5Attribute> source_attributes(const ToFp32Options& o, const format::ZeroCheckpoint& ckpt,
                                                   const plan::PlanOptions& p) {
  std::error_code ec;
  const std::string source = std::filesystem::absolute(ckpt.files.tag_dir, ec).lexically_normal().string();
  return {
      {"/", "producer", std::string("ucp-reshard ") + UCP_VERSION + " to-fp32"},
      {"/", "source_checkpoint", ec ? ckpt.files.tag_dir : source},
      {"/", "tag", ckpt.files.tag},
      {"/", "deepspeed_version", ckpt.models.empty() ? std::string() : ckpt.models[0].ds_version},
      {"/", "zero_stage", std::int64_t{ckpt.zero_stage}},
      {"/", "optimizer_wrapper", std::string(format::optimizer_kind_name(ckpt.kind))},
      {"/", "dp_world_size", std::int64_t{ckpt.dp}},
      {"/", "float_dtype", std::string(base::torch_dtype_attr(p.float_dtype))},
      {"/", "frozen_excluded", std::int64_t{o.exclude_frozen ? 1 : 0}},
  };
}

// The small files of the universal checkpoint to-universal would write, so that the .h5 file is a
// universal checkpoint `reshard` reads: model-state copies (byte ranges of the sources) and the
// optimizer files to-universal builds (the same code, in memory).
Status add_universal_files(const format::ZeroCheckpoint& ckpt, plan::Hdf5OptimizerStates& states) {
  UCP_ASSIGN_OR_RETURN(std::vector<plan::UniversalParam> params, plan::universal_params(ckpt));
  UCP_ASSIGN_OR_RETURN(plan::UniversalCarried carried, exec::universal_carried_files(ckpt, params));
  states.source_copies = std::move(carried.copies);
  for (auto& f : carried.trees) {
    UCP_ASSIGN_OR_RETURN(std::vector<std::byte> bytes, format::torch_file_bytes(f.root, exec::universal_tree_file_options(f)));
    states.blobs.push_back({std::move(f.path), std::make_shared<const std::vector<std::byte>>(std::move(bytes))});
  }
  return {};
}

Status run_to_hdf5(comm::Communicator& comm, const ToFp32Options& o, const format::ZeroCheckpoint& ckpt,
                   const plan::PlanOptions& popts, exec::PhaseTimer& timer) {
  std::vector<plan::Hdf5Attribute> attributes = source_attributes(o, ckpt, popts);
  if (o.with_optimizer) {
    // Collective: rank 0 reads the step counters, every rank gets them (attributes must agree).
    UCP_ASSIGN_OR_RETURN(std::vector<exec::OptimizerStep> steps, exec::read_optimizer_steps(comm, ckpt));
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
  Result<plan::Hdf5Plan> plan = base::internal_error("no plan");
  {
    auto layout = plan::layout_model_tensors(ckpt, o.exclude_frozen);
    std::optional<plan::Hdf5OptimizerStates> states;
    Status status = layout.status();
    if (status.ok() && o.with_optimizer) {
      states.emplace();
      auto fp32 = plan::layout_optimizer_state(ckpt, plan::OptimizerState::kFp32);
      auto m = plan::layout_optimizer_state(ckpt, plan::OptimizerState::kExpAvg);
      auto v = plan::layout_optimizer_state(ckpt, plan::OptimizerState::kExpAvgSq);
      status = !fp32.ok() ? fp32.status() : !m.ok() ? m.status() : v.status();
      if (status.ok()) {
        states->fp32 = std::move(*fp32);
        states->exp_avg = std::move(*m);
        states->exp_avg_sq = std::move(*v);
        status = add_universal_files(ckpt, *states);
      }
    }
    if (status.ok())
      plan = plan::plan_hdf5(*layout, states ? &*states : nullptr, ckpt.paths, popts, std::move(attributes));
    else
      plan = status;
  }
  Result<exec::PlannedConversion> planned = plan.status();
  if (plan.ok()) {
    const std::size_t objects = plan->plan.tensors.size();
    planned = exec::PlannedConversion{std::move(*plan), exec::describe_checkpoint(ckpt), {}};
    planned->done_message = [objects, out = o.out](std::uint64_t written) {
      return "wrote " + std::to_string(objects) + " datasets/links to " + out + "/" + format::kHdf5FileName + ", " +
             base::format_bytes(written) + " of tensor data (" + exec::hdf5_output_description() + ")";
    };
  }
  return exec::run_conversion(comm, run_options(o, "to-fp32", o.out), planned, timer);
}

// Lightning keeps its trainer state in the model-state file it reads (rank 0's at ZeRO-3): every
// rank parses that one small pickle and plans the same file.
Result<plan::FilePlan> plan_lightning_file(const format::ZeroCheckpoint& ckpt, const plan::SourceLayout& layout,
                                           const plan::PlanOptions& options) {
  UCP_ASSIGN_OR_RETURN(format::TorchFile model_state, format::TorchFile::open(ckpt.paths.at(0)));
  exec::MappedFiles mapped;
  mapped.add(0, model_state);
  return plan::plan_lightning(layout, model_state.root(), mapped.locator(), ckpt.paths, options);
}

// The consolidated model (HF shards or Lightning's one file) and, for HF outputs, the model folder's
// config and tokenizer files from beside the checkpoint (or --hf-config).
Result<exec::PlannedConversion> plan_model_files(const ToFp32Options& o, const format::ZeroCheckpoint& ckpt,
                                                 const plan::PlanOptions& options) {
  UCP_ASSIGN_OR_RETURN(plan::SourceLayout layout, plan::layout_model_tensors(ckpt, o.exclude_frozen));
  const bool lightning = o.format == "lightning";
  UCP_ASSIGN_OR_RETURN(plan::FilePlan plan, lightning ? plan_lightning_file(ckpt, layout, options)
                                                      : plan::plan_consolidated(layout, ckpt.paths, options));
  exec::HfModelFiles hf;
  if (!lightning) {
    UCP_ASSIGN_OR_RETURN(hf, exec::find_hf_model_files(ckpt.files.save_dir, o.hf_config));
    UCP_ASSIGN_OR_RETURN(std::vector<plan::SmallFile> small, exec::hf_model_small_files(hf, options.float_dtype));
    for (auto& f : small) plan.small_files.push_back(std::move(f));
  }
  const std::size_t tensors = plan.tensors.size(), files = plan.files.size();
  exec::PlannedConversion p{std::move(plan), exec::describe_checkpoint(ckpt), {}};
  p.done_message = [=, out = o.out](std::uint64_t written) {
    std::string line = "wrote " + std::to_string(tensors) + " tensors in " + std::to_string(files) + " file(s), " +
                       base::format_bytes(written) + " to " + out;
    if (!hf.names.empty())
      line += " (+ " + std::to_string(hf.names.size()) + " HF model files from " + hf.source_dir + ")";
    return line;
  };
  return p;
}

}  // namespace

Status run_to_fp32(comm::Communicator& comm, const ToFp32Options& o) {
  exec::PhaseTimer timer;
  auto popts = plan_options(comm, o);
  UCP_RETURN_IF_ERROR(comm::agree(comm, "options", popts.status()).status);
  if (comm.rank() == 0)
    std::cerr << "ucp-reshard to-fp32: " << o.checkpoint << " -> " << o.out << " | " << comm.size() << " rank(s), "
              << comm.description() << " | format " << o.format << ", dtype " << o.dtype << ", max shard "
              << o.max_shard_size << ", max memory " << o.max_memory << (o.exclude_frozen ? ", frozen excluded" : "")
              << std::endl;

  UCP_ASSIGN_OR_RETURN(format::ZeroCheckpoint ckpt, exec::read_zero_checkpoint(comm, o.checkpoint, o.tag, timer));
  if (o.format == "hdf5") return run_to_hdf5(comm, o, ckpt, *popts, timer);

  Result<exec::PlannedConversion> planned = plan_model_files(o, ckpt, *popts);
  return exec::run_conversion(comm, run_options(o, "to-fp32", o.out), planned, timer);
}

}  // namespace ucp::cli
