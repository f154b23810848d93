// The CUDA cast kernels and DeviceStager on a real device, compared bit for bit with
// base::convert_elements (the CPU reference): every 16-bit pattern, a dense fp32 sweep, unaligned
// views, and the stager's chunked upload/download.
#include <cuda_runtime_api.h>
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include "ucp/base/convert.h"
#include "ucp/exec/cuda_convert.h"
#include "ucp/exec/device_stager.h"

namespace ucp::exec {
namespace {

using base::DType;

// Runs cuda_convert on `in` (host bytes) and returns the converted host bytes. `misalign` shifts
// both device pointers by that many bytes.
std::vector<std::byte> on_device(const std::vector<std::byte>& in, DType from, DType to, std::size_t misalign = 0) {
  const std::uint64_t n = in.size() / base::dtype_size(from);
  const std::uint64_t out_bytes = n * base::dtype_size(to);
  void* d_in = nullptr;
  void* d_out = nullptr;
  EXPECT_EQ(cudaMalloc(&d_in, in.size() + 8), cudaSuccess);
  EXPECT_EQ(cudaMalloc(&d_out, out_bytes + 8), cudaSuccess);
  auto* src = static_cast<std::byte*>(d_in) + misalign;
  auto* dst = static_cast<std::byte*>(d_out) + misalign;
  EXPECT_EQ(cudaMemcpy(src, in.data(), in.size(), cudaMemcpyHostToDevice), cudaSuccess);
  const base::Status s = cuda_convert(dst, to, src, from, n, nullptr);
  EXPECT_TRUE(s.ok()) << s.to_string();
  EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  std::vector<std::byte> out(out_bytes);
  EXPECT_EQ(cudaMemcpy(out.data(), dst, out_bytes, cudaMemcpyDeviceToHost), cudaSuccess);
  cudaFree(d_in);
  cudaFree(d_out);
  return out;
}

std::vector<std::byte> on_cpu(const std::vector<std::byte>& in, DType from, DType to) {
  const std::uint64_t n = in.size() / base::dtype_size(from);
  std::vector<std::byte> out(n * base::dtype_size(to));
  base::convert_elements(from, in.data(), to, out.data(), n);
  return out;
}

template <typename T>
std::vector<std::byte> as_bytes(const std::vector<T>& v) {
  std::vector<std::byte> out(v.size() * sizeof(T));
  std::memcpy(out.data(), v.data(), out.size());
  return out;
}

std::vector<std::byte> all_16_bit() {
  std::vector<std::uint16_t> v(1u << 16);
  for (std::uint32_t i = 0; i < v.size(); ++i) v[i] = static_cast<std::uint16_t>(i);
  return as_bytes(v);
}

std::vector<std::byte> f32_sweep() {
  std::vector<std::uint32_t> v;
  for (std::uint64_t x = 0; x <= 0xFFFFFFFFull; x += 257) v.push_back(static_cast<std::uint32_t>(x));
  for (std::uint32_t x : {0x7F800001u, 0xFFC00000u, 0x477FF000u, 0x33000000u, 0x33C00000u, 0x3F808000u, 0x00000001u})
    v.push_back(x);
  return as_bytes(v);
}

// First differing element, for a readable failure.
void expect_same(const std::vector<std::byte>& got, const std::vector<std::byte>& want, std::size_t elem,
                 const char* what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  if (got == want) return;
  for (std::size_t i = 0; i < got.size(); i += elem) {
    if (std::memcmp(got.data() + i, want.data() + i, elem) != 0) {
      FAIL() << what << ": element " << i / elem << " differs from the CPU reference";
    }
  }
}

TEST(CudaConvert, SixteenBitSourcesAllPatterns) {
  const auto in = all_16_bit();
  for (auto [from, to] : {std::pair{DType::kBF16, DType::kF32}, std::pair{DType::kF16, DType::kF32},
                          std::pair{DType::kBF16, DType::kF16}, std::pair{DType::kF16, DType::kBF16}}) {
    const std::string what = std::string(base::dtype_name(from)) + "->" + std::string(base::dtype_name(to));
    expect_same(on_device(in, from, to), on_cpu(in, from, to), base::dtype_size(to), what.c_str());
    expect_same(on_device(in, from, to, 1), on_cpu(in, from, to), base::dtype_size(to), (what + " unaligned").c_str());
  }
}

TEST(CudaConvert, F32SweepToBf16AndF16) {
  const auto in = f32_sweep();
  for (DType to : {DType::kBF16, DType::kF16}) {
    expect_same(on_device(in, DType::kF32, to), on_cpu(in, DType::kF32, to), 2, base::dtype_name(to).data());
  }
  expect_same(on_device(in, DType::kF32, DType::kF32, 3), in, 4, "f32 copy");
}

TEST(CudaConvert, RejectsPairsWithoutAKernel) {
  EXPECT_FALSE(cuda_can_convert(DType::kF64, DType::kF32));
  const base::Status s = cuda_convert(nullptr, DType::kF32, nullptr, DType::kI64, 1, nullptr);
  EXPECT_EQ(s.code(), base::StatusCode::kInvalidArgument);
}

TEST(DeviceStager, UploadCastsInChunksAndDownloadReturnsTheBytes) {
  int device = 0;
  ASSERT_EQ(cudaGetDevice(&device), cudaSuccess);
  auto stager = DeviceStager::create(device, 1u << 20);  // 256 KiB chunks
  ASSERT_TRUE(stager.ok()) << stager.status().to_string();
  std::mt19937 rng(7);
  std::vector<std::uint16_t> src(700001);  // several chunks and a ragged tail
  for (auto& x : src) x = static_cast<std::uint16_t>(rng());
  const auto src_bytes = as_bytes(src);
  void* d = nullptr;
  ASSERT_EQ(cudaMalloc(&d, src.size() * 4), cudaSuccess);
  for (DType from : {DType::kBF16, DType::kF16}) {
    ASSERT_TRUE((*stager)->upload(src.data(), from, src.size(), d, DType::kF32).ok());
    ASSERT_TRUE((*stager)->synchronize().ok());
    std::vector<std::byte> back(src.size() * 4);
    ASSERT_TRUE((*stager)->download(back.data(), d, back.size()).ok());
    expect_same(back, on_cpu(src_bytes, from, DType::kF32), 4, base::dtype_name(from).data());
  }
  // Same dtype: a plain copy through the pinned chunks.
  ASSERT_TRUE((*stager)->upload(src.data(), DType::kBF16, src.size(), d, DType::kBF16).ok());
  std::vector<std::byte> back(src_bytes.size());
  ASSERT_TRUE((*stager)->download(back.data(), d, back.size()).ok());
  EXPECT_EQ(back, src_bytes);
  EXPECT_EQ((*stager)->upload(src.data(), DType::kI32, 1, d, DType::kF32).code(), base::StatusCode::kInvalidArgument);
  cudaFree(d);
}

}  // namespace
}  // namespace ucp::exec
