#include "ucp/base/dtype.h"

#include <array>

namespace ucp::base {
namespace {

struct DTypeInfo {
  DType type;
  std::size_t size;
  std::string_view name;
  std::string_view storage_class;
  std::string_view torch_attr;
  std::string_view safetensors;
  bool floating;
};

// One row per dtype: every name mapping derives from this table. The dtypes torch added after its
// typed storages (uint16/32/64, float8) have no storage class: torch pickles them through
// _rebuild_tensor_v3 over a torch.UntypedStorage.
constexpr std::array<DTypeInfo, 17> kTable{{
    {DType::kBool, 1, "bool", "BoolStorage", "bool", "BOOL", false},
    {DType::kU8, 1, "u8", "ByteStorage", "uint8", "U8", false},
    {DType::kI8, 1, "i8", "CharStorage", "int8", "I8", false},
    {DType::kI16, 2, "i16", "ShortStorage", "int16", "I16", false},
    {DType::kI32, 4, "i32", "IntStorage", "int32", "I32", false},
    {DType::kI64, 8, "i64", "LongStorage", "int64", "I64", false},
    {DType::kU16, 2, "u16", "", "uint16", "U16", false},
    {DType::kU32, 4, "u32", "", "uint32", "U32", false},
    {DType::kU64, 8, "u64", "", "uint64", "U64", false},
    {DType::kF16, 2, "f16", "HalfStorage", "float16", "F16", true},
    {DType::kBF16, 2, "bf16", "BFloat16Storage", "bfloat16", "BF16", true},
    {DType::kF32, 4, "f32", "FloatStorage", "float32", "F32", true},
    {DType::kF64, 8, "f64", "DoubleStorage", "float64", "F64", true},
    {DType::kC64, 8, "c64", "ComplexFloatStorage", "complex64", "C64", true},
    {DType::kC128, 16, "c128", "ComplexDoubleStorage", "complex128", "C128", true},
    {DType::kF8E4M3, 1, "f8e4m3", "", "float8_e4m3fn", "F8_E4M3", true},
    {DType::kF8E5M2, 1, "f8e5m2", "", "float8_e5m2", "F8_E5M2", true},
}};

const DTypeInfo& info(DType t) {
  for (const auto& row : kTable)
    if (row.type == t) return row;
  return kTable[0];  // unreachable: every enum value has a row
}

template <typename Field>
std::optional<DType> lookup(std::string_view key, Field field) {
  for (const auto& row : kTable)
    if (row.*field == key) return row.type;
  return std::nullopt;
}

}  // namespace

std::size_t dtype_size(DType t) { return info(t).size; }
std::string_view dtype_name(DType t) { return info(t).name; }
bool dtype_is_floating(DType t) { return info(t).floating; }
std::string_view torch_storage_class(DType t) { return info(t).storage_class; }
std::optional<DType> dtype_from_torch_storage_class(std::string_view cls) {
  if (cls.empty()) return std::nullopt;
  return lookup(cls, &DTypeInfo::storage_class);
}
std::string_view torch_dtype_attr(DType t) { return info(t).torch_attr; }
std::optional<DType> dtype_from_torch_dtype_attr(std::string_view attr) {
  // Aliases torch also pickles under.
  if (attr == "float") return DType::kF32;
  if (attr == "half") return DType::kF16;
  if (attr == "double") return DType::kF64;
  if (attr == "long") return DType::kI64;
  if (attr == "int") return DType::kI32;
  if (attr == "short") return DType::kI16;
  return lookup(attr, &DTypeInfo::torch_attr);
}
std::string_view safetensors_dtype(DType t) { return info(t).safetensors; }
std::optional<DType> dtype_from_safetensors(std::string_view s) {
  return lookup(s, &DTypeInfo::safetensors);
}
std::optional<DType> dtype_from_user_name(std::string_view s) {
  if (s == "fp32" || s == "f32" || s == "float32" || s == "float") return DType::kF32;
  if (s == "fp16" || s == "f16" || s == "float16" || s == "half") return DType::kF16;
  if (s == "bf16" || s == "bfloat16") return DType::kBF16;
  if (s == "fp64" || s == "f64" || s == "float64") return DType::kF64;
  return std::nullopt;
}

}  // namespace ucp::base
