#include "ucp/cli/reshard.h"

#include <CLI/CLI.hpp>
#include <filesystem>
#include <iostream>

#include "ucp/base/size.h"
#include "ucp/exec/param_states.h"
#include "ucp/exec/pipeline.h"
#include "ucp/exec/save_dir_extras.h"
#include "ucp/plan/zero_files_plan.h"

namespace ucp::cli {
using base::Result;
using base::Status;

CLI::App* add_reshard_command(CLI::App& app, ReshardOptions& o) {
  CLI::App* cmd = app.add_subcommand(
      "reshard", "Re-partition a DeepSpeed ZeRO checkpoint for a new data-parallel size (DeepSpeed ZeRO files, no special load flag)");
  cmd->add_option("source", o.source,
                  "DeepSpeed save dir (tag from 'latest') or tag folder, a universal checkpoint (folder, or the dir "
                  "holding latest_universal), an HDF5 file of to-fp32 --with-optimizer (or the dir holding model.h5), "
                  "or an HF Trainer / Lightning checkpoint dir")
      ->required();
  cmd->add_option("out", o.out, "Output save dir: OUT/latest and OUT/<tag>/ (must not exist or be empty unless --overwrite)")
      ->required();
  cmd->add_option("--target-dp", o.target_dp, "Data-parallel size the new checkpoint is for")->required()->check(CLI::Range(1, 1 << 20));
  cmd->add_option("--tag", o.tag, "Tag to convert instead of the one in 'latest'");
  add_conversion_flags(cmd, o);
  return cmd;
}

Status run_reshard(comm::Communicator& comm, const ReshardOptions& o) {
  exec::PhaseTimer timer;
  auto popts = shared_plan_options(comm, o);
  UCP_RETURN_IF_ERROR(comm::agree(comm, "options", popts.status()).status);
  popts->format = plan::OutputFormat::kTorch;
  if (comm.rank() == 0)
    std::cerr << "ucp-reshard reshard: " << o.source << " -> " << o.out << " for dp " << o.target_dp << " | " << comm.size()
              << " rank(s), " << comm.description() << " | max memory " << o.max_memory << std::endl;

  UCP_ASSIGN_OR_RETURN(exec::OpenedParamStates source, exec::open_param_states(comm, o.source, o.tag, timer));

  // The new <tag>/ files, the framework files beside the DeepSpeed folders (HF Trainer's
  // checkpoint-K/), and `latest` (no newline, as DeepSpeed writes it).
  std::vector<std::string> warnings;
  Result<exec::PlannedConversion> planned = [&]() -> Result<exec::PlannedConversion> {
    UCP_ASSIGN_OR_RETURN(plan::FilePlan plan, plan::plan_zero_files(source.states, o.target_dp, *popts));
    if (!source.save_dir.empty()) {
      UCP_ASSIGN_OR_RETURN(std::vector<plan::SmallFile> extras,
                           exec::save_dir_small_files(source.save_dir, o.target_dp, warnings));
      for (auto& f : extras) plan.small_files.push_back(std::move(f));
    }
    plan.small_files.push_back({"latest", source.states.tag, {}, plan::SmallFile::Place::kInOutput});
    const std::size_t files = plan.files.size();
    exec::PlannedConversion p{std::move(plan), source.description + " -> dp " + std::to_string(o.target_dp), {}};
    p.done_message = [=, out = o.out, tag = source.states.tag, dp = o.target_dp](std::uint64_t written) {
      return "wrote " + std::to_string(files) + " files (" + base::format_bytes(written) + ") for dp " + std::to_string(dp) +
             " to " + out + "/" + tag;
    };
    return p;
  }();
  if (comm.rank() == 0)
    for (const auto& w : warnings) std::cerr << "ucp-reshard reshard: warning: " << w << std::endl;
  return exec::run_conversion(comm, run_options(o, "reshard", o.out), planned, timer);
}

}  // namespace ucp::cli
