#include "ucp/exec/pipeline.h"

#include <filesystem>
#include <iostream>

#include "ucp/exec/file_io.h"
#include "ucp/exec/file_plan_executor.h"
#include "ucp/exec/hdf5_executor.h"
#include "ucp/exec/output_dir.h"

namespace ucp::exec {
using base::Result;
using base::Status;
namespace fs = std::filesystem;

namespace {

// The file plan inside either kind of plan: its rounds, small files and digest inputs.
const plan::FilePlan& file_plan_of(const PlannedConversion& p) {
  if (const auto* hdf5 = std::get_if<plan::Hdf5Plan>(&p.plan)) return hdf5->plan;
  return std::get<plan::FilePlan>(p.plan);
}

std::uint64_t digest_of(const PlannedConversion& p) {
  if (const auto* hdf5 = std::get_if<plan::Hdf5Plan>(&p.plan)) return hdf5->digest();
  return std::get<plan::FilePlan>(p.plan).digest();
}

// Bytes the output holds: every file of a file plan; the tensor data of an HDF5 file (its own
// metadata is HDF5's business).
std::uint64_t bytes_written(const PlannedConversion& p) {
  std::uint64_t total = 0;
  if (const auto* hdf5 = std::get_if<plan::Hdf5Plan>(&p.plan)) {
    for (const auto& t : hdf5->plan.tensors)
      if (t.shares_storage_with < 0) total += t.nbytes;
    return total;
  }
  for (const auto& f : std::get<plan::FilePlan>(p.plan).files) total += f.size;
  return total;
}

// The folder holding OUT ("OUT/" names OUT itself).
std::string folder_holding(const std::string& out) {
  fs::path p = fs::absolute(out).lexically_normal();
  if (p.filename().empty()) p = p.parent_path();
  return p.parent_path().string();
}

Status execute(comm::Communicator& comm, const PlannedConversion& planned, OutputDir& out, const RunOptions& o,
               PhaseTimer& timer) {
  ExecuteOptions eopts;
  eopts.progress = o.progress;
  if (const auto* hdf5 = std::get_if<plan::Hdf5Plan>(&planned.plan)) return execute_hdf5_plan(comm, *hdf5, out, eopts, timer);
  return execute_file_plan(comm, std::get<plan::FilePlan>(planned.plan), out, eopts, timer);
}

void print_timings(comm::Communicator& comm, const PhaseTimer& timer, std::uint64_t written) {
  const std::string report = report_timings(comm, timer, written);
  if (comm.rank() == 0) std::cerr << "timings: " << report << std::endl;
}

// Rank 0: the small files of `place`, in plan order, into `dir`; errors name the file.
Status write_small_files(const std::vector<plan::SmallFile>& files, plan::SmallFile::Place place, const std::string& dir) {
  for (const plan::SmallFile& f : files) {
    if (f.place != place) continue;
    const std::string path = dir + "/" + f.name;
    if (!f.copy_from.empty()) UCP_RETURN_IF_ERROR(copy_file(f.copy_from, path));
    else UCP_RETURN_IF_ERROR(write_small_file(path, f.bytes));
  }
  return {};
}

}  // namespace

Status run_conversion(comm::Communicator& comm, const RunOptions& o, const Result<PlannedConversion>& planned,
                      PhaseTimer& timer) {
  UCP_RETURN_IF_ERROR(comm::agree(comm, "plan", planned.status()).status);
  UCP_RETURN_IF_ERROR(comm::agree(comm, "plan", agree_on_digest(comm, digest_of(*planned))).status);
  timer.mark("plan");
  const plan::FilePlan& files = file_plan_of(*planned);
  if (o.dry_run) {
    if (comm.rank() == 0) std::cout << planned->source_description << "\n" << files.describe() << std::flush;
    return {};
  }

  UCP_ASSIGN_OR_RETURN(OutputDir out, OutputDir::prepare(comm, o.out, o.overwrite));
  timer.mark("prepare");
  Status status = execute(comm, *planned, out, o, timer);
  if (status.ok()) {
    Status local;
    if (comm.rank() == 0) local = write_small_files(files.small_files, plan::SmallFile::Place::kInOutput, out.temp_path());
    status = comm::agree(comm, "extras", local).status;
    timer.mark("extras");
  }
  if (status.ok()) {
    const std::string beside = folder_holding(o.out);
    status = out.commit(comm, [&] { return write_small_files(files.small_files, plan::SmallFile::Place::kBesideOutput, beside); });
  }
  if (!status.ok()) out.abandon(comm);
  timer.mark("commit");
  UCP_RETURN_IF_ERROR(status);

  const std::uint64_t written = bytes_written(*planned);
  if (o.timings) print_timings(comm, timer, written);
  if (comm.rank() == 0 && planned->done_message && !o.quiet)
    std::cerr << "ucp-reshard " << o.command << ": " << planned->done_message(written) << std::endl;
  return {};
}

}  // namespace ucp::exec
