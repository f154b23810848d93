#include "ucp/format/hdf5_reader.h"

#include <hdf5.h>

#include "hdf5_common.h"
#include "ucp/base/checked_math.h"

namespace ucp::format {
using base::DType;
using base::Result;
using base::Status;

struct Hdf5Reader::Handles {
  Hid file;
  std::uint64_t file_size = 0;
};

namespace {

// The dtype hdf5_writer.h stored as `type` (bf16 is decided by the caller from the attribute).
Result<DType> dtype_of(hid_t type, const std::string& where) {
  const H5T_class_t cls = H5Tget_class(type);
  const std::size_t size = H5Tget_size(type);
  const bool little = size <= 1 || H5Tget_order(type) == H5T_ORDER_LE;
  auto bad = [&](const std::string& what) {
    return base::data_loss(where + ": stored as " + what + " (" + std::to_string(size) +
                           " bytes), expected one of the types ucp-reshard writes (little-endian integer, "
                           "IEEE float16/32/64, bool enum, complex {r, i})");
  };
  if (cls == H5T_INTEGER) {
    if (!little) return bad("a big-endian integer");
    const bool is_signed = H5Tget_sign(type) == H5T_SGN_2;
    switch (size) {
      case 1: return is_signed ? DType::kI8 : DType::kU8;
      case 2: return is_signed ? DType::kI16 : DType::kU16;
      case 4: return is_signed ? DType::kI32 : DType::kU32;
      case 8: return is_signed ? DType::kI64 : DType::kU64;
      default: return bad("an integer");
    }
  }
  if (cls == H5T_FLOAT) {
    if (!little) return bad("a big-endian float");
    if (size == 2) return DType::kF16;
    if (size == 4) return DType::kF32;
    if (size == 8) return DType::kF64;
    return bad("a float");
  }
  if (cls == H5T_ENUM && size == 1) return DType::kBool;
  if (cls == H5T_COMPOUND && (size == 8 || size == 16) && H5Tget_nmembers(type) == 2) {
    const hid_t part = H5Tget_member_type(type, 0);
    const bool ok = part >= 0 && H5Tget_class(part) == H5T_FLOAT && H5Tget_size(part) == size / 2 &&
                    H5Tget_member_offset(type, 1) == size / 2;
    if (part >= 0) H5Tclose(part);
    if (ok) return size == 8 ? DType::kC64 : DType::kC128;
  }
  return bad("an unsupported type class");
}

}  // namespace

Hdf5Reader::Hdf5Reader(std::string path, std::unique_ptr<Handles> h) : path_(std::move(path)), h_(std::move(h)) {}
Hdf5Reader::~Hdf5Reader() = default;

Result<std::unique_ptr<Hdf5Reader>> Hdf5Reader::open(const std::string& path) {
  H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);  // errors come back as Status, not on stderr
  const htri_t is = H5Fis_hdf5(path.c_str());
  if (is <= 0) {
    H5Eclear2(H5E_DEFAULT);
    return base::failed_precondition("'" + path + "': not an HDF5 file (expected one written by ucp-reshard to-fp32 --format hdf5)");
  }
  auto h = std::make_unique<Handles>();
  h->file = Hid(H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT), H5Fclose);
  if (!h->file.valid()) return hdf5_error("opening", path);
  hsize_t size = 0;
  if (H5Fget_filesize(h->file.get(), &size) < 0) return hdf5_error("reading the size of", path);
  h->file_size = size;
  return std::unique_ptr<Hdf5Reader>(new Hdf5Reader(path, std::move(h)));
}

bool Hdf5Reader::exists(const std::string& object) const {
  if (object == "/") return true;
  // H5Lexists needs every intermediate link to exist: check them from the root down.
  std::size_t pos = 1;
  while (true) {
    const std::size_t slash = object.find('/', pos);
    const std::string prefix = object.substr(0, slash);
    const htri_t e = H5Lexists(h_->file.get(), prefix.c_str(), H5P_DEFAULT);
    if (e <= 0) {
      H5Eclear2(H5E_DEFAULT);
      return false;
    }
    if (slash == std::string::npos) break;
    pos = slash + 1;
  }
  return H5Oexists_by_name(h_->file.get(), object.c_str(), H5P_DEFAULT) > 0;
}

bool Hdf5Reader::is_group(const std::string& object) const {
  if (!exists(object)) return false;
  H5O_info_t info;
#if H5_VERSION_GE(1, 12, 0)
  const herr_t r = H5Oget_info_by_name3(h_->file.get(), object.c_str(), &info, H5O_INFO_BASIC, H5P_DEFAULT);
#else
  const herr_t r = H5Oget_info_by_name2(h_->file.get(), object.c_str(), &info, H5O_INFO_BASIC, H5P_DEFAULT);
#endif
  if (r < 0) {
    H5Eclear2(H5E_DEFAULT);
    return false;
  }
  return info.type == H5O_TYPE_GROUP;
}

Result<std::vector<std::string>> Hdf5Reader::members(const std::string& group) const {
  if (!is_group(group)) return base::not_found("'" + path_ + "': expected a group '" + group + "', found none");
  Hid g(H5Gopen2(h_->file.get(), group.c_str(), H5P_DEFAULT), H5Gclose);
  if (!g.valid()) return hdf5_error("opening group '" + group + "' of", path_);
  H5G_info_t info;
  if (H5Gget_info(g.get(), &info) < 0) return hdf5_error("listing group '" + group + "' of", path_);
  // Creation order when the group tracks it, name order otherwise.
  H5_index_t index = H5_INDEX_CRT_ORDER;
  {
    Hid gcpl(H5Gget_create_plist(g.get()), H5Pclose);
    unsigned flags = 0;
    if (!gcpl.valid() || H5Pget_link_creation_order(gcpl.get(), &flags) < 0 || !(flags & H5P_CRT_ORDER_TRACKED))
      index = H5_INDEX_NAME;
    H5Eclear2(H5E_DEFAULT);
  }
  std::vector<std::string> names;
  for (hsize_t i = 0; i < info.nlinks; ++i) {
    const ssize_t n = H5Lget_name_by_idx(g.get(), ".", index, H5_ITER_INC, i, nullptr, 0, H5P_DEFAULT);
    if (n < 0) return hdf5_error("listing group '" + group + "' of", path_);
    std::string name(static_cast<std::size_t>(n) + 1, '\0');
    if (H5Lget_name_by_idx(g.get(), ".", index, H5_ITER_INC, i, name.data(), name.size(), H5P_DEFAULT) < 0)
      return hdf5_error("listing group '" + group + "' of", path_);
    name.resize(static_cast<std::size_t>(n));
    names.push_back(std::move(name));
  }
  return names;
}

Result<Hdf5Dataset> Hdf5Reader::dataset(const std::string& path) const {
  const std::string where = "'" + path_ + "': dataset '" + path + "'";
  if (!exists(path) || is_group(path)) return base::not_found(where + " is missing");
  Hid d(H5Dopen2(h_->file.get(), path.c_str(), H5P_DEFAULT), H5Dclose);
  if (!d.valid()) return hdf5_error("opening dataset '" + path + "' of", path_);
  Hdf5Dataset out;
  out.path = path;
  {
    Hid type(H5Dget_type(d.get()), H5Tclose);
    if (!type.valid()) return hdf5_error("reading the type of dataset '" + path + "' of", path_);
    UCP_ASSIGN_OR_RETURN(out.dtype, dtype_of(type.get(), where));
  }
  {
    Hid space(H5Dget_space(d.get()), H5Sclose);
    const int rank = space.valid() ? H5Sget_simple_extent_ndims(space.get()) : -1;
    if (rank < 0) return base::data_loss(where + ": expected a simple (N-d or scalar) dataspace");
    std::vector<hsize_t> dims(static_cast<std::size_t>(rank));
    if (rank > 0 && H5Sget_simple_extent_dims(space.get(), dims.data(), nullptr) < 0)
      return hdf5_error("reading the shape of dataset '" + path + "' of", path_);
    for (hsize_t n : dims) {
      if (n > static_cast<hsize_t>(INT64_MAX)) return base::data_loss(where + ": a dimension does not fit int64");
      out.shape.push_back(static_cast<std::int64_t>(n));
    }
  }
  UCP_ASSIGN_OR_RETURN(std::optional<Hdf5AttributeValue> dtype_attr, attribute(path, "dtype"));
  if (dtype_attr) {
    const auto* s = std::get_if<std::string>(&*dtype_attr);
    if (!s || *s != "bfloat16" || out.dtype != DType::kU16)
      return base::data_loss(where + ": attribute dtype is not \"bfloat16\" on uint16 data, the only dtype attribute "
                             "ucp-reshard writes");
    out.dtype = DType::kBF16;
  }
  std::uint64_t numel = 1;
  for (std::int64_t n : out.shape) {
    auto next = base::checked_mul(numel, static_cast<std::uint64_t>(n));
    if (!next) return base::data_loss(where + ": element count overflows 64 bits");
    numel = *next;
  }
  auto nbytes = base::checked_mul(numel, base::dtype_size(out.dtype));
  if (!nbytes) return base::data_loss(where + ": byte size overflows 64 bits");
  out.nbytes = *nbytes;

  Hid dcpl(H5Dget_create_plist(d.get()), H5Pclose);
  if (!dcpl.valid()) return hdf5_error("reading the layout of dataset '" + path + "' of", path_);
  if (H5Pget_layout(dcpl.get()) != H5D_CONTIGUOUS)
    return base::data_loss(where + ": expected a contiguous dataset (chunked or compact storage is not one byte range)");
  if (H5Pget_external_count(dcpl.get()) != 0)
    return base::data_loss(where + ": expected its data inside the file, found external storage");
  if (out.nbytes == 0) return out;
  const haddr_t offset = H5Dget_offset(d.get());
  if (offset == HADDR_UNDEF) {
    H5Eclear2(H5E_DEFAULT);
    return base::data_loss(where + ": " + std::to_string(out.nbytes) + " bytes of data were never allocated in the file");
  }
  const hsize_t stored = H5Dget_storage_size(d.get());
  auto end = base::checked_add(static_cast<std::uint64_t>(offset), out.nbytes);
  if (stored < out.nbytes || !end || *end > h_->file_size)
    return base::data_loss(where + ": bytes [" + std::to_string(offset) + ", +" + std::to_string(out.nbytes) +
                           ") expected inside the file (size " + std::to_string(h_->file_size) + ", " +
                           std::to_string(stored) + " bytes stored)");
  out.offset = offset;
  return out;
}

Result<std::optional<Hdf5AttributeValue>> Hdf5Reader::attribute(const std::string& object, const std::string& name) const {
  const std::string where = "'" + path_ + "': attribute '" + name + "' of '" + object + "'";
  if (!exists(object)) return base::not_found("'" + path_ + "': object '" + object + "' is missing");
  const htri_t has = H5Aexists_by_name(h_->file.get(), object.c_str(), name.c_str(), H5P_DEFAULT);
  if (has < 0) return hdf5_error("reading attributes of '" + object + "' in", path_);
  if (has == 0) return std::optional<Hdf5AttributeValue>();
  Hid a(H5Aopen_by_name(h_->file.get(), object.c_str(), name.c_str(), H5P_DEFAULT, H5P_DEFAULT), H5Aclose);
  if (!a.valid()) return hdf5_error("opening attribute '" + name + "' of '" + object + "' in", path_);
  Hid type(H5Aget_type(a.get()), H5Tclose);
  Hid space(H5Aget_space(a.get()), H5Sclose);
  if (!type.valid() || !space.valid()) return hdf5_error("reading attribute '" + name + "' of '" + object + "' in", path_);
  if (H5Sget_simple_extent_npoints(space.get()) != 1) return base::data_loss(where + ": expected a scalar");
  switch (H5Tget_class(type.get())) {
    case H5T_STRING: {
      if (H5Tis_variable_str(type.get()) > 0) {
        Hid mem(H5Tcopy(H5T_C_S1), H5Tclose);
        H5Tset_size(mem.get(), H5T_VARIABLE);
        H5Tset_cset(mem.get(), H5Tget_cset(type.get()));
        char* text = nullptr;
        if (H5Aread(a.get(), mem.get(), &text) < 0) return hdf5_error("reading attribute '" + name + "' of '" + object + "' in", path_);
        std::string value = text ? text : "";
        H5free_memory(text);
        return std::optional<Hdf5AttributeValue>(std::move(value));
      }
      const std::size_t size = H5Tget_size(type.get());
      std::string value(size, '\0');
      if (size > 0 && H5Aread(a.get(), type.get(), value.data()) < 0)
        return hdf5_error("reading attribute '" + name + "' of '" + object + "' in", path_);
      value.resize(value.find('\0') == std::string::npos ? value.size() : value.find('\0'));
      return std::optional<Hdf5AttributeValue>(std::move(value));
    }
    case H5T_INTEGER: {
      std::int64_t v = 0;
      if (H5Aread(a.get(), H5T_NATIVE_INT64, &v) < 0) return hdf5_error("reading attribute '" + name + "' of '" + object + "' in", path_);
      return std::optional<Hdf5AttributeValue>(v);
    }
    case H5T_FLOAT: {
      double v = 0;
      if (H5Aread(a.get(), H5T_NATIVE_DOUBLE, &v) < 0) return hdf5_error("reading attribute '" + name + "' of '" + object + "' in", path_);
      return std::optional<Hdf5AttributeValue>(v);
    }
    default:
      return base::data_loss(where + ": expected a string, integer or float");
  }
}

}  // namespace ucp::format
