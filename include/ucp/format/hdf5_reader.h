// Reads back the HDF5 files to-fp32 writes (format/hdf5_layout.h layout, format/hdf5_writer.h dtype
// conventions): lists groups, describes datasets (dtype, shape and the byte range of the file that
// holds them, so callers map or pread the data themselves) and reads attributes. Serial,
// read-only; built only with HDF5 (library ucp_hdf5). Never aborts: errors name the file and the
// object, and say what was expected.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "ucp/base/dtype.h"
#include "ucp/base/status.h"

namespace ucp::format {

/// A contiguous dataset: its elements, row-major and little-endian, are bytes
/// [offset, offset + nbytes) of the file (offset 0 when nbytes is 0).
struct Hdf5Dataset {
  std::string path;
  base::DType dtype = base::DType::kF32;  ///< kBF16 for uint16 data with the attribute dtype="bfloat16".
  std::vector<std::int64_t> shape;        ///< Empty for a scalar dataset.
  std::uint64_t offset = 0;
  std::uint64_t nbytes = 0;
};

using Hdf5AttributeValue = std::variant<std::string, std::int64_t, double>;

class Hdf5Reader {
 public:
  /// Opens `path` read-only. FailedPrecondition when it is not an HDF5 file.
  static base::Result<std::unique_ptr<Hdf5Reader>> open(const std::string& path);
  ~Hdf5Reader();
  Hdf5Reader(const Hdf5Reader&) = delete;
  Hdf5Reader& operator=(const Hdf5Reader&) = delete;

  const std::string& path() const { return path_; }
  /// Whether `object` ("/model/x") exists; every parent must be a group.
  bool exists(const std::string& object) const;
  /// The member names of group `group`, in creation order when the group tracks it (ours do).
  base::Result<std::vector<std::string>> members(const std::string& group) const;
  /// Whether `object` is a group (false when it is missing or a dataset).
  bool is_group(const std::string& object) const;
  /// Describes dataset `dataset`. DataLoss unless it is contiguous, allocated, inside the file
  /// and of a dtype hdf5_writer.h stores (the bf16 convention included).
  base::Result<Hdf5Dataset> dataset(const std::string& dataset) const;
  /// Attribute `name` of `object` (string, integer or float); nullopt when it has none.
  base::Result<std::optional<Hdf5AttributeValue>> attribute(const std::string& object, const std::string& name) const;

 private:
  struct Handles;
  Hdf5Reader(std::string path, std::unique_ptr<Handles> h);
  std::string path_;
  std::unique_ptr<Handles> h_;
};

}  // namespace ucp::format
