#include "ucp/cli/to_fp32.h"

#include <CLI/CLI.hpp>
#include <cstring>
#include <iostream>

#include "ucp/base/size.h"
#include "ucp/exec/fp32_executor.h"
#include "ucp/exec/zero_source.h"
#include "ucp/plan/fp32_layout.h"
#include "ucp/plan/fp32_plan.h"

namespace ucp::cli {
using base::Result;
using base::Status;

CLI::App* add_to_fp32_command(CLI::App& app, ToFp32Options& o) {
  CLI::App* cmd = app.add_subcommand("to-fp32", "Consolidate a DeepSpeed ZeRO checkpoint into an fp32 model (like zero_to_fp32.py)");
  cmd->add_option("checkpoint", o.checkpoint, "DeepSpeed save dir (tag from 'latest') or tag folder")->required();
  cmd->add_option("out", o.out, "Output directory (created; must not exist or be empty unless --overwrite)")->required();
  cmd->add_option("--tag", o.tag, "Tag to convert instead of the one in 'latest'");
  cmd->add_option("--format", o.format, "safetensors (default) or torch (.bin)")->check(CLI::IsMember({"safetensors", "torch"}));
  cmd->add_option("--max-shard-size", o.max_shard_size, "Largest output shard, e.g. 5GB (decimal) or 2GiB")->capture_default_str();
  cmd->add_option("--dtype", o.dtype, "dtype of floating tensors: fp32, bf16 or fp16 (round to nearest even)")
      ->check(CLI::IsMember({"fp32", "bf16", "fp16"}))->capture_default_str();
  cmd->add_flag("--exclude-frozen", o.exclude_frozen, "Leave out parameters with requires_grad=False");
  add_conversion_flags(cmd, o);
  return cmd;
}

namespace {

Result<plan::Fp32Options> plan_options(const comm::Communicator& comm, const ToFp32Options& o) {
  plan::Fp32Options p;
  p.format = o.format == "torch" ? plan::OutputFormat::kTorch : plan::OutputFormat::kSafetensors;
  UCP_ASSIGN_OR_RETURN(p.max_shard_bytes, base::parse_size(o.max_shard_size).annotate("--max-shard-size"));
  UCP_ASSIGN_OR_RETURN(p.max_memory, base::parse_size(o.max_memory).annotate("--max-memory"));
  p.float_dtype = *base::dtype_from_user_name(o.dtype);
  p.world_size = comm.size();
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

  Result<plan::Fp32Plan> plan = base::internal_error("no plan");
  {
    auto layout = plan::layout_fp32(ckpt, o.exclude_frozen);
    if (layout.ok()) plan = plan::plan_fp32(*layout, ckpt.paths, *popts);
    else plan = layout.status();
  }
  UCP_RETURN_IF_ERROR(comm::agree(comm, "plan", plan.status()).status);
  UCP_RETURN_IF_ERROR(comm::agree(comm, "plan", exec::agree_on_digest(comm, plan->digest())).status);
  timer.mark("plan");

  if (o.dry_run) {
    if (comm.rank() == 0)
      std::cout << "DeepSpeed " << format::optimizer_kind_name(ckpt.kind) << " checkpoint " << ckpt.files.tag_dir
                << " (ZeRO stage " << ckpt.zero_stage << ", dp " << ckpt.dp << ")\n"
                << plan->describe() << std::flush;
    return {};
  }

  UCP_ASSIGN_OR_RETURN(exec::OutputDir out, exec::OutputDir::prepare(comm, o.out, o.overwrite));
  timer.mark("prepare");
  exec::ExecuteOptions eopts;
  eopts.progress = o.progress;
  UCP_RETURN_IF_ERROR(exec::execute_fp32_plan(comm, *plan, out, eopts, timer));

  std::uint64_t written = 0;
  for (const auto& f : plan->files) written += f.size;
  if (o.timings) {
    const std::string report = exec::report_timings(comm, timer, written);
    if (comm.rank() == 0) std::cerr << "timings: " << report << std::endl;
  }
  if (comm.rank() == 0)
    std::cerr << "ucp-reshard to-fp32: wrote " << plan->tensors.size() << " tensors in " << plan->files.size()
              << " file(s), " << base::format_bytes(written) << " to " << o.out << std::endl;
  return {};
}

}  // namespace ucp::cli
