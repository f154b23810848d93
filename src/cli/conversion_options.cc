#include "ucp/cli/conversion_options.h"

#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <iostream>

#include "ucp/base/size.h"

#include "ucp/cli/config_file.h"
#include "ucp/comm/transport.h"

namespace ucp::cli {

void add_conversion_flags(CLI::App* cmd, ConversionOptions& o) {
  cmd->add_option("--max-memory", o.max_memory, "Tensor bytes a rank may hold at once")->capture_default_str();
  cmd->add_flag("--dry-run", o.dry_run, "Print the plan (bytes read/sent/written per rank, files, memory) and stop");
  cmd->add_flag("--progress,!--no-progress", o.progress,
                "Show bytes done, rate and ETA on rank 0 (default: when stderr is a TTY)");
  cmd->add_flag("--overwrite", o.overwrite, "Replace a non-empty output directory");
  cmd->add_flag("--timings", o.timings, "Print per-phase timings and peak memory per rank (JSON) at the end");
  add_config_flag(cmd);
  cmd->add_option("--transport", o.transport,
                  "auto (NCCL when built in and every rank has a GPU of its own, else MPI), mpi or nccl")
      ->check(CLI::IsMember({"auto", "mpi", "nccl"}))
      ->capture_default_str();
  cmd->add_option("--shared-output", o.shared_output,
                  "yes: every rank sees OUT (one host, or a shared filesystem such as Lustre, GPFS, NFS), so each "
                  "rank writes the data it reads straight into the output files; no: data travels to the rank "
                  "that owns each file (node-local output); auto: yes when every rank runs on one host")
      ->check(CLI::IsMember({"auto", "yes", "no"}))
      ->capture_default_str();
  cmd->add_flag("--restart", o.restart,
                "Start over: remove the temporary folder an interrupted run of this command left beside OUT "
                "instead of resuming it");
  cmd->add_flag("--no-sync", o.no_sync,
                "Do not fsync the journal, the output files and their folders before OUT appears (faster on "
                "scratch space; a node crash can then leave an OUT that looks complete and is not)");
  o.progress = ::isatty(STDERR_FILENO) != 0;
}

void add_key_map_flags(CLI::App* cmd, KeyMapOptions& o) {
  std::string presets;
  for (const std::string& p : plan::key_map_preset_names()) presets += (presets.empty() ? "" : ", ") + p;
  cmd->add_option("--key-map", o.key_map,
                  "Rename, drop, tie and q/k-permute tensors after --select: a preset (" + presets +
                      ") or a JSON file of the same schema (README: Key maps)");
  cmd->add_option("--model-config", o.model_config,
                  "HF config.json or Meta/Lingua params.json giving the heads a q/k permutation needs "
                  "(default: config.json or params.json in the checkpoint folder)");
}

base::Result<exec::KeyMapping> key_mapping(const KeyMapOptions& o, const std::string& checkpoint) {
  exec::KeyMapping mapping;
  if (o.key_map.empty()) {
    if (!o.model_config.empty()) return base::invalid_argument("--model-config is read for --key-map's q/k permutation: give --key-map");
    return mapping;
  }
  if (std::optional<std::string_view> preset = plan::key_map_preset(o.key_map)) {
    UCP_ASSIGN_OR_RETURN(mapping.map, plan::parse_key_map(*preset, o.key_map));
  } else {
    std::ifstream in(o.key_map, std::ios::binary);
    if (!in.is_open()) {
      std::string names;
      for (const std::string& p : plan::key_map_preset_names()) names += (names.empty() ? "" : ", ") + p;
      return base::invalid_argument("--key-map " + o.key_map + ": neither a preset (" + names + ") nor a readable JSON file");
    }
    std::stringstream text;
    text << in.rdbuf();
    UCP_ASSIGN_OR_RETURN(mapping.map, plan::parse_key_map(text.str(), o.key_map));
  }
  mapping.model_config = o.model_config;
  for (const char* name : {"config.json", "params.json"})
    if (mapping.model_config.empty() && std::filesystem::is_regular_file(checkpoint + "/" + name))
      mapping.model_config = checkpoint + "/" + name;
  return mapping;
}

base::Result<plan::PlanOptions> shared_plan_options(comm::Communicator& comm, const ConversionOptions& o) {
  plan::PlanOptions p;
  // Collective, so before anything that can fail on one rank only.
  UCP_ASSIGN_OR_RETURN(const comm::NodePlacement placement, comm::node_placement(comm));
  UCP_ASSIGN_OR_RETURN(p.max_memory, base::parse_size(o.max_memory).annotate("--max-memory"));
  p.world_size = comm.size();
  // TEST ONLY: small rounds, so that the kill matrix (tests/oracle/test_preemption.py) has many
  // round boundaries on its small fixtures. Never set outside tests.
  if (const char* rb = std::getenv("UCP_TEST_ROUND_BYTES")) p.round_bytes = std::strtoull(rb, nullptr, 10);
  p.direct_writes = o.shared_output == "yes" || (o.shared_output == "auto" && placement.local_size == comm.size());
  return p;
}

exec::RunOptions run_options(const ConversionOptions& o, std::string command, std::string out) {
  exec::RunOptions r;
  r.command = std::move(command);
  r.out = std::move(out);
  r.overwrite = o.overwrite;
  r.dry_run = o.dry_run;
  r.progress = o.progress;
  r.timings = o.timings;
  r.restart = o.restart;
  r.sync = !o.no_sync;
  return r;
}

}  // namespace ucp::cli
