#include "ucp/exec/hdf5_executor.h"


#include <algorithm>
#include <cstring>
#include <map>
#include <memory>
#include <variant>

#include "ucp/exec/source_reader.h"

#if defined(UCP_HAVE_HDF5)

#include "ucp/format/hdf5_writer.h"
#endif

namespace ucp::exec {
using base::Status;

#if !defined(UCP_HAVE_HDF5)

bool hdf5_output_available() { return false; }
std::string hdf5_output_description() { return "parallel HDF5 not built"; }

Status execute_hdf5_plan(comm::Communicator&, const plan::Hdf5Plan&, OutputDir&, const ExecuteOptions&, PhaseTimer&) {
  return base::unimplemented(
      "--format hdf5: this ucp-reshard was built without parallel HDF5 (install libhdf5-openmpi-dev and rebuild)");
}

#else

bool hdf5_output_available() { return true; }
std::string hdf5_output_description() { return "parallel " + format::hdf5_library_version(); }

namespace {

class Hdf5Run {
 public:
  Hdf5Run(const plan::Hdf5Plan& plan, OutputDir& out, int me)
      : hp_(plan), plan_(plan.plan), out_(out), me_(me), sources_(plan.plan.source_paths) {}

  Status open_file();
  Status create_objects();
  Status open_sources();
  Status write_blobs();
  Status transfer_round(const std::vector<plan::Transfer>& round);
  Status close() { return writer_ ? writer_->close() : Status{}; }

 private:
  // The tensor (index into plan.tensors) whose virtual bytes hold `offset`.
  int tensor_at(std::uint64_t offset) const {
    auto it = std::upper_bound(by_offset_.begin(), by_offset_.end(), std::make_pair(offset, INT32_MAX));
    return std::prev(it)->second;
  }

  const plan::Hdf5Plan& hp_;
  const plan::FilePlan& plan_;
  OutputDir& out_;
  const int me_;
  std::unique_ptr<format::Hdf5Writer> writer_;
  std::vector<int> dataset_of_;                       // plan tensor -> writer dataset handle
  std::vector<int> blob_dataset_;                     // plan blob -> writer dataset handle
  std::vector<std::pair<std::uint64_t, int>> by_offset_;  // (virtual offset, tensor), tensors with bytes
  SourceReader sources_;
  std::unique_ptr<std::byte[]> buffer_;
};

Status Hdf5Run::open_file() {
  // Parallel HDF5 takes an MPI communicator; ours is the world (comm/ checks and hands it over).
  UCP_ASSIGN_OR_RETURN(const void* world, comm::world_mpi_comm_handle(static_cast<int>(plan_.totals.size()), me_)
                                              .annotate("--format hdf5"));
  UCP_ASSIGN_OR_RETURN(writer_, format::Hdf5Writer::create(out_.temp_file(format::kHdf5FileName), world));
  return {};
}

Status Hdf5Run::create_objects() {
  for (const auto& g : hp_.groups) UCP_RETURN_IF_ERROR(writer_->create_group(g));
  dataset_of_.assign(plan_.tensors.size(), -1);
  for (std::size_t i = 0; i < plan_.tensors.size(); ++i) {
    const plan::OutputTensor& t = plan_.tensors[i];
    if (t.shares_storage_with >= 0) {
      UCP_RETURN_IF_ERROR(writer_->create_link(hp_.paths[static_cast<std::size_t>(t.shares_storage_with)], hp_.paths[i]));
      continue;
    }
    UCP_ASSIGN_OR_RETURN(dataset_of_[i], writer_->create_dataset(hp_.paths[i], t.dtype, t.shape));
    if (t.nbytes > 0) by_offset_.emplace_back(t.file_offset, static_cast<int>(i));
  }
  std::sort(by_offset_.begin(), by_offset_.end());
  for (const auto& [path, bytes] : hp_.blobs) {
    const std::int64_t shape[] = {static_cast<std::int64_t>(bytes->size())};
    UCP_ASSIGN_OR_RETURN(int handle, writer_->create_dataset(path, base::DType::kU8, shape));
    blob_dataset_.push_back(handle);
  }
  for (const auto& a : hp_.attributes)
    UCP_RETURN_IF_ERROR(std::visit([&](const auto& v) { return writer_->set_attribute(a.object, a.name, v); }, a.value));
  return {};
}

Status Hdf5Run::open_sources() {
  UCP_ASSIGN_OR_RETURN(const std::uint64_t max_read, sources_.open_for(plan_, me_));
  // Sized once for the largest round, never zero-filled (every byte is read into before use).
  buffer_ = std::make_unique_for_overwrite<std::byte[]>(std::max<std::uint64_t>(max_read, 1));
  return {};
}

Status Hdf5Run::write_blobs() {
  // Collective like every write: rank 0 passes the bytes, the others no runs; every rank makes
  // every call even after an error, which the agreement after this step reports.
  Status local;
  for (std::size_t i = 0; i < hp_.blobs.size(); ++i) {
    const std::vector<std::byte>& bytes = *hp_.blobs[i].bytes;
    const format::ElementRun all[] = {{0, bytes.size()}};
    std::span<const format::ElementRun> runs;
    if (me_ == 0 && local.ok() && !bytes.empty()) runs = all;
    const Status s = writer_->write(blob_dataset_[i], runs, bytes.data());
    if (local.ok()) local = s;
  }
  return local;
}

Status Hdf5Run::transfer_round(const std::vector<plan::Transfer>& round) {
  // Read: my runs, back to back. The round is sorted by (reader, writer = reader, file, offset),
  // so they come in virtual-offset order: by dataset, then element.
  struct Mine {
    int tensor;
    format::ElementRun run;
    std::uint64_t pos;
  };
  std::vector<Mine> mine;
  std::vector<int> touched;  // every dataset any rank writes this round (the same list on all ranks)
  Status local;
  std::uint64_t pos = 0;
  for (const plan::Transfer& x : round) {
    const int t = tensor_at(x.file_offset);
    touched.push_back(t);
    if (x.reader != me_) continue;
    const plan::OutputTensor& ot = plan_.tensors[static_cast<std::size_t>(t)];
    const std::uint64_t elem = (x.file_offset - ot.file_offset) / base::dtype_size(ot.dtype);
    mine.push_back({t, {elem, x.src.numel}, pos});
    if (local.ok()) local = sources_.read(x, buffer_.get() + pos);
    pos += x.out_bytes();
  }
  std::sort(touched.begin(), touched.end());
  touched.erase(std::unique(touched.begin(), touched.end()), touched.end());

  // Write: one collective H5Dwrite per touched dataset, in dataset order, on every rank — also
  // after a local error (then with no runs), so the collective calls always match up; the error
  // is reported at the agreement that ends the round.
  std::size_t k = 0;
  std::vector<format::ElementRun> runs;
  for (int t : touched) {
    runs.clear();
    while (k < mine.size() && mine[k].tensor < t) ++k;  // cannot happen (mine is a subset), kept for safety
    const std::size_t first = k;
    for (; k < mine.size() && mine[k].tensor == t; ++k) runs.push_back(mine[k].run);
    const std::byte* data = first < mine.size() ? buffer_.get() + mine[first].pos : buffer_.get();
    if (!local.ok()) runs.clear();
    const Status s = writer_->write(dataset_of_[static_cast<std::size_t>(t)], runs, data);
    if (local.ok()) local = s;
  }
  return local;
}

}  // namespace

Status execute_hdf5_plan(comm::Communicator& comm, const plan::Hdf5Plan& plan, OutputDir& out,
                         const ExecuteOptions& options, PhaseTimer& timer) {
  Status status;
  {
    Hdf5Run run(plan, out, comm.rank());
    // Opening is agreed on by itself: every later HDF5 call is collective, so no rank may go on
    // when another could not open the file.
    status = comm::agree(comm, "create", run.open_file()).status;
    if (status.ok()) {
      Status local = run.create_objects();
      if (local.ok()) local = run.open_sources();
      status = comm::agree(comm, "create", local).status;
    }
    if (status.ok()) status = comm::agree(comm, "create", run.write_blobs()).status;
    timer.mark("create");

    if (status.ok())
      status = run_transfer_rounds(comm, plan.plan, options,
                                   [&](const std::vector<plan::Transfer>& r) { return run.transfer_round(r); });
    timer.mark("transfer");
    // Closing is collective too: every rank closes, failure or not (opening was agreed on, so
    // either every rank holds the file open or none does).
    {
      const Status closed = comm::agree(comm, "finalize", run.close()).status;
      if (status.ok()) status = closed;
    }
    timer.mark("finalize");
  }
  return status;
}

#endif

}  // namespace ucp::exec
