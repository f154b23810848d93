// Where things live in the HDF5 file to-fp32 --format hdf5 writes, shared by its writer (plan/
// hdf5_plan.h) and every reader: the fp32 model, the optimizer states per parameter, and the small
// files of a universal checkpoint stored byte for byte.
#pragma once

namespace ucp::format {

inline constexpr const char* kHdf5FileName = "model.h5";
inline constexpr const char* kHdf5ModelGroup = "/model";          ///< "/model/<tensor>"
inline constexpr const char* kHdf5OptimizerGroup = "/optimizer";  ///< "/optimizer/<param>/<state>"
inline constexpr const char* kHdf5UniversalGroup = "/universal";  ///< "/universal/<relative path>"

}  // namespace ucp::format
