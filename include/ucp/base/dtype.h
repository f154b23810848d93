// Element types, and their names in each format we read or write (torch storage classes,
// torch dtype globals, safetensors dtype strings).
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

namespace ucp::base {

enum class DType : std::uint8_t {
  kBool,
  kU8,
  kI8,
  kI16,
  kI32,
  kI64,
  kU16,
  kU32,
  kU64,
  kF16,
  kBF16,
  kF32,
  kF64,
  kC64,   ///< complex<float>
  kC128,  ///< complex<double>
  kF8E4M3,  ///< torch.float8_e4m3fn / safetensors F8_E4M3
  kF8E5M2,  ///< torch.float8_e5m2 / safetensors F8_E5M2
};

inline constexpr DType kAllDTypes[] = {
    DType::kBool, DType::kU8,   DType::kI8,   DType::kI16,  DType::kI32,   DType::kI64,
    DType::kU16,  DType::kU32,  DType::kU64,  DType::kF16,  DType::kBF16,  DType::kF32,
    DType::kF64,  DType::kC64,  DType::kC128, DType::kF8E4M3, DType::kF8E5M2};

/// Bytes per element.
std::size_t dtype_size(DType t);
/// Short human name: "bf16", "f32", "i64", "bool", ...
std::string_view dtype_name(DType t);
/// True for floating and complex types.
bool dtype_is_floating(DType t);

/// torch storage class name without module ("FloatStorage"), as pickled by torch.save; empty for
/// the dtypes torch pickles through _rebuild_tensor_v3 and an untyped storage (uint16/32/64, float8).
std::string_view torch_storage_class(DType t);
std::optional<DType> dtype_from_torch_storage_class(std::string_view cls);
/// torch dtype attribute name ("float32", "bfloat16"), as in GLOBAL 'torch bfloat16'.
std::string_view torch_dtype_attr(DType t);
std::optional<DType> dtype_from_torch_dtype_attr(std::string_view attr);
/// safetensors dtype string ("F32", "BF16", "BOOL").
std::string_view safetensors_dtype(DType t);
std::optional<DType> dtype_from_safetensors(std::string_view s);
/// Parses the user-facing names accepted on the command line: fp32|f32|float32, bf16, fp16, ...
std::optional<DType> dtype_from_user_name(std::string_view s);

}  // namespace ucp::base
