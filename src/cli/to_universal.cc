#include "ucp/cli/to_universal.h"

#include <CLI/CLI.hpp>
#include <cstring>
#include <iostream>

#include "ucp/base/size.h"
#include "ucp/exec/pipeline.h"
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
  Result<exec::PlannedConversion> planned = [&]() -> Result<exec::PlannedConversion> {
    UCP_ASSIGN_OR_RETURN(std::vector<plan::UniversalParam> params, plan::universal_params(ckpt));
    UCP_ASSIGN_OR_RETURN(plan::UniversalCarried carried, exec::universal_carried_files(ckpt, params));
    UCP_ASSIGN_OR_RETURN(plan::UniversalPlan universal, plan::plan_universal(ckpt, *popts, carried));
    universal.plan.small_files.push_back(exec::latest_universal_file(o.out));
    const std::size_t files = universal.plan.files.size(), params_count = universal.params.size();
    const std::size_t copies = ckpt.files.model_state_files.size();
    exec::PlannedConversion p{std::move(universal.plan), exec::describe_checkpoint(ckpt), {}};
    p.done_message = [=, out = o.out](std::uint64_t written) {
      return "wrote " + std::to_string(params_count) + " parameters (" + std::to_string(files) + " files with " +
             std::to_string(copies) + " model-state copies, " + base::format_bytes(written) + ") to " + out;
    };
    return p;
  }();
  return exec::run_conversion(comm, run_options(o, "to-universal", o.out), planned, timer);
}

}  // namespace ucp::cli
