#include "ucp/format/hdf5_writer.h"

#include <mpi.h>

#include <hdf5.h>

#include <string>
#include <vector>

#include "ucp/format/hyperslab.h"
#include "hdf5_common.h"

namespace ucp::format {
using base::DType;
using base::Result;
using base::Status;

namespace {

// The file and memory type of each dtype (identical, so HDF5 never converts and collective I/O
// stays collective: a type conversion makes parallel HDF5 fall back to independent I/O).
Result<Hid> storage_type(DType dtype) {
  switch (dtype) {
    case DType::kBool: {
      // h5py's numpy-bool convention.
      Hid t(H5Tenum_create(H5T_NATIVE_INT8), H5Tclose);
      const std::int8_t no = 0, yes = 1;
      if (!t.valid() || H5Tenum_insert(t.get(), "FALSE", &no) < 0 || H5Tenum_insert(t.get(), "TRUE", &yes) < 0)
        return base::internal_error("creating the HDF5 bool enum type failed: " + hdf5_error_text());
      return t;
    }
    case DType::kU8: return Hid(H5Tcopy(H5T_STD_U8LE), H5Tclose);
    case DType::kI8: return Hid(H5Tcopy(H5T_STD_I8LE), H5Tclose);
    case DType::kI16: return Hid(H5Tcopy(H5T_STD_I16LE), H5Tclose);
    case DType::kI32: return Hid(H5Tcopy(H5T_STD_I32LE), H5Tclose);
    case DType::kI64: return Hid(H5Tcopy(H5T_STD_I64LE), H5Tclose);
    case DType::kU16: return Hid(H5Tcopy(H5T_STD_U16LE), H5Tclose);
    case DType::kU32: return Hid(H5Tcopy(H5T_STD_U32LE), H5Tclose);
    case DType::kU64: return Hid(H5Tcopy(H5T_STD_U64LE), H5Tclose);
    case DType::kBF16: return Hid(H5Tcopy(H5T_STD_U16LE), H5Tclose);  // raw bits + dtype attribute
    case DType::kF16: {
      // h5py's float16: IEEE half as an HDF5 custom float (1.10 has no predefined one).
      Hid t(H5Tcopy(H5T_IEEE_F32LE), H5Tclose);
      if (!t.valid() || H5Tset_fields(t.get(), 15, 10, 5, 0, 10) < 0 || H5Tset_size(t.get(), 2) < 0 ||
          H5Tset_ebias(t.get(), 15) < 0)
        return base::internal_error("creating the HDF5 float16 type failed: " + hdf5_error_text());
      return t;
    }
    case DType::kF32: return Hid(H5Tcopy(H5T_IEEE_F32LE), H5Tclose);
    case DType::kF64: return Hid(H5Tcopy(H5T_IEEE_F64LE), H5Tclose);
    case DType::kC64:
    case DType::kC128: {
      const hid_t part = dtype == DType::kC64 ? H5T_IEEE_F32LE : H5T_IEEE_F64LE;
      const std::size_t half = dtype == DType::kC64 ? 4 : 8;
      Hid t(H5Tcreate(H5T_COMPOUND, 2 * half), H5Tclose);
      if (!t.valid() || H5Tinsert(t.get(), "r", 0, part) < 0 || H5Tinsert(t.get(), "i", half, part) < 0)
        return base::internal_error("creating the HDF5 complex type failed: " + hdf5_error_text());
      return t;
    }
    case DType::kF8E4M3:
    case DType::kF8E5M2: break;
  }
  return base::unimplemented("HDF5 output has no storage convention for " + std::string(base::dtype_name(dtype)) +
                             " tensors; use --format safetensors");
}

}  // namespace

struct Hdf5Writer::Handles {
  Hid file;
  Hid collective_xfer;
  struct Dataset {
    std::string path;
    Hid id;
    Hid type;
    std::vector<std::int64_t> shape;
    std::uint64_t numel = 1;
  };
  std::vector<Dataset> datasets;
};

Hdf5Writer::Hdf5Writer(std::string path) : path_(std::move(path)), h_(std::make_unique<Handles>()) {}

Hdf5Writer::~Hdf5Writer() { (void)close(); }

std::string hdf5_library_version() {
  unsigned major = 0, minor = 0, release = 0;
  H5get_libversion(&major, &minor, &release);
  return "HDF5 " + std::to_string(major) + "." + std::to_string(minor) + "." + std::to_string(release);
}

Result<std::unique_ptr<Hdf5Writer>> Hdf5Writer::create(const std::string& path, const void* mpi_comm) {
  const MPI_Comm comm = *static_cast<const MPI_Comm*>(mpi_comm);
  // Errors come back as Status with the stack's text; HDF5 must not print its own stack traces.
  H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
  std::unique_ptr<Hdf5Writer> w(new Hdf5Writer(path));
  Hid fapl(H5Pcreate(H5P_FILE_ACCESS), H5Pclose);
  if (!fapl.valid() || H5Pset_fapl_mpio(fapl.get(), comm, MPI_INFO_NULL) < 0 ||
      // Metadata reads and writes collective: one rank reads, the cache is flushed by all together.
      H5Pset_all_coll_metadata_ops(fapl.get(), true) < 0 || H5Pset_coll_metadata_write(fapl.get(), true) < 0 ||
      // Datasets of 64 KiB or more start on a 4 KiB boundary (page-aligned MPI-IO writes; at most
      // 4 KiB lost per large tensor).
      H5Pset_alignment(fapl.get(), 64 * 1024, 4096) < 0)
    return hdf5_error("setting up parallel HDF5 access for", path);
  Hid file(H5Fcreate(path.c_str(), H5F_ACC_EXCL, H5P_DEFAULT, fapl.get()), H5Fclose);
  if (!file.valid()) return hdf5_error("creating", path);
  w->h_->file = std::move(file);
  Hid xfer(H5Pcreate(H5P_DATASET_XFER), H5Pclose);
  if (!xfer.valid() || H5Pset_dxpl_mpio(xfer.get(), H5FD_MPIO_COLLECTIVE) < 0)
    return hdf5_error("setting up collective writes for", path);
  w->h_->collective_xfer = std::move(xfer);
  return w;
}

Status Hdf5Writer::create_group(const std::string& group) {
  Hid gcpl(H5Pcreate(H5P_GROUP_CREATE), H5Pclose);
  if (!gcpl.valid() || H5Pset_link_creation_order(gcpl.get(), H5P_CRT_ORDER_TRACKED | H5P_CRT_ORDER_INDEXED) < 0)
    return hdf5_error("creating group '" + group + "' in", path_);
  Hid g(H5Gcreate2(h_->file.get(), group.c_str(), H5P_DEFAULT, gcpl.get(), H5P_DEFAULT), H5Gclose);
  if (!g.valid()) return hdf5_error("creating group '" + group + "' in", path_);
  return {};
}

Result<int> Hdf5Writer::create_dataset(const std::string& name, DType dtype, std::span<const std::int64_t> shape) {
  Handles::Dataset ds;
  ds.path = name;
  ds.shape.assign(shape.begin(), shape.end());
  UCP_ASSIGN_OR_RETURN(ds.type, storage_type(dtype));
  std::vector<hsize_t> dims;
  for (std::int64_t d : shape) {
    if (d < 0) return base::internal_error("dataset '" + name + "': negative dimension");
    dims.push_back(static_cast<hsize_t>(d));
    ds.numel *= static_cast<std::uint64_t>(d);
  }
  Hid space(shape.empty() ? H5Screate(H5S_SCALAR) : H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr),
            H5Sclose);
  Hid dcpl(H5Pcreate(H5P_DATASET_CREATE), H5Pclose);
  if (!space.valid() || !dcpl.valid() || H5Pset_layout(dcpl.get(), H5D_CONTIGUOUS) < 0 ||
      H5Pset_alloc_time(dcpl.get(), H5D_ALLOC_TIME_EARLY) < 0 || H5Pset_fill_time(dcpl.get(), H5D_FILL_TIME_NEVER) < 0)
    return hdf5_error("preparing dataset '" + name + "' in", path_);
  ds.id = Hid(H5Dcreate2(h_->file.get(), name.c_str(), ds.type.get(), space.get(), H5P_DEFAULT, dcpl.get(), H5P_DEFAULT),
              H5Dclose);
  if (!ds.id.valid()) return hdf5_error("creating dataset '" + name + "' in", path_);
  if (dtype == DType::kBF16) UCP_RETURN_IF_ERROR(set_attribute(name, "dtype", std::string("bfloat16")));
  h_->datasets.push_back(std::move(ds));
  return static_cast<int>(h_->datasets.size() - 1);
}

Status Hdf5Writer::create_link(const std::string& target, const std::string& link_path) {
  if (H5Lcreate_hard(h_->file.get(), target.c_str(), h_->file.get(), link_path.c_str(), H5P_DEFAULT, H5P_DEFAULT) < 0)
    return hdf5_error("linking '" + link_path + "' to '" + target + "' in", path_);
  return {};
}

namespace {

Status write_attribute(hid_t file, const std::string& path, const std::string& object, const std::string& name,
                       hid_t type, const void* value) {
  Hid space(H5Screate(H5S_SCALAR), H5Sclose);
  Hid attr(H5Acreate_by_name(file, object.c_str(), name.c_str(), type, space.get(), H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT),
           H5Aclose);
  if (!attr.valid() || H5Awrite(attr.get(), type, value) < 0)
    return hdf5_error("writing attribute '" + name + "' of '" + object + "' in", path);
  return {};
}

}  // namespace

Status Hdf5Writer::set_attribute(const std::string& object, const std::string& name, const std::string& value) {
  Hid type(H5Tcopy(H5T_C_S1), H5Tclose);
  if (!type.valid() || H5Tset_size(type.get(), H5T_VARIABLE) < 0 || H5Tset_cset(type.get(), H5T_CSET_UTF8) < 0)
    return hdf5_error("writing attribute '" + name + "' in", path_);
  const char* text = value.c_str();
  return write_attribute(h_->file.get(), path_, object, name, type.get(), &text);
}

Status Hdf5Writer::set_attribute(const std::string& object, const std::string& name, std::int64_t value) {
  return write_attribute(h_->file.get(), path_, object, name, H5T_NATIVE_INT64, &value);
}

Status Hdf5Writer::set_attribute(const std::string& object, const std::string& name, double value) {
  return write_attribute(h_->file.get(), path_, object, name, H5T_NATIVE_DOUBLE, &value);
}

Status Hdf5Writer::write(int dataset, std::span<const ElementRun> runs, const std::byte* data) {
  if (dataset < 0 || static_cast<std::size_t>(dataset) >= h_->datasets.size())
    return base::internal_error("HDF5 write to unknown dataset " + std::to_string(dataset));
  const Handles::Dataset& ds = h_->datasets[static_cast<std::size_t>(dataset)];
  // The file selection: the union of the runs' blocks. HDF5 walks a selection in row-major
  // order, and the runs are sorted and disjoint, so that order is the order of `data`.
  Hid fspace(H5Dget_space(ds.id.get()), H5Sclose);
  if (!fspace.valid() || H5Sselect_none(fspace.get()) < 0) return hdf5_error("selecting in '" + ds.path + "' of", path_);
  std::uint64_t total = 0, next = 0;
  for (std::size_t k = 0; k < runs.size();) {
    // Adjacent runs (a tensor's pieces read by one rank) merge into one: fewer blocks to select.
    std::uint64_t begin = runs[k].begin, count = runs[k].count;
    for (++k; k < runs.size() && runs[k].begin == begin + count; ++k) count += runs[k].count;
    if (begin < next || count > ds.numel || begin > ds.numel - count)
      return base::internal_error("HDF5 write to '" + ds.path + "': run [" + std::to_string(begin) + ", +" +
                                  std::to_string(count) + ") overlaps, is unsorted, or exceeds " + std::to_string(ds.numel) +
                                  " elements");
    next = begin + count;
    total += count;
    if (ds.shape.empty()) {
      if (count != 0 && H5Sselect_all(fspace.get()) < 0) return hdf5_error("selecting in '" + ds.path + "' of", path_);
      continue;
    }
    for (const Hyperslab& b : flat_run_blocks(ds.shape, begin, count)) {
      std::vector<hsize_t> start(b.start.begin(), b.start.end()), cnt(b.count.begin(), b.count.end());
      if (H5Sselect_hyperslab(fspace.get(), H5S_SELECT_OR, start.data(), nullptr, cnt.data(), nullptr) < 0)
        return hdf5_error("selecting in '" + ds.path + "' of", path_);
    }
  }
  const hsize_t mem_dims = total;
  Hid mspace(H5Screate_simple(1, &mem_dims, nullptr), H5Sclose);
  if (!mspace.valid()) return hdf5_error("writing '" + ds.path + "' to", path_);
  if (total == 0 && H5Sselect_none(mspace.get()) < 0) return hdf5_error("writing '" + ds.path + "' to", path_);
  if (H5Dwrite(ds.id.get(), ds.type.get(), mspace.get(), fspace.get(), h_->collective_xfer.get(), data) < 0)
    return hdf5_error("writing '" + ds.path + "' to", path_);
  return {};
}

Status Hdf5Writer::close() {
  if (!h_ || !h_->file.valid()) return {};
  Status status;
  for (auto& ds : h_->datasets)
    if (ds.id.reset() < 0 && status.ok()) status = hdf5_error("closing dataset '" + ds.path + "' of", path_);
  h_->datasets.clear();
  h_->collective_xfer.reset();
  if (h_->file.reset() < 0 && status.ok()) status = hdf5_error("closing", path_);
  return status;
}

}  // namespace ucp::format
