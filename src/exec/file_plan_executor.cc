#include "ucp/exec/file_plan_executor.h"

#include <fcntl.h>
#include <sched.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <future>
#include <map>
#include <set>
#include <memory>
#include <thread>
#include <utility>

#include "ucp/base/size.h"
#include "ucp/comm/transport.h"
#include "ucp/exec/file_io.h"
#include "ucp/exec/interrupt.h"
#include "ucp/exec/source_reader.h"
#include "ucp/format/crc32.h"
#include "ucp/format/zip_writer.h"

namespace ucp::exec {
using base::Result;
using base::Status;
using plan::FilePlan;
using plan::Transfer;

namespace {

using CrcPiece = format::ZipCrcPiece;

// Runs fn(0) .. fn(n - 1) at once: fn(0) on the calling thread, the others on threads of their own.
void run_on_threads(std::size_t n, const std::function<void(std::size_t)>& fn) {
  std::vector<std::jthread> threads;
  for (std::size_t t = 1; t < n; ++t) threads.emplace_back(fn, t);
  fn(0);
}

// An uninitialised byte buffer.
class Buffer {
 public:
  void resize(std::size_t n) {
    data_ = std::make_unique_for_overwrite<std::byte[]>(n);
    size_ = n;
  }
  std::byte* data() { return data_.get(); }
  std::size_t size() const { return size_; }
  operator std::span<std::byte>() { return {data_.get(), size_}; }  // NOLINT: implicit by design
  operator std::span<const std::byte>() const { return {data_.get(), size_}; }  // NOLINT

 private:
  std::unique_ptr<std::byte[]> data_;
  std::size_t size_ = 0;
};

// Makes the files `fds` (and, with `folders`, the folder entries naming them) durable: one fsync
// each for a few files; for many (a universal checkpoint's thousands) one syncfs of the output's
// filesystem, which costs one journal commit instead of one per file. Each fd comes with its path
// for errors.
constexpr std::size_t kSyncfsFrom = 16;
Status make_durable(const std::vector<std::pair<int, std::string>>& fds, const std::set<std::string>& folders) {
  if (fds.empty()) return {};
  if (fds.size() + folders.size() >= kSyncfsFrom) {
    if (::syncfs(fds.front().first) != 0) return io_error("syncing the filesystem of", fds.front().second, errno);
    return {};
  }
  for (const auto& [fd, path] : fds)
    if (::fsync(fd) != 0) return io_error("syncing", path, errno);
  for (const std::string& d : folders) UCP_RETURN_IF_ERROR(sync_folder(d));
  return {};
}

// Per-rank state of one execution.
class FilePlanRun {
 public:
  FilePlanRun(comm::Communicator& comm, const FilePlan& plan, OutputDir& out, int lanes, const ExecuteOptions& options)
      : comm_(comm), plan_(plan), out_(out), me_(comm.rank()), lanes_(lanes), sources_(plan.source_paths),
        options_(options) {}
  ~FilePlanRun() {
    for (auto& [f, fd] : out_fds_) ::close(fd);
    for (auto& [f, fd] : shared_fds_) ::close(fd);
  }

  Status create();
  /// After every owner created its files: opens the files this rank writes runs into but does not
  /// own (direct writes).
  Status open_shared();
  Status transfer_round(const std::vector<Transfer>& round);
  Status finish_zip(int file, const plan::PlacedZip& zip, int fd, const std::string& path);
  /// After round `index`: its bytes are made durable, then it is recorded in the journal, on a
  /// thread of its own while the next round runs (writeback overlaps the work). The error of the
  /// round before, if any, is returned here (one round late).
  Status record_round(std::size_t index);
  /// Waits for the last round's record: after the rounds, and when they stopped.
  Status drain();
  Status finalize();

 private:
  // Streams the local runs of `runs` (indices into `round`) on lane `lane`: read, checksummed and
  // written chunk by chunk. Records CRC pieces in `crcs`; the first error and its run's index.
  struct LaneResult {
    std::vector<std::pair<std::pair<int, int>, CrcPiece>> crcs;  // ((file, zip entry), piece)
    Status status;
    std::size_t failed_at = SIZE_MAX;
  };
  void stream_local_runs(const std::vector<Transfer>& round, const std::vector<std::size_t>& runs, int lane,
                         LaneResult& result);
  // The fd this rank writes output file `file` through (owned or shared).
  int fd_of(int file) const {
    const auto it = out_fds_.find(file);
    return it != out_fds_.end() ? it->second : shared_fds_.at(file);
  }
  // Collective when the plan has zip records written by ranks other than their file's owner: hands
  // those CRC pieces to the owners (all-gather), who combine them at finalize.
  Status hand_over_crc_pieces();

  comm::Communicator& comm_;
  const FilePlan& plan_;
  OutputDir& out_;
  const int me_;
  const int lanes_;              // threads for creating files and streaming local runs (stream_lanes)
  std::map<int, int> out_fds_;   // output file index -> fd (files I own)
  std::map<int, int> shared_fds_;  // output file index -> fd (files others own that I write runs into)
  SourceReader sources_;         // the source files I read
  // Sized once for the largest round and reused; never zero-filled (every byte is written before
  // it is read), so only pages a round actually uses are ever touched.
  Buffer send_, recv_;
  std::map<std::pair<int, int>, std::vector<CrcPiece>> crcs_;  // (file, zip entry) -> pieces
  const ExecuteOptions& options_;
  std::vector<JournalCrc> round_crcs_;  // the pieces of the last round, for its journal record
  std::future<Status> recording_;       // the record of the last round, in flight
};

// Opens output file `file` that an earlier (journaled) run created; the fd, or -1 with the error.
std::pair<int, Status> reopen_output_file(const OutputDir& out, const plan::OutputFile& file) {
  const std::string path = out.temp_file(file.name);
  const int fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
  if (fd < 0) return {-1, io_error("reopening (to resume)", path, errno)};
  return {fd, Status()};
}

// Creates one output file in the temporary folder, with its fixed bytes written; the fd, or -1
// with the error.
std::pair<int, Status> create_output_file(const OutputDir& out, const plan::OutputFile& file) {
  const std::string path = out.temp_file(file.name);
  if (const auto slash = file.name.rfind('/'); slash != std::string::npos) {
    // Nested outputs (universal zero/<param>/...): several owners (or threads) may create one folder.
    std::error_code ec;
    const std::string dir = out.temp_file(file.name.substr(0, slash));
    std::filesystem::create_directories(dir, ec);
    if (!std::filesystem::is_directory(dir)) return {-1, io_error("creating folder", dir, ec ? ec.value() : EIO)};
  }
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0) return {-1, io_error("creating", path, errno)};
  auto fail = [&](Status s) {
    ::close(fd);
    return std::pair<int, Status>{-1, std::move(s)};
  };
  // Reserve the space now: a full disk fails here, before any work, not half way through.
  if (file.size > 0) {
    const int err = ::posix_fallocate(fd, 0, static_cast<off_t>(file.size));
    if (err == ENOSPC || err == EDQUOT || err == EFBIG) return fail(io_error("allocating " + base::format_bytes(file.size) + " for", path, err));
    if (err != 0 && ::ftruncate(fd, static_cast<off_t>(file.size)) != 0) return fail(io_error("sizing", path, errno));
  }
  for (const auto& [offset, bytes] : file.fixed)
    if (Status s = pwrite_full(fd, bytes.data(), bytes.size(), offset, path); !s.ok()) return fail(std::move(s));
  return {fd, Status()};
}

Status FilePlanRun::create() {
  std::vector<int> mine;
  for (std::size_t f = 0; f < plan_.files.size(); ++f)
    if (plan_.files[f].owner == me_) mine.push_back(static_cast<int>(f));
  // A universal checkpoint is thousands of small files, and creating a file costs ~0.1-0.2 ms of
  // filesystem work: spread it over the lanes, each a contiguous block (files of one folder stay
  // together). The first error in file order is the one reported.
  std::vector<std::pair<int, Status>> created(mine.size(), {-1, Status()});
  const std::size_t threads = std::min(static_cast<std::size_t>(lanes_), mine.size() / 64 + 1);
  run_on_threads(threads, [&](std::size_t t) {
    for (std::size_t i = t * mine.size() / threads; i < (t + 1) * mine.size() / threads; ++i) {
      const plan::OutputFile& file = plan_.files[static_cast<std::size_t>(mine[i])];
      created[i] = options_.resume.created ? reopen_output_file(out_, file) : create_output_file(out_, file);
      if (!created[i].second.ok()) return;
    }
  });
  Status first_error;
  for (std::size_t i = 0; i < mine.size(); ++i) {
    if (created[i].first >= 0) out_fds_[mine[i]] = created[i].first;
    if (first_error.ok() && !created[i].second.ok()) first_error = created[i].second;
  }
  UCP_RETURN_IF_ERROR(first_error);
  if (options_.journal && !options_.resume.created) {
    // Durable before recorded: the files' fixed bytes, and the folder entries naming them.
    std::set<std::string> folders;
    std::vector<std::pair<int, std::string>> fds;
    for (const auto& [f, fd] : out_fds_) {
      fds.emplace_back(fd, out_.temp_file(plan_.files[static_cast<std::size_t>(f)].name));
      folders.insert(std::filesystem::path(fds.back().second).parent_path().string());
    }
    if (options_.sync) UCP_RETURN_IF_ERROR(make_durable(fds, folders));
    test_hook("create", 0, me_);
    UCP_RETURN_IF_ERROR(options_.journal->record_created());
  }
  // Rounds an earlier run finished: their CRC pieces come from the journal.
  if (options_.journal)
    for (std::size_t r = 0; r < options_.resume.rounds; ++r)
      for (const JournalCrc& c : options_.journal->crcs_of_round(r)) crcs_[{c.file, c.entry}].push_back({c.offset, c.len, c.crc});
  // Open the sources this rank reads, and size the buffers for the largest round.
  UCP_ASSIGN_OR_RETURN(const std::uint64_t max_send, sources_.open_for(plan_, me_, SourceReader::Buffered::kSentOnly, lanes_));
  std::uint64_t max_recv = 0;
  for (const auto& round : plan_.rounds) {
    std::uint64_t r = 0;
    for (const Transfer& x : round)
      if (x.writer == me_ && x.reader != me_) r += x.out_bytes();
    max_recv = std::max(max_recv, r);
  }
  send_.resize(max_send);
  recv_.resize(max_recv);
  return {};
}

Status FilePlanRun::open_shared() {
  std::vector<int> files;
  for (const auto& round : plan_.rounds)
    for (const Transfer& x : round)
      if (x.writer == me_ && plan_.files[static_cast<std::size_t>(x.file)].owner != me_) files.push_back(x.file);
  std::sort(files.begin(), files.end());
  files.erase(std::unique(files.begin(), files.end()), files.end());
  for (int f : files) {
    const std::string path = out_.temp_file(plan_.files[static_cast<std::size_t>(f)].name);
    const int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
    if (fd < 0) return io_error("opening (written by every rank that reads its data)", path, errno);
    shared_fds_[f] = fd;
  }
  return {};
}

// A CRC piece on the wire: file, zip entry, offset, length, crc.
struct WireCrcPiece {
  std::int32_t file;
  std::int32_t entry;
  std::uint64_t offset;
  std::uint64_t len;
  std::uint32_t crc;
};

Status FilePlanRun::hand_over_crc_pieces() {
  bool needed = false;  // from the agreed plan, so every rank takes the same branch
  for (const auto& round : plan_.rounds)
    for (const Transfer& x : round)
      needed = needed || (x.zip_entry >= 0 && x.writer != plan_.files[static_cast<std::size_t>(x.file)].owner);
  if (!needed) return {};
  std::vector<WireCrcPiece> mine;
  for (auto it = crcs_.begin(); it != crcs_.end();) {
    const auto [file, entry] = it->first;
    if (plan_.files[static_cast<std::size_t>(file)].owner == me_) {
      ++it;
      continue;
    }
    for (const CrcPiece& p : it->second) mine.push_back({file, entry, p.offset, p.len, p.crc});
    it = crcs_.erase(it);
  }
  UCP_ASSIGN_OR_RETURN(auto gathered, comm_.all_gather(std::as_bytes(std::span(mine))));
  for (const auto& bytes : gathered) {
    std::vector<WireCrcPiece> pieces(bytes.size() / sizeof(WireCrcPiece));
    std::memcpy(pieces.data(), bytes.data(), pieces.size() * sizeof(WireCrcPiece));
    for (const WireCrcPiece& p : pieces)
      if (plan_.files[static_cast<std::size_t>(p.file)].owner == me_) crcs_[{p.file, p.entry}].push_back({p.offset, p.len, p.crc});
  }
  return {};
}

Status FilePlanRun::transfer_round(const std::vector<Transfer>& round) {
  const auto world = static_cast<std::size_t>(comm_.size());
  std::vector<std::uint64_t> send_counts(world, 0), send_offsets(world, 0), recv_counts(world, 0), recv_offsets(world, 0);
  // The round is sorted by (reader, writer, file, offset): my sends are grouped by destination.
  // Runs I both read and write never enter a buffer: they are streamed after the exchange.
  std::uint64_t pos = 0;
  for (const Transfer& x : round) {
    if (x.reader == me_ && x.writer != me_) {
      const auto w = static_cast<std::size_t>(x.writer);
      if (send_counts[w] == 0) send_offsets[w] = pos;
      send_counts[w] += x.out_bytes();
      pos += x.out_bytes();
    }
    if (x.writer == me_ && x.reader != me_) recv_counts[static_cast<std::size_t>(x.reader)] += x.out_bytes();
  }
  for (std::size_t r = 1; r < world; ++r) recv_offsets[r] = recv_offsets[r - 1] + recv_counts[r - 1];

  Status local;
  pos = 0;
  for (const Transfer& x : round) {
    if (x.reader != me_ || x.writer == me_) continue;
    if (local.ok()) local = sources_.read(x, send_.data() + pos);
    pos += x.out_bytes();
  }
  // Exchange even after a local read error: the counts come from the agreed plan, so every rank
  // still makes the same call; the error is reported at the agreement that ends the round.
  UCP_RETURN_IF_ERROR(comm_.all_to_all_v(send_, send_counts, send_offsets, recv_, recv_counts, recv_offsets));

  if (!local.ok()) return local;

  // Write. Runs from each source rank arrive in the same (writer, file, offset) order; runs this
  // rank reads itself are streamed, each output file's on one lane (two threads writing one file
  // contend for its inode lock and spin), files spread over the lanes by bytes.
  std::vector<std::vector<std::size_t>> lane_runs(static_cast<std::size_t>(lanes_));
  std::map<int, std::vector<std::size_t>> file_runs;  // output file -> its local runs, in order
  std::vector<std::uint64_t> cursor = recv_offsets;
  std::vector<LaneResult> results(lane_runs.size() + 1);  // the last: received runs
  LaneResult& received = results.back();
  for (std::size_t i = 0; i < round.size(); ++i) {
    const Transfer& x = round[i];
    if (x.writer != me_) continue;
    if (x.reader == me_) {
      file_runs[x.file].push_back(i);
      continue;
    }
    const std::byte* data = recv_.data() + cursor[static_cast<std::size_t>(x.reader)];
    cursor[static_cast<std::size_t>(x.reader)] += x.out_bytes();
    if (!received.status.ok()) continue;
    const std::string path = out_.temp_file(plan_.files[static_cast<std::size_t>(x.file)].name);
    x.for_each_row([&](std::uint64_t offset, std::uint64_t packed, std::uint64_t len) {
      if (!received.status.ok()) return;
      received.status = pwrite_full(fd_of(x.file), data + packed, len, offset, path);
      if (x.zip_entry >= 0)
        received.crcs.push_back({{x.file, x.zip_entry}, {offset, len, format::crc32_update(0, std::span<const std::byte>(data + packed, len))}});
    });
    if (!received.status.ok()) received.failed_at = i;
  }
  {
    std::vector<std::uint64_t> lane_bytes(lane_runs.size(), 0);
    for (auto& [file, runs] : file_runs) {
      const auto lane = static_cast<std::size_t>(std::min_element(lane_bytes.begin(), lane_bytes.end()) - lane_bytes.begin());
      for (std::size_t i : runs) lane_bytes[lane] += round[i].out_bytes();
      lane_runs[lane].insert(lane_runs[lane].end(), runs.begin(), runs.end());
    }
  }
  run_on_threads(lane_runs.size(), [&](std::size_t lane) {
    stream_local_runs(round, lane_runs[lane], static_cast<int>(lane), results[lane]);
  });
  // The error of the earliest run in the round, whichever lane met it.
  const LaneResult* first = nullptr;
  round_crcs_.clear();
  for (LaneResult& r : results) {
    for (auto& [key, piece] : r.crcs) {
      crcs_[key].push_back(piece);
      round_crcs_.push_back({key.first, key.second, piece.offset, piece.len, piece.crc});
    }
    if (!r.status.ok() && (!first || r.failed_at < first->failed_at)) first = &r;
  }
  return first ? first->status : Status();
}

void FilePlanRun::stream_local_runs(const std::vector<Transfer>& round, const std::vector<std::size_t>& runs, int lane,
                                LaneResult& result) {
  for (std::size_t i : runs) {
    const Transfer& x = round[i];
    const int fd = fd_of(x.file);
    const std::string path = out_.temp_file(plan_.files[static_cast<std::size_t>(x.file)].name);
    // The converted bytes arrive in chunks of any size; a strided run's rows land apart, each
    // with a CRC piece of its own.
    const std::uint64_t row_bytes = x.row_bytes();
    std::uint32_t crc = 0;
    std::uint64_t written = 0;
    result.status = sources_.stream(
        x,
        [&](std::span<const std::byte> chunk) {
          while (!chunk.empty()) {
            const std::uint64_t row = written / row_bytes, in_row = written % row_bytes;
            const std::size_t len = static_cast<std::size_t>(std::min<std::uint64_t>(chunk.size(), row_bytes - in_row));
            const std::uint64_t row_start = x.file_offset + row * x.dst_row_stride;
            if (x.zip_entry >= 0) crc = format::crc32_update(crc, chunk.first(len));
            UCP_RETURN_IF_ERROR(pwrite_full(fd, chunk.data(), len, row_start + in_row, path));
            written += len;
            chunk = chunk.subspan(len);
            if (x.zip_entry >= 0 && in_row + len == row_bytes) {
              result.crcs.push_back({{x.file, x.zip_entry}, {row_start, row_bytes, crc}});
              crc = 0;
            }
          }
          return Status();
        },
        lane);
    if (!result.status.ok()) {
      result.failed_at = i;
      return;
    }
  }
}

// Record i's CRC combines its fixed runs (pickle, zero padding) and its written runs.
Status FilePlanRun::finish_zip(int f, const plan::PlacedZip& z, int fd, const std::string& path) {
  std::vector<std::vector<CrcPiece>> pieces(z.layout.entries.size());
  for (std::size_t e = 0; e < pieces.size(); ++e)
    if (auto it = crcs_.find({f, z.first_entry + static_cast<int>(e)}); it != crcs_.end()) pieces[e] = std::move(it->second);
  const std::vector<std::uint32_t> crc =
      format::combine_record_crcs(z.layout, std::move(pieces), plan_.files[static_cast<std::size_t>(f)].fixed, z.base);
  for (const auto& [offset, bytes] : format::zip_finish_writes(z.layout, crc))
    UCP_RETURN_IF_ERROR(pwrite_full(fd, bytes.data(), bytes.size(), z.base + offset, path));
  return {};
}

Status FilePlanRun::record_round(std::size_t index) {
  if (!options_.journal) return {};
  Status before = drain();
  std::vector<std::pair<int, std::string>> fds;
  if (options_.sync) {
    std::set<int> written;
    for (const Transfer& x : plan_.rounds[index])
      if (x.writer == me_) written.insert(x.file);
    for (int f : written) fds.emplace_back(fd_of(f), out_.temp_file(plan_.files[static_cast<std::size_t>(f)].name));
  }
  recording_ = std::async(std::launch::async, [this, index, fds = std::move(fds), crcs = round_crcs_]() {
    UCP_RETURN_IF_ERROR(make_durable(fds, {}));
    test_hook("transfer", index, me_);
    return options_.journal->record_round(index, crcs);
  });
  return before;
}

Status FilePlanRun::drain() {
  if (!recording_.valid()) return {};
  return recording_.get();
}

Status FilePlanRun::finalize() {
  // Collective first (every rank reaches finalize after the same rounds), errors after.
  Status handed = hand_over_crc_pieces();
  for (auto& [f, fd] : shared_fds_) {
    const std::string path = out_.temp_file(plan_.files[static_cast<std::size_t>(f)].name);
    if (::close(fd) != 0 && handed.ok()) handed = io_error("closing", path, errno);
  }
  shared_fds_.clear();
  UCP_RETURN_IF_ERROR(handed);
  for (auto& [f, fd] : out_fds_) {
    const plan::OutputFile& file = plan_.files[static_cast<std::size_t>(f)];
    const std::string path = out_.temp_file(file.name);
    for (const plan::PlacedZip& z : file.zips) UCP_RETURN_IF_ERROR(finish_zip(f, z, fd, path));
  }
  // Durable commit: every byte on disk before the rename that publishes OUT.
  if (options_.sync) {
    std::vector<std::pair<int, std::string>> fds;
    for (const auto& [f, fd] : out_fds_) fds.emplace_back(fd, out_.temp_file(plan_.files[static_cast<std::size_t>(f)].name));
    UCP_RETURN_IF_ERROR(make_durable(fds, {}));
  }
  for (auto& [f, fd] : out_fds_) {
    if (::close(fd) != 0) return io_error("closing", out_.temp_file(plan_.files[static_cast<std::size_t>(f)].name), errno);
    fd = -1;
  }
  out_fds_.clear();
  if (options_.journal) {
    test_hook("finalize", 0, me_);
    UCP_RETURN_IF_ERROR(options_.journal->record_finalized());
  }
  return {};
}

}  // namespace

Status run_transfer_rounds(comm::Communicator& comm, const FilePlan& plan, const ExecuteOptions& options,
                           const std::function<Status(const std::vector<Transfer>&)>& transfer) {
  std::uint64_t total = 0, done = 0;
  const std::size_t first = std::min(options.resume.rounds, plan.rounds.size());
  for (std::size_t i = first; i < plan.rounds.size(); ++i)
    for (const auto& x : plan.rounds[i]) total += x.out_bytes();
  const auto start = std::chrono::steady_clock::now();
  const std::size_t rounds = plan.rounds.size();
  for (std::size_t i = first; i < rounds; ++i) {
    if (const int sig = agreed_stop_signal(comm))
      return base::interrupted("stopped by " + signal_name(sig) + " after " + std::to_string(i) + " of " +
                               std::to_string(rounds) + " rounds");
    Status s = transfer(plan.rounds[i]);
    if (s.ok() && options.after_round) s = options.after_round(i);
    UCP_RETURN_IF_ERROR(comm::agree(comm, "transfer", s).status);
    for (const auto& x : plan.rounds[i]) done += x.out_bytes();
    if (!options.progress || comm.rank() != 0) continue;
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    const double rate = secs > 0 ? static_cast<double>(done) / secs : 0;
    const double eta = rate > 0 ? static_cast<double>(total - done) / rate : 0;
    std::fprintf(stderr, "\r[ucp-reshard] round %zu/%zu  %s / %s  %s/s  ETA %.0f s   ", i + 1, rounds,
                 base::format_bytes(done).c_str(), base::format_bytes(total).c_str(),
                 base::format_bytes(static_cast<std::uint64_t>(rate)).c_str(), eta);
    if (i + 1 == rounds) std::fprintf(stderr, "\n");
  }
  return {};
}

int stream_lanes(int cpus_available, int ranks_on_host) {
  return std::clamp(cpus_available / std::max(ranks_on_host, 1), 1, kMaxStreamLanes);
}

Status execute_file_plan(comm::Communicator& comm, const FilePlan& plan, OutputDir& out, const ExecuteOptions& options,
                         PhaseTimer& timer) {
  // Collective (the same result on every rank): the ranks on this host share its CPUs.
  const Result<comm::NodePlacement> placement = comm::node_placement(comm);
  Status status = placement.status();
  if (status.ok()) {
    cpu_set_t cpus;
    const int available = ::sched_getaffinity(0, sizeof cpus, &cpus) == 0 ? CPU_COUNT(&cpus) : 1;
    ExecuteOptions opts = options;
    FilePlanRun run(comm, plan, out, stream_lanes(available, placement->local_size), opts);
    opts.after_round = [&](std::size_t i) { return run.record_round(i); };
    status = comm::agree(comm, "create", run.create()).status;
    if (status.ok()) status = comm::agree(comm, "create", run.open_shared()).status;  // owners created theirs
    timer.mark("create");
    if (status.ok())
      status = run_transfer_rounds(comm, plan, opts, [&](const std::vector<Transfer>& r) { return run.transfer_round(r); });
    // The last round's record (also when the rounds stopped: its bytes are kept for a resume).
    const Status drained = run.drain();
    if (status.ok()) status = comm::agree(comm, "transfer", drained).status;
    timer.mark("transfer");
    if (status.ok()) status = comm::agree(comm, "finalize", run.finalize()).status;
    timer.mark("finalize");
  }
  return status;
}

}  // namespace ucp::exec
