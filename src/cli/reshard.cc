#include "ucp/cli/reshard.h"

#include <CLI/CLI.hpp>
#include <iostream>

#include "ucp/exec/convert.h"

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

  return exec::convert(comm, o.source, o.tag, exec::ZeroFilesTarget{o.target_dp}, *popts, run_options(o, "reshard", o.out),
                       timer);
}

}  // namespace ucp::cli
