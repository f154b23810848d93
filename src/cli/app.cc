// Command dispatch. Shape of every command: parse (all ranks, same arguments) -> local work ->
// comm::agree -> rank 0 prints the verdict once -> every rank exits with the same code.
#include "ucp/cli/app.h"


#include <CLI/CLI.hpp>
#include <csignal>
#include <exception>
#include <iostream>
#include <optional>
#include <sstream>

#include "ucp/cli/config_file.h"
#include "ucp/cli/diff.h"
#include "ucp/cli/inspect.h"
#include "ucp/cli/to_fp32.h"
#include "ucp/cli/reshard.h"
#include "ucp/cli/to_universal.h"
#include "ucp/cli/transport.h"
#include "ucp/comm/communicator.h"
#if defined(UCP_HAVE_HDF5)
#include "ucp/format/hdf5_state_dict.h"
#endif
#if defined(UCP_HAVE_NCCL)
#include "ucp/comm/nccl_transport.h"
#endif

namespace ucp::cli {
namespace {

std::string versions_line(const comm::Communicator& comm) {
  std::ostringstream os;
  os << "ucp-reshard " << UCP_VERSION << " | " << comm.description() << " | " << comm::mpi_library_version();
#if defined(UCP_HAVE_NCCL)
  os << " | NCCL " << comm::nccl_version_string() << ", " << comm::cuda_device_count() << " GPU(s)";
#else
  os << " | NCCL not built";
#endif
#if defined(UCP_HDF5_VERSION)
  os << " | parallel HDF5 " << UCP_HDF5_VERSION;
#endif
  return os.str();
}

// Ends a command: agrees on the outcome so every rank exits with the same code, and rank 0 prints
// the error once. Commands that already agreed internally pass the agreed status as `local`.
int finish(comm::Communicator& comm, std::string_view step, const base::Status& local) {
  comm::Agreement verdict = comm::agree(comm, step, local);
  if (!verdict.status.ok() && comm.rank() == 0) {
    const std::string& msg = !local.ok() ? local.message() : verdict.status.message();
    std::cerr << "ucp-reshard " << step << ": error: " << msg << std::endl;
  }
  return verdict.status.exit_code();
}

}  // namespace

namespace {

// Every command, its options, and which one the command line chose.
struct Commands {
  InspectOptions inspect;
  DiffOptions diff;
  ToFp32Options to_fp32;
  ToUniversalOptions to_universal;
  ReshardOptions reshard;
  CLI::App* inspect_cmd = nullptr;
  CLI::App* diff_cmd = nullptr;
  CLI::App* to_fp32_cmd = nullptr;
  CLI::App* to_universal_cmd = nullptr;
  CLI::App* reshard_cmd = nullptr;

  /// The shared options of the conversion command chosen, or null for inspect / diff.
  const ConversionOptions* conversion() const {
    if (*to_fp32_cmd) return &to_fp32;
    if (*to_universal_cmd) return &to_universal;
    if (*reshard_cmd) return &reshard;
    return nullptr;
  }
};

void add_commands(CLI::App& app, Commands& c) {
  c.inspect_cmd = app.add_subcommand("inspect", "Show what is in a .pt/.bin/.safetensors/.h5 file, a DeepSpeed checkpoint dir or a PyTorch DCP folder");
  c.inspect_cmd->add_option("path", c.inspect.path, "File, DeepSpeed save dir, or tag folder")->required();
  c.inspect_cmd->add_option("--tag", c.inspect.tag, "Tag to read instead of the one in 'latest'");
  c.inspect_cmd->add_flag("--json", c.inspect.json, "Machine-readable JSON output");
  c.inspect_cmd->add_option("--max-items", c.inspect.max_items, "Container items shown per level")->check(CLI::PositiveNumber);

  c.diff_cmd = app.add_subcommand("diff", std::string(kDiffDescription));
  c.diff_cmd->add_option("a", c.diff.a, "State dict A: .safetensors, .bin/.pt, a model dir, or a PyTorch DCP folder")->required();
  c.diff_cmd->add_option("b", c.diff.b, "State dict B")->required();
  c.diff_cmd->add_option("--rtol", c.diff.rtol, "Relative tolerance")->check(CLI::NonNegativeNumber);
  c.diff_cmd->add_option("--atol", c.diff.atol, "Absolute tolerance")->check(CLI::NonNegativeNumber);
  c.diff_cmd->add_flag("--json", c.diff.json, "JSON report");
  c.diff_cmd->add_option("--max-report", c.diff.max_report, "Difference lines shown (negative: all)");

  c.to_fp32_cmd = add_to_fp32_command(app, c.to_fp32);
  c.to_universal_cmd = add_to_universal_command(app, c.to_universal);
  c.reshard_cmd = add_reshard_command(app, c.reshard);
}

// Parses the command line and applies --config presets. An exit code when the process is done
// here (--help, --version, a usage error, a bad preset file), rank 0 having printed why.
std::optional<int> parse_command_line(CLI::App& app, int argc, char** argv, const comm::Communicator& comm) {
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    // Every rank parsed the same arguments, so every rank reaches the same verdict; rank 0 prints.
    std::ostringstream out, err;
    // --help/--version exit 0; every usage error is "invalid argument" (README exit codes).
    const int code = app.exit(e, out, err) == 0 ? 0 : base::invalid_argument("").exit_code();
    if (comm.rank() == 0) {
      std::cout << out.str();
      std::cerr << err.str();
    }
    return code;
  }
  // --config presets fill what the command line left unset; a bad file is a usage error (exit 2).
  for (CLI::App* sub : app.get_subcommands()) {
    if (base::Status s = apply_config_file(*sub); !s.ok()) {
      if (comm.rank() == 0) std::cerr << "ucp-reshard " << sub->get_name() << ": error: " << s.message() << std::endl;
      return s.exit_code();
    }
  }
  return std::nullopt;
}

// diff: exit 0 equal, 1 different (like diff(1)), the usual error codes when an input is unreadable.
int run_diff_command(comm::Communicator& comm, const DiffOptions& options) {
  base::Status local;
  bool equal = true;
  if (comm.rank() == 0) {
    auto r = run_diff(options, std::cout);
    if (r.ok()) equal = *r;
    else local = r.status();
  }
  std::cout.flush();
  std::uint64_t different = equal ? 0 : 1;
  const base::Status reduced = comm.all_reduce_max(std::span<std::uint64_t>(&different, 1));
  const int code = finish(comm, "diff", local.ok() ? reduced : local);
  return code == 0 && different ? 1 : code;
}

int run_command(comm::Communicator& comm, const Commands& c) {
  if (*c.inspect_cmd) {
    base::Status local;
    if (comm.rank() == 0) local = run_inspect(c.inspect, std::cout);
    std::cout.flush();
    return finish(comm, "inspect", local);
  }
  if (*c.diff_cmd) return run_diff_command(comm, c.diff);
  if (*c.to_fp32_cmd) return finish(comm, "to-fp32", run_to_fp32(comm, c.to_fp32));
  if (*c.to_universal_cmd) return finish(comm, "to-universal", run_to_universal(comm, c.to_universal));
  if (*c.reshard_cmd) return finish(comm, "reshard", run_reshard(comm, c.reshard));
  return 0;
}

}  // namespace

int run_main(int argc, char** argv) {
  // A file-size limit must surface as EFBIG (a clear error), not kill the rank mid-collective.
  std::signal(SIGXFSZ, SIG_IGN);
#if defined(UCP_HAVE_HDF5)
  format::install_hdf5_state_dict_loader();  // diff / inspect read to-fp32's model.h5
#endif
  std::unique_ptr<comm::Communicator> comm = comm::make_world_communicator(&argc, &argv);
  int code = 0;
  try {
    CLI::App app{"ucp-reshard: convert and re-partition DeepSpeed ZeRO checkpoints, in parallel.\n"
                 "Rank count comes from the launcher (mpirun -np N / srun), never from a flag."};
    app.require_subcommand(1);
    app.set_version_flag("--version", [&] { return versions_line(*comm); });
    Commands commands;
    add_commands(app, commands);
    if (std::optional<int> done = parse_command_line(app, argc, argv, *comm)) {
      code = *done;
    } else if (const ConversionOptions* conversion = commands.conversion()) {
      // Conversion commands move their data over the transport --transport picks; the rest stay on MPI.
      base::Result<std::string> header = open_transport(comm, *conversion);
      if (!header.ok()) code = finish(*comm, "transport", header.status());
      else if (comm->rank() == 0) std::cerr << "ucp-reshard: " << *header << std::endl;
      if (code == 0) code = run_command(*comm, commands);
    } else {
      code = run_command(*comm, commands);
    }
  } catch (const std::exception& e) {
    // Last resort: this rank cannot reach the next agreement point, so take the job down.
    std::cerr << "ucp-reshard: rank " << comm->rank() << ": internal error: " << e.what() << std::endl;
    comm->abort(9);
  }
  comm.reset();
  comm::finalize_world();
  return code;
}

}  // namespace ucp::cli
