#include "ucp/cli/to_dcp.h"

#include <CLI/CLI.hpp>
#include <iostream>

#include "ucp/exec/convert.h"

namespace ucp::cli {
using base::Status;

CLI::App* add_to_dcp_command(CLI::App& app, ToDcpOptions& o) {
  CLI::App* cmd = app.add_subcommand(
      "to-dcp", "Write a PyTorch DCP folder (.metadata + __<rank>_0.distcp) chunked for M training ranks as FSDP2 "
                "shards (Shard(0)), from any source to-fp32 reads");
  cmd->add_option("checkpoint", o.checkpoint,
                  "DeepSpeed save dir or tag folder; or a DCP folder, a universal checkpoint folder, HF-DCP "
                  "safetensors, the model.h5 of to-fp32 --format hdf5, a .safetensors / torch .pt/.pth/.bin file, an "
                  "index or an HF model folder")
      ->required();
  cmd->add_option("out", o.out, "Output folder (created; must not exist or be empty unless --overwrite)")->required();
  cmd->add_option("--tag", o.tag, "Tag to convert instead of the one in 'latest' (DeepSpeed sources)");
  cmd->add_option("--target-world-size", o.target_world_size, "Ranks of the run that will load it (each reads its own box)")
      ->check(CLI::Range(1, 1 << 20))->capture_default_str();
  cmd->add_option("--dtype", o.dtype, "dtype of floating tensors: keep (as stored), fp32, bf16 or fp16")
      ->check(CLI::IsMember({"keep", "fp32", "bf16", "fp16"}))->capture_default_str();
  cmd->add_option("--select", o.select, "Only the tensors under this key prefix, written without it");
  cmd->add_option("--layout", o.layout,
                  "How the loading run nests its state: plain (the keys as they are), lingua (model.*, optim.*) or "
                  "torchtitan (model keys at the top, optimizer.*)")
      ->check(CLI::IsMember({"plain", "lingua", "torchtitan"}))->capture_default_str();
  cmd->add_flag("--with-optimizer", o.with_optimizer,
                "Also the optimizer: torch Adam's exp_avg, exp_avg_sq and step per parameter and param_groups, from "
                "DeepSpeed ZeRO files (needs --layout lingua or torchtitan)");
  add_key_map_flags(cmd, o.keys);
  cmd->add_option("--like", o.like,
                  "An existing DCP folder (a torchtitan seed checkpoint, Lingua step 0) whose tensor keys, shapes and "
                  "dtypes the output takes; refused unless every key is filled and every source tensor used or dropped");
  cmd->add_option("--lingua-params", o.lingua_params,
                  "HF config.json from which to write Lingua's params.json beside .metadata (needs --lingua-tokenizer)");
  cmd->add_option("--lingua-tokenizer", o.lingua_tokenizer, "The tokenizer params.json names: NAME[:PATH] (tiktoken, sp, bytes)");
  add_conversion_flags(cmd, o);
  return cmd;
}

Status run_to_dcp(comm::Communicator& comm, const ToDcpOptions& o) {
  exec::PhaseTimer timer;
  auto popts = shared_plan_options(comm, o);
  UCP_RETURN_IF_ERROR(comm::agree(comm, "options", popts.status()).status);
  if (comm.rank() == 0)
    std::cerr << "ucp-reshard to-dcp: " << o.checkpoint << " -> " << o.out << " | " << comm.size() << " rank(s), "
              << comm.description() << " | " << o.target_world_size << " target rank(s), dtype " << o.dtype
              << ", layout " << o.layout << (o.with_optimizer ? " with optimizer" : "") << ", max memory " << o.max_memory
              << (o.keys.key_map.empty() ? "" : ", key map " + o.keys.key_map) << std::endl;
  auto keys = key_mapping(o.keys, o.checkpoint);
  if (keys.ok() && o.lingua_params.empty() != o.lingua_tokenizer.empty())
    keys = base::invalid_argument("--lingua-params and --lingua-tokenizer go together (params.json names Lingua's tokenizer)");
  UCP_RETURN_IF_ERROR(comm::agree(comm, "options", keys.status()).status);
  exec::DcpTarget target{o.target_world_size, std::nullopt, o.select, o.layout, o.with_optimizer,
                         std::move(*keys), o.like, o.lingua_params, o.lingua_tokenizer};
  if (o.dtype != "keep") target.float_dtype = base::dtype_from_user_name(o.dtype);
  return exec::convert(comm, o.checkpoint, o.tag, target, *popts, run_options(o, "to-dcp", o.out), timer);
}

}  // namespace ucp::cli
