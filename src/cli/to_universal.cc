#include "ucp/cli/to_universal.h"

#include <CLI/CLI.hpp>
#include <iostream>

#include "ucp/exec/convert.h"

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

  return exec::convert(comm, o.checkpoint, o.tag, exec::UniversalTarget{}, *popts, run_options(o, "to-universal", o.out),
                       timer);
}

}  // namespace ucp::cli
