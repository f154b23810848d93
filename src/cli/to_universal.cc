#include "ucp/cli/to_universal.h"

#include <CLI/CLI.hpp>
#include <cstring>
#include <iostream>

#include "ucp/base/size.h"
#include "ucp/exec/fp32_executor.h"
#include "ucp/exec/universal_extras.h"
#include "ucp/exec/zero_source.h"
#include "ucp/plan/universal_plan.h"

namespace ucp::cli {
using base::Result;
using base::Status;

CLI::App* add_to_universal_command(CLI::App& app, ToUniversalOptions& o) {
  CLI::App* cmd = app.add_subcommand(
      "to-universal", "Convert a DeepSpeed ZeRO checkpoint into a universal checkpoint (like ds_to_universal.py)");
  cmd->add_option("checkpoint", o.checkpoint, "DeepSpeed save dir (tag from 'latest') or tag folder")->required();
  cmd->add_option("out", o.out,
                  "Output folder (created; must not exist or be empty unless --overwrite); its parent gets latest_universal")
      ->required();
  cmd->add_option("--tag", o.tag, "Tag to convert instead of the one in 'latest'");
  add_conversion_flags(cmd, o);
  return cmd;
}

Status run_to_universal(comm::Communicator& comm, const ToUniversalOptions& o) {
  exec::PhaseTimer timer;
  auto popts = shared_plan_options(comm, o);
  UCP_RETURN_IF_ERROR(comm::agree(comm, "options", popts.status()).status);
  popts->format = plan::OutputFormat::kTorch;
  if (comm.rank() == 0)
    std::cerr << "ucp-reshard to-universal: " << o.checkpoint << " -> " << o.out << " | " << comm.size() << " rank(s), "
              << comm.description() << " | max memory " << o.max_memory << std::endl;

  UCP_ASSIGN_OR_RETURN(format::ZeroCheckpoint ckpt, exec::read_zero_checkpoint(comm, o.checkpoint, o.tag, timer));

  // Every rank builds the same plan: the optimizer_state.pt / step.pt trees come from rank 0's
  // optimizer pickle (its tensor data stays mapped, unread, until the rank that copies it).
  Result<plan::UniversalPlan> plan = [&]() -> Result<plan::UniversalPlan> {
    UCP_ASSIGN_OR_RETURN(std::vector<plan::UniversalParam> params, plan::universal_params(ckpt));
    UCP_ASSIGN_OR_RETURN(plan::UniversalCarried carried, exec::universal_carried_files(ckpt, params));
    return plan::plan_universal(ckpt, *popts, carried);
  }();
  UCP_RETURN_IF_ERROR(agree_on_plan(comm, plan.status(), [&] { return plan->plan.digest(); }, timer));

  if (o.dry_run) {
    if (comm.rank() == 0)
      std::cout << exec::describe_checkpoint(ckpt) << "\n" << plan->plan.describe() << "  plus latest_universal\n" << std::flush;
    return {};
  }

  UCP_ASSIGN_OR_RETURN(exec::OutputDir out, exec::OutputDir::prepare(comm, o.out, o.overwrite));
  timer.mark("prepare");
  exec::ExecuteOptions eopts;
  eopts.progress = o.progress;
  UCP_RETURN_IF_ERROR(exec::execute_fp32_plan(comm, plan->plan, out, eopts, timer));
  {
    Status local;
    if (comm.rank() == 0) local = exec::write_latest_universal(o.out);
    UCP_RETURN_IF_ERROR(comm::agree(comm, "commit", local).status);
    timer.mark("commit");
  }

  std::uint64_t written = 0;
  for (const auto& f : plan->plan.files) written += f.size;
  print_timings_if_asked(comm, o, timer, written);
  if (comm.rank() == 0)
    std::cerr << "ucp-reshard to-universal: wrote " << plan->params.size() << " parameters (" << plan->plan.files.size()
              << " files with " << ckpt.files.model_state_files.size() << " model-state copies, "
              << base::format_bytes(written) << ") to "
              << o.out << std::endl;
  return {};
}

}  // namespace ucp::cli
