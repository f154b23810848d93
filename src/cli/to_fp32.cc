#include "ucp/cli/to_fp32.h"

#include <CLI/CLI.hpp>
#include <iostream>

#include "ucp/base/size.h"
#include "ucp/exec/convert.h"
#include "ucp/exec/hdf5_executor.h"
#include "ucp/format/dcp.h"

namespace ucp::cli {
using base::Result;
using base::Status;

CLI::App* add_to_fp32_command(CLI::App& app, ToFp32Options& o) {
  CLI::App* cmd = app.add_subcommand("to-fp32", "Consolidate a DeepSpeed ZeRO checkpoint (or a DCP folder, universal "
                                                "checkpoint, model.h5, HF-DCP safetensors or HF / torch model files) "
                                                "into an fp32 model (like zero_to_fp32.py)");
  cmd->add_option("checkpoint", o.checkpoint,
                  "DeepSpeed save dir (tag from 'latest') or tag folder; or a DCP folder, a universal checkpoint "
                  "folder, the model.h5 of to-fp32 --format hdf5, HF-DCP safetensors, a .safetensors / torch "
                  ".pt/.pth/.bin file, an index or an HF model folder")
      ->required();
  cmd->add_option("out", o.out, "Output directory (created; must not exist or be empty unless --overwrite)")->required();
  cmd->add_option("--tag", o.tag, "Tag to convert instead of the one in 'latest'");
  cmd->add_option("--format", o.format,
                  "safetensors (default), torch (.bin; of a DCP folder without --select: one consolidated.pth holding "
                  "its whole nested state, as dcp_to_torch_save writes it), hdf5 (one model.h5, parallel HDF5) or lightning (one "
                  "lightning_model.pt as Lightning's convert_zero_checkpoint_to_fp32_state_dict writes it)")
      ->check(CLI::IsMember({"safetensors", "torch", "hdf5", "lightning"}));
  cmd->add_option("--max-shard-size", o.max_shard_size, "Largest output shard, e.g. 5GB (decimal) or 2GiB")
      ->capture_default_str()
      ->each([&o](const std::string&) { o.max_shard_size_given = true; });
  cmd->add_flag("--with-optimizer", o.with_optimizer,
                "hdf5: also store fp32 masters, exp_avg, exp_avg_sq (and step) per parameter under /optimizer");
  cmd->add_option("--dtype", o.dtype,
                  "dtype of floating tensors: fp32, bf16 or fp16 (round to nearest even); a DCP written whole with "
                  "--format torch keeps its stored dtypes unless this is given")
      ->check(CLI::IsMember({"fp32", "bf16", "fp16"}))
      ->capture_default_str()
      ->each([&o](const std::string&) { o.dtype_given = true; });
  cmd->add_flag("--exclude-frozen", o.exclude_frozen, "Leave out parameters with requires_grad=False");
  cmd->add_option("--hf-config", o.hf_config,
                  "HF model folder whose config.json, generation_config.json and tokenizer files join the output "
                  "(default: those beside the checkpoint, as in an HF Trainer checkpoint-K/)");
  cmd->add_option("--select", o.select,
                  "Only the tensors under this key prefix, written without it (a DCP of Lingua's {model, optim}: "
                  "--select model)");
  add_key_map_flags(cmd, o.keys);
  add_conversion_flags(cmd, o);
  return cmd;
}

namespace {

// --format torch of a DCP folder without --select: dcp_to_torch_save's one file of the whole state.
bool whole_dcp_state(const ToFp32Options& o) {
  return o.format == "torch" && o.select.empty() && format::dcp::is_dcp_folder(o.checkpoint);
}

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
  if (o.max_shard_size_given && whole_dcp_state(o))
    return base::invalid_argument("--max-shard-size: the whole state of DCP folder '" + o.checkpoint +
                                  "' is one consolidated.pth, as dcp_to_torch_save writes it (add --select model for "
                                  "sharded model files)");
  UCP_ASSIGN_OR_RETURN(p.max_shard_bytes, base::parse_size(o.max_shard_size).annotate("--max-shard-size"));
  p.float_dtype = *base::dtype_from_user_name(o.dtype);
  return p;
}


// The target the options name.
exec::Target target_of(const ToFp32Options& o, exec::KeyMapping keys) {
  if (o.format == "hdf5")
    return exec::Hdf5Target{o.exclude_frozen, o.with_optimizer, std::string("ucp-reshard ") + UCP_VERSION + " to-fp32", o.select,
                            std::move(keys)};
  return exec::ModelFolderTarget{o.format == "lightning", o.exclude_frozen, o.hf_config, o.select, std::move(keys), o.dtype_given};
}

}  // namespace

Status run_to_fp32(comm::Communicator& comm, const ToFp32Options& o) {
  exec::PhaseTimer timer;
  auto popts = plan_options(comm, o);
  UCP_RETURN_IF_ERROR(comm::agree(comm, "options", popts.status()).status);
  auto keys = key_mapping(o.keys, o.checkpoint);
  UCP_RETURN_IF_ERROR(comm::agree(comm, "options", keys.status()).status);
  if (comm.rank() == 0)
    std::cerr << "ucp-reshard to-fp32: " << o.checkpoint << " -> " << o.out << " | " << comm.size() << " rank(s), "
              << comm.description() << " | format " << o.format << ", dtype "
              << (o.dtype_given || !whole_dcp_state(o) ? o.dtype : std::string("as stored (the whole DCP state)")) << ", max shard "
              << o.max_shard_size << ", max memory " << o.max_memory << (o.exclude_frozen ? ", frozen excluded" : "")
              << (o.keys.key_map.empty() ? "" : ", key map " + o.keys.key_map)
              << std::endl;
  return exec::convert(comm, o.checkpoint, o.tag, target_of(o, std::move(*keys)), *popts, run_options(o, "to-fp32", o.out), timer);
}

}  // namespace ucp::cli
