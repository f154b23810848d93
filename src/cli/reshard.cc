#include "ucp/cli/reshard.h"

#include <CLI/CLI.hpp>
#include <filesystem>
#include <iostream>

#include "ucp/base/size.h"
#include "ucp/exec/file_io.h"
#include "ucp/exec/fp32_executor.h"
#include "ucp/exec/native_source.h"
#include "ucp/exec/save_dir_extras.h"
#include "ucp/exec/zero_source.h"
#include "ucp/plan/native_plan.h"

namespace ucp::cli {
using base::Result;
using base::Status;

CLI::App* add_reshard_command(CLI::App& app, ReshardOptions& o) {
  CLI::App* cmd = app.add_subcommand(
      "reshard", "Re-partition a DeepSpeed ZeRO checkpoint for a new data-parallel size (native files, no special load flag)");
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

  // SRC: a universal checkpoint (every rank parses its small pickles), or ZeRO files (metadata
  // read collectively).
  const std::string universal = exec::find_universal_folder(o.source, o.tag);
  const std::string hdf5 = universal.empty() ? exec::find_hdf5_universal(o.source) : std::string();
  Result<plan::NativeSource> source = base::internal_error("no source");
  std::string description, save_dir;
  if (!hdf5.empty()) {
    source = exec::native_source_from_hdf5(hdf5);
    description = "HDF5 universal checkpoint " + hdf5;
    timer.mark("metadata");
  } else if (!universal.empty()) {
    source = exec::native_source_from_universal(universal);
    description = "universal checkpoint " + universal;
    timer.mark("metadata");
  } else {
    UCP_ASSIGN_OR_RETURN(format::ZeroCheckpoint ckpt, exec::read_zero_checkpoint(comm, o.source, o.tag, timer));
    source = exec::native_source_from_zero(ckpt);
    save_dir = ckpt.files.save_dir;
    description = exec::describe_checkpoint(ckpt);
  }
  UCP_RETURN_IF_ERROR(comm::agree(comm, "source", source.status()).status);
  if (!universal.empty() || !hdf5.empty())
    description += " (ZeRO stage " + std::to_string(source->zero_stage) + ", dp " + std::to_string(source->dp) + ")";
  Result<plan::Fp32Plan> plan = plan::plan_native(*source, o.target_dp, *popts);
  UCP_RETURN_IF_ERROR(agree_on_plan(comm, plan.status(), [&] { return plan->digest(); }, timer));

  if (o.dry_run) {
    if (comm.rank() == 0)
      std::cout << description << " -> dp " << o.target_dp << "\n"
                << plan->describe() << "  plus " << o.out << "/latest (rank 0)\n"
                << std::flush;
    return {};
  }

  // Framework files beside the DeepSpeed folders (HF Trainer's checkpoint-K/): copied by rank 0.
  std::vector<std::string> warnings;
  Result<std::vector<exec::SaveDirCopy>> extras = std::vector<exec::SaveDirCopy>{};
  if (!save_dir.empty()) extras = exec::plan_save_dir_extras(save_dir, o.target_dp, warnings);
  UCP_RETURN_IF_ERROR(comm::agree(comm, "source", extras.status()).status);
  if (comm.rank() == 0)
    for (const auto& w : warnings) std::cerr << "ucp-reshard reshard: warning: " << w << std::endl;

  UCP_ASSIGN_OR_RETURN(exec::OutputDir out, exec::OutputDir::prepare(comm, o.out, o.overwrite));
  timer.mark("prepare");
  exec::ExecuteOptions eopts;
  eopts.progress = o.progress;
  eopts.before_commit = [&]() -> Status {
    if (comm.rank() != 0) return {};
    UCP_RETURN_IF_ERROR(exec::copy_save_dir_extras(*extras, out.temp_path()));
    return exec::write_small_file(out.temp_path() + "/latest", source->tag);  // no newline, as DeepSpeed
  };
  UCP_RETURN_IF_ERROR(exec::execute_fp32_plan(comm, *plan, out, eopts, timer));

  std::uint64_t written = 0;
  for (const auto& f : plan->files) written += f.size;
  print_timings_if_asked(comm, o, timer, written);
  if (comm.rank() == 0)
    std::cerr << "ucp-reshard reshard: wrote " << plan->files.size() << " files (" << base::format_bytes(written)
              << ") for dp " << o.target_dp << " to " << o.out << "/" << source->tag << std::endl;
  return {};
}

}  // namespace ucp::cli
