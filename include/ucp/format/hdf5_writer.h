// One HDF5 file written by every rank of an MPI communicator at once (parallel HDF5, MPI-IO driver,
// collective metadata and collective raw-data writes). A thin wrapper over the HDF5 C API that
// returns Status; built only when parallel HDF5 is found (UCP_HAVE_HDF5, library ucp_hdf5).
//
// How each dtype is stored, chosen so that h5py/numpy read every dataset back without help:
//   bool               HDF5 enum over int8 {FALSE = 0, TRUE = 1}, which h5py reads as numpy bool
//   (u)int8..64        little-endian integers
//   fp16 / fp32 / fp64 IEEE little-endian floats (fp16 as the custom float h5py writes for float16)
//   complex64 / 128    compound {r, i} of two floats, h5py's complex convention
//   bf16               uint16 holding the raw bfloat16 bit patterns, with the string attribute
//                      dtype = "bfloat16" (numpy has no bfloat16: widen with `astype(np.uint32) << 16`
//                      and view as float32 to get the exact values)
//   float8             refused (Unimplemented): no convention h5py would understand
//
// Every dataset is contiguous, allocated when created (H5D_ALLOC_TIME_EARLY) and never filled, so
// it is one byte range of the file and creating it costs no write.
//
// Collective rules (parallel HDF5's, not ours): every method except the destructor's cleanup
// must be called by every rank of the communicator, in the same order, with the same arguments —
// except write(), where each rank passes its own runs (possibly none).
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>

#include "ucp/base/dtype.h"
#include "ucp/base/status.h"

namespace ucp::format {

/// Elements [begin, begin + count) of a dataset's flattened (row-major) elements.
struct ElementRun {
  std::uint64_t begin = 0;
  std::uint64_t count = 0;
};

class Hdf5Writer {
 public:
  /// Collective. Creates `path` (it must not exist) for writing by every rank of the MPI
  /// communicator `mpi_comm` points at (an MPI_Comm, from comm::world_mpi_comm_handle: opaque here
  /// so that readers and writers of formats never see MPI).
  static base::Result<std::unique_ptr<Hdf5Writer>> create(const std::string& path, const void* mpi_comm);
  /// Closes whatever is still open (collective, like close(); errors are lost: call close()).
  ~Hdf5Writer();
  Hdf5Writer(const Hdf5Writer&) = delete;
  Hdf5Writer& operator=(const Hdf5Writer&) = delete;

  /// A group whose links keep creation order (h5py then lists members in that order).
  base::Status create_group(const std::string& path);
  /// A dataset of `dtype` and `shape` (empty shape: a scalar dataset). Returns its handle for write().
  base::Result<int> create_dataset(const std::string& path, base::DType dtype, std::span<const std::int64_t> shape);
  /// A second name for an existing object (a hard link): tied weights are one dataset, two names.
  base::Status create_link(const std::string& target, const std::string& link_path);
  /// A scalar attribute on the group or dataset at `object`: UTF-8 variable-length string, int64 or double.
  base::Status set_attribute(const std::string& object, const std::string& name, const std::string& value);
  base::Status set_attribute(const std::string& object, const std::string& name, std::int64_t value);
  base::Status set_attribute(const std::string& object, const std::string& name, double value);

  /// Collective (every rank, same datasets in the same order). Writes this rank's `runs` of
  /// `dataset` (sorted, disjoint, inside the dataset) from `data`, which holds their elements
  /// back to back in the dataset's dtype. A rank with nothing for this dataset passes no runs.
  base::Status write(int dataset, std::span<const ElementRun> runs, const std::byte* data);

  /// Collective. Closes every dataset and the file (metadata is flushed here).
  base::Status close();

  const std::string& path() const { return path_; }

 private:
  struct Handles;
  explicit Hdf5Writer(std::string path);
  std::string path_;
  std::unique_ptr<Handles> h_;
};

/// "HDF5 1.10.8" — the library version linked in.
std::string hdf5_library_version();

}  // namespace ucp::format
