#include "ucp/exec/pipeline.h"

#include <filesystem>
#include <iostream>
#include <optional>

#include "ucp/exec/file_io.h"
#include "ucp/exec/file_plan_executor.h"
#include "ucp/exec/hdf5_executor.h"
#include "ucp/exec/interrupt.h"
#include "ucp/exec/journal.h"
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
               RankJournal* journal, const ResumePoint& resume, PhaseTimer& timer) {
  ExecuteOptions eopts;
  eopts.progress = o.progress;
  eopts.sync = o.sync;
  eopts.journal = journal;
  eopts.resume = resume;
  if (const auto* hdf5 = std::get_if<plan::Hdf5Plan>(&planned.plan)) return execute_hdf5_plan(comm, *hdf5, out, eopts, timer);
  return execute_file_plan(comm, std::get<plan::FilePlan>(planned.plan), out, eopts, timer);
}

void print_timings(comm::Communicator& comm, const PhaseTimer& timer, std::uint64_t written, std::size_t resumed_rounds,
                   std::uint64_t read_now, std::uint64_t written_now) {
  std::string report = report_timings(comm, timer, written);
  // What this run moved: a resumed run reads and writes only the rounds it had left.
  report.pop_back();  // the closing brace of the JSON object
  report += ",\"resumed_rounds\":" + std::to_string(resumed_rounds) + ",\"tensor_bytes_read\":" + std::to_string(read_now) +
            ",\"tensor_bytes_written\":" + std::to_string(written_now) + "}";
  if (comm.rank() == 0) std::cerr << "timings: " << report << std::endl;
}

// Rank 0: the small files of `place`, in plan order, into `dir` (synced when `sync`); errors name
// the file. A copy left by an interrupted run is replaced.
Status write_small_files(const std::vector<plan::SmallFile>& files, plan::SmallFile::Place place, const std::string& dir,
                         bool sync) {
  for (const plan::SmallFile& f : files) {
    if (f.place != place) continue;
    const std::string path = dir + "/" + f.name;
    if (!f.copy_from.empty()) {
      std::error_code ec;
      fs::remove(path, ec);
      UCP_RETURN_IF_ERROR(copy_file(f.copy_from, path));
    } else {
      UCP_RETURN_IF_ERROR(write_small_file(path, f.bytes));
    }
    if (sync) UCP_RETURN_IF_ERROR(sync_file(path));
  }
  return {};
}

// Bytes the rounds from `first` on read from the source and write to the output (all ranks).
std::pair<std::uint64_t, std::uint64_t> round_bytes(const plan::FilePlan& plan, std::size_t first) {
  std::uint64_t read = 0, written = 0;
  for (std::size_t r = first; r < plan.rounds.size(); ++r)
    for (const plan::Transfer& x : plan.rounds[r]) {
      read += x.src.numel * base::dtype_size(x.src.dtype);
      written += x.out_bytes();
    }
  return {read, written};
}

// Collective, after prepare: every rank opens its journal (file plans) and they agree how far the
// run in the folder got. A run that had not created all its files starts over in the folder.
Status open_journal(comm::Communicator& comm, const RunOptions& o, OutputDir& out, bool journaled, std::size_t rounds,
                    std::optional<RankJournal>& journal, ResumePoint& resume) {
  if (!journaled) return {};
  Result<RankJournal> opened = RankJournal::open(out.temp_path(), comm.rank(), o.sync);
  UCP_RETURN_IF_ERROR(comm::agree(comm, "prepare", opened.status()).status);
  journal.emplace(std::move(*opened));
  UCP_ASSIGN_OR_RETURN(resume, agree_resume_point(comm, *journal));
  if (!out.resumed()) return {};
  if (!resume.created) {
    // Some rank had not created its files: start over, in the same folder.
    Status local;
    if (comm.rank() == 0) {
      std::cerr << "ucp-reshard " << o.command << ": the interrupted run had not created all its files: starting over"
                << std::endl;
      std::error_code ec;
      for (fs::directory_iterator it(out.temp_path(), ec), end; !ec && it != end; it.increment(ec))
        if (it->path().filename() != kJournalDir) fs::remove_all(it->path(), ec);
      if (ec) local = io_error("emptying", out.temp_path(), ec.value());
    }
    UCP_RETURN_IF_ERROR(comm::agree(comm, "prepare", local).status);
    UCP_RETURN_IF_ERROR(comm::agree(comm, "prepare", journal->reset()).status);
    return {};
  }
  UCP_RETURN_IF_ERROR(comm::agree(comm, "prepare", journal->keep(resume.rounds, resume.finalized)).status);
  if (comm.rank() == 0)
    std::cerr << "ucp-reshard " << o.command << ": " << resume.rounds << " of " << rounds << " rounds were done"
              << (resume.finalized ? ", and finalized" : "") << std::endl;
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

  install_stop_handlers();
  if (const int sig = agreed_stop_signal(comm))  // asked to stop while reading the source
    return base::interrupted("stopped by " + signal_name(sig) + " before writing anything");
  // Only file plans keep a journal; the identity names the run a later one may resume.
  const bool journaled = std::holds_alternative<plan::FilePlan>(planned->plan);
  PrepareOptions popts;
  popts.command = o.command;
  popts.overwrite = o.overwrite;
  popts.restart = o.restart;
  popts.sync = o.sync;
  if (journaled) popts.identity = run_identity(o.command, comm.size(), digest_of(*planned), files.source_paths);
  else popts.why_not_resumable = "an HDF5 output cannot resume (parallel HDF5 writes it without a journal)";
  UCP_ASSIGN_OR_RETURN(OutputDir out, OutputDir::prepare(comm, o.out, popts));
  std::optional<RankJournal> journal;
  ResumePoint resume;
  Status status = open_journal(comm, o, out, journaled, files.rounds.size(), journal, resume);
  timer.mark("prepare");
  if (status.ok() && !resume.finalized)
    status = execute(comm, *planned, out, o, journal ? &*journal : nullptr, resume, timer);
  if (status.ok()) {
    Status local;
    if (comm.rank() == 0) local = write_small_files(files.small_files, plan::SmallFile::Place::kInOutput, out.temp_path(), o.sync);
    status = comm::agree(comm, "extras", local).status;
    timer.mark("extras");
  }
  if (status.ok()) {
    test_hook("commit", 0, comm.rank());
    const std::string beside = folder_holding(o.out);
    status = out.commit(comm, [&] { return write_small_files(files.small_files, plan::SmallFile::Place::kBesideOutput, beside, o.sync); });
  }
  if (status.code() == base::StatusCode::kInterrupted) {
    out.keep_for_resume(comm);
    return base::interrupted(status.message() + "; the finished rounds are kept in '" + out.temp_path() +
                             "': run the same command again to resume (--restart starts over)");
  }
  if (!status.ok()) out.abandon(comm);
  timer.mark("commit");
  UCP_RETURN_IF_ERROR(status);

  const std::uint64_t written = bytes_written(*planned);
  if (o.timings) {
    const auto [read_now, written_now] = round_bytes(files, journaled ? resume.rounds : 0);
    print_timings(comm, timer, written, resume.rounds, read_now, written_now);
  }
  if (comm.rank() == 0 && planned->done_message && !o.quiet)
    std::cerr << "ucp-reshard " << o.command << ": " << planned->done_message(written) << std::endl;
  return {};
}

}  // namespace ucp::exec
